"""How fast the gallery's queries are on a history of 20,000 images.

Fills a temporary history database (webui.history.HistoryStore) with N images across four
services, two modes and prompts drawn from a small vocabulary, then times the store's own calls
as the gallery makes them: the first page, a page of one service, a page deep in the list
reached through its cursor, prompt searches, the filtered counts the gallery shows and an image's
neighbours (the image page's previous/next). Prints each median in ms and as a ratio to two
baselines measured in the same run: an SQLite ``SELECT 1`` round trip and a lookup of one image
by its id (``get_image``).

    python benchmarks/gallery_queries.py [--images 20000] [--runs 200] [--limit 48]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import GALLERY_RARE as RARE  # noqa: E402
from tests.helpers import gallery_jobs  # noqa: E402
from webui.history import HistoryStore  # noqa: E402


def fill(store: HistoryStore, images: int, rng: random.Random) -> None:
    store.record_jobs(gallery_jobs(images, rng))


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up: page cache, statement cache
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return statistics.median(out) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--limit", type=int, default=48)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="webui-gallery-bench-") as tmp:
        store = HistoryStore(Path(tmp) / "history.sqlite3")
        start = time.perf_counter()
        fill(store, args.images, random.Random(1))
        print(f"filled {store.count()} images in {time.perf_counter() - start:.2f} s\n")

        # A cursor about three quarters of the way down the list.
        before = None
        for _ in range(args.images * 3 // 4 // 500):
            before = store.page(before=before, limit=500).next
        some_id = store.page(limit=1).items[0].image.id
        middle = store.page(before=before, limit=1).items[0].image
        limit = args.limit

        baselines = {
            "SELECT 1 round trip": lambda: store._read(
                lambda db: db.execute("SELECT 1").fetchone()),
            "get_image (primary key)": lambda: store.get_image(some_id),
        }
        cases = {
            "first page": lambda: store.page(limit=limit),
            "page of one service": lambda: store.page(service="openai", limit=limit),
            "page of service + mode": lambda: store.page(service="forge", mode="img2img",
                                                         limit=limit),
            "deep page via cursor": lambda: store.page(before=before, limit=limit),
            "search, common word": lambda: store.page(query="dragon", limit=limit),
            "search, two words": lambda: store.page(query="drag cast", limit=limit),
            "search, rare word": lambda: store.page(query=RARE, limit=limit),
            "search + service + deep": lambda: store.page(query="ocean", service="a1111",
                                                          before=before, limit=limit),
            "services()": store.services,
            "count()": store.count,
            "count of one service": lambda: store.count(service="openai"),
            "count of service + mode": lambda: store.count(service="forge", mode="img2img"),
            "count, common word": lambda: store.count(query="dragon"),
            "count, rare word": lambda: store.count(query=RARE),
            "count, word + service": lambda: store.count(query="ocean", service="a1111"),
            "neighbours (image page)": lambda: store.neighbours(middle),
            "neighbours, word filter": lambda: store.neighbours(middle, query="ocean"),
        }
        base = {name: median_ms(fn, args.runs) for name, fn in baselines.items()}
        for name, ms in base.items():
            print(f"{name:<26} {ms:8.3f} ms   (baseline)")
        print()
        one, pk = base.values()
        print(f"{'query':<26} {'median':>11}   {'x SELECT 1':>10}   {'x get_image':>11}")
        for name, fn in cases.items():
            ms = median_ms(fn, args.runs)
            print(f"{name:<26} {ms:8.3f} ms   {ms / one:10.1f}   {ms / pk:11.1f}")
        store.close()


if __name__ == "__main__":
    main()

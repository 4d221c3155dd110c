"""The gallery as the browser gets it, on a history of 20,000 images: whole HTTP answers
(query, file checks, template) through the Flask app, against a baseline answer of the same
app that does almost no work (the published JSON Schema, cached in memory).

    python benchmarks/gallery_page.py [--images 20000] [--runs 50]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gallery_queries import RARE, fill  # noqa: E402

from webui import create_app  # noqa: E402
from webui.config import Settings  # noqa: E402


def median_ms(client, url: str, runs: int) -> float:
    client.get(url)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    app = create_app(Settings(data_dir=Path(tempfile.mkdtemp(prefix="webui-gallery-"))))
    fill(app.extensions["webui"].history, args.images, random.Random(1))
    client = app.test_client()
    base = median_ms(client, "/definition.schema.json", args.runs)
    print(f"{args.images} images, median of {args.runs} requests each")
    print(f"{'baseline (schema, cached)':<32} {base:7.2f} ms")
    for name, url in [("gallery, first page (full page)", "/gallery"),
                      ("next page fragment, one service", "/gallery/page?service=comfyui"),
                      ("search fragment, common word", "/gallery/page?q=lighthouse"),
                      ("search fragment, rare word", f"/gallery/page?q={RARE}")]:
        ms = median_ms(client, url, args.runs)
        print(f"{name:<32} {ms:7.2f} ms   ratio {ms / base:6.1f}")


if __name__ == "__main__":
    main()

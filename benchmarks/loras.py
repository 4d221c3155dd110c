"""How fast the LoRA picker answers with 5,000 and 20,000 LoRAs.

For each size, starts the demo backend listing that many LoRAs (as A1111 1.10.1 lists them at
/sdapi/v1/loras, with realistic metadata: tests/helpers.py lora_collection) and webui pointed at
it, then times webui's own handling of the requests (Flask's test client: server time, no
network) and the bytes each answer sends to the browser:

- load: a search that fetches the list again (``?refresh=1``): the backend's answer over
  loopback, read into choices once, then searched; and, for comparison, the backend's answer
  alone (GET /sdapi/v1/loras from a client);
- searches as typed (the picker's requests), served from the list read once;
- baseline, in the same run: the whole list as the dropdown of before (the options fragment
  of the same parameter: every LoRA as an <option>), from the same cache.

Prints min / median / max in ms, the bytes, and each search's ratio to the baseline.

    python benchmarks/loras.py [--sizes 5000 20000] [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from generate_overhead import serve  # noqa: E402

from tests.helpers import demo_extra, lora_collection  # noqa: E402
from webui import create_app  # noqa: E402
from webui.config import Settings  # noqa: E402
from webui.demo import DemoBackend, create_demo_app  # noqa: E402

QUERIES = ["", "miku", "a", "castle 0", "hatsune miku v2", "zzz"]


def timed(fn: Callable[[], bytes], runs: int) -> tuple[list[float], int]:
    """(seconds of each run, bytes of the answer); one warm-up run first."""
    size = len(fn())
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out, size


def line(name: str, seconds: list[float], size: int, baseline: float | None = None) -> str:
    ms = [s * 1000 for s in seconds]
    text = (f"  {name:<34} min {min(ms):7.2f}  median {statistics.median(ms):7.2f}  "
            f"max {max(ms):7.2f} ms  {size / 1024:8.1f} KB")
    if baseline:
        text += f"  ratio {statistics.median(seconds) / baseline:5.3f}"
    return text


def measure(count: int, runs: int) -> None:
    """Every measurement for a collection of COUNT LoRAs, printed."""
    backend = DemoBackend(0.001)
    backend.lists["loras"] = lora_collection(count)
    demo = serve(create_demo_app(backend=backend))
    app = create_app(Settings(data_dir=Path(tempfile.mkdtemp(prefix="webui-bench-")),
                              extras=[demo_extra(demo)]))
    client = app.test_client()
    base = "/services/demo/txt2img/options/loras"
    session = requests.Session()

    def get(url: str) -> bytes:
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        return response.data

    answer = len(json.dumps(backend.lists["loras"]))
    print(f"{count:,} LoRAs (the backend's answer: {answer / 1024 / 1024:.1f} MB), "
          f"{runs} runs each (loads: {max(5, runs // 5)})")
    slow_runs = max(5, runs // 5)
    alone, alone_size = timed(lambda: session.get(f"{demo}/sdapi/v1/loras").content, slow_runs)
    load, size = timed(lambda: get(f"{base}/search?loras__q=miku&refresh=1"), slow_runs)
    whole, whole_size = timed(lambda: get(base), runs)
    reference = statistics.median(whole)
    print(line("the backend's answer alone", alone, alone_size))
    print(line("load (fetch, read, search 'miku')", load, size))
    print(line("baseline: whole list as <option>s", whole, whole_size))
    for query in QUERIES:
        seconds, size = timed(lambda q=query: get(f"{base}/search?loras__q={q}"), runs)
        print(line(f"search {query!r}", seconds, size, reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    for count in args.sizes:
        measure(count, args.runs)


if __name__ == "__main__":
    main()

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

Then, in Chromium (Debian's, over real HTTP: webui and the demo on waitress), the time to
find one: from typing "hatsune miku v2" into the picker's search box until "Hatsune Miku (v2)"
is among its matches (the 150 ms pause the box waits for the typing to stop included), the
list already read; against the baseline of before in the same page: the whole list fetched
as the dropdown's <option>s and put in a select, until that LoRA is one of its options.

Prints the machine's load and CPU count, min / median / max in ms, the bytes, and each
figure's ratio to its baseline.

    python benchmarks/loras.py [--sizes 5000 20000] [--runs 50] [--browser-runs 10]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
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
CHROMIUM = os.environ.get("WEBUI_TEST_CHROMIUM", "/usr/bin/chromium")
WANTED = ("hatsune miku v2", "Hatsune Miku (v2)", "hatsune_miku_v2")  # typed, shown, value

# In the page: ms from typing into the picker until the wanted LoRA is among the matches.
FIND = """
async ([typed, shown]) => {
  const box = document.querySelector("#f-txt2img-loras");
  const list = document.querySelector("#pk-txt2img-loras-results");
  box.value = "";
  box.dispatchEvent(new Event("input", { bubbles: true }));
  await new Promise((r) => setTimeout(r, 400));  // the empty query's answer is in
  const found = () => [...list.querySelectorAll("[role=option]")]
    .some((o) => o.textContent.includes(shown));
  const start = performance.now();
  box.value = typed;
  box.dispatchEvent(new Event("input", { bubbles: true }));
  await new Promise((resolve) => {
    const seen = new MutationObserver(() => { if (found()) { seen.disconnect(); resolve(); } });
    seen.observe(list, { childList: true, subtree: true, characterData: true });
  });
  return performance.now() - start;
}
"""
# The baseline: the whole list as the dropdown of before, fetched and put in a select.
WHOLE = """
async ([url, value]) => {
  const box = document.createElement("div");
  document.body.append(box);
  const start = performance.now();
  box.innerHTML = await (await fetch(url)).text();
  const hit = [...box.querySelectorAll("option")].some((o) => o.value === value);
  const ms = performance.now() - start;
  box.remove();
  if (!hit) throw new Error("not in the list");
  return ms;
}
"""


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


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


def spread(ms: list[float]) -> str:
    return (f"min {min(ms):7.1f}  median {statistics.median(ms):7.1f}  "
            f"max {max(ms):7.1f} ms")


def in_browser(count: int, runs: int) -> None:
    """The time to find one in Chromium, and its baseline, for COUNT LoRAs (printed)."""
    from playwright.sync_api import sync_playwright

    backend = DemoBackend(0.001)
    backend.lists["loras"] = lora_collection(count)
    demo = serve(create_demo_app(backend=backend))
    url = serve(create_app(Settings(data_dir=Path(tempfile.mkdtemp(prefix="webui-bench-")),
                                    extras=[demo_extra(demo)])))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/services/demo/txt2img")
        page.wait_for_function("() => window.htmx !== undefined")
        options_url = "/services/demo/txt2img/options/loras"
        find, whole = [], []
        page.evaluate(FIND, list(WANTED[:2]))  # the list read once (warm-up)
        page.evaluate(WHOLE, [options_url, WANTED[2]])
        for run in range(runs):  # alternating the order
            pair = [lambda: find.append(page.evaluate(FIND, list(WANTED[:2]))),
                    lambda: whole.append(page.evaluate(WHOLE, [options_url, WANTED[2]]))]
            for step in pair if run % 2 == 0 else reversed(pair):
                step()
        browser.close()
    print(f"  in Chromium, {runs} runs each:")
    print(f"  {'find one: type, see it among the matches':<44} {spread(find)}  "
          f"ratio {statistics.median(find) / statistics.median(whole):5.3f}")
    print(f"  {'baseline: whole list as <option>s, found':<44} {spread(whole)}")


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
    parser.add_argument("--browser-runs", type=int, default=10,
                        help="runs in Chromium (0: none)")
    args = parser.parse_args()
    print(f"loras, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {load_line()}")
    for count in args.sizes:
        measure(count, args.runs)
        if args.browser_runs:
            in_browser(count, args.browser_runs)
    print(f"after the runs: {load_line()}")


if __name__ == "__main__":
    main()

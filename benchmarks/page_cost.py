"""What a page costs the browser: requests, bytes, time until usable, JS heap, DOM.

Starts webui as a user does (``python -m webui serve``, waitress, the built-in demo backend),
seeds its gallery with images made by the demo, and loads three pages in Chromium (Debian's,
over the DevTools protocol): a service page (``/services/demo/txt2img``), the gallery and
``/``. Each page is loaded

- cold: a new browser context (empty HTTP cache), the page opened once;
- warm: then the same address opened again in a new tab of that context (its cache filled by
  the cold load, as when a user comes back to the page).

The server is warm in both (it has served the page before: its caches are as they are in
use), as it is for a user who opens a page of a running webui.

What is counted, for each load:

- requests: the requests that went to the network (a response served from the browser's
  cache, without asking the server, is not one; a 304 revalidation is), from the navigation
  until the page is usable and nothing was asked for 0.5 s;
- bytes: what came over the network for them, headers included (the DevTools
  ``encodedDataLength``: after compression);
- usable, in ms from the start of the navigation: the first moment when the page can be used
  as intended:
    service page: the document is parsed, the deferred scripts ran and htmx has processed the
    page (its ``htmx:load`` on the body), the form's Generate button is enabled, and every
    select fed by the backend is filled: none is still loading (``aria-busy`` or its "loading
    choices…" line) and each holds a choice from the backend or shows its error;
    gallery: the same for htmx, and every thumbnail of the first page has loaded;
    ``/``: the same for htmx, and every service's status badge shows its state (none says
    "checking…");
  recorded by a small script run before the page's own (``PROBE``) and read over DevTools
  with a plain expression: nothing else runs in the page while it loads (Playwright's
  ``wait_for_function`` would install its own script there first, some 10 ms of the page's
  main thread, counted before 2026-11-30);
- rounds: the network round trips the page waited for, one after another, until it was
  usable: the longest chain of requests that had finished by then, each one started after
  the previous one of the chain had finished (the document, then what it names, then what
  those ask for...), from the page's own Resource Timing; a request it did not wait for (the
  status badge's) counts when it happened to finish first, and requests queued behind the
  browser's six connections to one host make a round of their own;
- JS heap: the used JavaScript heap after a garbage collection, once usable and idle;
- DOM: the number of elements in the document then.

Baseline, measured in the same run: the same pages served by webui as it was before issue #13
(``--before``, a git revision of this repository, by default the last commit before; its files
are taken with ``git archive`` into a temporary folder and served the same way), each load of
both alternating. The issue's own figures of that version (a quiet machine, medians of 5) are
printed beside them.

Prints the machine's load and CPU count, min / median / max of each figure over the runs, and
the ratio now / before of the medians.

    python benchmarks/page_cost.py [--runs 11] [--before REV|none] [--images 60]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("WEBUI_TEST_CHROMIUM", "/usr/bin/chromium")
# The last commit of main before issue #13's light page (compression, hashed static URLs,
# choices in the page, connection reuse).
BEFORE = "6c759ba"
PAGES = {"service": "/services/demo/txt2img", "gallery": "/gallery", "index": "/"}
# What issue #13 measured of the service page before (cold load), and its goals.
ISSUE_BEFORE = {"requests": 11, "bytes": 93_431, "usable": 245}
GOALS = {("service", "cold"): {"requests": 7, "bytes": 41 * 1024, "usable": 160},
         ("service", "warm"): {"requests": 3}}
QUIET = 0.5  # seconds without a request: the page has asked for all it asks for at load

# Run in each page before its own scripts (through DevTools, so the page's
# Content-Security-Policy does not apply): records window.__usable, the performance.now() of
# the first moment the page is usable (see the docstring).
PROBE = """
(() => {
  let htmxReady = false;
  const filled = (box) => {
    if (box.querySelector("[aria-busy=true], p.loading")) return false;
    if (box.querySelector(".inline-error")) return true;
    return [...box.querySelectorAll("select option")].some((o) => o.value !== "");
  };
  const usable = () => {
    if (!htmxReady || document.readyState === "loading") return false;
    const form = document.querySelector("form.gen-form");
    if (form) {
      const button = form.querySelector("button[type=submit]");
      return !!button && !button.disabled
        && [...form.querySelectorAll(".remote-select")].every(filled);
    }
    const grid = document.getElementById("gallery-grid");
    if (grid) {
      return [...grid.querySelectorAll("img")]
        .every((i) => !inView(i) || (i.complete && i.naturalWidth > 0));
    }
    return document.querySelectorAll(".status.checking").length === 0;
  };
  const inView = (el) => {
    const r = el.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight;
  };
  const check = () => {
    if (window.__usable === undefined && usable()) window.__usable = performance.now();
  };
  document.addEventListener("htmx:load", (event) => {
    if (event.target === document.body) htmxReady = true;
    check();
  });
  new MutationObserver(check)
    .observe(document, { subtree: true, childList: true, attributes: true });
  document.addEventListener("load", check, true);  // images
  document.addEventListener("htmx:afterSettle", check);
  document.addEventListener("DOMContentLoaded", check);
})();
"""


# Every request of the page as the page timed it: the document, then its resources (htmx's
# requests included); one the browser's cache answered has no bytes transferred.
TIMINGS = """
() => [performance.getEntriesByType("navigation")[0], ...performance.getEntriesByType("resource")]
  .map((e) => ({ start: e.startTime, end: e.responseEnd,
                 cached: e.transferSize === 0 && e.decodedBodySize > 0 }))
"""


@dataclass
class Load:
    requests: int
    bytes: int
    usable: float  # ms
    rounds: int
    heap: int  # bytes
    dom: int
    urls: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def webui(source: Path, name: str) -> Iterator[tuple[str, Path]]:
    """``python -m webui serve`` of the code in SOURCE (a checkout) with the demo backend, on
    a free port and its own data folder: (its URL, the data folder)."""
    data = Path(tempfile.mkdtemp(prefix=f"webui-page-cost-{name}-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WEBUI_", "OPENAI_", "STABILITY_"))}
    env["PYTHONPATH"] = str(source)
    process = subprocess.Popen(
        [sys.executable, "-m", "webui", "serve", "--port", str(port), "--data-dir", str(data)],
        cwd=source, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name}: webui did not start:\n"
                                 f"{process.stderr.read().decode() if process.stderr else ''}")
            time.sleep(0.1)
        yield url, data
    finally:
        process.terminate()
        process.wait(10)


def seed_gallery(url: str, data: Path, images: int) -> None:
    """IMAGES images in the gallery, made by the demo through webui (batches of 4)."""
    form = {"prompt": "a lighthouse at dawn, page cost", "steps": "2", "width": "256",
            "height": "256", "seed": "-1", "sampler_name": "Euler a", "cfg_scale": "7",
            "batch_size": "4", "n_iter": "1"}
    for _ in range((images + 3) // 4):
        r = requests.post(f"{url}/services/demo/txt2img/generate", data=form,
                          headers={"HX-Request": "true"}, timeout=30)
        assert r.status_code in (200, 202), r.text[:300]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(data / "history.sqlite3")) as db:
            count = db.execute("SELECT count(*) FROM images").fetchone()[0]
        # Their thumbnails too (made a second after each job), as in a gallery in use.
        thumbs = [p for p in (data / "thumbs").rglob("*.webp") if not p.name.endswith(".256.webp")]
        if count >= images and len(thumbs) >= images:
            return
        time.sleep(0.2)
    raise SystemExit(f"the gallery has {count} images and {len(thumbs)} thumbnails, not "
                     f"{images}")


def measure(context, url: str) -> Load:
    """One load of URL in a new tab of CONTEXT (see the docstring)."""
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    sent: dict[str, str] = {}
    cached: set[str] = set()
    sizes: dict[str, int] = {}
    last = [time.monotonic()]

    def on_sent(event) -> None:
        if not event["request"]["url"].startswith("http"):
            return
        sent[event["requestId"]] = event["request"]["url"]
        last[0] = time.monotonic()

    def on_response(event) -> None:
        response = event["response"]
        if response.get("fromDiskCache") or response.get("fromPrefetchCache") or response.get(
                "fromServiceWorker"):
            cached.add(event["requestId"])

    def on_finished(event) -> None:
        sizes[event["requestId"]] = event["encodedDataLength"]
        last[0] = time.monotonic()

    cdp.on("Network.requestWillBeSent", on_sent)
    cdp.on("Network.requestServedFromCache", lambda e: cached.add(e["requestId"]))
    cdp.on("Network.responseReceived", on_response)
    cdp.on("Network.loadingFinished", on_finished)
    page.goto(url, wait_until="commit")
    # Asked over DevTools with a plain expression: Playwright's wait_for_function would first
    # install its own script in the page (some 10 ms of the page's main thread, as it loads),
    # which no user's browser runs.
    deadline = time.monotonic() + 30
    while cdp.send("Runtime.evaluate", {"expression": "window.__usable",
                                        "returnByValue": True})["result"].get("value") is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} was not usable within 30 s")
        time.sleep(0.02)
    while time.monotonic() - last[0] < QUIET:
        page.wait_for_timeout(100)
    usable = page.evaluate("window.__usable")
    cdp.send("HeapProfiler.collectGarbage")
    heap = cdp.send("Runtime.getHeapUsage")["usedSize"]
    dom = page.evaluate("document.getElementsByTagName('*').length")
    network = [rid for rid in sent if rid not in cached]
    load = Load(requests=len(network), bytes=sum(sizes.get(rid, 0) for rid in network),
                rounds=rounds(page.evaluate(TIMINGS), usable),
                usable=usable, heap=heap, dom=dom, urls=[sent[rid] for rid in network])
    page.close()
    return load


def rounds(timings: list[dict], usable_ms: float) -> int:
    """The longest chain of requests that went to the network (the page's own Resource
    Timing, in the clock of USABLE_MS), each started after the previous one finished, among
    those finished when the page was usable."""
    done = sorted((t["start"], t["end"]) for t in timings
                  if not t["cached"] and t["end"] <= usable_ms)
    depth: list[tuple[float, int]] = []  # (end, depth) of each request so far
    for start, end in done:
        depth.append((end, 1 + max((d for e, d in depth if e <= start), default=0)))
    return max((d for _e, d in depth), default=0)


def spread(values: list[float], unit: str, scale: float = 1.0, digits: int = 0) -> str:
    v = [x / scale for x in values]
    f = f"{{:,.{digits}f}}"
    return (f"min {f.format(min(v))}  median {f.format(statistics.median(v))}  "
            f"max {f.format(max(v))} {unit}")


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Eleven: on a 2-CPU machine one load in five may take 100 ms more than the others.
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--before", default=BEFORE,
                        help="git revision measured as the baseline in the same run, or none")
    parser.add_argument("--images", type=int, default=60, help="images in the gallery")
    parser.add_argument("--show-urls", action="store_true",
                        help="list the requests of the last run of each load")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    print(f"page_cost, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
          f"{load_line()}, {args.runs} runs, Chromium {CHROMIUM}")
    variants: dict[str, Path] = {"now": ROOT}
    with contextlib.ExitStack() as stack:
        if args.before != "none":
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="webui-before-")))
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before,
                                      "webui", "templates", "static"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
            variants = {"before": folder, "now": ROOT}
        servers = {}
        for name, source in variants.items():
            url, data = stack.enter_context(webui(source, name))
            seed_gallery(url, data, args.images)
            servers[name] = url
        pw = stack.enter_context(sync_playwright())
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        # The server's first load of each page, by a browser (not measured): what the page
        # asks for as it loads (the choices of its selects) is then in the server's caches.
        for url in servers.values():
            for path in PAGES.values():
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_init_script(PROBE)
                measure(context, url + path)
                context.close()
        results: dict[tuple[str, str, str], list[Load]] = {}
        for run in range(args.runs):
            order = list(servers) if run % 2 == 0 else list(reversed(servers))
            for page_name, path in PAGES.items():
                for name in order:
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    context.add_init_script(PROBE)
                    for kind in ("cold", "warm"):
                        results.setdefault((page_name, name, kind), []).append(
                            measure(context, servers[name] + path))
                    context.close()
        browser.close()

    print(f"after the runs: {load_line()}")
    for page_name, path in PAGES.items():
        for kind in ("cold", "warm"):
            print(f"\n{page_name} ({path}), {kind}:")
            medians = {}
            for name in servers:
                loads = results[page_name, name, kind]
                medians[name] = {k: statistics.median(getattr(x, k) for x in loads)
                                 for k in ("requests", "bytes", "usable", "rounds", "heap", "dom")}
                print(f"  {name:<6} requests {spread([x.requests for x in loads], '')}")
                print(f"         bytes    {spread([x.bytes for x in loads], 'B')}")
                print(f"         usable   {spread([x.usable for x in loads], 'ms')}")
                print(f"         rounds   {spread([x.rounds for x in loads], '')}")
                print(f"         JS heap  {spread([x.heap for x in loads], 'MB', 1e6, 2)}")
                print(f"         DOM      {spread([x.dom for x in loads], 'elements')}")
                if args.show_urls:
                    for u in loads[-1].urls:
                        print(f"           {u}")
            if "before" in medians:
                ratios = "  ".join(
                    f"{k} {medians['now'][k] / medians['before'][k]:.2f}"
                    for k in ("requests", "bytes", "usable", "rounds", "heap", "dom")
                    if medians["before"][k])
                print(f"  ratio now / before (medians): {ratios}")
            if page_name == "service" and kind == "cold":
                print(f"  issue #13's figures before: {ISSUE_BEFORE['requests']} requests, "
                      f"{ISSUE_BEFORE['bytes']:,} bytes, {ISSUE_BEFORE['usable']} ms")
            goal = GOALS.get((page_name, kind))
            if goal:
                now = medians["now"]
                print("  goals: " + ", ".join(
                    f"{k} ≤ {v:,} ({'met' if now[k] <= v else 'NOT met'}: {now[k]:,.0f})"
                    for k, v in goal.items()))


if __name__ == "__main__":
    main()

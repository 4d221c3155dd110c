"""The gallery over real HTTP, with real files, and scrolled far in Chromium.

Fills a data folder with N history rows (tests/helpers.py gallery_jobs: four services, two
modes, prompts of a small vocabulary) whose images are real PNG files with their thumbnails,
as webui records them (hard links to a few 512×512 pictures of blurred noise: every file the
gallery serves is there), then starts ``webui serve`` on a free port of 127.0.0.1 in a process
of its own (waitress, as users run it) and:

- times whole HTTP answers from a keep-alive client: the gallery page, the next page and
  page 50 (--pages; the fragments infinite scroll asks for), searches for a common word, a
  rare one and one that matches nothing (the worst case: the whole index is searched), and
  one thumbnail of each size; against a baseline in the same run, asked in turn with each:
  the published JSON Schema (cached in memory, almost no work). min / median / max in ms, and
  the ratio of the medians;
- in Chromium (/usr/bin/chromium over CDP), scrolls a window of 1280×900 a screen at a time,
  waiting each time for the pictures in view, until page 50 has come (50 × 60 tiles), and
  reports the DOM elements, the DOM nodes and the JS heap (after a garbage collection), the
  tiles and pictures held in the page (with their decoded size) and the thumbnail bytes
  fetched; the baseline, in the same run and on the same server: the same page with pages
  never emptied (IntersectionObserver removed, so app.js keeps every page: infinite scroll
  as it was). The two are measured in alternating order.

    python benchmarks/gallery.py [--images 3300] [--runs 50] [--scrolls 1] [--pages 50]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

from tests.helpers import GALLERY_RARE, fill_gallery, gallery_jobs  # noqa: E402
from webui.config import Settings  # noqa: E402
from webui.history import HistoryStore  # noqa: E402

CHROMIUM = os.environ.get("WEBUI_TEST_CHROMIUM", "/usr/bin/chromium")
NOTHING = "qwertyuiop"


def load() -> str:
    """The machine's load averages and CPU count, as printed beside the figures."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def pictures(folder: Path, count: int = 8) -> list[Path]:
    """COUNT 512×512 PNGs of blurred colour noise: thumbnails of about the size a generated
    picture's have (flat colours would make them unrealistically small)."""
    out = []
    for n in range(count):
        picture = Image.merge("RGB", [
            Image.effect_noise((512, 512), 40 + 6 * n).filter(ImageFilter.GaussianBlur(2))
            for _ in range(3)])
        out.append(folder / f"picture-{n}.png")
        picture.save(out[-1])
    return out


def fill(data_dir: Path, images: int) -> None:
    """The data folder: IMAGES history rows with their files and thumbnails."""
    settings = Settings(data_dir=data_dir)
    source = data_dir.parent / "pictures"
    source.mkdir()
    history = HistoryStore(settings.history_file)
    fill_gallery(history, gallery_jobs(images, random.Random(1)), pictures(source),
                 settings.images_dir, settings.thumbs_dir)
    history.close()


def start(data_dir: Path) -> tuple[subprocess.Popen, str]:
    """``webui serve`` on a free port of 127.0.0.1, once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "WEBUI_PASSWORD"}
    process = subprocess.Popen(
        [sys.executable, "-m", "webui.cli", "serve", "--port", str(port), "--data-dir",
         str(data_dir), "--no-demo"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/definition.schema.json", timeout=2).raise_for_status()
            return process, url
        except requests.RequestException:
            if process.poll() is not None:
                raise SystemExit("webui serve exited") from None
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("webui serve did not answer within 60 s")


def fetch(session: requests.Session, url: str) -> tuple[float, int]:
    """Seconds of one whole answer (body read), and its size."""
    start = time.perf_counter()
    response = session.get(url, timeout=30)
    size = len(response.content)
    seconds = time.perf_counter() - start
    assert response.status_code == 200, (url, response.status_code)
    return seconds, size


def timed(session: requests.Session, url: str, baseline: str, runs: int
          ) -> tuple[list[float], list[float], int]:
    """Seconds of each answer of URL and of BASELINE, asked in turn (the machine's load falls on
    both alike), and URL's size; one warm-up request of each first."""
    fetch(session, baseline)
    size = fetch(session, url)[1]
    out: list[float] = []
    base: list[float] = []
    for _ in range(runs):
        base.append(fetch(session, baseline)[0])
        out.append(fetch(session, url)[0])
    return out, base, size


def cursor_of_page(session: requests.Session, base: str, n: int) -> str:
    """The address of the fragment of page N (1: the first), followed as the browser does."""
    url = base + "/gallery/page"
    for _ in range(n - 1):
        html = session.get(url, timeout=30).text
        found = re.search(r'class="more"[^>]* hx-get="([^"]+)"', html)
        assert found, f"fewer than {n} pages"
        url = base + found.group(1).replace("&amp;", "&")
    return url


def http_figures(base: str, runs: int, deep: int) -> None:
    """Times of the gallery's answers, against the cached schema."""
    session = requests.Session()
    small, large = re.search(r'srcset="(\S+) \d+w, (\S+)', session.get(base + "/gallery").text
                             ).groups()
    cases = [
        ("baseline: /definition.schema.json", base + "/definition.schema.json"),
        ("gallery, first page (whole page)", base + "/gallery"),
        ("next page (fragment)", cursor_of_page(session, base, 2)),
        (f"page {deep} (fragment)", cursor_of_page(session, base, deep)),
        ("search, common word", base + "/gallery/page?q=lighthouse"),
        (f"search, rare word ({GALLERY_RARE})", base + f"/gallery/page?q={GALLERY_RARE}"),
        ("search matching nothing", base + f"/gallery/page?q={NOTHING}"),
        ("one thumbnail (256 px WEBP)", base + small),
        ("the same, 384 px (all tiles before)", base + large),
    ]
    print(f"HTTP, {runs} requests each, each after one of the baseline, keep-alive, {load()}")
    baseline_url = cases[0][1]
    for name, url in cases:
        seconds, base, size = timed(session, url, baseline_url, runs)
        ms = [s * 1000 for s in seconds]
        ratio = statistics.median(seconds) / statistics.median(base)
        print(f"  {name:<36} min {min(ms):7.2f}  median {statistics.median(ms):7.2f}  "
              f"max {max(ms):7.2f} ms  {size / 1024:7.1f} KB  ratio {ratio:6.2f}")
    print(f"  (ratio: median over the median of the baseline asked in turn with it; {load()})")


# What the page holds, read in the page.
HELD = """() => {
  const imgs = [...document.querySelectorAll(".tile img")];
  const done = imgs.filter(i => i.complete && i.naturalWidth);
  const thumbs = performance.getEntriesByType("resource").filter(e => e.name.includes("/thumbs/"));
  return {
    pages: document.querySelectorAll(".gallery-page").length,
    elements: document.getElementsByTagName("*").length,
    tiles: document.querySelectorAll(".tile").length,
    loaded: done.length,
    // An image's intrinsic size is corrected by its srcset density: ask for the file's own.
    decoded: done.reduce((sum, i) => {
      const side = i.currentSrc.endsWith(".256.webp") ? 256 : 384;
      return sum + side * side * 4; }, 0),
    fetched: thumbs.length,
    fetched_bytes: thumbs.reduce((sum, e) => sum + (e.encodedBodySize || 0), 0),
    height: document.documentElement.scrollHeight,
  };
}"""

SETTLED = """() => {
  if (document.querySelector(".htmx-request")) return false;
  return [...document.querySelectorAll(".tile img")].every(i => {
    const r = i.getBoundingClientRect();
    return r.bottom < 0 || r.top > innerHeight || (i.complete && i.naturalWidth);
  });
}"""


def scroll(browser, base: str, pages: int, bounded: bool) -> dict[str, float]:
    """Scroll the gallery a screen at a time until PAGES pages came; what the page holds at
    the first page and there, and the seconds it took."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.add_init_script("performance.setResourceTimingBufferSize(100000);"
                         + ("" if bounded else "delete window.IntersectionObserver;"))
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def measure() -> dict[str, float]:
        page.wait_for_function(SETTLED)
        cdp.send("HeapProfiler.collectGarbage")
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        held = page.evaluate(HELD)
        held["heap"] = metrics["JSHeapUsedSize"]
        held["nodes"] = cdp.send("Memory.getDOMCounters")["nodes"]
        return held

    page.goto(base + "/gallery")
    page.wait_for_load_state("load")
    start = measure()
    began = time.perf_counter()
    while page.evaluate(HELD)["pages"] < pages:
        page.mouse.wheel(0, 900)
        page.wait_for_function(SETTLED)
    took = time.perf_counter() - began
    end = measure()
    context.close()
    return {"start": start, "end": end, "seconds": took}


def browser_figures(base: str, pages: int, scrolls: int) -> None:
    """The page at page 1 and at page PAGES, pages emptied far out of view or not."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        runs: dict[bool, list[dict]] = {True: [], False: []}
        for n in range(scrolls):
            for bounded in ((True, False) if n % 2 == 0 else (False, True)):
                runs[bounded].append(scroll(browser, base, pages, bounded))
        browser.close()
    print(f"Chromium 1280x900, scrolled a screen at a time to page {pages} "
          f"({scrolls} run(s) each, medians), {load()}")
    rows = [
        ("pages on the page", lambda h: h["pages"], "{:.0f}"),
        ("DOM elements", lambda h: h["elements"], "{:.0f}"),
        ("DOM nodes (CDP, after GC)", lambda h: h["nodes"], "{:.0f}"),
        ("JS heap used, MB (after GC)", lambda h: h["heap"] / 1e6, "{:.2f}"),
        ("tiles in the page", lambda h: h["tiles"], "{:.0f}"),
        ("pictures held (loaded)", lambda h: h["loaded"], "{:.0f}"),
        ("  their pixels (w×h×4), MB", lambda h: h["decoded"] / 1e6, "{:.1f}"),
        ("thumbnails fetched", lambda h: h["fetched"], "{:.0f}"),
        ("  bytes fetched, MB", lambda h: h["fetched_bytes"] / 1e6, "{:.2f}"),
        ("document height, px", lambda h: h["height"], "{:.0f}"),
    ]
    print(f"  {'':<30} {'page 1':>10} {'page ' + str(pages) + ' kept':>14} "
          f"{'page ' + str(pages) + ' bounded':>16} {'bounded/kept':>13}")
    for name, get, fmt in rows:
        first = statistics.median(get(r["start"]) for r in runs[True])
        kept = statistics.median(get(r["end"]) for r in runs[False])
        bounded = statistics.median(get(r["end"]) for r in runs[True])
        ratio = f"{bounded / kept:13.2f}" if kept else f"{'':>13}"
        print(f"  {name:<30} {fmt.format(first):>10} {fmt.format(kept):>14} "
              f"{fmt.format(bounded):>16} {ratio}")
    for bounded, name in ((False, "kept"), (True, "bounded")):
        seconds = [r["seconds"] for r in runs[bounded]]
        print(f"  time to scroll there, {name:<8} min {min(seconds):6.1f}  median "
              f"{statistics.median(seconds):6.1f}  max {max(seconds):6.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3300)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--scrolls", type=int, default=1, help="browser runs of each kind")
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    if args.images < args.pages * 60:
        parser.error(f"--pages {args.pages} needs --images {args.pages * 60} at least")
    print(f"gallery benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {load()}")
    with tempfile.TemporaryDirectory(prefix="webui-gallery-") as tmp:
        data_dir = Path(tmp) / "data"
        began = time.perf_counter()
        fill(data_dir, args.images)
        print(f"{args.images} images in the history, their files and thumbnails written in "
              f"{time.perf_counter() - began:.1f} s")
        process, base = start(data_dir)
        try:
            http_figures(base, args.runs, args.pages)
            if not args.no_browser:
                browser_figures(base, args.pages, args.scrolls)
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()

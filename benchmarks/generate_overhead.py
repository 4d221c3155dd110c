"""What webui adds to a generation, as a user sees it: click → image visible in Chromium,
against a direct API call with the same body to the same backend.

`webui` runs as a user runs it (its own process, waitress, the demo backend inside it; the
demo's PNGs made real-size: benchmarks/webui_process.py). Each run:

- via webui: the service page is open in Chromium (/usr/bin/chromium, Python playwright); a
  click on Generate, then the page is watched until every image of the new job is in the
  document, loaded and decoded (naturalWidth > 0, decode() resolved): the time from the click
  to then, taken in the page (performance.now()). The run ends when the job's final panel is
  shown, its image files are on disk and so are their thumbnails (made a second after the
  job ended: not while the next run is measured);
- direct: the body webui sent for that job (kept by the demo), POSTed to the demo's
  /sdapi/v1/txt2img; the time until its whole answer is read and parsed.

1×512² and 4×1024² (batch size 4), each with the form's live previews (every 5 steps: webui
asks the demo for them while it works, which a direct call does not) and without, the two
orders alternating run by run, after one warm-up of each. Prints the machine's load, min /
median / max of each and the ratio of the medians (webui / direct), then webui's memory (the
whole process, demo included): idle after the page was loaded, and the most it used during
the 4×1024² runs.

    python benchmarks/generate_overhead.py [--runs 5] [--steps 20] [--step-delay 0.02]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webui_process import Webui, machine, rss_kb, start  # noqa: E402

CHROMIUM = "/usr/bin/chromium"

# Clicks Generate, then resolves with the milliseconds until every image of the new job is
# decoded in the page (checked every 2 ms: no animation frame to wait for).
CLICK_TO_VISIBLE = """async (count) => {
  const before = document.querySelector("#result .job")?.id;
  const button = [...document.querySelectorAll("button")]
    .find((b) => b.textContent.trim() === "Generate");
  const start = performance.now();
  button.click();
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 2));
    const job = document.querySelector("#result .job");
    if (!job || job.id === before) continue;
    const images = [...job.querySelectorAll("figure img")];
    if (images.length < count || !images.every((i) => i.complete && i.naturalWidth > 0)) continue;
    await Promise.all(images.map((i) => i.decode()));
    return [performance.now() - start, job.id];
  }
}"""


class Peak:
    """The most resident memory a process used while this runs (sampled every 10 ms)."""

    def __init__(self, pid: int):
        self.pid, self.kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.kb = max(self.kb, rss_kb(self.pid))

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def spread(name: str, ms: list[float], base: float | None) -> None:
    median = statistics.median(ms)
    ratio = f"{median / base:6.2f}x" if base else "  (base)"
    print(f"  {name:<30} {min(ms):8.0f} {median:8.0f} {max(ms):8.0f} ms  {ratio}")


def case(page, ui: Webui, size: int, batch: int, steps: int, runs: int,
         preview_every: int = 5) -> None:
    page.goto(f"{ui.url}/services/demo/txt2img")
    # An advanced field (in a closed group): set as the form's script would.
    page.eval_on_selector("#f-txt2img-live_preview_every",
                          "(field, value) => { field.value = value; }", str(preview_every))
    page.fill("#f-txt2img-prompt", "a lighthouse at dawn, fine detail")
    page.fill("#f-txt2img-steps", str(steps))
    page.fill("#f-txt2img-width", str(size))
    page.fill("#f-txt2img-height", str(size))
    page.fill("#f-txt2img-batch_size", str(batch))
    page.fill("#f-txt2img-seed", "7")
    session = requests.Session()
    demo = ui.demos[0]

    def via_webui() -> float:
        written = len(ui.images())
        ms, job_id = page.evaluate(CLICK_TO_VISIBLE, batch)
        # Over when the job is over: its final panel shown, its files on disk, and the work
        # webui does after it (the gallery's thumbnails, a second later) done, so that it
        # does not share the machine with the next run.
        page.wait_for_selector(f"#{job_id}[data-status=done]", timeout=120_000)
        while len(ui.images()) < written + batch or len(ui.thumbnails()) < 2 * (
                written + batch):
            time.sleep(0.01)
        return ms

    def direct() -> float:
        body = ui.last_body()
        start = time.perf_counter()
        r = session.post(f"{demo}/sdapi/v1/txt2img", data=body,
                         headers={"Content-Type": "application/json"}, timeout=300)
        answer = r.json()
        ms = (time.perf_counter() - start) * 1000
        if r.status_code != 200 or len(answer["images"]) != batch:
            raise RuntimeError(f"the demo answered {r.status_code}: {r.text[:200]}")
        return ms

    via_webui(), direct()  # warm-up (and the body to send directly)
    sent = json.loads(ui.last_body())
    assert (sent["width"], sent["height"], sent["batch_size"]) == (size, size, batch), sent
    times: dict[str, list[float]] = {"direct": [], "webui": []}
    for run in range(runs):
        order = [("webui", via_webui), ("direct", direct)]
        for name, fn in order if run % 2 == 0 else order[::-1]:
            times[name].append(fn())
    png = ui.images()[-1].stat().st_size
    every = sent.get("override_settings", {}).get("show_progress_every_n_steps")
    previews = f"a live preview every {every} steps" if every <= steps else "no live preview"
    print(f"{batch}×{size}² ({steps} steps, {previews}, PNGs of about {png // 1024} KB), "
          f"{runs} runs each:")
    base = statistics.median(times["direct"])
    spread("direct API call", times["direct"], None)
    spread("click → image visible (webui)", times["webui"], base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--step-delay", type=float, default=0.02)
    args = parser.parse_args()

    ui = start(Path(tempfile.mkdtemp(prefix="webui-bench-")), args.step_delay)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            print(f"{machine()} (at the start)")
            page.goto(f"{ui.url}/services/demo/txt2img")
            page.wait_for_load_state("networkidle")
            idle = rss_kb(ui.proc.pid)
            for every in (5, args.steps + 1):  # the form's default; none
                case(page, ui, 512, 1, args.steps, args.runs, every)
            peaks = []
            for every in (5, args.steps + 1):  # the form's default; none
                with Peak(ui.proc.pid) as peak:
                    case(page, ui, 1024, 4, args.steps, args.runs, every)
                peaks.append(peak.kb)
            browser.close()
        print(f"webui's memory (RSS, demo included): idle {idle / 1024:.0f} MB; during the "
              f"4×1024² runs at most {peaks[0] / 1024:.0f} MB (with live previews), "
              f"{peaks[1] / 1024:.0f} MB (without)")
        print(f"{machine()} (at the end)")
    finally:
        ui.stop()


if __name__ == "__main__":
    main()

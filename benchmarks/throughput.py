"""Many jobs at once over a pool: 50 concurrent txt2img jobs through webui over 2 demo
instances, against the same 50 requests sent straight to the two demos (25 each).

`webui` runs as a user runs it (its own process, `--demo-instances 2`, real-size PNGs:
benchmarks/webui_process.py). Each run:

- via webui: 50 Generate requests sent at once (50 threads, each a different seed); the time
  until webui's queue page lists none of them. Then every job is checked: its panel says
  "done" with its one image, that image is a PNG on disk, and no image is shared or missing —
  nothing lost. The gallery's thumbnails (made once no job runs) are then waited for, and
  timed, before the next run;
- direct: the body webui sent (kept by the demo) with the same 50 seeds, 50 threads, sent
  alternately to each demo; the time until all 50 answered, each with its image.

The two alternate run by run, after a warm-up. Prints the machine's load, min / median / max
and the ratio of the medians (webui / direct), and webui's memory at most during its runs.

    python benchmarks/throughput.py [--runs 3] [--jobs 50] [--size 512] [--steps 10]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_overhead import Peak, spread  # noqa: E402
from webui_process import Webui, machine, start  # noqa: E402

HX = {"HX-Request": "true"}


def via_webui(ui: Webui, jobs: int, form: dict[str, str], first_seed: int) -> float:
    def generate(seed: int) -> str:
        r = requests.post(f"{ui.url}/services/demo/txt2img/generate", headers=HX,
                          data={**form, "seed": str(seed)}, timeout=120)
        if r.status_code != 202:
            raise RuntimeError(f"webui answered {r.status_code}: {r.text[:300]}")
        return re.search(r'id="job-([0-9a-f]{32})"', r.text).group(1)

    session = requests.Session()
    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        ids = list(pool.map(generate, range(first_seed, first_seed + jobs)))
    while any(i in session.get(f"{ui.url}/queue/jobs", timeout=30).text for i in ids):
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    # Nothing lost: every job done with its own image, on disk.
    seen: set[str] = set()
    for job_id in ids:
        panel = session.get(f"{ui.url}/jobs/{job_id}/panel", timeout=30).text
        if 'data-status="done"' not in panel:
            raise RuntimeError(f"job {job_id} did not end done")
        images = set(re.findall(r'src="/images/([^"?]+\.png)"', panel))
        if len(images) != 1 or images & seen:
            raise RuntimeError(f"job {job_id} shows {images}")
        seen |= images
        path = ui.data_dir / "images" / images.pop()
        if not path.read_bytes().startswith(b"\x89PNG"):
            raise RuntimeError(f"{path} is not a PNG")
    # The gallery's thumbnails, made once no job runs: waited for (and timed), so that they
    # are not made while the next run is measured.
    made = time.perf_counter()
    while len(ui.thumbnails()) < 2 * len(ui.images()):
        time.sleep(0.05)
    THUMBNAILS_AFTER.append(time.perf_counter() - made)
    return elapsed


THUMBNAILS_AFTER: list[float] = []  # s from the end of each run to its last thumbnail


def direct(ui: Webui, jobs: int, first_seed: int) -> float:
    body = json.loads(ui.last_body())

    def send(n: int) -> None:
        demo = ui.demos[n % len(ui.demos)]
        r = requests.post(f"{demo}/sdapi/v1/txt2img", json={**body, "seed": first_seed + n},
                          timeout=600)
        if r.status_code != 200 or len(r.json()["images"]) != 1:
            raise RuntimeError(f"the demo answered {r.status_code}: {r.text[:200]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(send, range(jobs)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--step-delay", type=float, default=0.02)
    args = parser.parse_args()

    ui = start(Path(tempfile.mkdtemp(prefix="webui-bench-")), args.step_delay, demo_instances=2)
    form = {"prompt": "a lighthouse at dawn", "steps": str(args.steps), "width": str(args.size),
            "height": str(args.size), "batch_size": "1", "n_iter": "1",
            "sampler_name": "Euler a", "cfg_scale": "7"}
    try:
        print(f"{machine()} (at the start)")
        if len(ui.demos) != 2:
            raise RuntimeError(f"expected 2 demo instances, got {ui.demos}")
        via_webui(ui, 2, form, 0)  # warm-up, and the body to send directly
        direct(ui, 2, 0)
        times: dict[str, list[float]] = {"direct": [], "webui": []}
        with Peak(ui.proc.pid) as peak:
            for run in range(args.runs):
                seed = 1000 * (run + 1)
                order = [("webui", lambda s=seed: via_webui(ui, args.jobs, form, s)),
                         ("direct", lambda s=seed: direct(ui, args.jobs, s))]
                for name, fn in order if run % 2 == 0 else order[::-1]:
                    times[name].append(fn() * 1000)
        print(f"{args.jobs} concurrent jobs of 1×{args.size}² ({args.steps} steps) over 2 demo "
              f"instances, {args.runs} runs each; every job done, its image on disk:")
        base = statistics.median(times["direct"])
        spread("direct (25 to each demo)", times["direct"], None)
        spread("through webui", times["webui"], base)
        print(f"webui's memory (RSS, demos included) at most {peak.kb / 1024:.0f} MB; the "
              f"gallery's thumbnails all made {statistics.median(THUMBNAILS_AFTER):.1f} s "
              "(median) after the jobs")
        print(f"{machine()} (at the end)")
    finally:
        ui.stop()


if __name__ == "__main__":
    main()

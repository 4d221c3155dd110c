"""How soon an interrupt ends a running generation, on the demo backend and through webui.

Starts the demo backend and webui on loopback (waitress, as `webui` serves them). Each run
starts a long txt2img job (STEPS steps × 3 batches, far longer than any interrupt takes), waits
until it samples, interrupts it and times how long until it has ended:

- demo backend: POST /sdapi/v1/interrupt → the txt2img request answers (with the images made
  so far);
- via webui: POST /jobs/<id>/interrupt → webui's job has ended (interrupted, partial images
  saved).

Both are compared with a baseline measured in the same run: a whole 1-step txt2img of the same
size sent straight to the demo (one step, encoding the image, one HTTP round trip), about what
an interrupt has to wait for at most. Prints the machine's load, min / median / max of each
and the ratio of the medians to the baseline's. These numbers replaced the bounds in seconds
that tests/test_demo.py and tests/test_jobs.py used to assert (and that failed on loaded
machines); the tests still check that an interrupted job ends early with partial images.

    python benchmarks/interrupt_latency.py [--runs 15] [--step-delay 0.02] [--steps 100]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from waitress.server import create_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webui import create_app  # noqa: E402
from webui.catalog import ExtraService  # noqa: E402
from webui.config import Settings  # noqa: E402
from webui.demo import create_demo_app  # noqa: E402

SIZE = 64


def serve(app) -> str:
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}"


def wait_for(condition: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the job to sample")
        time.sleep(0.005)
    return value


def spread(name: str, times: list[float], base: float | None) -> None:
    ms = [t * 1000 for t in times]
    median = statistics.median(ms)
    ratio = f"{median / base:7.2f}" if base else f"{'(base)':>7}"
    print(f"{name:<36} {min(ms):8.1f} {median:8.1f} {max(ms):8.1f} ms   {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--step-delay", type=float, default=0.02)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()

    demo = serve(create_demo_app(step_delay=args.step_delay))
    api = f"{demo}/sdapi/v1"
    app = create_app(Settings(data_dir=Path(tempfile.mkdtemp(prefix="webui-bench-")), extras=[
        ExtraService(id="demo", definition="a1111", name="demo", url=demo)]))
    ui = serve(app)
    jobs = app.extensions["webui"].jobs
    session = requests.Session()
    body = {"prompt": "a lighthouse", "seed": 3, "steps": args.steps, "n_iter": 3,
            "width": SIZE, "height": SIZE}
    form = {"prompt": "a lighthouse", "steps": str(args.steps), "n_iter": "3",
            "width": str(SIZE), "height": str(SIZE), "seed": "3", "sampler_name": "Euler a",
            "cfg_scale": "7", "batch_size": "1", "lora_weight": "0.8"}

    def sampling() -> bool:
        state = session.get(f"{api}/progress", timeout=5).json()["state"]
        return state["job_count"] > 0 and state["sampling_step"] >= 2

    def baseline() -> float:
        start = time.perf_counter()
        session.post(f"{api}/txt2img", json={**body, "steps": 1, "n_iter": 1},
                     timeout=60).raise_for_status()
        return time.perf_counter() - start

    def direct() -> float:
        answer: dict[str, requests.Response] = {}
        thread = threading.Thread(target=lambda: answer.update(
            r=requests.post(f"{api}/txt2img", json=body, timeout=600)))
        thread.start()
        wait_for(sampling)
        start = time.perf_counter()
        session.post(f"{api}/interrupt", timeout=5).raise_for_status()
        thread.join()
        elapsed = time.perf_counter() - start
        if len(answer["r"].json()["images"]) == 3:
            raise RuntimeError("the demo job ran to its end: the interrupt did not reach it")
        return elapsed

    def via_webui() -> float:
        r = session.post(f"{ui}/services/demo/txt2img/generate", data=form,
                         headers={"HX-Request": "true"}, timeout=30)
        if r.status_code != 202:
            raise RuntimeError(f"webui answered {r.status_code}: {r.text[:300]}")
        job = jobs.get(re.search(r'id="job-([0-9a-f]{32})"', r.text).group(1))
        wait_for(lambda: (job.progress.step or 0) >= 2)
        start = time.perf_counter()
        session.post(f"{ui}/jobs/{job.id}/interrupt", timeout=5).raise_for_status()
        job.done.wait(600)
        elapsed = time.perf_counter() - start
        if job.status != "interrupted":
            raise RuntimeError(f"the webui job ended {job.status}: {job.error}")
        return elapsed

    cases = {"baseline: 1-step txt2img, direct": baseline,
             "interrupt → answer, demo backend": direct,
             "interrupt → job ended, via webui": via_webui}
    baseline()  # warm-up: imports, connections, first image
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    full = 3 * args.steps * args.step_delay
    print(f"load average {load} (1, 5, 15 min) on {os.cpu_count()} CPUs")
    print(f"{args.runs} runs each; demo step delay {args.step_delay} s, {SIZE}x{SIZE}, "
          f"{args.steps} steps x 3 batches (the whole job: {full:.1f} s or more)\n")
    print(f"{'':<36} {'min':>8} {'median':>8} {'max':>8}      {'ratio':>7}")
    base = None
    for name, run in cases.items():
        times = [run() for _ in range(args.runs)]
        spread(name, times, base)
        base = base or statistics.median(times) * 1000


if __name__ == "__main__":
    main()

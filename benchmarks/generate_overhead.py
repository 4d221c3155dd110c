"""What webui adds on top of the backend: the same generation through the UI and directly.

Starts the demo backend and webui on loopback (waitress, as `webui` serves them), then times
N txt2img requests sent straight to the demo's A1111 API and N sent through webui's generate
endpoint with the equivalent form (validation, option check, request, decoding, saving to
disk, rendering the fragment). Prints medians and the ratio UI / direct, and the same for a
dropdown's choices (options fragment vs GET /sdapi/v1/samplers).

    python benchmarks/generate_overhead.py [--runs 30] [--size 512] [--steps 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from waitress.server import create_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webui import create_app  # noqa: E402
from webui.catalog import ExtraService  # noqa: E402
from webui.config import Settings  # noqa: E402
from webui.demo import create_demo_app  # noqa: E402


def serve(app) -> str:
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    return f"http://127.0.0.1:{server.effective_port}"


def timed(fn, runs: int) -> list[float]:
    fn()  # warm-up: caches, connections, first-call imports
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def report(name: str, ui: list[float], direct: list[float]) -> None:
    mu, md = statistics.median(ui), statistics.median(direct)
    print(f"{name:<28} direct {md * 1000:8.1f} ms   via webui {mu * 1000:8.1f} ms   "
          f"ratio {mu / md:5.2f}   ({(mu - md) * 1000:+.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    demo = serve(create_demo_app(step_delay=0.001))
    data_dir = Path(tempfile.mkdtemp(prefix="webui-bench-"))
    ui = serve(create_app(Settings(data_dir=data_dir, extras=[
        ExtraService(id="demo", definition="a1111", name="demo", url=demo)])))

    size, steps = str(args.size), str(args.steps)
    body = {"prompt": "a lighthouse", "steps": args.steps, "width": args.size,
            "height": args.size, "seed": 7, "sampler_name": "Euler a", "cfg_scale": 7,
            "do_not_save_grid": True}
    form = {"prompt": "a lighthouse", "steps": steps, "width": size, "height": size,
            "seed": "7", "sampler_name": "Euler a", "cfg_scale": "7", "batch_size": "1",
            "n_iter": "1", "lora_weight": "0.8"}
    direct_s, ui_s = requests.Session(), requests.Session()

    def direct_gen() -> None:
        r = direct_s.post(f"{demo}/sdapi/v1/txt2img", json=body, timeout=60)
        r.raise_for_status()

    def ui_gen() -> None:
        r = ui_s.post(f"{ui}/services/demo/txt2img/generate", data=form, timeout=60)
        r.raise_for_status()

    def direct_opts() -> None:
        direct_s.get(f"{demo}/sdapi/v1/samplers", timeout=10).raise_for_status()

    def ui_opts() -> None:
        ui_s.get(f"{ui}/services/demo/txt2img/options/sampler_name?refresh=1",
                 timeout=10).raise_for_status()

    print(f"{args.runs} runs each, {args.size}x{args.size}, {args.steps} steps, on loopback")
    report("txt2img (1 image)", timed(ui_gen, args.runs), timed(direct_gen, args.runs))
    report("sampler choices (uncached)", timed(ui_opts, args.runs),
           timed(direct_opts, args.runs))
    saved = list((data_dir / "images").rglob("*.png"))
    print(f"images saved by webui during the run: {len(saved)}")


if __name__ == "__main__":
    main()

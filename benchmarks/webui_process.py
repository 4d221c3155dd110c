"""`webui` as a user runs it, for the benchmarks that time it from outside: its own process
(waitress, 16 threads, the built-in demo backend in the same process), started with
:func:`start` and read with :func:`rss_kb`.

Two changes to the demo, for honest figures:

- real-size PNGs: the demo's procedural pictures are smooth and compress to a tenth of what
  Stable Diffusion's PNGs weigh (46 KB at 512², 106 KB at 1024²); a fine grain (each channel
  + 0..11, a fixed pattern per size, so the work added is the PNG encoding a real server does)
  makes them 417 KB and 1.67 MB, as A1111's are;
- each txt2img body the demo receives is kept in DATA_DIR/last-txt2img.json: the benchmark
  sends exactly what webui sent when it calls the API directly.

Run by the benchmarks as ``python benchmarks/webui_process.py STEP_DELAY -- <webui args>``.
"""

from __future__ import annotations

import functools
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
GRAIN = bytes(i % 12 for i in range(256))  # a random byte → 0..11


def _grainy(encode: Any) -> Any:
    from PIL import Image, ImageChops

    grains: dict[tuple[int, int], Any] = {}

    def encode_grainy(image: Any, infotext: str | None = None) -> str:
        size = image.size
        if size not in grains:
            noise = random.Random(f"grain{size}").randbytes(size[0] * size[1] * 3)
            grains[size] = Image.frombytes("RGB", size, noise.translate(GRAIN))
        return encode(ImageChops.add(image.convert("RGB"), grains[size]), infotext)

    return encode_grainy


def _keeping_bodies(create: Any, folder: Path) -> Any:
    def create_app(**kwargs: Any) -> Any:
        app = create(**kwargs)
        inner = app.wsgi_app

        def kept(environ: dict, start_response: Any) -> Any:
            if environ["PATH_INFO"] == "/sdapi/v1/txt2img":
                import io

                body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                (folder / "last-txt2img.json").write_bytes(body)
                environ["wsgi.input"] = io.BytesIO(body)
            return inner(environ, start_response)

        app.wsgi_app = kept
        return app

    return create_app


def _serve(step_delay: float, argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    import webui.demo
    from webui import cli
    from webui.demo import api

    folder = Path(argv[argv.index("--data-dir") + 1])
    folder.mkdir(parents=True, exist_ok=True)
    api._png_b64 = _grainy(api._png_b64)
    webui.demo.create_demo_app = _keeping_bodies(webui.demo.create_demo_app, folder)
    cli.start_demo = functools.partial(cli.start_demo, step_delay=step_delay)
    return cli.main(argv)


class Webui:
    """A running `webui` process: its URL, its demo backends' URLs, its data folder."""

    def __init__(self, proc: subprocess.Popen, url: str, demos: list[str], data_dir: Path):
        self.proc, self.url, self.demos, self.data_dir = proc, url, demos, data_dir

    def last_body(self) -> bytes:
        """The last txt2img body a demo backend received (from webui)."""
        return (self.data_dir / "last-txt2img.json").read_bytes()

    def images(self) -> list[Path]:
        return sorted((self.data_dir / "images").rglob("*.png"))

    def thumbnails(self) -> list[Path]:
        """The gallery's thumbnails made so far (two per image; made after a job ended)."""
        return sorted((self.data_dir / "thumbs").rglob("*.webp"))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start(data_dir: Path, step_delay: float, demo_instances: int = 1) -> Webui:
    """Start `webui` on a free port, with its demo (demo_instances of them, a pool); wait
    until it answers."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["serve", "--port", str(port), "--data-dir", str(data_dir),
            "--demo-instances", str(demo_instances)]
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (data_dir / "webui.log").open("w")
    proc = subprocess.Popen([sys.executable, __file__, str(step_delay), "--", *argv],
                            stdout=subprocess.PIPE, stderr=log, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    demos: list[str] = []
    for line in proc.stdout:
        if line.startswith("demo backend"):
            demos = re.findall(r"http://[\d.:]+", line)
        if line.startswith("webui on"):
            break
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "/", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"webui did not start: see {data_dir / 'webui.log'}")
        time.sleep(0.05)
    return Webui(proc, url, demos, data_dir)


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (VmRSS), or its peak (VmHWM), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def machine() -> str:
    """The load next to every figure: the machine is shared."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"load average {load} on {os.cpu_count()} CPUs"


if __name__ == "__main__":
    split = sys.argv.index("--")
    raise SystemExit(_serve(float(sys.argv[1]), sys.argv[split + 1:]))

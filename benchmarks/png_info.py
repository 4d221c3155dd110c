"""What PNG Info costs per file: the whole request (POST /png-info: the image check, keeping the
file, reading every kind of metadata against every loaded definition, rendering) for ordinary
and hostile files, and the reading alone (webui.reuse.read). Prints each median in ms.

Files: A1111's own PNG (its API answer, tests/fixtures), a ComfyUI PNG (graph + workflow
chunks), a 2048×2048 PNG with 64 KB of parameters, a PNG with a 1 MB graph, one with 5,000
text chunks of other keywords, and a 30 MB file of noise (not an image).

    python benchmarks/png_info.py [--runs 30]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import statistics
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from tests.helpers import a1111_response, comfyui_png  # noqa: E402
from webui import create_app, reuse  # noqa: E402
from webui.config import Settings  # noqa: E402


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(size: tuple[int, int], *chunks: bytes) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 120, 200)).save(buf, "PNG")
    data = buf.getvalue()
    return data[:33] + b"".join(chunks) + data[33:]


def files() -> dict[str, bytes]:
    labels = ", ".join(f"Label{i}: {i}" for i in range(4000))[: 64 * 1024 - 200]
    return {
        "A1111 PNG (its API's answer)": base64.b64decode(
            a1111_response("txt2img-200")["images"][0]),
        "ComfyUI PNG (graph + workflow)": comfyui_png(size=(512, 512)),
        "2048x2048, 64 KB of parameters": png((2048, 2048), chunk(
            b"tEXt", b"parameters\0a cat\n" + labels.encode())),
        "1 MB graph (too long: refused)": png((64, 64), chunk(
            b"tEXt", b"prompt\0{" + b" " * (1024 * 1024) + b"}")),
        "5,000 other text chunks": png((64, 64), *(
            chunk(b"tEXt", b"Comment\0" + b"x" * 100) for _ in range(5000))),
        "30 MB of noise (not an image)": bytes(30 * 1024 * 1024 - 1024),
    }


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(data_dir=Path(tmp)))
        client = app.test_client()
        services = app.extensions["webui"].folders.catalog().services

        def read_only(data: bytes) -> None:
            with contextlib.suppress(reuse.UnreadableMetadata):
                reuse.read(data, services)

        print(f"{'file':34} {'bytes':>10} {'request ms':>11} {'reading ms':>11}  status")
        for name, data in files().items():
            def request(data: bytes = data) -> int:
                return client.post("/png-info", data={"image": (io.BytesIO(data), "x.png")},
                                   content_type="multipart/form-data",
                                   headers={"HX-Request": "true"}).status_code
            status = request()
            print(f"{name:34} {len(data):>10} {median_ms(request, args.runs):>11.2f} "
                  f"{median_ms(lambda d=data: read_only(d), args.runs):>11.2f}  {status}")


if __name__ == "__main__":
    main()

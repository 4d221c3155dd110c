"""What composing an X/Y/Z grid's picture costs (webui.grids.compose: the cells pasted, the
labels wrapped and drawn) and saving it as a PNG, for grids of 512 × 512 cells of noise (the
worst case for PNG compression): 3 × 3, 5 × 5 and 10 × 10 (the largest a grid may be). Prints
each median in ms. It runs on the grid's own thread once its cells have ended, never while a
page is served.

    python benchmarks/grid_compose.py [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from webui.grids import compose  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    noise = Image.effect_noise((512, 512), 64).convert("RGB")
    for side in (3, 5, 10):
        cells = [noise] * (side * side)
        x = [f"Steps: {10 + 5 * i}" for i in range(side)]
        y = [f"DPM++ 2M Karras, variant {i}" for i in range(side)]
        timings, saving = [], []
        for _ in range(runs):
            start = time.perf_counter()
            picture = compose(cells, side, x, y, title="CFG scale: 7")
            middle = time.perf_counter()
            picture.save(io.BytesIO(), "PNG")
            timings.append((middle - start) * 1000)
            saving.append((time.perf_counter() - middle) * 1000)
        print(f"{side:>2} x {side:<2} ({picture.width}x{picture.height}): compose "
              f"{statistics.median(timings):7.1f} ms, PNG {statistics.median(saving):7.1f} ms")


if __name__ == "__main__":
    main()

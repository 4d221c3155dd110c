"""X/Y/Z grids: up to three parameters of a form, a list of values for each, one ordinary job
per cell (so a pool of instances runs the grid in parallel), and the composed picture with its
axes labelled, saved to the gallery once every cell has ended.

The values of an axis are written as in A1111's X/Y/Z plot (AUTOMATIC1111/stable-diffusion-webui,
scripts/xyz_grid.py, 1.10): a comma-separated list (CSV, so a value may be quoted), where a
number parameter also takes ranges — ``1-5`` (each whole number), ``20-40 (+10)`` (a step, its
sign written), ``1-3 [5]`` (that many values, evenly spread). "Prompt S/R" searches the first
value in the prompt (and the negative prompt) and puts each value in its place.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .format import DEFAULT_SEED_RANGE, Mode, Parameter
from .history import HistoryError, HistoryStore, ImageRecord, JobRecord
from .images import ImageStore, StorageError, Thumbnailer, thumb_name
from .infotext import write_png_infotext
from .jobs import Job, JobManager
from .service import Service

log = logging.getLogger(__name__)

AXES = ("x", "y", "z")
SEARCH_REPLACE = "prompt-sr"  # the axis that is not a parameter: Prompt S/R
GRID_KEY = "webui-grid"  # in a grid's history record: its axes and the jobs of its cells
MAX_JOBS = 100  # cells of a grid (all of its Z values): each is a job of the queue
MAX_PIXELS = 80_000_000  # one composed picture: about 17 x 17 cells of 512 x 512


class AxisError(ValueError):
    """An axis whose values cannot be read; the message says why."""


# -- values of an axis -----------------------------------------------------------------------

# A1111's grammar (scripts/xyz_grid.py: re_range, re_range_float, re_range_count,
# re_range_count_float): "start-end", then "(+step)" with its sign, or "[count]".
_NUM = r"[+-]?\s*\d+(?:\.\d*)?"
_RANGE = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})(?:\s*\(\s*([+-]\s*\d+(?:\.\d*)?)\s*\))?\s*")
_COUNT = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})\s*\[\s*(\d+)\s*\]\s*")


def split_values(text: str) -> list[str]:
    """A comma-separated list read as CSV (A1111's csv_string_to_list_strip): each value
    stripped, empty ones left out; a value with a comma is written in double quotes."""
    rows = csv.reader(io.StringIO(text.replace("\r", "")), skipinitialspace=True)
    return [v.strip() for row in rows for v in row if v.strip()]


def _number(text: str, whole: bool) -> float:
    value = float(text.replace(" ", ""))
    if whole and not value.is_integer():
        raise AxisError(f"{text.strip()!r} is not a whole number")
    return value


def _text(value: float, whole: bool) -> str:
    if whole:
        return str(int(value))
    return format(round(value, 8), ".10g")


def expand_numbers(text: str, whole: bool, most: int = MAX_JOBS) -> list[str]:
    """The values a number axis lists: each item of the list, ranges spread out. Unlike
    A1111's, a range that counts down (``20-10 (-5)``) ends on its end too, and a float step
    does not run past the end by rounding. AxisError for a range that lists nothing or more
    than ``most`` values."""
    out: list[str] = []
    for item in split_values(text):
        counted, ranged = _COUNT.fullmatch(item), _RANGE.fullmatch(item)
        if counted:
            start, end = _number(counted[1], whole), _number(counted[2], whole)
            count = int(counted[3])
            if not 1 <= count <= most:
                raise AxisError(f"{item!r}: a count goes from 1 to {most}")
            spread = [start + (end - start) * i / (count - 1) if count > 1 else start
                      for i in range(count)]
            # As numpy.linspace then int(): whole numbers are truncated (A1111).
            out += [_text(math.trunc(v) if whole else v, whole) for v in spread]
        elif ranged:
            start, end = _number(ranged[1], whole), _number(ranged[2], whole)
            step = _number(ranged[3], whole) if ranged[3] else (1.0 if end >= start else -1.0)
            if step == 0 or (end - start) * step < 0:
                raise AxisError(f"{item!r}: the step {_text(step, whole)} never reaches "
                                f"{_text(end, whole)}")
            count = math.floor((end - start) / step + 1e-9) + 1
            if count > most:
                raise AxisError(f"{item!r} lists {count} values; a grid has {most} cells "
                                "at most")
            out += [_text(start + i * step, whole) for i in range(count)]
        else:
            out.append(item)  # a plain value: the form's own check says if it is a number
        if len(out) > most:
            raise AxisError(f"lists more than {most} values; a grid has {most} cells at most")
    return out


def axis_parameters(mode: Mode) -> list[Parameter]:
    """The parameters a grid can vary: one value each (no image, no list, no weight)."""
    weights = mode.weights
    return [p for p in mode.parameters
            if p.type != "image" and not p.multiple and p.weight is None
            and p.key not in weights]


def search_replace_offered(mode: Mode) -> bool:
    return mode.by_role("prompt") is not None


@dataclass
class Axis:
    """One axis of a grid: what it varies, the values put in the form, and how each is
    labelled on the picture."""

    name: str  # "X", "Y" or "Z"
    key: str  # a parameter's key, or SEARCH_REPLACE
    title: str
    values: list[str]
    labels: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"axis": self.name, "key": self.key, "title": self.title,
                "values": self.values, "labels": self.labels}


def read_axis(name: str, mode: Mode, key: str, text: str, picked: list[str],
              label_of: Callable[[Parameter, str], str]) -> Axis:
    """An axis from what the form posted: the values typed (``text``) or the options ticked
    (``picked``, for a select or an on/off field). ``label_of`` names a select's value."""
    if key == SEARCH_REPLACE:
        values = split_values(text)
        if not values:
            raise AxisError("needs the text to search for, then what to put in its place, "
                            "separated by commas")
        return Axis(name, key, "Prompt S/R", values, list(values))
    p = mode.parameter(key)
    if p is None or p not in axis_parameters(mode):
        raise AxisError(f"{key!r} is not a field of this form a grid can vary")
    if p.type in ("select", "boolean"):
        values = list(dict.fromkeys(v for v in picked if v != ""))
        if not values and text.strip():
            values = split_values(text)
    elif p.type in ("integer", "seed", "number"):
        values = expand_numbers(text, whole=p.type != "number")
    else:
        values = split_values(text)
    if not values:
        raise AxisError("tick the values to try" if p.type in ("select", "boolean")
                        else "needs at least one value")
    if p.type == "boolean":
        labels = [f"{p.title}: {'on' if v.lower() in ('true', 'on', '1', 'yes') else 'off'}"
                  for v in values]
    elif p.type == "select":
        labels = [label_of(p, v) for v in values]
    elif p.type in ("integer", "seed", "number"):
        labels = [f"{p.title}: {v}" for v in values]  # A1111's format_value_add_label
    else:
        labels = list(values)
    return Axis(name, key, p.title, values, labels)


def cells(shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Each cell as (x, y, z) indexes, X changing fastest: the reading order, a Z grid after
    another, row after row (and the order the cells are queued in)."""
    columns, rows, grids = shape
    return [(x, y, z) for z in range(grids) for y in range(rows) for x in range(columns)]


def replace_in_prompt(values: dict[str, str], mode: Mode, search: str, put: str) -> None:
    """Prompt S/R on raw form values: ``search`` replaced by ``put`` in the prompt and the
    negative prompt (A1111's apply_prompt). AxisError when neither holds it."""
    keys = [p.key for p in (mode.by_role("prompt"), mode.by_role("negative")) if p]
    if not any(search in (values.get(k) or "") for k in keys):
        raise AxisError(f"{search!r} is not in the prompt or the negative prompt: the first "
                        "value is what is searched for")
    for k in keys:
        if values.get(k):
            values[k] = values[k].replace(search, put)


def random_seed(p: Parameter) -> int:
    """A seed in the parameter's range, for the cells of a grid to share."""
    low, high = p.bounds
    low = max(0, int(low or 0))
    high = int(high if high is not None else DEFAULT_SEED_RANGE[1])
    return low + secrets.randbelow(high - low + 1)


# -- the picture -----------------------------------------------------------------------------

BACKGROUND, INK, MISSING = (255, 255, 255), (20, 20, 20), (200, 200, 200)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """Words in lines no wider than ``width`` (a word longer than that is cut)."""
    lines: list[str] = []
    for word in text.split() or [""]:
        while len(word) > 1 and draw.textlength(word, font=font) > width:
            cut = len(word) - 1
            while cut > 1 and draw.textlength(word[:cut], font=font) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def compose(pictures: list[Image.Image | None], columns: int, x_labels: list[str],
            y_labels: list[str], title: str | None = None,
            missing: list[str] | None = None) -> Image.Image:
    """One grid: the pictures row after row (None: a cell without a picture, grey with
    ``missing[i]`` written in it), the X labels above the columns, the Y labels left of the
    rows, ``title`` above it all. Cells take the size of the first picture."""
    first = next((p for p in pictures if p is not None), None)
    width, height = first.size if first is not None else (256, 256)
    rows = math.ceil(len(pictures) / columns)
    size = max(12, (width + height) // 25)  # A1111's images.draw_grid_annotations
    font = _font(size)
    line = int(size * 1.25)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad = size // 2
    x_lines = [_wrap(scratch, t, font, width - 2 * pad) for t in x_labels]
    left = 0
    if any(y_labels):
        left = min(width, max(int(scratch.textlength(t, font=font)) for t in y_labels)
                   + 2 * pad)
        left = max(left, width // 3)
    y_lines = [_wrap(scratch, t, font, left - 2 * pad) for t in y_labels] if left else []
    top = (max(len(ls) for ls in x_lines) * line + 2 * pad) if any(x_labels) else 0
    title_lines = _wrap(scratch, title, font, left + columns * width - 2 * pad) if title else []
    head = len(title_lines) * line + (2 * pad if title_lines else 0)
    canvas = Image.new("RGB", (left + columns * width, head + top + rows * height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(title_lines):
        draw.text((pad, pad + i * line), text, font=font, fill=INK)
    for c, lines in enumerate(x_lines if any(x_labels) else []):
        y0 = head + top - pad - len(lines) * line
        for i, text in enumerate(lines):
            x = left + c * width + (width - draw.textlength(text, font=font)) / 2
            draw.text((x, y0 + i * line), text, font=font, fill=INK)
    for r, lines in enumerate(y_lines):
        y0 = head + top + r * height + (height - len(lines) * line) / 2
        for i, text in enumerate(lines):
            x = left - pad - draw.textlength(text, font=font)
            draw.text((x, y0 + i * line), text, font=font, fill=INK)
    for i, picture in enumerate(pictures):
        box = (left + (i % columns) * width, head + top + (i // columns) * height)
        if picture is None:
            draw.rectangle((*box, box[0] + width - 1, box[1] + height - 1), fill=MISSING)
            note = (missing or [""] * len(pictures))[i]
            if note:
                draw.text((box[0] + pad, box[1] + pad), note, font=font, fill=INK)
            continue
        if picture.size != (width, height):
            picture = picture.resize((width, height))
        canvas.paste(picture.convert("RGB"), box)
    return canvas


# -- grids as they run -----------------------------------------------------------------------

@dataclass
class Grid:
    """A grid: its axes and a job per cell (in :func:`cells` order), then its pictures."""

    service: Service
    mode: Mode
    axes: list[Axis]
    jobs: list[Job]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: float = field(default_factory=time.time)
    status: str = "running"  # then composing, done, cancelled or failed
    error: str | None = None
    pictures: list[ImageRecord] = field(default_factory=list)  # one per Z value, recorded
    cancelled: bool = False

    @property
    def active(self) -> bool:
        return self.status in ("running", "composing")

    def axis(self, name: str) -> Axis | None:
        return next((a for a in self.axes if a.name == name), None)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(columns, rows, grids): the lengths of X, Y and Z (1 for an axis not used)."""
        def n(name: str) -> int:
            axis = self.axis(name)
            return len(axis.values) if axis else 1
        return n("X"), n("Y"), n("Z")

    @property
    def ended(self) -> int:
        return sum(1 for j in self.jobs if not j.active)

    def mark(self) -> str:
        """What the grid's panel shows, in a few characters: each cell's state and the
        number of its images, and the grid's own state (its poll sends it back)."""
        return "".join(f"{j.status[0]}{min(len(j.images), 9)}" for j in self.jobs) + \
            "." + self.status

    def snapshot(self) -> Grid:
        """The grid at this instant (its jobs too), for a page to draw."""
        view = object.__new__(Grid)
        view.__dict__ = {**self.__dict__, "jobs": [j.snapshot() for j in self.jobs],
                         "pictures": list(self.pictures)}
        return view


def record_of(grid: Grid) -> dict[str, Any]:
    """What a grid's history record keeps of it (under GRID_KEY): its axes and cells."""
    return {"axes": [a.to_json() for a in grid.axes], "jobs": [j.id for j in grid.jobs]}


class GridManager:
    """The grids of this webui process: started, followed until their cells end, composed
    and recorded."""

    def __init__(self, jobs: JobManager, store: ImageStore, history: HistoryStore | None,
                 thumbnailer: Thumbnailer, keep: int = 200):
        self.jobs = jobs
        self.store = store
        self.history = history
        self.thumbnailer = thumbnailer
        self.keep = keep
        self._lock = threading.Lock()
        self._grids: dict[str, Grid] = {}

    def get(self, grid_id: str) -> Grid | None:
        with self._lock:
            return self._grids.get(grid_id)

    def start(self, grid: Grid) -> Grid:
        """Follow a grid whose jobs are queued; it is composed once they have all ended."""
        with self._lock:
            self._grids[grid.id] = grid
            while len(self._grids) > self.keep:
                oldest = next((g for g in self._grids.values() if not g.active), None)
                if oldest is None:
                    break
                del self._grids[oldest.id]
        threading.Thread(target=self._follow, args=(grid,), name=f"grid-{grid.id[:8]}",
                         daemon=True).start()
        return grid

    def cancel(self, grid: Grid) -> list[str]:
        """Stop every cell: the queued ones leave the queue, the running ones are
        interrupted. Problems the services answered, if any."""
        grid.cancelled = True
        return self.jobs.stop(grid.jobs)

    def _follow(self, grid: Grid) -> None:
        for job in grid.jobs:
            job.done.wait()
        if grid.cancelled:
            grid.status = "cancelled"
            return
        grid.status = "composing"
        try:
            grid.pictures = self._compose(grid)
            grid.status = "done" if grid.pictures else "failed"
            if not grid.pictures:
                grid.error = "No cell made an image: there is nothing to put in a grid."
        except (StorageError, HistoryError) as exc:
            grid.error, grid.status = str(exc), "failed"
        except Exception:
            log.exception("grid %s could not be composed", grid.id)
            grid.error = "The grid could not be composed; the details are in the server log."
            grid.status = "failed"

    def _compose(self, grid: Grid) -> list[ImageRecord]:
        """One picture per Z value, saved and recorded as a job of its own (its cells
        named in its parameters); the first image of each cell, as A1111 does."""
        columns, rows, _ = grid.shape
        x, y, z = grid.axis("X"), grid.axis("Y"), grid.axis("Z")
        per_grid = columns * rows
        if columns * rows * _cell_pixels(grid) > MAX_PIXELS:
            raise StorageError("The grid would be too large a picture to compose "
                               f"(more than {MAX_PIXELS // 1_000_000} megapixels); its "
                               "cells are in the gallery.")
        records = []
        now = time.time()
        for index in range(len(grid.jobs) // per_grid):
            cell_jobs = grid.jobs[index * per_grid:(index + 1) * per_grid]
            if not any(j.images for j in cell_jobs):
                continue
            pictures = [_open(self.store, j) for j in cell_jobs]
            notes = [f"{j.status}" if p is None else "" for j, p in zip(cell_jobs, pictures,
                                                                        strict=True)]
            picture = compose(pictures, columns, x.labels if x else [],
                              y.labels if y else [], z.labels[index] if z else None, notes)
            out = io.BytesIO()
            picture.save(out, "PNG")
            data = out.getvalue()
            first = next((j.images[0] for j in cell_jobs if j.images), None)
            if first is not None and first.infotext:
                # A1111 writes its first cell's parameters into a grid: PNG Info reads them.
                data = write_png_infotext(data, first.infotext)
            path = self.store.save(data, "png", f"grid-{grid.mode.name}")
            records.append(ImageRecord(
                job_id=grid.id, position=index, path=path, mime="image/png",
                width=picture.width, height=picture.height, thumb_path=thumb_name(path),
                created=now - index * 1e-6))
        if records and self.history is not None:
            first = grid.jobs[0]
            self.history.record_job(JobRecord(
                id=grid.id, service_id=grid.service.id, service_name=grid.service.name,
                mode=grid.mode.name, status="done",
                parameters={**first.values, GRID_KEY: record_of(grid)},
                prompt=first.text_of("prompt", sent=True),
                negative_prompt=first.text_of("negative", sent=True),
                created=grid.created, started=grid.created, finished=now,
                seconds=now - grid.created, images=records))
            stored = self.history.get_job(grid.id)
            records = stored.images if stored else records
        for record in records:
            self.thumbnailer.request(self.store.path(record.path), record.thumb_path)
        return records


def _cell_pixels(grid: Grid) -> int:
    job = next((j for j in grid.jobs if j.images), None)
    image = job.images[0] if job else None
    return (image.width or 512) * (image.height or 512) if image else 0


def _open(store: ImageStore, job: Job) -> Image.Image | None:
    """The first image of a cell's job, read from disk (None: it made none, or it is gone)."""
    if not job.images:
        return None
    try:
        with Image.open(store.path(job.images[0].path)) as picture:
            picture.load()
            return picture.copy()
    except (OSError, Image.DecompressionBombError):
        return None

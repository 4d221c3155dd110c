"""X/Y/Z grids: the axes of a form (their values, the cost), the grid started (every cell
checked as Generate checks a form, nothing queued unless all pass), its panel filling as the
cells end, cancel, and its page (also from the history after a restart)."""

from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from werkzeug.datastructures import FileStorage, MultiDict

from .. import pipeline
from ..backend import BackendError
from ..choices import choices
from ..format import Choice, Mode, Parameter
from ..grids import (
    AXES,
    GRID_KEY,
    MAX_JOBS,
    SEARCH_REPLACE,
    Axis,
    AxisError,
    Grid,
    GridManager,
    axis_parameters,
    cells,
    random_seed,
    read_axis,
    replace_in_prompt,
    search_replace_offered,
)
from ..images import StorageError, thumb_name
from ..jobs import Job
from ..service import Service
from .common import find_mode, find_service, state
from .generate import STATUS_BY_KIND, checked, queue
from .services import layout

bp = Blueprint("grids", __name__)


def _grids() -> GridManager:
    grids = state().grids
    assert grids is not None  # made by the app factory
    return grids


def grid_offered(mode: Mode) -> bool:
    """Whether a form has a grid section (a field it can vary)."""
    return bool(axis_parameters(mode))


def axis_choices(mode: Mode) -> list[tuple[str, str]]:
    """(key, title) of what an axis can vary, for its select: Prompt S/R, then the fields."""
    found = [(SEARCH_REPLACE, "Prompt S/R")] if search_replace_offered(mode) else []
    return found + [(p.key, p.title) for p in axis_parameters(mode)]


def _options(service: Service, p: Parameter) -> list[Choice]:
    """A select's choices: the backend's (BackendError) or the definition's own."""
    if p.sources:
        return choices(service, p, state().options)
    return [Choice(o.value, o.label or str(o.value)) for o in p.options or []]


def _label_of(service: Service) -> Any:
    def label(p: Parameter, value: str) -> str:
        try:
            found = _options(service, p)
        except BackendError:
            return value
        return next((c.label for c in found if str(c.value) == value), value)
    return label


def posted_axes(service: Service, mode: Mode, form: MultiDict) -> tuple[list[Axis],
                                                                         dict[str, str]]:
    """The axes a form asks for, and what is wrong with them by the key of their field
    (``grid-x``…)."""
    axes: list[Axis] = []
    errors: dict[str, str] = {}
    titles = dict(axis_choices(mode))
    used: dict[str, str] = {}
    for name in AXES:
        key = form.get(f"grid-{name}-param", "")
        if not key:
            continue
        title = titles.get(key, key)
        if key in used and key != SEARCH_REPLACE:
            errors[f"grid-{name}"] = (f"{name.upper()} varies {title}, as {used[key]} does: "
                                      "choose another field")
            continue
        used[key] = name.upper()
        try:
            axes.append(read_axis(name.upper(), mode, key, form.get(f"grid-{name}-values", ""),
                                  form.getlist(f"grid-{name}-pick"), _label_of(service)))
        except AxisError as exc:
            errors[f"grid-{name}"] = f"{name.upper()} ({title}) {exc}"
    return axes, errors


def shape(axes: list[Axis]) -> tuple[int, int, int]:
    by_name = {a.name: len(a.values) for a in axes}
    return by_name.get("X", 1), by_name.get("Y", 1), by_name.get("Z", 1)


@bp.get("/services/<service_id>/<mode_name>/grid/axis/<name>")
def axis_values(service_id: str, mode_name: str, name: str) -> tuple[str, int,
                                                                        dict[str, str]]:
    """The values control of an axis for the field chosen: a text of values, or the options
    of a select (or on/off) to tick."""
    service = find_service(service_id)
    mode = find_mode(service, mode_name)
    if name not in AXES:
        abort(404, "A grid has the axes x, y and z.")
    key = request.args.get(f"grid-{name}-param", "")
    p = mode.parameter(key)
    context: dict[str, Any] = {"service": service, "mode": mode, "name": name, "key": key,
                               "p": p, "options": None, "error": None,
                               # What was typed already stays (a field changed for another).
                               "typed": request.args.get(f"grid-{name}-values", "")}
    if p is not None and p.type == "select":
        try:
            context["options"] = _options(service, p)
        except BackendError as exc:
            context["error"] = exc.message
    elif p is not None and p.type == "boolean":
        context["options"] = [Choice("true", "on"), Choice("false", "off")]
    # The cost follows the axis (the grid section listens for this event).
    return render_template("_grid_values.html", **context), 200, {
        "HX-Trigger": "grid-axis-changed"}


@bp.post("/services/<service_id>/<mode_name>/grid/cost")
def cost(service_id: str, mode_name: str) -> str:
    """What the grid the form describes would cost: cells, jobs and images."""
    service = find_service(service_id)
    mode = find_mode(service, mode_name)
    axes, errors = posted_axes(service, mode, request.form)
    columns, rows, grids = shape(axes)
    jobs = columns * rows * grids
    if jobs > MAX_JOBS:
        return render_template("_grid_cost.html", mode=mode, axes=axes, errors=errors,
                               jobs=jobs, most=MAX_JOBS)
    counts = [_images_per_job(mode, request.form, axes, at) for at in cells((columns, rows,
                                                                            grids))]
    per_job = counts[0] if len(set(counts)) == 1 else 0  # 0: it varies with an axis
    return render_template("_grid_cost.html", mode=mode, axes=axes, errors=errors,
                           columns=columns, rows=rows, grids=grids, jobs=jobs,
                           images=sum(counts), per_job=per_job, most=MAX_JOBS)


def _images_per_job(mode: Mode, form: MultiDict, axes: list[Axis],
                    at: tuple[int, int, int]) -> int:
    """Images a cell asks for: batch size x batch count, as its axes or the form say."""
    count = 1
    for role in ("batch", "batch_count"):
        p = mode.by_role(role)
        if p is None:
            continue
        raw = form.get(p.key) or p.defaultValue or 1
        for axis in axes:
            if axis.key == p.key:
                raw = axis.values[at["XYZ".index(axis.name)]]
        # Not a number: the check when the grid is made says so.
        with contextlib.suppress(TypeError, ValueError):
            count *= max(1, int(raw))
    return count


def _file_copies(files: MultiDict) -> Any:
    """The uploaded files read once, as fresh copies for each cell's check."""
    kept = {k: (f.read(), f.filename, f.mimetype) for k, f in files.items()}

    def copies() -> dict[str, FileStorage]:
        return {k: FileStorage(io.BytesIO(data), filename=name, content_type=mime)
                for k, (data, name, mime) in kept.items()}
    return copies


@bp.post("/services/<service_id>/<mode_name>/grid")
def start(service_id: str, mode_name: str) -> Any:
    """Queue a job per cell, each checked as Generate checks a form: nothing is queued
    unless every cell passes."""
    service = find_service(service_id)
    mode = find_mode(service, mode_name)
    htmx = bool(request.headers.get("HX-Request"))
    axes, errors = posted_axes(service, mode, request.form)
    if not axes and not errors:
        errors["grid-x"] = "Choose a field for the X axis of the grid (Y and Z are optional)"
    planned: list[tuple[dict[str, Any], dict[str, Any]]] = []
    size = shape(axes)
    if math.prod(size) > MAX_JOBS:  # (said by the cost too, before anything is made)
        errors["grid-x"] = (f"The grid has {math.prod(size)} cells; it may have {MAX_JOBS} "
                            "at most")
    try:
        if not errors:
            planned = _plan(service, mode, axes, size, errors)
    except BackendError as exc:
        return _failure(service, mode, exc, htmx)
    if errors:
        return _errors(service, mode, errors, htmx)
    queued: dict[int, Job] = {}
    try:
        for index in _queue_order(mode, axes, size):
            values, sent = planned[index]
            queued[index] = queue(service, mode, values, sent)
    except (BackendError, StorageError) as exc:
        for job in queued.values():  # a grid is queued whole or not at all
            state().jobs.cancel(job)
        failure = exc if isinstance(exc, BackendError) else BackendError(str(exc))
        return _failure(service, mode, failure, htmx)
    jobs = [queued[i] for i in range(len(planned))]
    grid = _grids().start(Grid(service, mode, axes, jobs))
    if not htmx:
        return redirect(url_for("grids.grid_page", grid_id=grid.id), 303)
    html = render_template("_grid_started.html", service=service, mode=mode, errors={},
                           g=panel(grid))
    page = url_for("services.service_page", service_id=service.id, mode_name=mode.name,
                   grid=grid.id)
    return html, 202, {"HX-Push-Url": page}


def _queue_order(mode: Mode, axes: list[Axis], size: tuple[int, int, int]) -> list[int]:
    """The cells in the order they are queued: the reading order, but with the model's axis
    changing slowest (loading a checkpoint is slow: A1111's X/Y/Z plot also runs it outermost)."""
    order = list(range(math.prod(size)))
    model = mode.by_role("model")
    axis = next((a for a in axes if model is not None and a.key == model.key), None)
    if axis is None:
        return order
    columns, rows, _ = size
    def position(i: int) -> int:
        return {"X": i % columns, "Y": i // columns % rows, "Z": i // (columns * rows)}[axis.name]
    return sorted(order, key=lambda i: (position(i), i))


def _plan(service: Service, mode: Mode, axes: list[Axis], size: tuple[int, int, int],
          errors: dict[str, str]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each cell's values (as asked, as sent), checked; problems go into ``errors`` under
    the axis whose value caused them, else under the form's field."""
    base = MultiDict(request.form)
    varied = {a.key: a for a in axes}
    # One seed for every cell (A1111's fix_seed): the cells differ by their axes only.
    for p in mode.parameters:
        if p.kind == "seed" and p.key not in varied and \
                (base.get(p.key) or "").strip() in ("", "-1"):
            base[p.key] = str(random_seed(p))
    files = _file_copies(request.files)
    planned = []
    for indexes in cells(size):
        form = base.copy()
        at = {a.name: indexes["XYZ".index(a.name)] for a in axes}
        for axis in axes:
            if axis.key == SEARCH_REPLACE:
                texts = {p.key: form.get(p.key, "") for p in
                         (mode.by_role("prompt"), mode.by_role("negative")) if p}
                try:
                    replace_in_prompt(texts, mode, axis.values[0], axis.values[at[axis.name]])
                except AxisError as exc:
                    errors.setdefault(f"grid-{axis.name.lower()}", f"{axis.name} ({axis.title})"
                                      f" {exc}")
                    return []
                for k, v in texts.items():
                    form.setlist(k, [v])
            else:
                form.setlist(axis.key, [axis.values[at[axis.name]]])
        values, problems = checked(service, mode, form, files())
        for key, message in problems.items():
            axis = varied.get(key)
            if axis is not None:
                errors.setdefault(f"grid-{axis.name.lower()}",
                                  f"{axis.name} = {axis.values[at[axis.name]]}: {message}")
            else:
                errors.setdefault(key, message)
        for axis in axes:
            if axis.key in values and values[axis.key] is None and axis.key not in problems:
                errors.setdefault(f"grid-{axis.name.lower()}",
                                  f"{axis.name} ({axis.title}) does not apply with the form's "
                                  "other values (the field is hidden): change those first")
        if not errors:
            planned.append((values, pipeline.prepare_values(mode, values)))
    return planned


def _errors(service: Service, mode: Mode, errors: dict[str, str], htmx: bool) -> Any:
    """The grid's problems at the top of the form, as Generate lists a form's."""
    if not htmx:
        message = "Nothing was queued: " + "; ".join(errors.values())
        return render_template("problem.html", message=message, status=422), 422
    order = [f"grid-{a}" for a in AXES] + [p.key for g in layout(mode)
                                           for p in (*g.fields, *g.more)]
    ordered = {k: errors[k] for k in [*order, *errors] if k in errors}
    html = render_template("_form_errors.html", service=service, mode=mode, errors=ordered,
                           slots=True)
    return html, 422, {"HX-Retarget": f"#errors-{mode.name}", "HX-Reswap": "outerHTML"}


def _failure(service: Service, mode: Mode, exc: BackendError, htmx: bool) -> Any:
    status = STATUS_BY_KIND.get(exc.kind, 502)
    if not htmx:
        return render_template("problem.html", message=f"The grid was not started. "
                               f"{exc.message}", status=status), status
    return render_template("_result.html", service=service, mode=mode, errors={},
                           failure=exc), status


# -- the grid as it fills ---------------------------------------------------------------------

@dataclass
class Cell:
    """One cell as the panel shows it."""

    index: int
    job_id: str
    status: str
    label: str
    image: Any = None  # the first image of its job (path, width, height)
    error: str | None = None
    fraction: float | None = None

    @property
    def src(self) -> str | None:
        """Where its picture is seen: its thumbnail once made (a grid of large pictures
        stays light), else the image."""
        if self.image is None:
            return None
        thumb = thumb_name(self.image.path)
        if (state().settings.thumbs_dir / thumb).is_file():
            return url_for("gallery.thumb", name=thumb)
        # Not made yet (a job of the grid that just ended): wanted now, for the next update.
        state().thumbnailer.request(state().store.path(self.image.path), thumb, now=True)
        return url_for("gallery.image", name=self.image.path)


def panel(grid: Grid) -> dict[str, Any]:
    """What a grid's panel shows, from one instant of it."""
    grid = grid.snapshot()
    columns, rows, grids = grid.shape
    x, y, z = grid.axis("X"), grid.axis("Y"), grid.axis("Z")
    shown = []
    for i, job in enumerate(grid.jobs):
        parts = [a.labels[ix] for a, ix in
                 ((x, i % columns), (y, i // columns % rows), (z, i // (columns * rows)))
                 if a is not None]
        shown.append(Cell(i, job.id, job.status, ", ".join(parts),
                          job.images[0] if job.images else None, job.error,
                          job.progress.fraction if job.status == "running" else None))
    return {"grid": grid, "cells": shown, "x": x, "y": y, "z": z, "columns": columns,
            "rows": rows, "grids": grids, "live": True,
            "service_name": grid.service.name, "mode_label": grid.mode.label}


def _record_panel(grid_id: str) -> dict[str, Any] | None:
    """A grid of the history (after a restart): its pictures and its cells' jobs."""
    history = state().history
    record = history.get_job(grid_id) if history is not None else None
    kept = record.parameters.get(GRID_KEY) if record else None
    if record is None or not isinstance(kept, dict):
        return None
    axes = [Axis(a["axis"], a["key"], a["title"], a["values"], a["labels"])
            for a in kept.get("axes", [])]
    columns, rows, grids = shape(axes)
    by_name = {a.name: a for a in axes}
    x, y, z = by_name.get("X"), by_name.get("Y"), by_name.get("Z")
    shown = []
    for i, job_id in enumerate(kept.get("jobs", [])):
        job = history.get_job(job_id)
        parts = [a.labels[ix] for a, ix in
                 ((x, i % columns), (y, i // columns % rows), (z, i // (columns * rows)))
                 if a is not None]
        shown.append(Cell(i, job_id, job.status if job else "unknown", ", ".join(parts),
                          job.images[0] if job and job.images else None,
                          job.error if job else None))
    service = state().folders.catalog().get(record.service_id)
    mode = service.definition.modes.get(record.mode) if service else None
    view = Grid.__new__(Grid)
    view.__dict__ = {"id": record.id, "status": "done", "error": None, "cancelled": False,
                     "pictures": record.images, "axes": axes, "jobs": []}
    return {"grid": view, "cells": shown, "x": x, "y": y, "z": z, "columns": columns,
            "rows": rows, "grids": grids, "live": False,
            "service_name": record.service_name,
            "mode_label": mode.label if mode else record.mode}


def grid_panel(grid_id: str | None) -> dict[str, Any] | None:
    """The panel of a grid running here, for a form page opened with ``?grid=<id>``."""
    grid = _grids().get(grid_id or "")
    return panel(grid) if grid is not None else None


def _live(grid_id: str) -> Grid:
    grid = _grids().get(grid_id)
    if grid is None:
        abort(404, "This grid is not running here: webui may have been restarted since. "
                   "Its cells, and its picture if it was made, are in the gallery.")
    return grid


@bp.get("/grids/<grid_id>")
def grid_page(grid_id: str) -> str:
    grid = _grids().get(grid_id)
    context = panel(grid) if grid is not None else _record_panel(grid_id)
    if context is None:
        abort(404, "This grid is not known here: webui may have been restarted before it "
                   "ended. Its cells are in the gallery.")
    return render_template("grid.html", g=context)


@bp.get("/grids/<grid_id>/update")
def grid_update(grid_id: str) -> tuple[str, int, dict[str, str]]:
    """Polled by the panel of a running grid: ``seen`` is what it shows (Grid.mark)."""
    return _update(_live(grid_id), request.args.get("seen", ""))


def _update(grid: Grid, seen: str, **extra: Any) -> tuple[str, int, dict[str, str]]:
    context = panel(grid)
    view = context["grid"]
    if not view.active:
        return render_template("_grid_update.html", ended=True, g=context, **extra), 200, {}
    now, before = view.mark(), seen
    cells_now, cells_before = now.split(".")[0], before.split(".")[0]
    changed = {i for i in range(len(view.jobs))
               if cells_now[2 * i:2 * i + 2] != cells_before[2 * i:2 * i + 2]
               or view.jobs[i].status == "running"}
    return render_template("_grid_update.html", ended=False, changed=changed, g=context,
                           **extra), 200, {}


@bp.post("/grids/<grid_id>/cancel")
def grid_cancel(grid_id: str) -> Any:
    """Cancel the whole grid: queued cells leave the queue, running ones are interrupted."""
    grid = _live(grid_id)
    problems = _grids().cancel(grid)
    if not request.headers.get("HX-Request"):
        return redirect(url_for("grids.grid_page", grid_id=grid.id), 303)
    return _update(grid, "", problems=problems)

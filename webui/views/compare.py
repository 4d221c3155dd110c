"""Compare: one job's prompt run again on other services, or other checkpoints of one, side by
side. Each cell is an ordinary job, checked as Generate checks a form and queued in its
service's queue; the comparison page is named by its jobs (``/compare?jobs=a,b,c``), so it
needs no storage of its own and a reload shows it again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from .. import pipeline, reuse
from ..backend import BackendError
from ..choices import choices
from ..format import Choice, FieldError, Mode, Parameter, coerce
from ..history import JobRecord
from ..jobs import Job
from ..service import Service
from .common import state
from .generate import checked, queue

bp = Blueprint("compare", __name__)

MAX_CELLS = 12  # a grid people can still look at; each cell is a job of its service's queue


@dataclass
class Base:
    """The job a comparison starts from: its service, mode and values as asked, and the seed
    its first image had (the value a -1 became)."""

    id: str
    service: Service
    mode: Mode
    values: dict[str, Any]
    seed: Any


def comparable(mode: Mode) -> bool:
    """A mode whose jobs can be compared: one that takes no input image (an input image does
    not outlive its job)."""
    return not any(p.type == "image" for p in mode.parameters)


def can_compare(service: Service | None, mode_name: str) -> bool:
    """Whether a job of this service and mode offers Compare (for the templates)."""
    mode = service.definition.modes.get(mode_name) if service else None
    return mode is not None and comparable(mode)


def model_parameter(mode: Mode) -> Parameter | None:
    """The select of the model (role ``model``): Compare offers each of its choices."""
    return next((p for p in mode.parameters if p.kind == "model" and p.type == "select"), None)


def _base(job_id: str) -> Base:
    """The job a comparison starts from, running or in the history."""
    live = state().jobs.get(job_id)
    if live is not None:
        seed = next((im.seed for im in live.images if im.seed is not None), None)
        base = Base(live.id, live.service, live.mode, live.values, seed)
    else:
        record = state().history.get_job(job_id) if state().history is not None else None
        service = state().folders.catalog().get(record.service_id) if record else None
        mode = service.definition.modes.get(record.mode) if (service and record) else None
        if record is None or mode is None:
            abort(404, "This job is not known here, or its service is no longer loaded: "
                       "there is nothing to compare it with.")
        seed = next((im.seed for im in record.images if im.seed is not None), None)
        base = Base(record.id, service, mode, dict(record.parameters), seed)
    if not comparable(base.mode):
        abort(404, f"{base.mode.label} jobs take an input image, which is not kept after the "
                   "job: they cannot be compared.")
    return base


def _target_mode(service: Service, base: Base) -> Mode | None:
    """The mode of ``service`` a comparison uses: the base job's, else the first comparable."""
    modes = service.definition.modes
    mode = modes.get(base.mode.name)
    if mode is not None and comparable(mode):
        return mode
    return next((m for m in modes.values() if comparable(m)), None)


def cell_form(base: Base, service: Service, mode: Mode, model: str | None) -> MultiDict:
    """The form a cell submits: the mode's defaults, with the base job's values carried over
    (all of them within one family of definitions, else by role and plain fields of the same
    name) and the model chosen. A seed the target cannot take stays random."""
    roles = reuse.job_roles(base.mode, base.values)
    seed_param = next((p for p in base.mode.parameters if p.kind == "seed"), None)
    if base.seed is not None and seed_param is not None and \
            base.values.get(seed_param.key) in (None, -1, seed_param.bounds[0]):
        roles["seed"] = base.seed  # the seed the first image had, not "random"
    same = reuse.family(service) == reuse.family(base.service)
    values = reuse.carry(mode, base.values, roles, by_key=same)
    for p in mode.parameters:
        if p.kind == "seed" and p.key in values:
            try:
                coerce(p, values[p.key], None)
            except FieldError:
                del values[p.key]  # out of this service's range: it picks its own
    chosen = model_parameter(mode)
    if chosen is not None:
        # "Its own model": the service's setting (or default), not the base job's model.
        values.pop(chosen.key, None)
        if model is not None:
            values[chosen.key] = model
    form: MultiDict = MultiDict()
    for p in mode.parameters:
        if p.type == "image":
            continue
        value = values.get(p.key, p.defaultValue)
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            form.add(p.key, ("true" if item else "false") if isinstance(item, bool) else str(item))
    return form


def _services(base: Base) -> list[tuple[Service, Mode]]:
    """Every service a comparison may use: the base job's first, then the configured."""
    found = [(s, m) for s in state().folders.catalog().services
             if (m := _target_mode(s, base)) is not None]
    return sorted(found, key=lambda sm: (sm[0].id != base.service.id, not sm[0].configured))


@bp.get("/compare/new")
def setup() -> str:
    base = _base(request.args.get("job", ""))
    return render_template("compare_new.html", base=base, services=_services(base),
                           model_parameter=model_parameter, ticked=set(), errors=[])


@bp.get("/compare/models/<service_id>")
def models(service_id: str) -> str:
    """The checkpoints of a service as boxes to tick (htmx: loaded with the setup page)."""
    base = _base(request.args.get("job", ""))
    service = state().folders.catalog().get(service_id)
    mode = _target_mode(service, base) if service else None
    param = model_parameter(mode) if mode else None
    if param is None:
        abort(404, "This service has no model to choose.")
    found: list[Choice] = []
    error = None
    try:
        if param.sources:
            found = choices(service, param, state().options)
        else:
            found = [Choice(o.value, o.label or str(o.value)) for o in param.options or []]
    except BackendError as exc:
        error = exc.message
    used = base.values.get(param.key) if service.id == base.service.id else None
    return render_template("_compare_models.html", service=service, param=param,
                           choices=found, error=error, used=used,
                           ticked=set(request.args.getlist("cell")))


@bp.post("/compare")
def start() -> Any:
    """Queue one job per ticked cell; nothing is queued unless every cell checks out."""
    base = _base(request.form.get("job", ""))
    ticked = list(dict.fromkeys(request.form.getlist("cell")))[:MAX_CELLS]
    catalog = state().folders.catalog()
    planned: list[tuple[Service, Mode, dict[str, Any], dict[str, Any]]] = []
    errors: list[str] = []
    for cell in ticked:
        service_id, _, model = cell.partition("|")
        service = catalog.get(service_id)
        mode = _target_mode(service, base) if service else None
        if service is None or mode is None:
            errors.append(f"{service_id}: not loaded now, or it has no mode to compare with.")
            continue
        name = f"{service.name}" + (f" · {model}" if model else "")
        try:
            values, problems = checked(service, mode, cell_form(base, service, mode,
                                                                  model or None), {})
            sent = pipeline.prepare_values(mode, values) if not problems else {}
        except BackendError as exc:
            errors.append(f"{name}: {exc.message}")
            continue
        if problems:
            errors.append(f"{name}: " + "; ".join(problems.values()))
            continue
        planned.append((service, mode, values, sent))
    if not ticked:
        errors.append("Tick at least one service or checkpoint to compare with.")
    if errors:
        return render_template("compare_new.html", base=base, services=_services(base),
                               model_parameter=model_parameter, ticked=set(ticked),
                               errors=errors), 422
    jobs = [base.id] + [queue(service, mode, values, sent).id
                        for service, mode, values, sent in planned]
    return redirect(url_for("compare.page", jobs=",".join(jobs)), 303)


@dataclass
class Cell:
    """One cell of the comparison page: a job running or ended here, or one of the history."""

    job_id: str
    label: str
    job: Job | None = None
    record: JobRecord | None = None
    position: int | None = None  # in its service's queue


def _label(service_name: str, mode: Mode | None, values: dict[str, Any]) -> str:
    param = model_parameter(mode) if mode else None
    model = values.get(param.key) if param else None
    if param is None:
        return service_name
    return f"{service_name} · {model or 'its own ' + param.title.lower()}"


@bp.get("/compare")
def page() -> str:
    ids = [i for i in request.args.get("jobs", "").split(",") if i][:MAX_CELLS + 1]
    if not ids:
        abort(404, "A comparison names its jobs: start one with Compare under a result.")
    cells = []
    for job_id in ids:
        job = state().jobs.get(job_id)
        if job is not None:
            job = job.snapshot()
            cells.append(Cell(job_id, _label(job.service.name, job.mode, job.values), job=job,
                              position=state().jobs.position(job)))
            continue
        record = state().history.get_job(job_id) if state().history is not None else None
        if record is None:
            cells.append(Cell(job_id, "Unknown job"))
            continue
        service = state().folders.catalog().get(record.service_id)
        mode = service.definition.modes.get(record.mode) if service else None
        cells.append(Cell(job_id, _label(record.service_name, mode, record.parameters),
                          record=record))
    first = cells[0]
    prompt = (first.job.prompt if first.job else first.record.prompt if first.record else None)
    return render_template("compare.html", cells=cells, prompt=prompt)

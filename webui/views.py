"""Pages and htmx fragments. Each fragment template is also included by its full page."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from markupsafe import Markup, escape

from . import engine, forms, gallery
from .app import State
from .client import BackendError, Service, check_health, resolve_auth
from .definitions import Mode, Parameter, schema_text
from .options import Choice, choices, current_value, match_current

bp = Blueprint("webui", __name__)

# Backend failures map to gateway statuses; htmx is configured (base.html) to swap them in.
STATUS_BY_KIND = {"timeout": 504, "setup": 503, "definition": 500}


def state() -> State:
    return current_app.extensions["webui"]


def backticks(text: str) -> Markup:
    """Escape text, then show `code` spans as <code> (setup help in definitions)."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


@dataclass
class Group:
    name: str
    fields: list[Parameter]
    more: list[Parameter]

    @property
    def collapsed(self) -> bool:
        return not self.fields


def layout(mode: Mode) -> list[Group]:
    """Parameters by group, in order of first appearance; advanced ones folded away."""
    groups: dict[str, Group] = {}
    for p in mode.parameters:
        group = groups.setdefault(p.group or "", Group(p.group or "", [], []))
        (group.more if p.advanced else group.fields).append(p)
    return list(groups.values())


def _service(service_id: str) -> Service:
    service = state().folders.catalog().get(service_id)
    if service is None:
        abort(404, f"There is no service {service_id!r}. Its definition may have been removed "
                   "or may have an error: see the list of services.")
    return service


def _mode(service: Service, mode_name: str) -> Mode:
    mode = service.definition.modes.get(mode_name)
    if mode is None:
        abort(404, f"{service.name} has no mode {mode_name!r}.")
    return mode


@bp.get("/")
def index() -> str:
    st = state()
    catalog = st.folders.catalog()
    return render_template("index.html", catalog=catalog, settings=st.settings)


@bp.get("/services/<service_id>/status")
def status(service_id: str) -> str:
    service = _service(service_id)
    urls = service.urls
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
        checks = list(pool.map(lambda url: check_health(service.at(url), identify=True), urls))
    # The service is usable when any of its instances is.
    state_, message = next((c for c in checks if c[0] == "online"), None) or next(
        (c for c in checks if c[0] == "other"), checks[0])
    queued, load = state().jobs.load(service)
    instances = [{"url": url, "state": st if st != "offline" else "down", "message": msg,
                  "running": load.get(url, (0, 0))[0], "finished": load.get(url, (0, 0))[1]}
                 for url, (st, msg) in zip(urls, checks, strict=True)]
    return render_template("_status.html", service=service, state=state_, message=message,
                           instances=instances, queued=queued,
                           compact=bool(request.args.get("compact")))


@bp.get("/services/<service_id>/")
def service_home(service_id: str) -> Response:
    service = _service(service_id)
    first = next(iter(service.definition.modes))
    return redirect(url_for("webui.service_page", service_id=service_id, mode_name=first))


@bp.get("/services/<service_id>/<mode_name>")
def service_page(service_id: str, mode_name: str) -> str:
    service = _service(service_id)
    mode = _mode(service, mode_name)
    job = state().jobs.get(request.args.get("job", ""))
    # ?from=<image id>: the form filled from that image's job (reuse parameters);
    # ?init=<image id>: that image as the input image (send to img2img).
    values = gallery.prefill(mode.parameters, request.args.get("from"))
    init = request.args.get("init", "")
    init_image = state().history.get_image(int(init)) if (
        init.isdigit() and state().history) else None
    # What the form starts with, for the fields shown only when others have certain values.
    form_values = {p.key: values.get(p.key, p.defaultValue) for p in mode.parameters}
    return render_template("service.html", service=service, mode=mode, groups=layout(mode),
                           form_values=form_values,
                           job=job, position=state().jobs.position(job) if job else None,
                           missing=state().jobs.missing(service, mode),
                           values=values, init_image=init_image,
                           prefilled=bool(values or init_image))


@bp.get("/services/<service_id>/<mode_name>/options/<key>")
def options(service_id: str, mode_name: str, key: str) -> tuple[str, int]:
    service = _service(service_id)
    mode = _mode(service, mode_name)
    param = mode.parameter(key)
    if param is None or param.type != "select":
        abort(404, f"{mode.label} has no select {key!r}.")
    refresh = bool(request.args.get("refresh"))
    current: list[str] = [v for v in request.args.getlist(key) if v != ""]
    if key not in request.args and param.defaultValue is not None:
        defaults = param.defaultValue
        current = [str(v) for v in (defaults if isinstance(defaults, list) else [defaults])]
    context: dict[str, Any] = {"service": service, "mode": mode, "p": param, "error": None,
                               "choices": None, "current": current, "stale": []}
    try:
        found = choices(service, param, state().options, refresh=refresh)
        if not current and param.defaultFrom:
            # The service's own setting (e.g. the checkpoint A1111 loads without an override).
            server_value = current_value(service, param, state().options, refresh=refresh)
            current = [server_value] if server_value is not None else []
            context["from_service"] = server_value
    except BackendError as exc:
        context["error"] = exc.message
        return render_template("_select.html", **context), 200
    # Values saved earlier are matched to the list as it is now; one that matches nothing is
    # kept, selected and marked, so that Generate says so instead of dropping it.
    context["current"], context["stale"] = match_current(param, current, found)
    context["choices"] = found
    return render_template("_select.html", **context), 200


@bp.post("/services/<service_id>/<mode_name>/generate")
def generate(service_id: str, mode_name: str) -> tuple[str, int]:
    st = state()
    service = _service(service_id)
    mode = _mode(service, mode_name)

    def allowed_for(p: Parameter) -> list[Choice]:
        # Only values the backend listed: A1111 silently swaps an unknown sampler for another.
        return choices(service, p, st.options)

    context: dict[str, Any] = {"service": service, "mode": mode, "errors": {}}
    try:
        resolve_auth(service)  # a missing secret is a setup problem, not a queued failure
        # A backend that cannot list its choices cannot generate either: one clear message
        # beats the same connection error under every select.
        values, errors = forms.validate(mode, request.form, request.files, allowed_for,
                                        gallery.stored_image)
        if errors:
            context["errors"] = errors
            return render_template("_result.html", **context), 422
        engine.prepare_values(mode, values)  # a definition that cannot apply fails here
    except BackendError as exc:
        return (render_template("_result.html", failure=exc, **context),
                STATUS_BY_KIND.get(exc.kind, 502))
    job = st.jobs.submit(service, mode, values)
    html = render_template("_result.html", job=job, position=st.jobs.position(job), **context)
    # The page's address now names the job: a reload shows it again.
    page = url_for("webui.service_page", service_id=service.id, mode_name=mode.name, job=job.id)
    return html, 202, {"HX-Push-Url": page}


def _job(job_id: str):
    job = state().jobs.get(job_id)
    if job is None:
        abort(404, "This job is not known here: webui may have been restarted since. Its "
                   "images, if it made any, are in the images folder.")
    return job


@bp.get("/jobs/<job_id>")
def job_page(job_id: str) -> Any:
    job = state().jobs.get(job_id)
    if job is None and state().history is not None:
        # A job from before a restart lives on in the history.
        record = state().history.get_job(job_id)
        if record is not None and record.images:
            return redirect(url_for("gallery.image_page", image_id=record.images[0].id))
        if record is not None:
            abort(404, f"This job ended {record.status}"
                       + (f": {record.error}" if record.error else "") + " (no images).")
    job = _job(job_id)
    return render_template("job.html", job=job, position=state().jobs.position(job))


@bp.get("/jobs/<job_id>/panel")
def job_panel(job_id: str) -> str:
    job = _job(job_id)
    return render_template("_job.html", job=job, mode=job.mode, service=job.service,
                           position=state().jobs.position(job))


@bp.post("/jobs/<job_id>/<action>")
def job_action(job_id: str, action: str) -> str:
    job = _job(job_id)
    jobs = state().jobs
    if action == "interrupt":
        problem = jobs.interrupt(job)
    elif action == "skip":
        problem = jobs.skip(job)
    elif action == "cancel":
        problem = None if jobs.cancel(job) else "The job had already started."
    else:
        abort(404, f"No job action {action!r}.")
    return render_template("_job.html", job=job, mode=job.mode, service=job.service,
                           position=jobs.position(job), action_error=problem)


@bp.get("/jobs/<job_id>/preview")
def job_preview(job_id: str) -> Response:
    progress = _job(job_id).progress
    if progress.preview is None:
        abort(404, "No preview yet.")
    # The panel asks for ?v=<version>: one URL is one picture, so it may be cached.
    return Response(progress.preview, mimetype=progress.preview_mime,
                    headers={"Cache-Control": "private, max-age=3600, immutable"})


@bp.get("/images/<path:name>")
def image(name: str) -> Response:
    response = send_from_directory(state().store.root, name, max_age=31536000)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/definition.schema.json")
def definition_schema() -> Response:
    return Response(schema_text(), mimetype="application/schema+json")

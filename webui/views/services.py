"""The service list, a service's status, its form page and the choices of its selects."""

from __future__ import annotations

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
    url_for,
)

from ..backend import BackendError, StatusChecks
from ..choices import (
    NotCached,
    choice_index,
    choices,
    current_value,
    match_current,
    search,
)
from ..format import Mode, Parameter, refused, schema_text
from ..pipeline import STYLES_KEY
from ..redact import redact_url
from ..service import Service
from . import pnginfo
from .common import find_mode, find_service, image_id, seed_parameter, state

bp = Blueprint("services", __name__)


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
    weights = mode.weights  # shown in the chips of their select, not as fields
    for p in mode.parameters:
        if p.key in weights:
            continue
        group = groups.setdefault(p.group or "", Group(p.group or "", [], []))
        (group.more if p.advanced else group.fields).append(p)
    return list(groups.values())


@bp.get("/")
def index() -> str:
    st = state()
    catalog = st.folders.catalog()
    return render_template("index.html", catalog=catalog, settings=st.settings)


@bp.get("/services/<service_id>/status")
def status(service_id: str) -> str:
    service = find_service(service_id)
    compact = bool(request.args.get("compact"))
    urls = service.urls
    # Checked on threads of their own, shared by every tab and briefly cached: this request
    # waits a second at most, then says "checking…", which asks again.
    found = status_checks().get([service.at(url) for url in urls])
    checks = [c or ("checking", "still checking…") for c in found]
    # The service is usable when any of its instances is.
    best = next((c for c in checks if c[0] == "online"), None) or next(
        (c for c in checks if c[0] == "other"), None)
    if best is None and any(c is None for c in found):
        return render_template("_status_pending.html", service=service, compact=compact)
    state_, message = best or checks[0]
    queued, load = state().jobs.load(service)
    # Addresses are shown without the credentials a pool's URLs may carry.
    instances = [{"url": redact_url(url), "state": st if st != "offline" else "down",
                  "message": msg, "running": load.get(url, (0, 0))[0],
                  "finished": load.get(url, (0, 0))[1]}
                 for url, (st, msg) in zip(urls, checks, strict=True)]
    return render_template("_status.html", service=service, state=state_, message=message,
                           instances=instances, queued=queued, compact=compact)


# An online badge checks again every 30 s (_status_badge.html): a status no older than that
# is what an open page shows anyway.
ONLINE_RECHECK = 30


def known_status(service: Service) -> dict[str, Any] | None:
    """A status checked less than ONLINE_RECHECK s ago, drawn into a page rather than asked
    for, and checked again when it is that old: only in the plain case, one instance, online,
    no job of it running or waiting. Otherwise the page asks, and the answer tells all (setup
    help, the pool)."""
    if len(service.urls) != 1:
        return None
    found = status_checks().known([service.at(service.urls[0])], ONLINE_RECHECK)
    if found is None or found[0][0] != "online":
        return None
    queued, load = state().jobs.load(service)
    if queued or any(running for running, _finished in load.values()):
        return None
    _state, message, age = found[0]
    return {"state": "online", "message": message,
            "recheck": max(1, round(ONLINE_RECHECK - age))}


def status_checks() -> StatusChecks:
    """The app's status checks (made on first use)."""
    return current_app.extensions.setdefault("webui.status_checks", StatusChecks())


@bp.get("/services/<service_id>/")
def service_home(service_id: str) -> Response:
    service = find_service(service_id)
    first = next(iter(service.definition.modes))
    return redirect(url_for("services.service_page", service_id=service_id, mode_name=first))


@bp.get("/services/<service_id>/<mode_name>")
def service_page(service_id: str, mode_name: str) -> str:
    service = find_service(service_id)
    mode = find_mode(service, mode_name)
    job = state().jobs.get(request.args.get("job", ""))
    job = job.snapshot() if job is not None else None
    # ?from=<image id>: the form filled from that image's job (reuse parameters);
    # ?init=<image id>: that image as the input image (send to img2img). png-<token>: an
    # image read by PNG Info, for both.
    source = request.args.get("from")
    kept = pnginfo.kept_values(service, mode, source)
    values = prefill(mode.parameters, source) if kept is None else kept
    init = request.args.get("init", "")
    record = state().history.get_image(image_id(init)) if (
        image_id(init) is not None and state().history) else None
    init_image = pnginfo.kept_input(init) or (pnginfo.InputImage(
        str(record.id), url_for("gallery.image", name=record.path), "the gallery")
        if record else None)
    # An inpainting job's image and mask come back with its parameters (kept with the job).
    inputs = reused_inputs(mode, source)
    if init_image is not None and mode.by_role("init_image") is not None:
        inputs[mode.by_role("init_image").key] = init_image
    prefilled = "" if not (values or inputs) else (
        "The form is filled from the image read by PNG Info." if kept is not None
        else "The form is filled from an image of the gallery." if values
        # Only the image (Upscale): no value of the form came with it.
        else f"The image is from {init_image.origin}.")
    # ?use_seed=<image id>: that image's seed in the seed field, the rest of the form as it
    # was left (with JavaScript, app.js puts the seed back after the remembered values).
    use_seed = seed_of(mode, request.args.get("use_seed"))
    if use_seed:
        values = {**values, use_seed[0]: use_seed[1]}
    # What the form starts with, for the fields shown only when others have certain values.
    form_values = {p.key: values.get(p.key, p.defaultValue) for p in mode.parameters}
    return render_template("service.html", service=service, mode=mode, groups=layout(mode),
                           form_values=form_values, styles_after=styles_after(mode),
                           job=job, position=state().jobs.position(job) if job else None,
                           missing=state().jobs.missing(service, mode),
                           broken=next((f for f in state().folders.catalog().failures
                                        if f.serving == service.definition.id), None),
                           values=values, init_image=init_image, inputs=inputs,
                           prefilled=prefilled, use_seed=use_seed,
                           # What "Reset to defaults" brings back, whatever the page was
                           # opened with (reused parameters are the inputs' own defaults).
                           defaults={p.key: p.defaultValue for p in mode.parameters
                                     if p.type != "image"})


@bp.get("/services/<service_id>/<mode_name>/options/<key>")
def options(service_id: str, mode_name: str, key: str) -> tuple[str, int]:
    service = find_service(service_id)
    mode = find_mode(service, mode_name)
    param = mode.parameter(key)
    if param is None or param.type != "select":
        abort(404, f"{mode.label} has no select {key!r}.")
    current: list[str] = [v for v in request.args.getlist(key) if v != ""]
    if key not in request.args and param.defaultValue is not None:
        current = select_values(param.defaultValue)
    context = select_state(service, mode, param, current,
                           refresh=bool(request.args.get("refresh")))
    return render_template("_select.html", **context), 200


def select_values(value: Any) -> list[str]:
    """A select's value (one, a list, none) as the list of texts it selects."""
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if v is not None and str(v) != ""]


def select_state(service: Service, mode: Mode, param: Parameter, current: list[str], *,
                 refresh: bool = False, cached_only: bool = False) -> dict[str, Any]:
    """What _select.html shows of a backend-fed select whose value is ``current``: its
    choices, the ones selected, the service's own setting, or the error that stopped them.
    ``cached_only``: NotCached rather than a call to the backend."""
    context: dict[str, Any] = {"service": service, "mode": mode, "p": param, "error": None,
                               "choices": None, "current": current, "stale": [],
                               "loading": False}
    options = state().options
    try:
        found = choices(service, param, options, refresh=refresh, cached_only=cached_only)
    except BackendError as exc:
        context["error"] = exc.message
        return context
    if param.defaultFrom:
        # The service's own setting (e.g. the checkpoint A1111 loads without an override),
        # as the choice it stands for; chosen when the form has no value of its own. Not
        # readable: the choices are still usable, with "—" for the service's setting.
        try:
            server_value = current_value(service, param, options, refresh=refresh,
                                         cached_only=cached_only)
        except BackendError:
            server_value = None
        server = match_current(param, [server_value], found)[0] if server_value else []
        context["from_service"] = server[0] if server else None
        if not current:
            current = server
    # Values saved earlier are matched to the list as it is now; one that matches nothing is
    # kept, selected and marked, so that Generate says so instead of dropping it.
    context["current"], context["stale"] = match_current(param, current, found)
    context["choices"] = found
    return context


def cached_select(service: Service, mode: Mode, param: Parameter, value: Any) -> dict[str, Any]:
    """The context of a backend-fed select in a page: its choices drawn in when webui has its
    lists already (no request of the page's for them), else "loading", which asks for them.
    Lists older than the cache's TTL are drawn too, the form usable at once, and asked for
    again as the page loads (``revalidate``): the select is then swapped for the fresh list."""
    try:
        context = select_state(service, mode, param, select_values(value), cached_only=True)
    except NotCached:
        return {"current": value, "choices": None, "error": None, "loading": True}
    endpoints = {s.endpoint for s in param.sources}
    if param.defaultFrom:
        endpoints.add(param.defaultFrom.endpoint)
    context["revalidate"] = not state().options.fresh(service, endpoints)
    return context


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for /favicon.ico where no page names an icon (an image opened alone)."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


@bp.get("/services/<service_id>/<mode_name>/options/<key>/search")
def search_options(service_id: str, mode_name: str, key: str) -> tuple[str, int]:
    """A picker's matches for what was typed: the first SEARCH_LIMIT of the select's choices
    (read once per answer of the backend) whose label, value or alias holds the words."""
    service = find_service(service_id)
    mode = find_mode(service, mode_name)
    param = mode.parameter(key)
    if param is None or not param.picker:
        abort(404, f"{mode.label} has no searchable list {key!r}.")
    query = request.args.get(f"{key}__q", request.args.get("q", ""))[:200]
    context: dict[str, Any] = {"picker_id": picker_id(mode, key), "query": query,
                               "error": None, "noun": param.title}
    try:
        index = choice_index(service, param, state().options,
                             refresh=bool(request.args.get("refresh")))
    except BackendError as exc:
        context["error"] = exc.message
        return render_template("_picker_results.html", **context), 200
    found = search(index, query)
    context["total"] = found.total
    context["items"] = [{"value": c.value, "label": c.label,
                         "detail": str(c.value) if str(c.value) != c.label else "",
                         "problem": refused(param, c.value)} for c in found.items]
    return render_template("_picker_results.html", **context), 200


@dataclass
class Picker:
    """What a picker shows: its chosen values as chips (with their weights), where it
    searches, and how a new chip's weight starts."""

    key: str
    id: str
    label: str
    search_url: str
    items: list[dict[str, Any]]
    multiple: bool = True
    weight: Parameter | None = None  # the number each chosen value carries
    placeholder: str = "Type to search"
    description: str = ""


def picker_id(mode: Mode, key: str) -> str:
    """The id of a picker's element (its chips, results and options are named after it)."""
    return f"pk-{mode.name}-{key}"


def param_picker(service: Any, mode: Mode, p: Parameter, current: Any) -> Picker:
    """The picker of a select parameter (search or weight), its chips from ``current``."""
    weight = mode.parameter(p.weight) if p.weight else None
    items = []
    for item in picker_values(current):
        value = item["value"]
        number = item.get("weight")
        if weight is not None and number in (None, ""):
            number = weight.defaultValue
        items.append({"value": value, "label": item.get("label") or value, "weight": number,
                      "problem": refused(p, value)})
    return Picker(key=p.key, id=picker_id(mode, p.key), label=p.title,
                  search_url=url_for("services.search_options", service_id=service.id,
                                     mode_name=mode.name, key=p.key),
                  items=items, multiple=p.multiple, weight=weight,
                  placeholder=f"Search {p.title} by name" + (
                      " or alias" if any(s.labelKey or s.aliases for s in p.sources) else ""))


def picker_values(current: Any) -> list[dict[str, Any]]:
    """A picker's value in any form it was kept in (a name, a list of names, a list of
    ``{value, weight}``) as a list of ``{value, weight?, label?}``."""
    if current in (None, ""):
        return []
    out = []
    for item in current if isinstance(current, list) else [current]:
        if isinstance(item, dict) and item.get("value") not in (None, ""):
            out.append({k: item.get(k) for k in ("value", "weight", "label") if k in item})
        elif isinstance(item, str | int | float) and not isinstance(item, bool) and item != "":
            out.append({"value": item})
    return out


def styles_after(mode: Mode) -> str | None:
    """The field the styles picker follows: the negative prompt, else the prompt (None: the
    mode has no prompt for styles to go into)."""
    for role in ("negative", "prompt"):
        p = next((q for q in mode.parameters if q.kind == role), None)
        if p is not None and any(q.kind == "prompt" for q in mode.parameters):
            return p.key
    return None


@bp.get("/definition.schema.json")
def definition_schema() -> Response:
    return Response(schema_text(), mimetype="application/schema+json")


def seed_of(mode: Mode, image_ref: str | None) -> tuple[str, Any] | None:
    """(the seed field's key, the seed) of a history image, for "Use seed"; None if the
    image, its seed or the mode's seed parameter is missing."""
    seed_p = seed_parameter(mode)
    if seed_p is None or image_id(image_ref) is None or state().history is None:
        return None
    image = state().history.get_image(image_id(image_ref))
    return (seed_p.key, image.seed) if image is not None and image.seed is not None else None


def reused_job(image_ref: str | None) -> tuple[Any, Any] | tuple[None, None]:
    """(image, job record) of a history image whose job is reused; (None, None) if none."""
    if image_id(image_ref) is None or state().history is None:
        return None, None
    image = state().history.get_image(image_id(image_ref))
    job = state().history.get_job(image.job_id) if image else None
    return (image, job) if job is not None else (None, None)


def reused_inputs(mode: Mode, image_ref: str | None) -> dict[str, pnginfo.InputImage]:
    """The input images kept with a history image's job (an inpainting job's image and mask,
    see Recorder._keep_inputs), by key: only keys of image parameters the mode has."""
    _image, job = reused_job(image_ref)
    out: dict[str, pnginfo.InputImage] = {}
    for p in mode.parameters if job is not None else []:
        value = job.parameters.get(p.key)
        if p.type == "image" and isinstance(value, dict) and value.get("kept"):
            ref = str(value["kept"])
            out[p.key] = pnginfo.InputImage(ref, url_for("generate.input_image", ref=ref),
                                            "the reused job")
    return out


def prefill(mode_params: list[Any], image_ref: str | None) -> dict[str, Any]:
    """Form values from a history image's job (reuse parameters): only keys the mode has."""
    image, job = reused_job(image_ref)
    if job is None:
        return {}
    keys = {p.key for p in mode_params if p.type != "image"} | {STYLES_KEY}
    values = {k: v for k, v in job.parameters.items() if k in keys}
    # The seed of this very image, not the -1 the job was asked with.
    for p in mode_params:
        if p.kind == "seed" and image.seed is not None:
            values[p.key] = image.seed
    return values

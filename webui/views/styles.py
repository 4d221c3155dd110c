"""Prompt styles: webui's own (saved in the history database: created, edited and deleted on
the Styles page) and the service's own where its definition lists them; picked on any
service's form, found by a search as you type, and turned into the snapshots a job keeps."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for

from ..backend import BackendError
from ..choices import SEARCH_LIMIT, Style, service_styles
from ..format import Mode
from ..format.values import MAX_TEXT
from ..history import HistoryError, HistoryStore, StyleRecord
from ..pipeline import STYLES_KEY
from ..service import Service
from .common import find_mode, find_service, state
from .services import Picker, picker_id, picker_values

bp = Blueprint("styles", __name__)

MAX_NAME = 100
# A chosen style is posted as "<kind>:<name>": webui's own, or the service's.
OWN, THEIRS = "webui", "service"


def _history() -> HistoryStore:
    history = state().history
    if history is None:
        abort(503, f"Styles are kept in the history database, which cannot be used: "
                   f"{state().history_error}")
    return history


@bp.get("/styles")
def styles_page() -> str:
    history = _history()
    editing = None
    if request.args.get("edit", "").isdigit():
        editing = history.get_style(int(request.args["edit"]))
    return render_template("styles.html", **_section(history, editing))


def _section(history: HistoryStore, editing: StyleRecord | None = None,
             errors: dict[str, str] | None = None, message: str = "",
             form: dict[str, str] | None = None) -> dict[str, Any]:
    """What the styles section shows: the form (new, or the style being edited, or what was
    posted with its errors) and every style."""
    if form is None:
        form = ({"name": editing.name, "prompt": editing.prompt,
                 "negative_prompt": editing.negative_prompt} if editing else {})
    return {"styles": history.styles(), "editing": editing, "errors": errors or {},
            "message": message, "form": form}


@bp.post("/styles")
@bp.post("/styles/<int(max=9223372036854775807):style_id>")
def save_style(style_id: int | None = None) -> Any:
    history = _history()
    editing = history.get_style(style_id) if style_id is not None else None
    if style_id is not None and editing is None:
        abort(404, "This style no longer exists.")
    form = {k: request.form.get(k, "") for k in ("name", "prompt", "negative_prompt")}
    errors: dict[str, str] = {}
    name = form["name"].strip()
    if not name:
        errors["name"] = "Name is required."
    elif len(name) > MAX_NAME:
        errors["name"] = f"Name is longer than {MAX_NAME} characters."
    for key, title in (("prompt", "Prompt"), ("negative_prompt", "Negative prompt")):
        if len(form[key]) > MAX_TEXT:
            errors[key] = f"{title} is longer than {MAX_TEXT} characters."
    if not errors:
        try:
            saved = history.save_style(StyleRecord(name=name, prompt=form["prompt"],
                                                   negative_prompt=form["negative_prompt"],
                                                   id=style_id))
        except ValueError as exc:
            errors["name"] = f"Not saved: {exc}."
        except HistoryError as exc:
            errors["name"] = f"Not saved: {exc}"
    if errors:
        return _answer(_section(history, editing, errors, form=form), 422)
    verb = "Saved" if style_id is not None else "Added"
    return _answer(_section(history, message=f"{verb} the style “{saved.name}”."), 200)


@bp.post("/styles/<int(max=9223372036854775807):style_id>/delete")
def delete_style(style_id: int) -> Any:
    history = _history()
    style = history.get_style(style_id)
    if style is None or not history.delete_style(style_id):
        return _answer(_section(history, message="That style was already deleted."), 200)
    return _answer(_section(history, message=f"Deleted the style “{style.name}”."), 200)


def _answer(context: dict[str, Any], status: int) -> Any:
    """htmx gets the section; a plain form post (no JavaScript) goes back to the page."""
    if request.headers.get("HX-Request"):
        return render_template("_styles_section.html", **context), status
    if status >= 400:
        return render_template("styles.html", **context), status
    return redirect(url_for("styles.styles_page"), 303)


# -- on a service's form ----------------------------------------------------------------------


def _own_styles() -> list[Style]:
    history = state().history
    if history is None:
        return []
    return [Style(s.name, s.prompt, s.negative_prompt) for s in history.styles()]


@bp.get("/services/<service_id>/<mode_name>/styles/search")
def search_styles(service_id: str, mode_name: str) -> tuple[str, int]:
    """The styles picker's matches: webui's styles, then the service's, whose name or text
    holds every word typed."""
    service = find_service(service_id)
    mode = find_mode(service, mode_name)
    query = request.args.get(f"{STYLES_KEY}__q", "")[:200]
    words = query.casefold().split()
    context: dict[str, Any] = {"picker_id": picker_id(mode, STYLES_KEY), "query": query,
                               "error": None, "noun": "styles"}
    found = [(OWN, s) for s in _own_styles()]
    try:
        found += [(THEIRS, s) for s in service_styles(
            service, state().options, refresh=bool(request.args.get("refresh")))]
    except BackendError as exc:
        context["error"] = f"{service.name}'s own styles could not be loaded: {exc.message}"
    matches = [(kind, s) for kind, s in found
               if all(w in f"{s.name}\x1f{s.prompt}\x1f{s.negative}".casefold() for w in words)]
    context["items"] = [{"value": f"{kind}:{s.name}", "label": s.name,
                         "detail": _summary(s, service if kind == THEIRS else None),
                         "problem": None} for kind, s in matches[:SEARCH_LIMIT]]
    context["total"] = len(matches)
    return render_template("_picker_results.html", **context), 200


def _summary(style: Style, service: Service | None) -> str:
    text = style.prompt or (f"negative: {style.negative}" if style.negative else "(empty)")
    return f"{service.name} · {text}" if service is not None else text


def styles_picker(service: Service, mode: Mode, current: Any) -> Picker:
    """The styles picker of a form, its chips from ``current`` (the snapshots a job kept, or
    the picker's own remembered values)."""
    items = []
    for item in current if isinstance(current, list) else []:
        if isinstance(item, dict) and "name" in item:  # a job's snapshot
            kind = OWN if item.get("source", OWN) == OWN else THEIRS
            items.append({"value": f"{kind}:{item['name']}", "label": item["name"]})
        else:
            for found in picker_values([item]):
                value = str(found["value"])
                items.append({"value": value, "label": found.get("label")
                              or value.partition(":")[2] or value})
    negative = any(p.kind == "negative" for p in mode.parameters)
    own = "your styles" + (f" and {service.name}'s" if service.definition.styles else "")
    return Picker(key=STYLES_KEY, id=picker_id(mode, STYLES_KEY), label="Styles",
                  search_url=url_for("styles.search_styles", service_id=service.id,
                                     mode_name=mode.name),
                  items=items, placeholder=f"Search {own}",
                  description=("Merged into the prompt" + (" and the negative prompt"
                               if negative else "") + " when the job is made, in this order; "
                               "{prompt} in a style stands for your prompt."
                               + ("" if negative else f" {service.name} has no negative "
                                  "prompt: the styles' negative parts are not used.")))


def chosen_styles(service: Service, raw: list[str]) -> tuple[list[dict[str, str]], str | None]:
    """The styles posted with a form as snapshots ({name, prompt, negative, source}: what
    the job applies and the history keeps), or the reason one cannot be used."""
    raw = [r for r in raw if r.strip()]
    if not raw:
        return [], None
    own = {s.name.casefold(): s for s in _own_styles()}
    theirs: dict[str, Style] | None = None
    out = []
    for value in raw:
        kind, _, name = value.partition(":")
        style = None
        if kind == OWN:
            style = own.get(name.casefold())
        elif kind == THEIRS:
            if theirs is None:
                try:
                    theirs = {s.name: s for s in service_styles(service, state().options)}
                except BackendError as exc:
                    return [], (f"Styles: {service.name}'s own styles could not be loaded "
                                f"({exc.message})")
            style = theirs.get(name)
        if style is None:
            return [], f"Styles: “{name or value}” no longer exists (remove it, or pick another)"
        out.append({"name": style.name, "prompt": style.prompt, "negative": style.negative,
                    "source": style.source})
    return out, None


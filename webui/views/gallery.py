"""The gallery, an image's page and its viewer, deleting, and serving the image and thumbnail
files."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, render_template, request, send_from_directory, url_for

from ..format import Mode, items_text
from ..history import HistoryError, HistoryStore, ImageRecord, JobRecord, cursor_text, parse_cursor
from ..jobs import asked_images
from ..pipeline import STYLES_KEY
from .common import state

bp = Blueprint("gallery", __name__)
PAGE_SIZE = 48


def _history() -> HistoryStore:
    history = state().history
    if history is None:
        abort(503, f"The history cannot be used: {state().history_error}")
    return history


def _filters() -> dict[str, str]:
    return {k: v for k in ("service", "mode", "q") if (v := request.args.get(k, "").strip())}


def _kept(filters: dict[str, str]) -> dict[str, str | None]:
    """The filters as the history's keyword arguments."""
    return {"service": filters.get("service"), "mode": filters.get("mode"),
            "query": filters.get("q")}


def _page(filters: dict[str, str]) -> dict[str, Any]:
    history = _history()
    try:
        page = history.page(**_kept(filters), before=parse_cursor(request.args.get("before")),
                            limit=PAGE_SIZE)
    except HistoryError as exc:
        abort(503, str(exc))
    more = None
    if page.next is not None:
        more = url_for("gallery.gallery_page", **filters, before=cursor_text(page.next))
    store = state().store
    thumbs = state().settings.thumbs_dir
    items = [(item, store.path(item.image.path).is_file(),
              bool(item.image.thumb_path) and (thumbs / item.image.thumb_path).is_file())
             for item in page.items]
    return {"items": items, "more": more, "filters": filters}


def _counts(filters: dict[str, str]) -> dict[str, int]:
    """How many images the gallery holds, and how many of them the filters keep."""
    history = _history()
    total = history.count()
    return {"total": total, "shown": history.count(**_kept(filters)) if filters else total}


@bp.get("/gallery")
def gallery() -> str:
    filters = _filters()
    history = _history()
    return render_template("gallery.html", services=history.services(), **_counts(filters),
                           **_page(filters))


@bp.get("/gallery/page")
def gallery_page() -> tuple[str, int, dict[str, str]]:
    filters = _filters()
    # A new selection (not the next page of one) also updates the count it shows.
    counts = {} if request.args.get("before") else _counts(filters)
    html = render_template("_gallery_page.html", count_oob=bool(counts), **counts,
                           **_page(filters))
    # Filtering changes the address, so a reload or a shared link shows the same selection.
    headers = {} if request.args.get("before") else {
        "HX-Push-Url": url_for("gallery.gallery") + ("?" + urlencode(filters) if filters else "")}
    return html, 200, headers


def _image(image_id: int) -> tuple[ImageRecord, JobRecord | None]:
    history = _history()
    image = history.get_image(image_id)
    if image is None:
        abort(404, "This image is not in the history (it may have been deleted).")
    return image, history.get_job(image.job_id)


@bp.get("/gallery/<int(max=9223372036854775807):image_id>")
def image_page(image_id: int) -> str:
    return render_template("image.html", **_shown(image_id))


@bp.get("/gallery/<int(max=9223372036854775807):image_id>/view")
def image_view(image_id: int) -> str:
    """The viewer's content for one image (the dialog opened from a result or the gallery)."""
    return render_template("_viewer.html", **_shown(image_id))


def _shown(image_id: int) -> dict[str, Any]:
    """What the image page and the viewer show of an image: its job, where it stands in its
    batch, its labelled parameters, and its neighbours in the gallery (among the images the
    gallery's filters, passed on in the address, keep)."""
    image, job = _image(image_id)
    service = state().folders.catalog().get(job.service_id) if job else None
    mode = service.definition.modes.get(job.mode) if service and job else None
    filters = _filters()
    try:
        newer, older = _history().neighbours(image, **_kept(filters))
    except HistoryError as exc:
        abort(503, str(exc))
    count = len(job.images) if job else 1
    if job and mode:
        count = max(count, asked_images(mode, job.parameters))
    return {"image": image, "job": job, "service": service, "mode": mode,
            "on_disk": state().store.path(image.path).is_file(), "filters": filters,
            "newer": newer, "older": older, "count": count,
            "parameters": labelled(job, mode, image) if job else []}


def labelled(job: JobRecord, mode: Mode | None, image: ImageRecord) -> list[tuple[str, Any]]:
    """A job's parameters as the form labels them ("Sampler", not sampler_name), in the
    form's order, with option labels for fixed choices and this image's own seed (not the -1
    it was asked with). The prompts are shown on their own; keys the definition no longer
    has come last, as they are."""
    values = {k: v for k, v in job.parameters.items() if v is not None and v != ""}
    values.pop(STYLES_KEY, None)  # the styles have a line of their own
    rows: list[tuple[str, Any]] = []
    for p in mode.parameters if mode else []:
        if p.key not in values or p.kind in ("prompt", "negative"):
            values.pop(p.key, None)
            continue
        value = values.pop(p.key)
        if p.kind == "seed" and image.seed is not None:
            value = image.seed
        elif isinstance(value, dict) and value.get("kept"):
            # Kept with the job (an inpainting job's image and mask): shown, not only named.
            value = {"name": value.get("upload") or "uploaded image",
                     "src": url_for("generate.input_image", ref=str(value["kept"]))}
        elif isinstance(value, dict):
            value = value.get("upload") or "uploaded image"
        elif p.weight:
            value = items_text(value)  # LoRAs with their weights
        elif p.type == "boolean":
            value = "on" if value else "off"
        elif p.options:
            value = next((o.label for o in p.options if str(o.value) == str(value)
                          and o.label), value)
        rows.append((p.title, ", ".join(map(str, value)) if isinstance(value, list) else value))
    rows += [(k, v.get("upload") or "uploaded image" if isinstance(v, dict) else v)
             for k, v in values.items() if k not in ("prompt", "negative_prompt")]
    return rows


@bp.delete("/gallery/<int(max=9223372036854775807):image_id>")
def delete_image(image_id: int) -> Response:
    history = _history()
    removed = history.delete_image(image_id)
    if removed is not None:
        store, thumbs = state().store, state().settings.thumbs_dir
        store.path(removed.path).unlink(missing_ok=True)
        if removed.thumb_path:
            (thumbs / removed.thumb_path).unlink(missing_ok=True)
    response = Response("", 204)
    response.headers["HX-Redirect"] = url_for("gallery.gallery")
    return response


@bp.get("/thumbs/<path:name>")
def thumb(name: str) -> Response:
    response = send_from_directory(state().settings.thumbs_dir, name, max_age=31536000)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/images/<path:name>")
def image(name: str) -> Response:
    response = send_from_directory(state().store.root, name, max_age=31536000)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response

"""The gallery, an image's page, deleting, and serving the image and thumbnail files."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, render_template, request, send_from_directory, url_for

from ..history import HistoryError, HistoryStore, ImageRecord, JobRecord, cursor_text, parse_cursor
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


def _page(filters: dict[str, str]) -> dict[str, Any]:
    history = _history()
    try:
        page = history.page(service=filters.get("service"), mode=filters.get("mode"),
                            query=filters.get("q"),
                            before=parse_cursor(request.args.get("before")), limit=PAGE_SIZE)
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


@bp.get("/gallery")
def gallery() -> str:
    filters = _filters()
    history = _history()
    return render_template("gallery.html", services=history.services(), total=history.count(),
                           **_page(filters))


@bp.get("/gallery/page")
def gallery_page() -> tuple[str, int, dict[str, str]]:
    filters = _filters()
    html = render_template("_gallery_page.html", **_page(filters))
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
    image, job = _image(image_id)
    service = state().folders.catalog().get(job.service_id) if job else None
    on_disk = state().store.path(image.path).is_file()
    img2img = None
    if service is not None:
        # The mode that takes an input image (the role init_image): "Send to img2img".
        img2img = next((m.name for m in service.definition.modes.values()
                        if any(p.kind == "init_image" for p in m.parameters)), None)
    return render_template("image.html", image=image, job=job, service=service,
                           on_disk=on_disk, img2img=img2img)


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

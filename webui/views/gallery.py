"""The gallery, an image's page and its viewer, deleting, and serving the image and thumbnail
files."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, render_template, request, send_from_directory, url_for
from werkzeug.security import safe_join

from ..format import Mode, items_text
from ..history import HistoryError, HistoryStore, ImageRecord, JobRecord, cursor_text, parse_cursor
from ..images import (
    SMALL_THUMB_SIZE,
    THUMB_SIZE,
    ThumbnailError,
    make_thumbnail,
    small_thumb_name,
    thumb_of_small,
)
from ..jobs import asked_images
from ..pipeline import STYLES_KEY
from .common import state

bp = Blueprint("gallery", __name__)
# Every column count of the gallery's grid (one to six) divides a page: each page ends a row,
# so a page far out of view can be emptied into a spacer of its height (static/app.js).
PAGE_SIZE = 60


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
    """One page of tiles (older than ``before``, or just newer than ``after``), with the
    addresses around it: its own (``src``, to fetch it again; ``plain``, the same as a whole
    page), the next page's fragment (``more``, for infinite scroll) and the plain pages older
    and newer (``older``, ``newer``: the gallery without JavaScript)."""
    history = _history()
    before = parse_cursor(request.args.get("before"))
    after = None if before else parse_cursor(request.args.get("after"))
    try:
        page = history.page(**_kept(filters), before=before, after=after, limit=PAGE_SIZE)
    except HistoryError as exc:
        abort(503, str(exc))
    store, thumbs = state().store, state().settings.thumbs_dir
    items = []
    for item in page.items:
        im = item.image
        thumb = im.thumb_path if im.thumb_path and (thumbs / im.thumb_path).is_file() else None
        # The picture itself is only shown (or said missing) where there is no thumbnail.
        shown = thumb is not None or store.path(im.path).is_file()
        if im.thumb_path and thumb is None and shown:
            # Not made yet (a job that just ended, or webui stopped before): made now, for
            # the next time the gallery is shown.
            state().thumbnailer.request(store.path(im.path), im.thumb_path, now=True)
        items.append((item, thumb, small_thumb_name(thumb) if thumb else None, shown))
    links: dict[str, str | None] = {"src": None, "plain": None, "more": None, "older": None,
                                    "newer": None}
    if items:
        # Just above its first image (the same id would leave it out): asked again, the page
        # has the same images, whatever came in since.
        first = page.items[0].cursor
        here = cursor_text((first[0], first[1] + 1))
        links["src"] = url_for("gallery.gallery_page", **filters, before=here)
        links["plain"] = url_for("gallery.gallery", **filters, before=here)
    if page.next is not None:
        links["more"] = url_for("gallery.gallery_page", **filters, before=cursor_text(page.next))
        links["older"] = url_for("gallery.gallery", **filters, before=cursor_text(page.next))
    if page.prev is not None:
        links["newer"] = url_for("gallery.gallery", **filters, after=cursor_text(page.prev))
    elif (before or after) and not items:
        links["newer"] = url_for("gallery.gallery", **filters)
    return {"items": items, "filters": filters, "paged": bool(before or after),
            "thumb_sizes": (SMALL_THUMB_SIZE, THUMB_SIZE), **links}


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
    # A new selection (not another page of one) also updates the count it shows.
    paged = bool(request.args.get("before") or request.args.get("after"))
    counts = {} if paged else _counts(filters)
    html = render_template("_gallery_page.html", count_oob=bool(counts), **counts,
                           **_page(filters))
    # Filtering changes the address, so a reload or a shared link shows the same selection.
    headers = {} if paged else {
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
            (thumbs / small_thumb_name(removed.thumb_path)).unlink(missing_ok=True)
    response = Response("", 204)
    response.headers["HX-Redirect"] = url_for("gallery.gallery")
    return response


@bp.get("/thumbs/<path:name>")
def thumb(name: str) -> Response:
    """A thumbnail file; a small one that is not there yet (an image recorded before webui
    made them) is made from its thumbnail first, once."""
    thumbs = state().settings.thumbs_dir
    source = thumb_of_small(name)
    dst = safe_join(str(thumbs), name)
    src = safe_join(str(thumbs), source) if source else None
    if src and dst and not Path(dst).is_file():
        with contextlib.suppress(ThumbnailError):  # then answered as any missing file
            make_thumbnail(Path(src), Path(dst), SMALL_THUMB_SIZE)
    response = send_from_directory(thumbs, name, max_age=31536000)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/images/<path:name>")
def image(name: str) -> Response:
    response = send_from_directory(state().store.root, name, max_age=31536000)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response

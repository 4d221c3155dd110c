"""History and gallery: every finished job recorded, the gallery pages, the image page, and
reading generation parameters back out of an image."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
    send_from_directory,
    url_for,
)

from .forms import FieldError, UploadedImage, check_image
from .history import (
    HistoryError,
    HistoryStore,
    ImageRecord,
    JobRecord,
    cursor_text,
    make_thumbnail,
    parse_cursor,
)
from .images import ImageStore
from .infotext import infotext_to_fields, parse_infotext, read_png_infotext
from .jobs import Job

log = logging.getLogger(__name__)

bp = Blueprint("gallery", __name__)
PAGE_SIZE = 48


def record(
    history: HistoryStore, store: ImageStore, thumbs: Path, job: Job, status: str
) -> None:
    """Write a job that ended with ``status`` to the history, with a thumbnail per image (made
    once, here in the job's thread, never while a page is being served)."""
    images = []
    for position, image in enumerate(job.images):
        thumb = f"{image.path}.webp"
        try:
            make_thumbnail(store.path(image.path), thumbs / thumb)
        except HistoryError as exc:
            log.warning("no thumbnail for %s: %s", image.path, exc)
            thumb = None
        images.append(ImageRecord(
            job_id=job.id, position=position, path=image.path, mime=image.mime,
            width=image.width, height=image.height, seed=image.seed, infotext=image.infotext,
            thumb_path=thumb,
            # Later positions a hair later, so the gallery (newest first) keeps batch order.
            created=(job.finished or job.created) - position * 1e-6,
        ))
    negative = job.values.get("negative_prompt")
    history.record_job(JobRecord(
        id=job.id, service_id=job.service.id, service_name=job.service.name,
        mode=job.mode.name, status=status, instance=job.instance, parameters=job.values,
        prompt=job.prompt, negative_prompt=negative if isinstance(negative, str) else None,
        seeds=[im.seed for im in job.images], info=job.info, error=job.error,
        created=job.created, started=job.started, finished=job.finished,
        seconds=job.seconds if job.started else None, images=images,
    ))


def _state():
    return current_app.extensions["webui"]


def _history() -> HistoryStore:
    history = _state().history
    if history is None:
        abort(503, f"The history cannot be used: {_state().history_error}")
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
    store = _state().store
    thumbs = _state().settings.thumbs_dir
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


@bp.get("/gallery/<int:image_id>")
def image_page(image_id: int) -> str:
    image, job = _image(image_id)
    service = _state().folders.catalog().get(job.service_id) if job else None
    on_disk = _state().store.path(image.path).is_file()
    img2img = None
    if service is not None:
        target = service.definition.modes.get("img2img")
        if target is not None and any(p.type == "image" for p in target.parameters):
            img2img = target.name
    return render_template("image.html", image=image, job=job, service=service,
                           on_disk=on_disk, img2img=img2img)


@bp.delete("/gallery/<int:image_id>")
def delete_image(image_id: int) -> Response:
    history = _history()
    removed = history.delete_image(image_id)
    if removed is not None:
        store, thumbs = _state().store, _state().settings.thumbs_dir
        store.path(removed.path).unlink(missing_ok=True)
        if removed.thumb_path:
            (thumbs / removed.thumb_path).unlink(missing_ok=True)
    response = Response("", 204)
    response.headers["HX-Redirect"] = url_for("gallery.gallery")
    return response


@bp.get("/thumbs/<path:name>")
def thumb(name: str) -> Response:
    response = send_from_directory(_state().settings.thumbs_dir, name, max_age=31536000)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def prefill(mode_params: list[Any], image_id: str | None) -> dict[str, Any]:
    """Form values from a history image's job (reuse parameters): only keys the mode has."""
    if not image_id or not image_id.isdigit() or _state().history is None:
        return {}
    image = _state().history.get_image(int(image_id))
    job = _state().history.get_job(image.job_id) if image else None
    if job is None:
        return {}
    keys = {p.key for p in mode_params if p.type != "image"}
    values = {k: v for k, v in job.parameters.items() if k in keys}
    # The seed of this very image, not the -1 the job was asked with.
    for p in mode_params:
        if p.type == "seed" and image.seed is not None:
            values[p.key] = image.seed
    return values


def stored_image(ref: str) -> UploadedImage | None:
    """A history image used as an upload (send to img2img)."""
    if not ref.isdigit() or _state().history is None:
        return None
    image = _state().history.get_image(int(ref))
    if image is None:
        raise FieldError("refers to an image that is no longer in the history")
    path = _state().store.path(image.path)
    if not path.is_file():
        raise FieldError("refers to an image whose file is missing")
    return check_image(path.read_bytes(), Path(image.path).name)


@bp.post("/services/<service_id>/<mode_name>/read-image")
def read_image(service_id: str, mode_name: str) -> tuple[Response, int]:
    """The generation parameters written in a dropped image, as values for this form."""
    service = _state().folders.catalog().get(service_id)
    mode = service.definition.modes.get(mode_name) if service else None
    if mode is None:
        abort(404, "No such form.")
    upload = request.files.get("image")
    data = upload.read(30 * 1024 * 1024) if upload else b""
    text = read_png_infotext(data) if data else None
    if not text:
        return jsonify({"error": "This image carries no generation parameters."}), 200
    prompt, negative, labelled = parse_infotext(text)
    fields = {"prompt": prompt, "negative_prompt": negative, **infotext_to_fields(labelled)}
    values: dict[str, Any] = {}
    for p in mode.parameters:
        name = (p.target or p.key).rsplit(".", 1)[-1].rsplit(":", 1)[-1]
        for candidate in (p.key, name):
            if candidate in fields and fields[candidate] not in (None, "") and p.type != "image":
                values[p.key] = fields[candidate]
                break
    return jsonify({"values": values, "unused": sorted(set(fields) - set(values))}), 200

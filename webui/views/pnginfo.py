"""PNG Info: any image's generation parameters, shown labelled, and sent to a service's form
(the form is filled by the same prefill as "Reuse parameters": ``?from=png-<token>``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)

from .. import images, reuse
from ..format import Mode
from ..images import ImageDataError, KeptImages, StorageError
from ..service import Service
from .common import state

bp = Blueprint("pnginfo", __name__)

# How a form names an image kept by PNG Info (``?from=``, ``?init=``, ``<key>__from``).
REF_PREFIX = "png-"


def kept() -> KeptImages:
    return KeptImages(state().settings.kept_dir)


@dataclass(frozen=True)
class InputImage:
    """An image a form starts with as its input image: one of the gallery, or one read by
    PNG Info. ``id`` is what the form posts back (``<key>__from``)."""

    id: str
    src: str
    origin: str


@bp.get("/png-info")
def page() -> str:
    return render_template("png_info.html", result=None)


@bp.post("/png-info")
def inspect() -> Any:
    """Read a dropped, pasted or chosen file: its parameters, and where they can be sent."""
    upload = request.files.get("image")
    data = upload.read(images.MAX_IMAGE_BYTES + 1) if upload and upload.filename else b""
    name = upload.filename if upload else ""
    htmx = bool(request.headers.get("HX-Request"))
    try:
        if not data:
            raise ImageDataError("was not given: choose, drop or paste an image")
        info = images.check(data)
        token = kept().add(data, info.ext)
    except ImageDataError as exc:
        return _answer({"problem": f"This file {exc}.", "name": name}, htmx, 422)
    except StorageError as exc:
        return _answer({"problem": str(exc), "name": name}, htmx, 507)
    # The address names the image: a reload (or Back from a form) shows it again.
    address = url_for("pnginfo.kept_page", token=token)
    if not htmx:
        return redirect(address, 303)
    html, status = _answer(_result(token, data, name, info), htmx, 200)
    return html, status, {"HX-Push-Url": address}


@bp.get("/png-info/<token>")
def kept_page(token: str) -> str:
    path = kept().find(token)
    if path is None:
        abort(404, "This image is no longer kept by PNG Info (it keeps the newest 50): "
                   "drop it again.")
    data = path.read_bytes()
    try:
        info = images.check(data)
    except ImageDataError:
        abort(404, "This image is no longer readable: drop it again.")
    return render_template("png_info.html", result=_result(token, data, "", info))


@bp.get("/png-info/<token>/image")
def kept_image(token: str) -> Response:
    path = kept().find(token)
    if path is None:
        abort(404, "This image is no longer kept by PNG Info.")
    try:
        mime = images.check(path.read_bytes()).mime  # as the upload was checked
    except ImageDataError:
        abort(404, "This image is no longer readable.")
    response = send_file(path, mimetype=mime, max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _answer(result: dict[str, Any], htmx: bool, status: int) -> tuple[str, int]:
    template = "_png_info.html" if htmx else "png_info.html"
    return render_template(template, result=result), status


def _result(token: str, data: bytes, name: str, info: images.ImageInfo) -> dict[str, Any]:
    """What the page shows of a kept image (checked: ``info``): its parameters as each reading
    found them, and the services they can be sent to (those it is for first, then the rest)."""
    catalog = state().folders.catalog()
    problem = None
    try:
        readings = reuse.read(data, catalog.services)
    except reuse.UnreadableMetadata as exc:
        readings, problem = [], str(exc)
    meant = readings[0].services if readings else []
    others = [s for s in catalog.services if s not in meant]
    return {"token": token, "name": name, "info": info, "size": len(data),
            "readings": readings, "problem": problem, "meant": meant, "others": others,
            "chunks": reuse.keywords(data)}


def send_url(service: Service, mode: Mode, token: str) -> str:
    """The form of ``mode`` filled from a kept image (and, taking an input image, with it)."""
    args = {"from": REF_PREFIX + token}
    if any(p.kind == "init_image" for p in mode.parameters):
        args["init"] = REF_PREFIX + token
    return url_for("services.service_page", service_id=service.id, mode_name=mode.name, **args)


# --- What other pages ask of PNG Info ---------------------------------------------------------


def token_of(ref: str | None) -> str | None:
    """The token of a ``png-<token>`` reference, else None."""
    return ref[len(REF_PREFIX):] if ref and ref.startswith(REF_PREFIX) else None


def kept_values(service: Service, mode: Mode, ref: str | None) -> dict[str, Any] | None:
    """A form's values from a kept image (``?from=png-<token>``); None for another kind of
    reference, {} for an image no longer kept or carrying nothing readable."""
    token = token_of(ref)
    if token is None:
        return None
    path = kept().find(token)
    if path is None:
        return {}
    try:
        reading = reuse.for_service(
            reuse.read(path.read_bytes(), state().folders.catalog().services), service)
    except reuse.UnreadableMetadata:
        return {}
    return reading.values_for(service, mode) if reading else {}


def kept_input(ref: str | None) -> InputImage | None:
    """The input image a form starts with, from ``?init=png-<token>``."""
    token = token_of(ref)
    if token is None or kept().find(token) is None:
        return None
    return InputImage(REF_PREFIX + token, url_for("pnginfo.kept_image", token=token),
                      "PNG Info")


def kept_bytes(ref: str) -> tuple[bytes, str] | None:
    """(bytes, file name) of a kept image a form posted as its input image; None for another
    kind of reference. ValueError says why it cannot be used."""
    token = token_of(ref)
    if token is None:
        return None
    path = kept().find(token)
    if path is None:
        raise ValueError("refers to an image PNG Info no longer keeps: choose the file again")
    return path.read_bytes(), path.name

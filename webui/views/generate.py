"""Generate: the posted form checked and queued as a job; parameters read from a dropped
image."""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from werkzeug.datastructures import FileStorage, MultiDict

from .. import forms, images, pipeline, recorder, reuse
from ..backend import BackendError, resolve_auth
from ..choices import choices
from ..format import Choice, FieldError, Mode, Parameter
from ..jobs import Job
from ..pipeline import STYLES_KEY
from ..service import Service
from . import pnginfo
from .common import find_mode, find_service, state
from .services import layout
from .styles import chosen_styles

bp = Blueprint("generate", __name__)

# Backend failures map to gateway statuses; htmx is configured (base.html) to swap them in.
STATUS_BY_KIND = {"timeout": 504, "setup": 503, "definition": 500}


@bp.post("/services/<service_id>/<mode_name>/generate")
def generate(service_id: str, mode_name: str) -> Any:
    st = state()
    service = find_service(service_id)
    mode = find_mode(service, mode_name)
    htmx = bool(request.headers.get("HX-Request"))
    context: dict[str, Any] = {"service": service, "mode": mode, "errors": {}}
    try:
        values, errors = checked(service, mode, request.form, request.files)
        if errors:
            if not htmx:
                return _no_script_problem("Nothing was sent: " + "; ".join(errors.values()), 422)
            # Listed at the top of the form in the order of its fields; the result stays.
            order = [p.key for g in layout(mode) for p in (*g.fields, *g.more)]
            context["errors"] = {k: errors[k] for k in [*order, *errors] if k in errors}
            html = render_template("_form_errors.html", slots=True, **context)
            return html, 422, {"HX-Retarget": f"#errors-{mode.name}", "HX-Reswap": "outerHTML"}
        job = queue(service, mode, values)
    except BackendError as exc:
        status = STATUS_BY_KIND.get(exc.kind, 502)
        if not htmx:
            return _no_script_problem(f"Generation failed. {exc.message}", status)
        return render_template("_result.html", failure=exc, **context), status
    if not htmx:
        # Without JavaScript the form is a plain POST: the job's own page follows it.
        return redirect(url_for("jobs.job_page", job_id=job.id), 303)
    html = render_template("_result.html", job=job.snapshot(), position=st.jobs.position(job),
                           announce=True, **context)
    # The page's address now names the job: a reload shows it again.
    page = url_for("services.service_page", service_id=service.id, mode_name=mode.name,
                   job=job.id)
    return html, 202, {"HX-Push-Url": page}


def _input_image(ref: str) -> tuple[bytes, str] | None:
    """(bytes, file name) of an input image a form names: a draft (``d-…``, stored when it
    was chosen), an image read by PNG Info (``png-…``), one kept with its job (``k-…``: an
    inpainting job's mask and image) or an image of the history (its id);
    None for no name. ValueError says why
    it cannot be used."""
    st = state()
    if ref.startswith("d-"):
        path = st.drafts.path(ref)
        if path is None:
            raise ValueError("is no longer kept on the server: choose the image again")
        return path.read_bytes(), path.name
    kept = pnginfo.kept_bytes(ref) or recorder.kept_input(st.settings.inputs_dir, ref)
    if kept is not None or st.history is None:
        return kept
    return recorder.stored_image(st.history, st.store, ref)


@bp.post("/input-images")
def save_input_image() -> tuple[Response, int]:
    """An image chosen in a form, kept as a draft until Generate: its name and where to see
    it, or a sentence saying what is wrong with it."""
    upload = request.files.get("image")
    data = upload.read(images.MAX_IMAGE_BYTES + 1) if upload else b""
    filename = upload.filename if upload and upload.filename else "the image"
    try:
        forms.as_input_image(data, filename)  # the one check, and its messages
        name, info = state().drafts.save(data)
    except FieldError as exc:
        message = str(exc)
        return jsonify({"error": f"{filename!r} {message}" if message.startswith("is ")
                        else message}), 422
    except images.StorageError as exc:
        return jsonify({"error": str(exc)}), 507
    return jsonify({"ref": name, "url": url_for("generate.input_image", ref=name),
                    "width": info.width, "height": info.height}), 201


@bp.get("/input-images/<ref>")
def input_image(ref: str) -> Response:
    """The input image a form names (a draft or a history image), for its preview."""
    try:
        found = _input_image(ref)
    except ValueError as exc:
        abort(404, f"This image {exc}.")
    if found is None:
        abort(404, "No such image.")
    data, name = found
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(data, mimetype=mime, headers={"Cache-Control": "private, max-age=3600",
                                                  "X-Content-Type-Options": "nosniff"})


def checked(service: Service, mode: Mode, form: MultiDict[str, str],
            files: Mapping[str, FileStorage]) -> tuple[dict[str, Any], dict[str, str]]:
    """A submitted form's values and its errors by key, checked as Generate checks them.
    BackendError when the service cannot be asked (a missing secret, its choices)."""
    st = state()

    def allowed_for(p: Parameter) -> list[Choice]:
        # Only values the backend listed: A1111 silently swaps an unknown sampler for another.
        return choices(service, p, st.options)

    def stored(ref: str) -> images.UploadedImage | None:
        # An image named by the form: a draft, one of the history or one read by PNG Info.
        try:
            found = _input_image(ref)
        except ValueError as exc:
            raise FieldError(str(exc)) from None
        return forms.as_input_image(*found) if found is not None else None

    resolve_auth(service)  # a missing secret is a setup problem, not a queued failure
    # A backend that cannot list its choices cannot generate either: one clear message
    # beats the same connection error under every select.
    values, errors = forms.validate(mode, form, files, allowed_for, stored)
    # Prompt styles: webui's and the service's, kept with the job as they are now.
    styles, problem = chosen_styles(service, form.getlist(STYLES_KEY))
    if problem:
        errors[STYLES_KEY] = problem
    elif styles:
        values[STYLES_KEY] = styles
    return values, errors


def queue(service: Service, mode: Mode, values: dict[str, Any],
          sent: dict[str, Any] | None = None) -> Job:
    """Queue checked values as a job, ``sent`` as :func:`pipeline.prepare_values` makes them
    (made here if not given: BackendError if the definition cannot prepare them)."""
    if sent is None:
        sent = pipeline.prepare_values(mode, values)
    return state().jobs.submit(service, mode, values, sent)


def _no_script_problem(message: str, status: int) -> tuple[str, int]:
    return render_template("problem.html", message=message, status=status), status


@bp.post("/services/<service_id>/<mode_name>/read-image")
def read_image(service_id: str, mode_name: str) -> tuple[Response, int]:
    """The generation parameters written in a dropped image, as values for this form."""
    service = state().folders.catalog().get(service_id)
    mode = service.definition.modes.get(mode_name) if service else None
    if mode is None:
        abort(404, "No such form.")
    upload = request.files.get("image")
    data = upload.read(images.MAX_IMAGE_BYTES) if upload else b""
    try:
        readings = reuse.read(data, state().folders.catalog().services) if data else []
    except reuse.UnreadableMetadata as exc:  # too long to read: say so
        return jsonify({"error": str(exc)}), 200
    if not readings:
        return jsonify({"error": "This image carries no generation parameters."}), 200
    reading = reuse.for_service(readings, service)
    assert reading is not None
    values = reading.values_for(service, mode)
    return jsonify({"values": values,
                    "unused": sorted(set(reading.values) - set(values))}), 200

"""Generate: the posted form checked and queued as a job; parameters read from a dropped
image."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for

from .. import forms, images, pipeline, recorder
from ..backend import BackendError, resolve_auth
from ..choices import choices
from ..format import Choice, FieldError, Parameter
from ..infotext import InfotextError, image_infotext, infotext_to_fields, parse_infotext
from ..pipeline import STYLES_KEY
from .common import find_mode, find_service, state
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

    def allowed_for(p: Parameter) -> list[Choice]:
        # Only values the backend listed: A1111 silently swaps an unknown sampler for another.
        return choices(service, p, st.options)

    def stored(ref: str) -> images.UploadedImage | None:
        # An image of the history sent on as the input image.
        if st.history is None:
            return None
        try:
            found = recorder.stored_image(st.history, st.store, ref)
        except ValueError as exc:
            raise FieldError(str(exc)) from None
        return forms.as_input_image(*found) if found is not None else None

    context: dict[str, Any] = {"service": service, "mode": mode, "errors": {}}
    try:
        resolve_auth(service)  # a missing secret is a setup problem, not a queued failure
        # A backend that cannot list its choices cannot generate either: one clear message
        # beats the same connection error under every select.
        values, errors = forms.validate(mode, request.form, request.files, allowed_for, stored)
        # Prompt styles: webui's and the service's, kept with the job as they are now.
        styles, problem = chosen_styles(service, request.form.getlist(STYLES_KEY))
        if problem:
            errors[STYLES_KEY] = problem
        elif styles:
            values[STYLES_KEY] = styles
        if errors:
            if not htmx:
                return _no_script_problem("Nothing was sent: " + "; ".join(errors.values()), 422)
            context["errors"] = errors
            return render_template("_result.html", **context), 422
        sent = pipeline.prepare_values(mode, values)
    except BackendError as exc:
        status = STATUS_BY_KIND.get(exc.kind, 502)
        if not htmx:
            return _no_script_problem(f"Generation failed. {exc.message}", status)
        return render_template("_result.html", failure=exc, **context), status
    job = st.jobs.submit(service, mode, values, sent)
    if not htmx:
        # Without JavaScript the form is a plain POST: the job's own page follows it.
        return redirect(url_for("jobs.job_page", job_id=job.id), 303)
    html = render_template("_result.html", job=job, position=st.jobs.position(job), **context)
    # The page's address now names the job: a reload shows it again.
    page = url_for("services.service_page", service_id=service.id, mode_name=mode.name,
                   job=job.id)
    return html, 202, {"HX-Push-Url": page}


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
        text = image_infotext(data) if data else None
    except InfotextError as exc:  # too long to read: say so
        return jsonify({"error": str(exc)}), 200
    if not text:
        return jsonify({"error": "This image carries no generation parameters."}), 200
    prompt, negative, labelled = parse_infotext(text)
    fields = {"prompt": prompt, "negative_prompt": negative, **infotext_to_fields(labelled)}
    values: dict[str, Any] = {}
    # The texts go to the fields with those roles, whatever their keys.
    for role, text in (("prompt", prompt), ("negative", negative)):
        p = next((q for q in mode.parameters if q.kind == role), None)
        if p is not None and text:
            values[p.key] = text
    for p in mode.parameters:
        if p.key in values:
            continue
        name = (p.targets[0] if p.targets else p.key).rsplit(".", 1)[-1].rsplit(":", 1)[-1]
        for candidate in (p.key, name):
            if candidate in fields and fields[candidate] not in (None, "") and p.type != "image":
                values[p.key] = fields[candidate]
                break
    return jsonify({"values": values, "unused": sorted(set(fields) - set(values))}), 200

"""The posted form: from what the browser sent to typed, validated values, checked against the
definition on the server (the browser's own checks are a convenience, not a guarantee).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from werkzeug.datastructures import FileStorage

from . import images
from .format import Choice, FieldError, Mode, Parameter, coerce, condition_holds
from .images import UploadedImage

REF_SUFFIX = "__from"  # a form field naming a stored image to use instead of an upload


def read_upload(storage: Any) -> UploadedImage | None:
    """Read and check an uploaded image; None if no file was chosen."""
    if storage is None or not storage.filename:
        return None
    return as_input_image(storage.read(images.MAX_IMAGE_BYTES + 1), storage.filename)


def as_input_image(data: bytes, filename: str) -> UploadedImage:
    """Bytes meant as an input image, or a FieldError saying what is wrong with them."""
    try:
        return images.upload(data, filename)
    except images.ImageDataError as exc:
        if str(exc).startswith("is not an image"):
            raise FieldError(f"{filename!r} is not an image this server can read "
                             "(PNG, JPEG, WEBP, …)") from None
        raise FieldError(str(exc).replace("is empty", "is an empty file")) from None


def validate(
    mode: Mode,
    form: Mapping[str, str],
    files: Mapping[str, FileStorage],
    allowed_for: Callable[[Parameter], Sequence[Choice]],
    stored: Callable[[str], UploadedImage | None] = lambda ref: None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate a submitted form; return (values, errors by key). Empty optional fields are
    None (not sent, so the backend's default applies), and so are parameters whose ``when``
    does not hold: they are neither checked nor sent (the page hides them). ``stored`` turns
    the reference of an image in the history into an upload (an image sent on from the
    gallery)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    weights = mode.weights
    for p in mode.decided or mode.parameters:
        values[p.key] = None
        if p.key in weights:
            continue  # posted with each chosen value of its select, and read there
        if p.when and not condition_holds(p.when, values):
            continue
        try:
            if p.weight is not None:
                values[p.key] = _weighted(p, mode.parameter(p.weight), form, allowed_for, values)
                continue
            values[p.key] = _value(p, form, files, allowed_for, stored, values)
        except FieldError as exc:
            errors[p.key] = f"{p.title} {exc}"
    for p in mode.parameters:
        # Given with the others of its group, or not at all (a {w, h} object).
        group = [p.key, *p.together]
        given = [k for k in group if values.get(k) not in (None, "", [])]
        if given and len(given) < len(group):
            for key in group:
                q = mode.parameter(key)
                if key not in given and q is not None and key not in errors:
                    errors[key] = (f"{q.title} is needed together with "
                                   f"{', '.join(mode.parameter(k).title for k in given)}")
    return {p.key: values[p.key] for p in mode.parameters}, errors


def _value(
    p: Parameter,
    form: Mapping[str, str],
    files: Mapping[str, FileStorage],
    allowed_for: Callable[[Parameter], Sequence[Choice]],
    stored: Callable[[str], UploadedImage | None],
    values: dict[str, Any],
) -> Any:
    if p.type == "image":
        upload = read_upload(files.get(p.key))
        if upload is None and form.get(p.key + REF_SUFFIX):
            upload = stored(form[p.key + REF_SUFFIX])
        if upload is None and p.required:
            raise FieldError("is required: paint the area to change" if p.kind == "mask"
                             else "is required: choose an image file")
        return upload
    if p.type == "boolean":
        return coerce(p, form.get(p.key, "false"), None)
    if p.multiple:
        getlist = getattr(form, "getlist", None)
        raws = [r for r in (getlist(p.key) if getlist else [form.get(p.key)]) if r and r.strip()]
        if not raws:
            if p.required:
                raise FieldError("is required: choose at least one")
            return None
        allowed = allowed_for(p) if p.sources else None
        return [coerce(p, raw, allowed, values) for raw in raws]
    raw = form.get(p.key)
    if raw is None or raw.strip() == "":
        if p.required:
            raise FieldError("is required")
        return None
    allowed = allowed_for(p) if p.type == "select" and p.sources else None
    return coerce(p, raw, allowed, values)


def _weighted(
    p: Parameter,
    weight: Parameter | None,
    form: Mapping[str, str],
    allowed_for: Callable[[Parameter], Sequence[Choice]],
    values: dict[str, Any],
) -> list[dict[str, Any]] | None:
    """The chosen values of a select with weights, each with the weight posted beside it
    (under the weight parameter's key, in the same order): a list of ``{value, weight}``."""
    assert weight is not None  # the load-time check makes sure
    getlist = getattr(form, "getlist", None)
    raws = getlist(p.key) if getlist else [form.get(p.key)]
    posted = getlist(weight.key) if getlist else [form.get(weight.key)]
    pairs = [(raw, posted[i] if i < len(posted) else None)
             for i, raw in enumerate(raws) if raw and raw.strip()]
    if not pairs:
        if p.required:
            raise FieldError("is required: choose at least one")
        return None
    if not p.multiple and len(pairs) > 1:
        raise FieldError("takes one value")
    allowed = allowed_for(p) if p.sources else None
    out = []
    for raw, text in pairs:
        value = coerce(p, raw, allowed, values)
        if text is None or not text.strip():
            number = weight.defaultValue
        else:
            try:
                number = coerce(weight, text, None)
            except FieldError as exc:
                raise FieldError(f"{str(value)!r}: {weight.title} {exc}") from None
        out.append({"value": value, "weight": number})
    return out

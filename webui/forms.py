"""Form values: from what the browser posted to typed, validated values, checked against the
definition on the server (the browser's own checks are a convenience, not a guarantee).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError
from werkzeug.datastructures import FileStorage

from .definitions import Mode, Parameter, condition_holds
from .options import Choice, find_choice

MAX_UPLOAD_BYTES = 30 * 1024 * 1024
MAX_UPLOAD_PIXELS = 64_000_000

TRUE = {"on", "true", "1", "yes"}
FALSE = {"off", "false", "0", "no", ""}


class FieldError(ValueError):
    """A value that does not fit its parameter; the message is shown beside the field."""


@dataclass(frozen=True)
class UploadedImage:
    data: bytes
    mime: str
    filename: str
    width: int
    height: int


def coerce(
    p: Parameter, raw: Any, allowed: Sequence[Choice] | None,
    values: dict[str, Any] | None = None,
) -> Any:
    """Turn a raw value (a form string, or a definition default) into the parameter's type.

    ``allowed`` lists the choices (``.value``, ``.aliases``) the backend offered for an
    endpoint-fed select (None when not checked here, e.g. for defaults at load time);
    ``values`` are the form's other values, for options offered only ``when`` they hold (None:
    every option counts).
    """
    if p.type in ("text", "textarea"):
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise FieldError("must be text")
        return str(raw)
    if p.type == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in TRUE | FALSE:
            return raw.strip().lower() in TRUE
        raise FieldError("must be on or off")
    if p.type in ("integer", "seed"):
        return _check_number(p, _to_int(raw))
    if p.type == "number":
        return _check_number(p, _to_float(raw))
    if p.type == "select":
        return _choose(p, raw, allowed, values)
    raise FieldError(f"cannot take a value of type {p.type}")


def _to_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise FieldError("must be a whole number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip()
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise FieldError("must be a whole number") from None
            if value.is_integer():
                return int(value)
    raise FieldError("must be a whole number")


def _to_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise FieldError("must be a number")
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        raise FieldError("must be a number") from None
    if not math.isfinite(value):
        raise FieldError("must be a finite number")
    return value


def _check_number(p: Parameter, value: int | float) -> int | float:
    low, high = p.bounds
    if low is not None and value < low:
        raise FieldError(f"must be at least {_fmt(low)}")
    if high is not None and value > high:
        raise FieldError(f"must be at most {_fmt(high)}")
    if p.step:
        base = low if low is not None else 0
        ratio = (value - base) / p.step
        if abs(ratio - round(ratio)) > 1e-6:
            raise FieldError(f"must be a multiple of {_fmt(p.step)}"
                             + (f" from {_fmt(base)}" if base else ""))
    return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _choose(
    p: Parameter, raw: Any, allowed: Sequence[Choice] | None, values: dict[str, Any] | None
) -> Any:
    static = [o for o in p.options or [] if values is None or condition_holds(o.when, values)]
    hit = next((o.value for o in static if str(o.value) == str(raw)), None)
    if hit is not None:
        return hit
    if p.sources:
        if allowed is None:
            return raw
        # A value saved earlier under another name of the same choice (A1111 adds a hash to a
        # checkpoint's title once it was loaded): the choice's current value is sent.
        choice = find_choice(p, list(allowed), raw)
        if choice is not None:
            return choice.value
    if any(str(o.value) == str(raw) for o in p.options or []):
        raise FieldError(f"{str(raw)!r} is not available with the other values chosen")
    if p.sources:
        raise FieldError(f"{str(raw)!r} is not one of the choices offered by the backend now "
                         "(↻ reloads the list)")
    raise FieldError(f"{str(raw)!r} is not one of the choices offered by the definition")


def read_upload(storage: Any) -> UploadedImage | None:
    """Read and check an uploaded image; None if no file was chosen."""
    if storage is None or not storage.filename:
        return None
    return check_image(storage.read(MAX_UPLOAD_BYTES + 1), storage.filename)


def check_image(data: bytes, filename: str) -> UploadedImage:
    """Check bytes meant as an input image (size, pixels, a format Pillow reads)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise FieldError(f"is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    if not data:
        raise FieldError("is an empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_UPLOAD_PIXELS:
                raise FieldError(f"is too large ({img.width}×{img.height} pixels)")
            img.verify()
            fmt = (img.format or "").upper()
            size = img.size
    except FieldError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise FieldError(f"{filename!r} is not an image this server can read "
                         "(PNG, JPEG, WEBP, …)") from None
    mime = Image.MIME.get(fmt, "application/octet-stream")
    return UploadedImage(data, mime, filename, size[0], size[1])


REF_SUFFIX = "__from"  # a form field naming a stored image to use instead of an upload


def validate(
    mode: Mode,
    form: Mapping[str, str],
    files: Mapping[str, FileStorage],
    allowed_for: Callable[[Parameter], Sequence[Any]],
    stored: Callable[[str], UploadedImage | None] = lambda ref: None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate a submitted form; return (values, errors by key). Empty optional fields are
    None (not sent, so the backend's default applies), and so are parameters whose ``when``
    does not hold: they are neither checked nor sent (the page hides them). ``stored`` turns
    the reference of an image in the history into an upload (an image sent on from the
    gallery)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for p in mode.decided or mode.parameters:
        values[p.key] = None
        if p.when and not condition_holds(p.when, values):
            continue
        try:
            values[p.key] = _value(p, form, files, allowed_for, stored, values)
        except FieldError as exc:
            errors[p.key] = f"{p.title} {exc}"
    return {p.key: values[p.key] for p in mode.parameters}, errors


def _value(
    p: Parameter,
    form: Mapping[str, str],
    files: Mapping[str, FileStorage],
    allowed_for: Callable[[Parameter], Sequence[Any]],
    stored: Callable[[str], UploadedImage | None],
    values: dict[str, Any],
) -> Any:
    if p.type == "image":
        upload = read_upload(files.get(p.key))
        if upload is None and form.get(p.key + REF_SUFFIX):
            upload = stored(form[p.key + REF_SUFFIX])
        if upload is None and p.required:
            raise FieldError("is required: choose an image file")
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

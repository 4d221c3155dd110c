"""Request validation of the demo backend: the txt2img/img2img field tables, their FastAPI +
pydantic v1 style validation, the decoding of init images, and A1111's error shapes.

Behaviour that follows the real server (sources: see the package docstring):

- Request bodies are checked like FastAPI + pydantic v1 (coercion included: ``"20"`` is a valid
  ``steps``, ``12.7`` becomes ``12``); invalid fields give 422 ``{"detail": [{loc, msg, type}]}``.
  Unknown top-level keys are ignored (so a top-level ``sd_model_checkpoint`` does nothing).
- Errors outside validation use A1111's ``{"error", "detail", "body", "errors"}`` shape
  (modules/api/api.py handle_exception: ``errors`` is ``str(e)``). For an HTTPException that is
  empty: A1111 1.10.1 runs on fastapi 0.94 / starlette 0.26, whose HTTPException has no
  ``__str__`` (the real 401 bodies show ``"errors": ""``), so only ``detail`` carries the
  message; for other exceptions only ``errors`` does. Cases: img2img without ``init_images``
  -> 404 "Init image not found"; an undecodable init image or mask -> 500 "Invalid encoded
  image"; an ``http(s)://`` init image -> 500 "Requests not allowed" (the demo never fetches
  URLs); a non-string init image -> 500 AttributeError; more init images than batch_size -> 500
  RuntimeError; a ``script_name`` -> 422 "Script '...' not found" (the demo has no scripts);
  POST options with an unknown checkpoint -> 500 RuntimeError, with an unknown key -> 500
  KeyError.
"""

from __future__ import annotations

import base64
import copy
import io
from typing import Any

from PIL import Image

# Field tables of the two request models, in the order of the real OpenAPI schema (components
# StableDiffusionProcessingTxt2Img / StableDiffusionProcessingImg2Img): (name, kind, default).
# The order matters: the echoed ``parameters`` and the 422 error list follow it.
_FieldSpec = tuple[str, str, Any]


def _common_fields(denoising_default: float | None) -> list[_FieldSpec]:
    return [
        ("prompt", "str", ""),
        ("negative_prompt", "str", ""),
        ("styles", "list[str]", None),
        ("seed", "int", -1),
        ("subseed", "int", -1),
        ("subseed_strength", "float", 0),
        ("seed_resize_from_h", "int", -1),
        ("seed_resize_from_w", "int", -1),
        ("sampler_name", "str", None),
        ("scheduler", "str", None),
        ("batch_size", "int", 1),
        ("n_iter", "int", 1),
        ("steps", "int", 50),
        ("cfg_scale", "float", 7.0),
        ("width", "int", 512),
        ("height", "int", 512),
        ("restore_faces", "bool", None),
        ("tiling", "bool", None),
        ("do_not_save_samples", "bool", False),
        ("do_not_save_grid", "bool", False),
        ("eta", "float", None),
        ("denoising_strength", "float", denoising_default),
        ("s_min_uncond", "float", None),
        ("s_churn", "float", None),
        ("s_tmax", "float", None),
        ("s_tmin", "float", None),
        ("s_noise", "float", None),
        ("override_settings", "dict", None),
        ("override_settings_restore_afterwards", "bool", True),
        ("refiner_checkpoint", "str", None),
        ("refiner_switch_at", "float", None),
        ("disable_extra_networks", "bool", False),
        ("firstpass_image", "str", None),
        ("comments", "dict", None),
    ]


_TAIL_FIELDS: list[_FieldSpec] = [
    ("script_name", "str", None),
    ("script_args", "list", []),
    ("send_images", "bool", True),
    ("save_images", "bool", False),
    ("alwayson_scripts", "dict", {}),
    ("infotext", "str", None),
]

TXT2IMG_FIELDS: list[_FieldSpec] = [
    *_common_fields(None),
    ("enable_hr", "bool", False),
    ("firstphase_width", "int", 0),
    ("firstphase_height", "int", 0),
    ("hr_scale", "float", 2.0),
    ("hr_upscaler", "str", None),
    ("hr_second_pass_steps", "int", 0),
    ("hr_resize_x", "int", 0),
    ("hr_resize_y", "int", 0),
    ("hr_checkpoint_name", "str", None),
    ("hr_sampler_name", "str", None),
    ("hr_scheduler", "str", None),
    ("hr_prompt", "str", ""),
    ("hr_negative_prompt", "str", ""),
    ("force_task_id", "str", None),
    ("sampler_index", "str", "Euler"),
    *_TAIL_FIELDS,
]

IMG2IMG_FIELDS: list[_FieldSpec] = [
    *_common_fields(0.75),
    ("init_images", "list", None),
    ("resize_mode", "int", 0),
    ("image_cfg_scale", "float", None),
    ("mask", "str", None),
    ("mask_blur_x", "int", 4),
    ("mask_blur_y", "int", 4),
    ("mask_blur", "int", None),
    ("mask_round", "bool", True),
    ("inpainting_fill", "int", 0),
    ("inpaint_full_res", "bool", True),
    ("inpaint_full_res_padding", "int", 0),
    ("inpainting_mask_invert", "int", 0),
    ("initial_noise_multiplier", "float", None),
    ("latent_mask", "str", None),
    ("force_task_id", "str", None),
    ("sampler_index", "str", "Euler"),
    ("include_init_images", "bool", False),
    *_TAIL_FIELDS,
]


# ExtrasSingleImageRequest (modules/api/models.py ExtrasBaseRequest + image; components
# ExtrasSingleImageRequest of the 1.10.1 schema). Unlike the processing models its fields are
# not Optional (null -> 422) and some have limits, checked after coercion as pydantic v1 does.
EXTRAS_FIELDS: list[_FieldSpec] = [
    ("resize_mode", "int", 0),
    ("show_extras_results", "bool", True),
    ("gfpgan_visibility", "float", 0),
    ("codeformer_visibility", "float", 0),
    ("codeformer_weight", "float", 0),
    ("upscaling_resize", "float", 2),
    ("upscaling_resize_w", "int", 512),
    ("upscaling_resize_h", "int", 512),
    ("upscaling_crop", "bool", True),
    ("upscaler_1", "str", "None"),
    ("upscaler_2", "str", "None"),
    ("extras_upscaler_2_visibility", "float", 0),
    ("upscale_first", "bool", False),
    ("image", "str", ""),
]

# name -> (pydantic constraint, limit); "in": a Literal's permitted values.
EXTRAS_LIMITS: dict[str, tuple[str, Any]] = {
    "resize_mode": ("in", (0, 1)),
    "gfpgan_visibility": ("01", None),
    "codeformer_visibility": ("01", None),
    "codeformer_weight": ("01", None),
    "upscaling_resize": ("gt", 0),
    "upscaling_resize_w": ("ge", 1),
    "upscaling_resize_h": ("ge", 1),
    "extras_upscaler_2_visibility": ("01", None),
}


def _check_limit(value: Any, rule: tuple[str, Any]) -> None:
    """pydantic v1's ConstrainedNumber / Literal checks, with their messages."""
    kind, limit = rule
    if kind == "in":
        # A Literal field: the raw value must be one of them (1.0 and True count as 1).
        if value not in limit:
            raise _Invalid(f"unexpected value; permitted: {', '.join(map(str, limit))}",
                           "value_error.const", {"given": value, "permitted": list(limit)})
    elif kind == "gt" and not value > limit:
        raise _Invalid(f"ensure this value is greater than {limit}", "value_error.number.not_gt",
                       {"limit_value": limit})
    elif kind == "ge" and not value >= limit:
        raise _Invalid(f"ensure this value is greater than or equal to {limit}",
                       "value_error.number.not_ge", {"limit_value": limit})
    elif kind == "01":
        if not value >= 0:
            raise _Invalid("ensure this value is greater than or equal to 0",
                           "value_error.number.not_ge", {"limit_value": 0})
        if not value <= 1:
            raise _Invalid("ensure this value is less than or equal to 1",
                           "value_error.number.not_le", {"limit_value": 1})


# --------------------------------------------------------------------------------------------
# Errors


class _ApiError(Exception):
    """An error answered with a given status and JSON payload."""

    def __init__(
        self, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(str(payload))
        self.status = status
        self.payload = payload
        self.headers = headers or {}


def _a1111_error(status: int, error: str, detail: str = "", errors: str = "") -> _ApiError:
    """Build an error in A1111's exception-handler shape."""
    return _ApiError(status, {"error": error, "detail": detail, "body": "", "errors": errors})


def _http_exception(status: int, detail: str, headers: dict[str, str] | None = None) -> _ApiError:
    # A1111 reports FastAPI HTTPExceptions with an empty "errors" (str() of it is empty).
    err = _a1111_error(status, "HTTPException", detail=detail)
    err.headers = headers or {}
    return err


def _validation_error(errors: list[dict[str, Any]]) -> _ApiError:
    return _ApiError(422, {"detail": errors})


# --------------------------------------------------------------------------------------------
# pydantic v1 style coercion


class _Invalid(Exception):
    def __init__(self, msg: str, type_: str, ctx: dict[str, Any] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.type = type_
        self.ctx = ctx


_BOOL_TRUE = {1, "1", "on", "t", "true", "y", "yes"}
_BOOL_FALSE = {0, "0", "off", "f", "false", "n", "no"}


def _v_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    # pydantic v1 turns numbers (bool included, it is an int) into strings.
    if isinstance(v, (int, float)):
        return str(v)
    raise _Invalid("str type expected", "type_error.str")


def _v_int(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str) and len(v) > 4300:
        raise _Invalid("value is not a valid integer", "type_error.integer")
    try:
        return int(v)
    except (TypeError, ValueError, OverflowError):
        raise _Invalid("value is not a valid integer", "type_error.integer") from None


def _v_float(v: Any) -> float:
    if isinstance(v, float):
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        raise _Invalid("value is not a valid float", "type_error.float") from None


def _v_bool(v: Any) -> bool:
    if v is True or v is False:
        return v
    if isinstance(v, str):
        v = v.lower()
    try:
        if v in _BOOL_TRUE:
            return True
        if v in _BOOL_FALSE:
            return False
    except TypeError:
        pass
    raise _Invalid("value could not be parsed to a boolean", "type_error.bool")


def _v_list(v: Any) -> list[Any]:
    if isinstance(v, (list, tuple, set, frozenset)):
        return list(v)
    raise _Invalid("value is not a valid list", "type_error.list")


def _v_dict(v: Any) -> dict[Any, Any]:
    if isinstance(v, dict):
        return v
    # pydantic v1 tries dict(v): a list of pairs (or even "") passes.
    try:
        return dict(v)
    except (TypeError, ValueError):
        raise _Invalid("value is not a valid dict", "type_error.dict") from None


_SCALAR_VALIDATORS = {
    "str": _v_str,
    "int": _v_int,
    "float": _v_float,
    "bool": _v_bool,
    "list": _v_list,
    "dict": _v_dict,
}


def _body_dict(body: Any) -> dict[str, Any]:
    """The request body as a dict, or the 422 FastAPI gives for a missing or non-object body."""
    if body is None:
        raise _validation_error(
            [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}]
        )
    try:
        return _v_dict(body)
    except _Invalid as exc:
        raise _validation_error([{"loc": ["body"], "msg": exc.msg, "type": exc.type}]) from None


def _validate_model(body: Any, fields: list[_FieldSpec],
                    limits: dict[str, tuple[str, Any]] | None = None) -> dict[str, Any]:
    """Validate a request body like a pydantic v1 model whose fields are all Optional; with
    ``limits``, like one whose fields are not (null is refused) and have those limits."""
    data = _body_dict(body)
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, kind, default in fields:
        if name not in data:
            values[name] = copy.deepcopy(default)
            continue
        raw = data[name]
        if raw is None and limits is None:
            values[name] = None
            continue
        try:
            if raw is None:
                raise _Invalid("none is not an allowed value", "type_error.none.not_allowed")
            if limits is not None and limits.get(name, ("",))[0] == "in":
                _check_limit(raw, limits[name])
                values[name] = next(v for v in limits[name][1] if v == raw)
                continue
            if kind == "list[str]":
                items = _v_list(raw)
                out: list[str] = []
                for index, item in enumerate(items):
                    try:
                        if item is None:
                            raise _Invalid(
                                "none is not an allowed value", "type_error.none.not_allowed"
                            )
                        out.append(_v_str(item))
                    except _Invalid as exc:
                        errors.append(
                            {"loc": ["body", name, index], "msg": exc.msg, "type": exc.type}
                        )
                values[name] = out
            else:
                values[name] = _SCALAR_VALIDATORS[kind](raw)
                if limits is not None and name in limits:
                    _check_limit(values[name], limits[name])
        except _Invalid as exc:
            errors.append({"loc": ["body", name], "msg": exc.msg, "type": exc.type,
                           **({"ctx": exc.ctx} if exc.ctx is not None else {})})
    if errors:
        raise _validation_error(errors)
    return values


def _decode_image(encoding: Any) -> Image.Image:
    """Decode an init image or mask like A1111's decode_base64_to_image."""
    if not isinstance(encoding, str):
        raise _a1111_error(
            500,
            "AttributeError",
            errors=f"'{type(encoding).__name__}' object has no attribute 'startswith'",
        )
    if encoding.startswith(("http://", "https://")):
        raise _http_exception(500, "Requests not allowed")
    if encoding.startswith("data:image/"):
        try:
            encoding = encoding.split(";")[1].split(",")[1]
        except IndexError:
            raise _a1111_error(500, "IndexError", errors="list index out of range") from None
    try:
        image = Image.open(io.BytesIO(base64.b64decode(encoding)))
        image.load()
    except Exception as exc:
        raise _http_exception(500, "Invalid encoded image") from exc
    return image


def _value(params: dict[str, Any], key: str, default: Any) -> Any:
    # Every field is Optional: an explicit null falls back to the model default here.
    value = params.get(key)
    return default if value is None else value

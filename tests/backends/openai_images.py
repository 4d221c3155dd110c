"""A fake OpenAI Images API (``/v1/models``, ``/v1/images/generations``, ``/v1/images/edits``),
and, with ``create_openai_app(flavor="localai")``, a fake LocalAI speaking its dialect of it.

Sources. Request and response shapes come from the official OpenAPI document,
github.com/openai/openai-openapi ``openapi.json`` at commit
f85dbe223d40e1a31cba812ab2d755c7e98a92a3 (2026-08-21), trimmed to the image and model operations
in ``tests/fixtures/openai/images-openapi.json`` (see the README there). Every generations and
edits request body is validated against ``CreateImageRequest``, ``CreateImageEditRequest``
(multipart) or ``EditImageBodyJsonParam`` (JSON edits) from that file, then against the
per-model rules the same schemas' descriptions state:

* generations take ``dall-e-2``, ``dall-e-3`` and the GPT image models ``gpt-image-1``,
  ``gpt-image-1-mini``, ``gpt-image-1.5``, ``gpt-image-2``, ``gpt-image-2-2026-04-21``
  (CreateImageRequest.model); the model defaults to ``dall-e-2`` unless a GPT-image-only
  parameter is present;
* edits take ``dall-e-2``, the same GPT image models and ``chatgpt-image-latest`` but not
  ``dall-e-3`` (CreateImageEditRequest.model, and the operation's summary); the model defaults
  to ``gpt-image-1.5`` and the size to ``1024x1024``; JSON edits (``images`` as
  ``image_url``/``file_id`` references) take GPT image models only;
* sizes: ``dall-e-2`` 256/512/1024 squares, ``dall-e-3`` 1024x1024/1792x1024/1024x1792, GPT
  image models 1024x1024/1536x1024/1024x1536/auto, and ``gpt-image-2*`` also any ``WxH`` whose
  sides divide by 16, with an aspect ratio within 1:3..3:1, up to 3840x2160;
* quality: ``standard`` only for ``dall-e-2``, ``hd``/``standard`` for ``dall-e-3``,
  ``high``/``medium``/``low`` for GPT image models, ``auto`` everywhere (the default);
* ``response_format`` only for DALL-E (GPT image models always answer ``b64_json``); ``style``
  only for ``dall-e-3``; ``background``, ``output_format``, ``output_compression``, ``stream``,
  ``partial_images`` (0-3) and, on generations, ``moderation`` only for GPT image models;
  ``input_fidelity`` (edits) for GPT image models except ``gpt-image-1-mini``;
* ``n`` is 1-10, ``dall-e-3`` takes only ``n=1``; prompts are at most 1000 (``dall-e-2``),
  4000 (``dall-e-3``) or 32000 (GPT image models) characters;
* ``stream: true`` answers ``text/event-stream`` with ``image_generation.partial_image`` /
  ``image_generation.completed`` (``image_edit.*`` for edits) events, as the operations'
  streaming examples show;
* ``/v1/models`` lists every model of the account, image or not, as the ``Model`` schema
  (``id``, ``object: "model"``, ``created``, ``owned_by``, ``shutdown_date``); the ids other
  than image models are taken from the spec's model enums (ModelIdsShared,
  CreateEmbeddingRequest, CreateSpeechRequest, CreateTranscriptionRequest,
  CreateModerationRequest, VideoModel). ``created`` values are illustrative.

Error bodies are ``{"error": {"message", "type", "param", "code"}}`` (the spec's ``Error``).
Their wording follows bodies the real API is on record returning (GitHub issues, SDK tests and
the image-generation guide), not memory:

* 401: ``Incorrect API key provided: <masked>. ...`` (code ``invalid_api_key``; the key shows its
  first 8 and last 4 characters, a short key is shown whole) and, without a key,
  ``You didn't provide an API key. ...`` (code ``null``, as the real API sends);
* GPT image models reject a parameter they do not take with ``Unknown parameter: 'x'.``
  (code ``unknown_parameter``); the fake uses that for every parameter a model does not take;
* a bad model is ``Invalid value: 'x'. Supported values are: ...`` (code ``invalid_value``);
* schema violations for DALL-E keep the legacy wording (``'512x512' is not one of [...] -
  'size'``, ``11 is greater than the maximum of 10 - 'n'``, ``You must provide n=1 for this
  model.``); for GPT image models the newer one (``Invalid type for 'n': expected an integer,
  but got a string instead.``; ``Invalid 'n': integer above maximum value. Expected a value <=
  10, but got 11 instead.`` with code ``integer_above_max_value``, seen in
  thisisartium/continuous-alignment-testing#25);
* blocked prompts: DALL-E answers ``content_policy_violation``, GPT image models
  ``moderation_blocked`` (both ``type: image_generation_user_error``);
* edits: an upload whose part is not an accepted image type is
  ``Invalid file 'image': unsupported mimetype ('text/plain'). ...``
  (code ``unsupported_file_mimetype``); ``dall-e-2`` wants a square PNG with an alpha channel
  unless a mask is given; a mask must be a PNG the size of the (first) image.

Approximated (no captured body found): the wording for an undecodable file that claims an image
type, for an empty prompt, for a too long prompt or array, for ``integer_below_min_value``, for
an invalid ``gpt-image-2`` custom size, the message of a non-multipart non-JSON edit, which GPT
model a GPT-only parameter selects when no model is given (``gpt-image-1``), what ``auto``
resolves to (square, or the first image's orientation when editing; quality ``high``), that a
``jpeg`` with ``background: transparent`` silently comes back opaque, and ``usage`` token counts
(taken from the guide's per-size table, scaled by area for custom sizes). JSON edits only
resolve ``data:`` URLs; any other image reference is refused as a limitation of the fake.

Triggers: a prompt containing ``CONTENT_POLICY`` is blocked; ``SLOW`` sleeps
``app.config["SLOW_SECONDS"]`` (default 5) first, or waits for ``app.config["SLOW_GATE"]`` (a
threading.Event) when a test set one. Every request, authorised or not, is appended
to ``app.config["REQUESTS"]``. ``url`` results point at ``GET /files/<id>.png`` on this app,
served without auth like the real pre-signed blob URLs. Images are drawn at the requested size.

The LocalAI flavour is described in ``create_localai_app``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import itertools
import json
import random
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from PIL import Image, ImageFilter, UnidentifiedImageError

from . import draw_image, record_request

CONTENT_POLICY = "CONTENT_POLICY"
SLOW = "SLOW"

SPEC_SOURCE = (
    "github.com/openai/openai-openapi openapi.json @ f85dbe223d40e1a31cba812ab2d755c7e98a92a3"
)
SPEC_FILE = Path(__file__).resolve().parent.parent / "fixtures" / "openai" / "images-openapi.json"

_KEYS_URL = "https://platform.openai.com/account/api-keys"
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with "
    "blank username) if you're accessing the API from your browser and are prompted for a "
    f"username and password. You can obtain an API key from {_KEYS_URL}."
)
_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON. If you have trouble figuring out how to fix this, please contact us through our "
    "help center at help.openai.com.)"
)
_DALLE_BLOCKED = (
    "Your request was rejected as a result of our safety system. Your prompt may contain text "
    "that is not allowed by our safety system."
)

# Output tokens per image, from the image-generation guide's table (quality x size).
_GPT_OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}


# --- the spec -------------------------------------------------------------------------------


def _nullable(node: Any) -> Any:
    """OpenAPI's ``nullable: true`` as JSON Schema: also accept ``null``."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _nullable(value) for key, value in node.items()}
    if out.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


@functools.lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    """The trimmed official OpenAPI document (paths and ``components.schemas``)."""
    return json.loads(SPEC_FILE.read_text(encoding="utf-8"))


@functools.cache
def schema_validator(name: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<name>``, nullable fields accepting null."""
    document = _nullable(load_spec())
    return Draft202012Validator({**document, "$ref": f"#/components/schemas/{name}"})


def _properties(name: str) -> dict[str, Any]:
    return load_spec()["components"]["schemas"][name]["properties"]


# --- the models -----------------------------------------------------------------------------

_STANDARD_GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
_COMMON_PARAMS = frozenset({"model", "prompt", "n", "size", "quality", "user"})
_GPT_OUTPUT_PARAMS = frozenset(
    {"background", "output_compression", "output_format", "partial_images", "stream"}
)
# Parameters "only supported for the GPT image models" that make generations pick one.
_GPT_ONLY = frozenset({"background", "moderation", "output_compression", "output_format",
                       "partial_images", "stream"})


@dataclass(frozen=True)
class ImageModel:
    """What one image model accepts, as the spec's schema descriptions state it."""

    gpt_image: bool
    generate: bool
    edit: bool
    sizes: tuple[str, ...]
    qualities: tuple[str, ...]
    max_n: int
    max_prompt: int
    custom_sizes: bool = False  # gpt-image-2: any WxH within the documented limits
    input_fidelity: bool = False
    style: bool = False

    def generate_params(self) -> frozenset[str]:
        if self.gpt_image:
            return _COMMON_PARAMS | _GPT_OUTPUT_PARAMS | {"moderation"}
        return _COMMON_PARAMS | {"response_format"} | ({"style"} if self.style else set())

    def edit_params(self, *, json_body: bool = False) -> frozenset[str]:
        if not self.gpt_image:
            return _COMMON_PARAMS | {"image", "mask", "response_format"}
        params = _COMMON_PARAMS | _GPT_OUTPUT_PARAMS | {"mask"}
        if self.input_fidelity:
            params |= {"input_fidelity"}
        # The JSON body takes ``images`` references (and ``moderation``) instead of uploads.
        return params | ({"images", "moderation"} if json_body else {"image", "image[]"})

    @property
    def edit_mimetypes(self) -> tuple[str, ...]:
        # dall-e-2: "a square png file less than 4MB"; GPT image models: png, webp or jpg.
        return ("image/png", "image/jpeg", "image/webp") if self.gpt_image else ("image/png",)


def _gpt(*, generate: bool = True, input_fidelity: bool = True, custom: bool = False):
    return ImageModel(
        gpt_image=True, generate=generate, edit=True, sizes=_STANDARD_GPT_SIZES,
        qualities=("low", "medium", "high", "auto"), max_n=10, max_prompt=32000,
        custom_sizes=custom, input_fidelity=input_fidelity,
    )


IMAGE_MODELS: dict[str, ImageModel] = {
    "gpt-image-2": _gpt(custom=True),
    "gpt-image-2-2026-04-21": _gpt(custom=True),
    "gpt-image-1.5": _gpt(),
    "gpt-image-1": _gpt(),
    "gpt-image-1-mini": _gpt(input_fidelity=False),
    # Listed by CreateImageEditRequest.model only, not by CreateImageRequest.model.
    "chatgpt-image-latest": _gpt(generate=False),
    "dall-e-3": ImageModel(
        gpt_image=False, generate=True, edit=False,
        sizes=("1024x1024", "1792x1024", "1024x1792"), qualities=("standard", "hd", "auto"),
        max_n=1, max_prompt=4000, style=True,
    ),
    "dall-e-2": ImageModel(
        gpt_image=False, generate=True, edit=True, sizes=("256x256", "512x512", "1024x1024"),
        qualities=("standard", "auto"), max_n=10, max_prompt=1000,
    ),
}

# Models an account lists besides the image models (ids from the spec's model enums).
OTHER_MODELS: tuple[str, ...] = (
    "gpt-5.5", "gpt-5-mini", "gpt-4.1", "gpt-4o", "gpt-4o-mini", "o4-mini",
    "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
    "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "whisper-1", "gpt-4o-transcribe",
    "omni-moderation-latest", "sora-2",
)
# Illustrative creation times (the spec gives none); anything else gets a fixed default.
_MODEL_CREATED = {
    "dall-e-2": 1698798177,
    "dall-e-3": 1698785189,
    "gpt-image-1": 1745517030,
    "gpt-4o-mini": 1721172741,
}


class OpenAIError(Exception):
    """An error the fake answers with the real ``{"error": {...}}`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        error = {"message": message, "type": type_, "param": param, "code": code}
        self.body: dict[str, Any] = {"error": {**error, **(extra or {})}}


def mask_key(key: str) -> str:
    """Mask a key the way the real 401 does: first 8 and last 4 shown, short keys shown whole."""
    if len(key) <= 12:
        return key
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def encode(image: Image.Image, fmt: str = "png", compression: int | None = None) -> bytes:
    """Encode IMAGE; compress_level=1 keeps PNGs of 1792x1024 at a few tens of ms."""
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, "PNG", compress_level=1)
    else:
        quality = 100 - compression if compression is not None else 85
        image.convert("RGB" if fmt == "jpeg" else image.mode).save(
            buffer, fmt.upper(), quality=max(quality, 1)
        )
    return buffer.getvalue()


# --- error wording --------------------------------------------------------------------------


def _one_of(value: Any, allowed: tuple[str, ...], param: str) -> None:
    """DALL-E's legacy enum error: ``'x' is not one of ['a', 'b'] - 'param'``."""
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise OpenAIError(400, f"{value!r} is not one of [{listed}] - '{param}'")


def _supported(values: tuple[Any, ...]) -> str:
    """``'a', 'b', and 'c'`` as the newer ``invalid_value`` messages list them."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _invalid_value(value: Any, allowed: tuple[Any, ...], param: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"Invalid value: '{value}'. Supported values are: {_supported(allowed)}.",
        param=param,
        code="invalid_value",
    )


_EXPECTED = {"integer": "an integer", "string": "a string", "boolean": "a boolean",
             "number": "a number", "array": "an array", "object": "an object"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _param(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _schema_error(error: ValidationError, *, legacy: bool) -> OpenAIError:
    """One schema violation in the wording the real API uses (see the module docstring)."""
    param = _param(error.absolute_path)
    value, rule, limit = error.instance, error.validator, error.validator_value
    if rule == "required":
        missing = re.match(r"'(.+?)' is a required property", error.message)
        name = missing.group(1) if missing else str(limit)
        full = f"{param}.{name}" if param else name
        return OpenAIError(400, f"Missing required parameter: '{full}'.", param=full,
                           code="missing_required_parameter")
    if legacy:
        # jsonschema's own wording, which the legacy messages are, minus the null that the
        # nullable rewrite added.
        message = error.message
        if rule == "type":
            types = [t for t in ([limit] if isinstance(limit, str) else limit) if t != "null"]
            message = f"{value!r} is not of type {', '.join(repr(t) for t in types)}"
        elif rule == "enum":
            message = f"{value!r} is not one of {[v for v in limit if v is not None]!r}"
        return OpenAIError(400, f"{message} - '{param}'")
    if rule == "type":
        wanted = [t for t in ([limit] if isinstance(limit, str) else limit) if t != "null"]
        expected = _EXPECTED.get(wanted[0], wanted[0]) if wanted else "null"
        return OpenAIError(
            400, f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} "
            "instead.", param=param, code="invalid_type")
    if rule == "enum":
        return _invalid_value(value, tuple(v for v in limit if v is not None), param)
    if rule in ("minimum", "maximum"):
        below = rule == "minimum"
        return OpenAIError(
            400, f"Invalid '{param}': integer {'below minimum' if below else 'above maximum'} "
            f"value. Expected a value {'>=' if below else '<='} {limit}, but got {value} "
            "instead.", param=param,
            code="integer_below_min_value" if below else "integer_above_max_value")
    if rule == "minLength" and value == "":
        return _empty(param)
    if rule in ("maxLength", "maxItems", "minItems"):
        what = "a string" if rule == "maxLength" else "an array"
        too = "short" if rule == "minItems" else "long"
        bound = "minimum" if rule == "minItems" else "maximum"
        return OpenAIError(
            400, f"Invalid '{param}': {what.split()[1]} too {too}. Expected {what} with {bound} "
            f"length {limit}, but got {what} with length {len(value)} instead.", param=param,
            code=f"{what.split()[1]}_{'below_min' if too == 'short' else 'above_max'}_length")
    # Anything else (not/anyOf...): the schema's own description rather than the instance.
    described = error.schema.get("description") if isinstance(error.schema, dict) else None
    detail = " ".join(described.split()) if described else f"{error.message}."
    return OpenAIError(400, f"Invalid '{param}': {detail}", param=param, code="invalid_value")


def _empty(param: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"Invalid '{param}': empty string. Expected a string with minimum length 1, but got an "
        "empty string instead.",
        param=param,
        code="empty_string",
    )


def _validate(schema: str, instance: dict[str, Any], *, legacy: bool) -> None:
    error = best_match(schema_validator(schema).iter_errors(instance))
    if error is not None:
        raise _schema_error(error, legacy=legacy)


def _legacy(model: Any, body: dict[str, Any], *, editing: bool) -> bool:
    """Whether errors use the DALL-E wording: the request names (or defaults to) DALL-E."""
    if isinstance(model, str) and model:
        return model.startswith("dall-e")
    return not editing and not (_GPT_ONLY & body.keys())


# --- the app --------------------------------------------------------------------------------


def create_openai_app(
    *,
    api_key: str | None = None,
    models: Iterable[str] = tuple(IMAGE_MODELS),
    other_models: Iterable[str] = OTHER_MODELS,
    flavor: str = "openai",
) -> Flask:
    """A Flask app faking api.openai.com's image endpoints; see the module docstring.

    MODELS are the image models the account may use, OTHER_MODELS what else ``/v1/models``
    lists. ``flavor="localai"`` returns ``create_localai_app(api_key=api_key)`` instead (no key:
    LocalAI's default of no authentication); the OpenAI flavour's key defaults to ``sk-test``.
    """
    if flavor == "localai":
        return create_localai_app(api_key=api_key)
    if flavor != "openai":
        raise ValueError(f"unknown flavor {flavor!r}")
    key = api_key or "sk-test"
    app = Flask(__name__)
    app.config.update(REQUESTS=[], FILES={}, SLOW_SECONDS=5)
    image_models = {m: IMAGE_MODELS[m] for m in models if m in IMAGE_MODELS}
    listed = list(dict.fromkeys([*image_models, *other_models]))
    counter = itertools.count(1)

    @app.before_request
    def authenticate() -> Response | None:
        record_request(app)
        if request.endpoint in (None, "serve_file", "static"):
            return None  # unknown URLs 404; result URLs are pre-signed, so need no key
        header = request.headers.get("Authorization", "").strip()
        scheme, _, token = header.partition(" ")
        if not header or (scheme.lower() == "bearer" and not token.strip()):
            raise OpenAIError(401, _NO_KEY)
        if scheme.lower() != "bearer" or token.strip() != key:
            shown = mask_key(token.strip() if scheme.lower() == "bearer" else header)
            raise OpenAIError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at {_KEYS_URL}.",
                code="invalid_api_key",
            )
        return None

    @app.after_request
    def openai_headers(response: Response) -> Response:
        response.headers["x-request-id"] = f"req_{uuid.uuid4().hex}"
        response.headers["openai-version"] = "2020-10-01"
        response.headers["openai-processing-ms"] = "1"
        return response

    @app.errorhandler(OpenAIError)
    def api_error(error: OpenAIError) -> tuple[Response, int]:
        return jsonify(error.body), error.status

    @app.errorhandler(404)
    @app.errorhandler(405)
    def invalid_url(_error: Exception) -> tuple[Response, int]:
        # The real API answers a wrong path or method with this 404 body.
        body = OpenAIError(404, f"Invalid URL ({request.method} {request.path})").body
        return jsonify(body), 404

    @app.get("/v1/models")
    def list_models() -> Response:
        return jsonify({"object": "list", "data": [_model_object(m) for m in listed]})

    @app.get("/v1/models/<model_id>")
    def get_model(model_id: str) -> Response:
        if model_id not in listed:
            raise OpenAIError(
                404,
                f"The model '{model_id}' does not exist",
                param="model",
                code="model_not_found",
            )
        return jsonify(_model_object(model_id))

    @app.get("/files/<file_id>.png")
    def serve_file(file_id: str) -> Response:
        data = app.config["FILES"].get(file_id)
        if data is None:
            return Response("BlobNotFound", status=404, mimetype="text/plain")
        return Response(data, mimetype="image/png")

    @app.post("/v1/images/generations")
    def generations() -> Response:
        body = request.get_json(silent=True) if request.is_json else None
        if not isinstance(body, dict):
            raise OpenAIError(400, _BAD_JSON)
        _validate("CreateImageRequest", body,
                  legacy=_legacy(body.get("model"), body, editing=False))
        prompt = _prompt(body.get("prompt"))
        name, spec = _model(body.get("model"), body, editing=False)
        _unknown(body.keys(), spec.generate_params())
        params = _common(body, name, spec, prompt, editing=False)
        _gate(prompt, spec)
        images = []
        for i in range(params["n"]):
            key = f"{name}|{prompt}|{params['size']}|{i}|{next(counter)}"
            images.append(draw_image(*params["dims"], key, transparent=params["transparent"]))
        return _answer(images, prompt, name, spec, params, images_in=0, event="image_generation")

    @app.post("/v1/images/edits")
    def edits() -> Response:
        if request.is_json:
            return _json_edit()
        if request.mimetype != "multipart/form-data":
            raise OpenAIError(
                400,
                f"Invalid Content-Type header ({request.mimetype or 'none'}), expected "
                "multipart/form-data. (HINT: If you're using curl, you can pass -H "
                "'Content-Type: multipart/form-data')",
            )
        form: dict[str, Any] = request.form.to_dict()
        uploads = request.files.getlist("image")
        arrays = request.files.getlist("image[]")
        instance = _typed_form(form, "CreateImageEditRequest")
        if uploads or arrays:
            many = len(uploads) + len(arrays) > 1 or bool(arrays)
            instance["image"] = ["<binary>"] * (len(uploads) + len(arrays)) if many else "<binary>"
        if "mask" in request.files:
            instance["mask"] = "<binary>"
        _validate("CreateImageEditRequest", instance,
                  legacy=_legacy(form.get("model"), form, editing=True))
        prompt = _prompt(form.get("prompt"))
        name, spec = _model(form.get("model"), form, editing=True)
        _unknown([*form.keys(), *request.files.keys()], spec.edit_params())
        field = "image[]" if arrays else "image"
        sources = [_open_upload(f, field, i, spec.edit_mimetypes)
                   for i, f in enumerate(uploads + arrays)]
        mask = None
        if "mask" in request.files:
            mask = _open_upload(request.files["mask"], "mask", 0, ("image/png",))
        return _edit_answer(name, spec, instance, prompt, sources, mask)

    # --- helpers that need the app's state -------------------------------------------------

    def _json_edit() -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise OpenAIError(400, _BAD_JSON)
        _validate("EditImageBodyJsonParam", body, legacy=False)
        prompt = _prompt(body.get("prompt"))
        name, spec = _model(body.get("model"), body, editing=True)
        if not spec.gpt_image:
            # "JSON edits support GPT image models only; DALL-E edits require multipart".
            allowed = tuple(m for m, s in image_models.items() if s.gpt_image and s.edit)
            raise _invalid_value(name, allowed, "model")
        _unknown(body.keys(), spec.edit_params(json_body=True))
        sources = [_open_reference(ref, f"images[{i}]") for i, ref in enumerate(body["images"])]
        mask = _open_reference(body["mask"], "mask") if "mask" in body else None
        return _edit_answer(name, spec, body, prompt, sources, mask)

    def _edit_answer(
        name: str,
        spec: ImageModel,
        body: dict[str, Any],
        prompt: str,
        sources: list[Image.Image],
        mask: Image.Image | None,
    ) -> Response:
        if not sources:
            raise OpenAIError(
                400,
                "Missing required parameter: 'image'.",
                param="image",
                code="missing_required_parameter",
            )
        if mask is not None and mask.size != sources[0].size:
            raise OpenAIError(
                400,
                "Invalid mask image format - mask size does not match image size",
                type_="image_generation_user_error",
                param="mask",
                code="invalid_mask_image_format",
            )
        if not spec.gpt_image:
            _check_dalle2_source(sources[0], has_mask=mask is not None)
        params = _common(body, name, spec, prompt, editing=True, source=sources[0],
                         json_body=request.is_json)
        _gate(prompt, spec)
        images = [_edit(sources[0], mask, params["dims"], f"{prompt}|{i}")
                  for i in range(params["n"])]
        return _answer(images, prompt, name, spec, params, images_in=len(sources),
                       event="image_edit")

    def _model_object(model_id: str) -> dict[str, Any]:
        created = _MODEL_CREATED.get(model_id, 1700000000)
        return {"id": model_id, "object": "model", "created": created, "owned_by": "openai",
                "shutdown_date": None}

    def _model(value: Any, body: dict[str, Any], *, editing: bool) -> tuple[str, ImageModel]:
        if value:
            name = value
        elif editing:
            name = "gpt-image-1.5"  # CreateImageEditRequest.model default
        else:
            # CreateImageRequest.model: dall-e-2 unless a GPT-image-only parameter is used.
            name = "gpt-image-1" if _GPT_ONLY & body.keys() else "dall-e-2"
        allowed = tuple(
            m for m, s in image_models.items() if (s.edit if editing else s.generate)
        )
        if name not in allowed:
            raise _invalid_value(name, allowed, "model")
        return name, image_models[name]

    def _answer(
        images: list[Image.Image],
        prompt: str,
        name: str,
        spec: ImageModel,
        params: dict[str, Any],
        *,
        images_in: int,
        event: str,
    ) -> Response:
        if params["stream"]:
            return Response(_events(images, prompt, params, images_in, event),
                            mimetype="text/event-stream")
        items = [_item(image, prompt, name, spec, params) for image in images]
        return jsonify(_result(items, spec, params, prompt, images_in=images_in))

    def _item(
        image: Image.Image, prompt: str, name: str, spec: ImageModel, params: dict[str, Any]
    ) -> dict[str, Any]:
        if spec.gpt_image:
            data = encode(image, params["output_format"], params["compression"])
            return {"b64_json": base64.b64encode(data).decode()}
        data = encode(image)
        item: dict[str, Any]
        if params["response_format"] == "b64_json":
            item = {"b64_json": base64.b64encode(data).decode()}
        else:
            file_id = uuid.uuid4().hex
            app.config["FILES"][file_id] = data
            item = {"url": f"{request.host_url}files/{file_id}.png"}
        if name == "dall-e-3":
            # dall-e-3 rewrites every prompt and says what it drew.
            item["revised_prompt"] = f"A detailed illustration of {prompt}"
        return item

    def _gate(prompt: str, spec: ImageModel) -> None:
        if CONTENT_POLICY in prompt:
            if spec.gpt_image:
                raise OpenAIError(
                    400,
                    "Your request was rejected by the safety system. If you believe this is an "
                    "error, contact us at help.openai.com and include the request ID "
                    f"req_{uuid.uuid4().hex}.",
                    type_="image_generation_user_error",
                    code="moderation_blocked",
                    extra={
                        "moderation_details": {"moderation_stage": "input", "categories": []}
                    },
                )
            raise OpenAIError(
                400, _DALLE_BLOCKED, type_="image_generation_user_error",
                code="content_policy_violation",
            )
        if SLOW in prompt:
            gate = app.config.get("SLOW_GATE")
            if gate is not None:
                gate.wait(30)  # held until the test lets it go: slow as long as needed
            else:
                time.sleep(float(app.config["SLOW_SECONDS"]))

    return app


# --- request validation shared by both image endpoints ------------------------------------


def _typed_form(form: dict[str, str], schema: str) -> dict[str, Any]:
    """Multipart fields typed as the schema declares them (the API converts them too)."""
    properties = _properties(schema)
    typed: dict[str, Any] = {}
    for name, raw in form.items():
        declared = _declared_types(properties.get(name, {}))
        value: Any = raw
        if "integer" in declared and re.fullmatch(r"[+-]?\d+", raw.strip()):
            value = int(raw)
        elif "boolean" in declared and raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        typed[name] = value
    return typed


def _declared_types(schema: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = load_spec()["components"]["schemas"][name]
    found = {schema["type"]} if isinstance(schema.get("type"), str) else set()
    for option in schema.get("anyOf", []):
        found |= _declared_types(option)
    return found


def _prompt(value: Any) -> str:
    if value is None:
        raise OpenAIError(
            400,
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    if not isinstance(value, str):
        raise OpenAIError(
            400,
            f"Invalid type for 'prompt': expected a string, but got {_kind(value)} instead.",
            param="prompt",
            code="invalid_type",
        )
    if not value.strip():
        raise _empty("prompt")
    return value


def _unknown(names: Iterable[str], allowed: frozenset[str]) -> None:
    for name in names:
        if name not in allowed:
            raise OpenAIError(
                400, f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
            )


def _custom_size(size: str) -> tuple[int, int] | None:
    """gpt-image-2's ``WxH``: sides divisible by 16, ratio within 1:3..3:1, at most 3840x2160."""
    match = re.fullmatch(r"(\d+)x(\d+)", size)
    if not match:
        return None
    width, height = int(match.group(1)), int(match.group(2))
    if not width or not height or width % 16 or height % 16:
        return None
    if not 1 / 3 <= width / height <= 3:
        return None
    if max(width, height) > 3840 or width * height > 3840 * 2160:
        return None
    return width, height


def _common(
    body: dict[str, Any],
    name: str,
    spec: ImageModel,
    prompt: str,
    *,
    editing: bool,
    source: Image.Image | None = None,
    json_body: bool = False,
) -> dict[str, Any]:
    """Per-model rules for n, size, quality and the output options; what the answer needs."""
    if len(prompt) > spec.max_prompt:
        raise OpenAIError(
            400,
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{spec.max_prompt}, but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    n = body.get("n") or 1
    if n > spec.max_n:
        raise OpenAIError(400, "You must provide n=1 for this model.")

    # Edits default to 1024x1024 (multipart schema) or auto (JSON schema); generations to the
    # model's own default: auto for GPT image models, 1024x1024 for DALL-E.
    default_size = "auto" if spec.gpt_image and (json_body or not editing) else "1024x1024"
    size = body.get("size") or default_size
    dims = _custom_size(size) if spec.custom_sizes and size not in spec.sizes else None
    if dims is None:
        if spec.gpt_image:
            if size not in spec.sizes:
                if spec.custom_sizes:
                    raise OpenAIError(
                        400,
                        f"Invalid size '{size}'. Width and height must both be divisible by "
                        "16, the aspect ratio must be between 1:3 and 3:1 and the size at most "
                        "3840x2160.",
                        param="size",
                        code="invalid_value",
                    )
                raise _invalid_value(size, spec.sizes, "size")
        else:
            _one_of(size, spec.sizes, "size")
    quality = body.get("quality") or "auto"
    if quality not in spec.qualities:
        raise _invalid_value(quality, spec.qualities, "quality")
    if size == "auto":
        # The model picks; follow the source's orientation when editing, else square.
        size = "1024x1024"
        if source is not None and source.width != source.height:
            size = "1536x1024" if source.width > source.height else "1024x1536"
    if quality == "auto":
        quality = "high" if spec.gpt_image else "standard"
    if dims is None:
        dims = tuple(int(v) for v in size.split("x"))

    params: dict[str, Any] = {
        "n": n, "size": size, "dims": dims, "quality": quality,
        "response_format": "url", "output_format": "png", "compression": None,
        "background": "opaque", "transparent": False, "stream": False, "partial_images": 0,
    }
    if spec.gpt_image:
        fmt = body.get("output_format") or "png"
        background = body.get("background") or "auto"
        compression = body.get("output_compression")
        if compression is not None and not 0 <= compression <= 100:
            below = compression < 0
            raise OpenAIError(
                400,
                f"Invalid 'output_compression': integer "
                f"{'below minimum' if below else 'above maximum'} value. Expected a value "
                f"{'>= 0' if below else '<= 100'}, but got {compression} instead.",
                param="output_compression",
                code="integer_below_min_value" if below else "integer_above_max_value",
            )
        params.update(
            output_format=fmt,
            compression=compression,
            background="transparent" if background == "transparent" else "opaque",
            transparent=background == "transparent" and fmt != "jpeg",
            stream=bool(body.get("stream")),
            partial_images=body.get("partial_images") or 0,
        )
    else:
        params["response_format"] = body.get("response_format") or "url"
    return params


def _usage(params: dict[str, Any], prompt: str, images_in: int, count: int) -> dict[str, Any]:
    text_tokens = max(1, len(prompt.split()))
    image_tokens = 194 * images_in
    table = _GPT_OUTPUT_TOKENS[params["quality"]]
    per_image = table.get(params["size"])
    if per_image is None:  # a gpt-image-2 custom size: scale the square's count by area
        width, height = params["dims"]
        per_image = round(table["1024x1024"] * width * height / (1024 * 1024))
    output_tokens = per_image * count
    return {
        "input_tokens": text_tokens + image_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
        "output_tokens": output_tokens,
        "total_tokens": text_tokens + image_tokens + output_tokens,
    }


def _result(
    items: list[dict[str, Any]],
    spec: ImageModel,
    params: dict[str, Any],
    prompt: str,
    *,
    images_in: int,
) -> dict[str, Any]:
    result: dict[str, Any] = {"created": int(time.time()), "data": items}
    if spec.gpt_image:
        result.update(
            background=params["background"],
            output_format=params["output_format"],
            quality=params["quality"],
            size=params["size"],
            usage=_usage(params, prompt, images_in, len(items)),
        )
    return result


def _events(
    images: list[Image.Image], prompt: str, params: dict[str, Any], images_in: int, event: str
) -> Iterator[str]:
    """Server-sent events as the operations' streaming examples show them."""
    common = {
        "size": params["size"], "quality": params["quality"],
        "background": params["background"], "output_format": params["output_format"],
    }
    for image in images:
        for index in range(params["partial_images"]):
            partial = image.filter(ImageFilter.GaussianBlur(8 * (params["partial_images"] - index)))
            yield _sse(f"{event}.partial_image", {
                "type": f"{event}.partial_image",
                "b64_json": base64.b64encode(encode(partial, params["output_format"])).decode(),
                "created_at": int(time.time()), **common, "partial_image_index": index,
            })
        data = encode(image, params["output_format"], params["compression"])
        yield _sse(f"{event}.completed", {
            "type": f"{event}.completed", "b64_json": base64.b64encode(data).decode(),
            "created_at": int(time.time()), **common,
            "usage": _usage(params, prompt, images_in, 1),
        })


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _open_upload(
    upload: Any, field: str, index: int, mimetypes: tuple[str, ...]
) -> Image.Image:
    """Check the part's declared type like the real API, then decode it."""
    # A part without a Content-Type is judged by its file name (clients such as requests send
    # none); an explicit non-image type such as application/octet-stream is refused.
    declared = upload.headers.get("Content-Type")
    mimetype = upload.mimetype if declared else _guess(upload.filename or "")
    if mimetype not in mimetypes:
        raise OpenAIError(
            400,
            f"Invalid file '{field}': unsupported mimetype ('{mimetype}'). Supported file formats "
            f"are {_supported(mimetypes)}.",
            param=field,
            code="unsupported_file_mimetype",
        )
    return _decode(upload.read(), field, index)


def _decode(data: bytes, field: str, index: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError):
        raise OpenAIError(
            400,
            f"Invalid image file or mode for image {index + 1}, please check your image file.",
            param=field,
            code="invalid_image_file",
        ) from None
    return image


def _open_reference(reference: dict[str, Any], field: str) -> Image.Image:
    """A JSON edit's ``{"image_url"}``/``{"file_id"}``: only ``data:`` URLs resolve here."""
    url = reference.get("image_url") or ""
    match = re.fullmatch(r"data:image/[\w.+-]+;base64,(.*)", url, flags=re.S)
    if not match:
        raise OpenAIError(
            400,
            f"The fake OpenAI API resolves only data: URLs, not '{field}' = {reference!r}.",
            param=field,
            code="invalid_image_url",
        )
    try:
        data = base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        data = b""
    return _decode(data, field, 0)


def _guess(filename: str) -> str:
    lower = filename.lower()
    for ext, mime in ((".png", "image/png"), (".jpg", "image/jpeg"), (".jpeg", "image/jpeg"),
                      (".webp", "image/webp")):
        if lower.endswith(ext):
            return mime
    return "application/octet-stream"


def _check_dalle2_source(image: Image.Image, *, has_mask: bool) -> None:
    """dall-e-2 edits need a square image; without a mask its transparency marks the edit."""
    if image.width != image.height:
        raise OpenAIError(
            400,
            "Invalid input image - expected an image with equal width and height, got "
            f"{image.width}x{image.height} instead.",
        )
    if not has_mask and image.mode not in ("RGBA", "LA", "L"):
        raise OpenAIError(
            400, f"Invalid input image - format must be in ['RGBA', 'LA', 'L'], got {image.mode}."
        )


def _edit(
    source: Image.Image, mask: Image.Image | None, size: tuple[int, int], key: str
) -> Image.Image:
    """The source, resized and tinted by a colour from KEY; a mask limits the tint to its holes."""
    base = source.convert("RGBA").resize(size)
    d = hashlib.sha256(key.encode()).digest()
    tinted = Image.blend(base, Image.new("RGBA", size, (d[0], d[1], d[2], 255)), 0.4)
    if mask is None:
        return tinted
    # Opaque mask pixels keep the source; transparent ones are "edited".
    keep = mask.convert("RGBA").resize(size).getchannel("A")
    return Image.composite(base, tinted, keep)


# --- LocalAI ---------------------------------------------------------------------------------

LOCALAI_SOURCE = "github.com/mudler/LocalAI @ 82c191afadf5f005281e798ccfa0ffd0d5805030"

# Model name -> LocalAI capabilities (core/config/model_capabilities.go). The names are those
# of LocalAI's all-in-one images (tests/e2e-aio/models/*.yaml); the .gguf is a loose file in
# the models directory, which /v1/models lists too but which has no config (so no
# capabilities).
LOCALAI_MODELS: dict[str, tuple[str, ...] | None] = {
    "gpt-4": ("chat",),
    "gpt-4o": ("chat", "vision"),
    "jina-reranker-v1-base-en": ("rerank",),
    "silero-vad": ("vad",),
    "stablediffusion": ("image",),
    "text-embedding-ada-002": ("embeddings",),
    "tts-1": ("tts",),
    "whisper-1": ("transcript",),
    "Llama-3.2-1B-Instruct-Q4_K_M.gguf": None,
}
_MODALITIES = {  # capability -> (input, output) modalities, as model_capabilities.go derives
    "chat": ({"text"}, {"text"}), "vision": ({"image"}, set()), "image": ({"text"}, {"image"}),
    "embeddings": ({"text"}, set()), "rerank": ({"text"}, set()), "tts": ({"text"}, {"audio"}),
    "transcript": ({"audio"}, {"text"}), "vad": ({"audio"}, set()),
}
_ORDER = ("text", "image", "audio", "video")


class LocalAIError(Exception):
    """``schema.ErrorResponse``: ``{"error": {"code", "message", "type"}}`` (param omitted)."""

    def __init__(self, status: int, message: str, type_: str = ""):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"code": status, "message": message, "type": type_}}


def _echo_error(status: int, message: str) -> LocalAIError:
    """What LocalAI's HTTPErrorHandler makes of an ``echo.HTTPError``: ``err.Error()``."""
    return LocalAIError(status, f"code={status}, message={message}")


def create_localai_app(
    *,
    api_key: str | None = None,
    models: dict[str, tuple[str, ...] | None] | None = None,
) -> Flask:
    """A Flask app faking LocalAI's OpenAI-compatible image API, read from its source
    (``LOCALAI_SOURCE``):

    * routes (core/http/routes/openai.go): ``POST /v1/images/generations`` (and
      ``/images/generations``), ``POST /v1/images/inpainting``, ``GET /v1/models``,
      ``GET /v1/models/capabilities`` (and the unprefixed aliases; ``/v1/images/upscale``
      exists too but is not faked here). There is **no**
      ``/v1/images/edits``: like any unknown route it answers 404
      ``{"error": {"code": 404, "message": "Resource not found", "type": ""}}``
      (core/http/render.go ``notFoundHandler``) unless the request's Accept has ``text/html``
      and its Content-Type is not JSON, which gets the web UI's index page with 200
      (core/http/app.go ``spaFallback``). A wrong method is
      ``{"error": {"code": 405, "message": "code=405, message=Method Not Allowed", ...}}``.
    * auth (core/http/auth/middleware.go): none by default; with API keys every route but the
      public ones (``/healthz``, ``/readyz``...) needs the key as ``Authorization: Bearer``,
      a bare ``Authorization``, ``x-api-key``, ``xi-api-key`` or a ``token`` cookie, else 401
      ``{"error": {"code": 401, "message": "An authentication key is required", "type":
      "invalid_request_error"}}`` with ``WWW-Authenticate: Bearer``. The middleware wraps
      unknown routes too (a missing route answers 401 before 404) and the
      ``/generated-images`` files (the URLs results point at).
    * ``/v1/models`` (endpoints/openai/list.go) lists every configured model and loose model
      file, chat, embeddings, TTS... alike, as ``{"id", "object": "model"}`` only (no
      ``created``/``owned_by``); ``?filter=<regexp>`` filters names. The real order is that of
      a Go map (model_config_loader.go ``GetModelConfigsByFilter``), i.e. unspecified, and
      the default image model is "the first" of them; the fake keeps MODELS' order.
      ``/v1/models/capabilities`` (list_capabilities.go) adds ``capabilities``,
      ``input_modalities`` and ``output_modalities`` (``null`` for a loose file).
    * generations (endpoints/openai/image.go): JSON; the model defaults to the first image
      model; an unknown model is 404 ``model "x" not found. To see available models, call GET
      /v1/models`` (middleware/request.go); ``size`` without an ``x`` becomes 512x512, a
      non-numeric side is 500 ``invalid value for 'size'``; ``n`` defaults to 1; the prompt may
      be a list, and ``a|b`` makes ``b`` the negative prompt; ``file`` (base64) is the img2img
      source (undecodable: silently ignored); other OpenAI fields (quality, style,
      background...) are ignored. Results are URLs to ``/generated-images/b64<digits>.png``
      unless ``response_format`` is ``b64_json``; each item is
      ``{"embedding": null, "index": 0, "url"|"b64_json"}`` and the body
      ``{"created", "id", "data", "usage"}`` with zero token counts.
    * inpainting (endpoints/openai/inpainting.go): multipart ``model``, ``prompt``, ``image``,
      ``mask`` (missing model/prompt: 400 ``code=400, message=Bad Request``; missing files:
      ``missing image file``/``missing mask file``); always 512x512, always a URL. The file is
      written to the generated-content directory itself while ``/generated-images`` serves its
      ``images`` subdirectory (core/http/app.go), so that URL answers 404; the fake
      reproduces that.

    Malformed JSON and wrongly typed fields are 400 ``code=400, message=failed parsing request
    body: code=400, message=Unmarshal type error: expected=int, got=string, field=n, offset=..,
    internal=json: cannot unmarshal string into Go struct field OpenAIRequest.n of type int``
    (Echo v4.15.1 json.go/bind.go, LocalAI's go.mod pins v4.15.1).

    Approximated: a non-image model used for generation fails with a 500 whose wording
    depends on the backend; Go's syntax-error wording is mapped from Python's for common cases;
    form-encoded bodies are bound field by field.
    """
    configured = dict(LOCALAI_MODELS if models is None else models)
    app = Flask(__name__)
    app.json.sort_keys = False  # Go marshals struct fields in declaration order
    app.config.update(REQUESTS=[], FILES={}, INPAINTED={}, SLOW_SECONDS=5)
    public = {("GET", "/healthz"), ("GET", "/readyz")}
    image_models = [m for m, caps in configured.items() if caps and "image" in caps]
    names = itertools.count(random.Random(7).randrange(10**8, 10**9))

    def supplied_key() -> str:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[len("Bearer "):]
        return (header or request.headers.get("x-api-key") or request.headers.get("xi-api-key")
                or request.cookies.get("token") or "")

    @app.before_request
    def authenticate() -> tuple[Response, int] | None:
        record_request(app)
        if api_key is None or (request.method, request.path) in public:
            return None
        if supplied_key() == api_key:
            return None
        response = jsonify(LocalAIError(401, "An authentication key is required",
                                        "invalid_request_error").body)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response, 401

    @app.errorhandler(LocalAIError)
    def api_error(error: LocalAIError) -> tuple[Response, int]:
        return jsonify(error.body), error.status

    @app.errorhandler(404)
    def not_found(_error: Exception) -> tuple[Response, int] | Response:
        accept = request.headers.get("Accept", "")
        content_type = request.headers.get("Content-Type", "")
        if "text/html" in accept and "application/json" not in content_type:
            return Response("<!doctype html><html><head><title>LocalAI</title></head>"
                            "<body><div id=\"root\"></div></body></html>", mimetype="text/html")
        return jsonify(LocalAIError(404, "Resource not found").body), 404

    @app.errorhandler(405)
    def not_allowed(_error: Exception) -> tuple[Response, int]:
        return jsonify(_echo_error(405, "Method Not Allowed").body), 405

    @app.get("/healthz")
    @app.get("/readyz")
    def health() -> Response:
        return Response(status=200)

    def visible() -> list[str]:
        pattern = request.args.get("filter", "")
        if not pattern:
            return list(configured)
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise LocalAIError(500, f"error parsing regexp: {exc}") from None
        return [m for m in configured if rx.search(m)]

    @app.get("/v1/models")
    @app.get("/models")
    def list_models() -> Response:
        data = [{"id": m, "object": "model"} for m in visible()]
        return jsonify({"object": "list", "data": data})

    @app.get("/v1/models/capabilities")
    @app.get("/models/capabilities")
    def list_capabilities() -> Response:
        data = []
        for m in visible():
            caps = configured[m]
            entry: dict[str, Any] = {"id": m, "object": "model", "capabilities": None,
                                     "input_modalities": None, "output_modalities": None}
            if caps is not None:
                ins = set().union(*(_MODALITIES.get(c, (set(), set()))[0] for c in caps))
                outs = set().union(*(_MODALITIES.get(c, (set(), set()))[1] for c in caps))
                entry.update(capabilities=list(caps),
                             input_modalities=[x for x in _ORDER if x in ins],
                             output_modalities=[x for x in _ORDER if x in outs])
            data.append(entry)
        return jsonify({"object": "list", "data": data})

    @app.get("/generated-images/<name>")
    def generated(name: str) -> Response:
        data = app.config["FILES"].get(name)
        if data is None:
            raise LocalAIError(404, "Resource not found")
        return Response(data, mimetype="image/png")

    def check_model(name: str) -> None:
        if name and "/" not in name and name not in configured:
            raise LocalAIError(
                404,
                f'model "{name}" not found. To see available models, call GET /v1/models',
                "invalid_request_error",
            )

    def store(image: Image.Image, as_b64: bool) -> dict[str, Any]:
        data = encode(image)
        if as_b64:
            return {"embedding": None, "index": 0, "b64_json": base64.b64encode(data).decode()}
        name = f"b64{next(names)}.png"
        app.config["FILES"][name] = data
        return {"embedding": None, "index": 0, "url": f"{request.host_url}generated-images/{name}"}

    def answer(items: list[dict[str, Any]]) -> Response:
        body: dict[str, Any] = {"created": int(time.time()), "id": str(uuid.uuid4())}
        if items:
            body["data"] = items  # `json:"data,omitempty"`
        body["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                         "input_tokens_details": {"text_tokens": 0, "image_tokens": 0}}
        return jsonify(body)

    @app.post("/v1/images/generations")
    @app.post("/images/generations")
    def generations() -> Response:
        body = _localai_body()
        name = body.get("model") or (image_models[0] if image_models else "")
        check_model(name)
        if not name:
            raise _echo_error(400, "Bad Request")
        size = body.get("size") or ""
        if not isinstance(size, str) or "x" not in size:
            size = "512x512"
        parts = size.split("x")
        if len(parts) != 2 or not all(re.fullmatch(r"[+-]?\d+", p) for p in parts):
            raise LocalAIError(500, "invalid value for 'size'")
        width, height = int(parts[0]), int(parts[1])
        caps = configured.get(name)
        if caps is not None and "image" not in caps:
            raise LocalAIError(500, f"rpc error: model {name} cannot generate images")
        source = _localai_source(body.get("file"))
        as_b64 = body.get("response_format") == "b64_json"
        prompts = body.get("prompt")
        prompts = [prompts] if isinstance(prompts, str) else [
            p for p in (prompts or []) if isinstance(p, str)]
        n = body.get("n") or 1
        items = []
        for text in prompts:
            positive, _, negative = text.partition("|")
            if SLOW in positive:
                time.sleep(float(app.config["SLOW_SECONDS"]))
            for i in range(n):
                image = draw_image(max(width, 1), max(height, 1),
                                   f"localai|{name}|{positive}|{negative}|{i}")
                if source is not None:
                    image = Image.blend(source.convert("RGB").resize(image.size), image, 0.5)
                items.append(store(image, as_b64))
        return answer(items)

    @app.post("/v1/images/inpainting")
    @app.post("/images/inpainting")
    def inpainting() -> Response:
        model, prompt = request.form.get("model", ""), request.form.get("prompt", "")
        if not model or not prompt:
            raise _echo_error(400, "Bad Request")
        if "image" not in request.files:
            raise _echo_error(400, "missing image file")
        if "mask" not in request.files:
            raise _echo_error(400, "missing mask file")
        check_model(model)
        image = draw_image(512, 512, f"localai-inpaint|{model}|{prompt}")
        name = f"out_{next(names)}.png"
        # Written beside, not inside, the directory /generated-images serves.
        app.config["INPAINTED"][name] = encode(image)
        url = f"{request.host_url}generated-images/{name}"
        return answer([{"embedding": None, "index": 0, "url": url}])

    return app


def _localai_body() -> dict[str, Any]:
    """``c.Bind`` into ``schema.OpenAIRequest`` (Echo v4.15.1 ``DefaultBinder.BindBody`` and
    ``DefaultJSONSerializer.Deserialize``), failures wrapped by LocalAI's ``SetModelAndConfig``
    as ``failed parsing request body: <echo error>``."""
    if not request.content_length and not request.data:
        return {}  # BindBody skips an empty body
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        # Approximated: Echo binds form fields onto the struct; the image fields used here.
        body: dict[str, Any] = request.form.to_dict()
        for field in ("n", "step"):
            if field in body and re.fullmatch(r"[+-]?\d+", body[field]):
                body[field] = int(body[field])
        return body
    if not request.is_json:
        raise _bind_error("code=415, message=Unsupported Media Type")
    raw = request.get_data(as_text=True)
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _bind_error(_go_syntax_error(raw, exc)) from None
    if not isinstance(body, dict):
        raise _bind_error(_go_type_error(_go_kind(body), "schema.OpenAIRequest", "", len(raw)))
    for field, (python_type, go_type) in _GO_FIELDS.items():
        value = body.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, python_type)):
            raise _bind_error(_go_type_error(_go_kind(value), go_type, field,
                                             _value_end(raw, field)))
    return body


def _bind_error(echo_message: str) -> LocalAIError:
    return _echo_error(400, f"failed parsing request body: {echo_message}")


def _go_type_error(got: str, expected: str, field: str, offset: int) -> str:
    """Echo's wrapping of a ``*json.UnmarshalTypeError`` (its ``Error()`` as ``internal``)."""
    where = (f"Go struct field OpenAIRequest.{field}" if field else "Go value")
    internal = f"json: cannot unmarshal {got} into {where} of type {expected}"
    return (f"code=400, message=Unmarshal type error: expected={expected}, got={got}, "
            f"field={field}, offset={offset}, internal={internal}")


def _go_syntax_error(raw: str, exc: ValueError) -> str:
    """Echo's wrapping of a ``*json.SyntaxError``; Go's wording mapped from Python's for the
    common cases (approximated)."""
    position = getattr(exc, "pos", 0)
    found = raw[position:position + 1]
    text = str(exc).split(":")[0]
    if not found:
        return "code=400, message=unexpected EOF, internal=unexpected EOF"
    if text.startswith("Expecting property name"):
        detail = f"invalid character '{found}' looking for beginning of object key string"
    elif text.startswith("Expecting value"):
        detail = f"invalid character '{found}' looking for beginning of value"
    elif text.startswith("Extra data"):
        detail = f"invalid character '{found}' after top-level value"
    else:
        detail = text
    return (f"code=400, message=Syntax error: offset={position + 1}, error={detail}, "
            f"internal={detail}")


def _value_end(raw: str, field: str) -> int:
    """Where FIELD's value ends in RAW: the offset Go reports (approximately)."""
    match = re.search(rf'"{re.escape(field)}"\s*:\s*', raw)
    if not match:
        return 0
    try:
        _, end = json.JSONDecoder().raw_decode(raw, match.end())
    except ValueError:
        return match.end()
    return end


# Typed fields of schema.OpenAIRequest an image request uses (core/schema/openai.go,
# prediction.go); ``prompt`` and ``response_format`` are ``any``.
_GO_FIELDS: dict[str, tuple[type, str]] = {
    "model": (str, "string"), "size": (str, "string"), "n": (int, "int"),
    "step": (int, "int"), "file": (str, "string"),
}


def _go_kind(value: Any) -> str:
    """How encoding/json names a JSON value in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _localai_source(value: Any) -> Image.Image | None:
    """``processImageFile``: base64 (or a URL, not fetched here); failures are ignored."""
    if not isinstance(value, str) or not value or value.startswith(("http://", "https://")):
        return None
    try:
        image = Image.open(io.BytesIO(base64.b64decode(value, validate=True)))
        image.load()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError):
        return None
    return image

"""A fake OpenAI Images API (``/v1/models``, ``/v1/images/generations``, ``/v1/images/edits``).

Shapes follow the OpenAI API reference and bodies the real API is on record returning (GitHub
issues, SDK tests and the image-generation guide), not memory:

* every error is ``{"error": {"message", "type", "param", "code"}}``;
* 401: ``Incorrect API key provided: <masked>. ...`` (code ``invalid_api_key``; the key shows its
  first 8 and last 4 characters, a short key is shown whole) and, without a key,
  ``You didn't provide an API key. ...`` (code ``null``, as the real API sends);
* ``gpt-image-1`` rejects ``response_format`` with ``Unknown parameter: 'response_format'.``
  (code ``unknown_parameter``) and always answers ``b64_json``; the same message and code are used
  for any other parameter the chosen model does not take (the images endpoints answer this,
  not the older ``Unrecognized request argument supplied: X``);
* a bad model is ``Invalid value: 'x'. Supported values are: ...`` (code ``invalid_value``);
* DALL-E validation keeps its legacy wording (``'512x512' is not one of [...] - 'size'``,
  ``You must provide n=1 for this model.``, ``11 is greater than the maximum of 10 - 'n'``);
* blocked prompts: DALL-E answers ``content_policy_violation``, GPT image models
  ``moderation_blocked`` (both ``type: image_generation_user_error``);
* edits: an upload whose part is not an accepted image type is
  ``Invalid file 'image': unsupported mimetype ('text/plain'). ...``
  (code ``unsupported_file_mimetype``); dall-e-2 wants a square PNG with an alpha channel
  unless a mask is given.

Approximated (no captured body found): the wording for an undecodable file that claims an image
type, for an empty prompt, and ``usage`` token counts (taken from the guide's per-size table).

Triggers: a prompt containing ``CONTENT_POLICY`` is blocked; ``SLOW`` sleeps
``app.config["SLOW_SECONDS"]`` (default 5) first. Every request, authorised or not, is appended
to ``app.config["REQUESTS"]``. ``url`` results point at ``GET /files/<id>.png`` on this app,
served without auth like the real pre-signed blob URLs. Images are drawn at the requested size.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import time
import uuid
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, request
from PIL import Image, UnidentifiedImageError

from . import draw_image, record_request

CONTENT_POLICY = "CONTENT_POLICY"
SLOW = "SLOW"

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

_GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
# Output tokens per image, from the image-generation guide's table (quality x size).
_GPT_OUTPUT_TOKENS = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}
_GPT_GENERATE_PARAMS = frozenset(
    {
        "model", "prompt", "n", "size", "quality", "background", "moderation",
        "output_compression", "output_format", "partial_images", "stream", "user",
    }
)
_GPT_EDIT_PARAMS = frozenset(
    {
        "model", "prompt", "image", "image[]", "mask", "n", "size", "quality", "background",
        "input_fidelity", "output_compression", "output_format", "partial_images", "stream",
        "user",
    }
)


@dataclass(frozen=True)
class ImageModel:
    """What one image model accepts, as the API reference documents it."""

    sizes: tuple[str, ...]
    default_size: str
    qualities: tuple[str, ...]
    max_n: int
    generate_params: frozenset[str]
    edit_params: frozenset[str] | None  # None: the model cannot edit
    gpt_image: bool  # b64 only, usage, output_format/background echoed in the response
    edit_mimetypes: tuple[str, ...] = ("image/png", "image/jpeg", "image/webp")


IMAGE_MODELS: dict[str, ImageModel] = {
    "dall-e-2": ImageModel(
        sizes=("256x256", "512x512", "1024x1024"),
        default_size="1024x1024",
        qualities=("standard", "auto"),
        max_n=10,
        generate_params=frozenset(
            {"model", "prompt", "n", "size", "quality", "response_format", "style", "user"}
        ),
        edit_params=frozenset(
            {"model", "prompt", "image", "mask", "n", "size", "response_format", "user"}
        ),
        gpt_image=False,
        edit_mimetypes=("image/png",),
    ),
    "dall-e-3": ImageModel(
        sizes=("1024x1024", "1792x1024", "1024x1792"),
        default_size="1024x1024",
        qualities=("standard", "hd", "auto"),
        max_n=1,
        generate_params=frozenset(
            {"model", "prompt", "n", "size", "quality", "response_format", "style", "user"}
        ),
        edit_params=None,
        gpt_image=False,
    ),
    "gpt-image-1": ImageModel(
        sizes=_GPT_SIZES,
        default_size="auto",
        qualities=("low", "medium", "high", "auto"),
        max_n=10,
        generate_params=_GPT_GENERATE_PARAMS,
        edit_params=_GPT_EDIT_PARAMS,
        gpt_image=True,
    ),
}

# Creation times and owners as /v1/models reports them (illustrative, not load-bearing).
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


def _one_of(value: Any, allowed: tuple[str, ...], param: str) -> None:
    """DALL-E's legacy enum error: ``'x' is not one of ['a', 'b'] - 'param'``."""
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise OpenAIError(400, f"{value!r} is not one of [{listed}] - '{param}'")


def _supported(values: tuple[str, ...]) -> str:
    """``'a', 'b', and 'c'`` as the newer ``invalid_value`` messages list them."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _invalid_value(value: Any, allowed: tuple[str, ...], param: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"Invalid value: '{value}'. Supported values are: {_supported(allowed)}.",
        param=param,
        code="invalid_value",
    )


def _as_int(value: Any, param: str) -> int:
    """JSON ints pass; multipart strings are converted like the real API does."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        kind = type(value).__name__
        raise OpenAIError(
            400,
            f"Invalid type for '{param}': expected an integer, but got {kind} instead.",
            param=param,
            code="invalid_type",
        )
    try:
        return int(value)
    except ValueError:
        raise OpenAIError(
            400,
            f"Invalid type for '{param}': expected an integer, but got a string instead.",
            param=param,
            code="invalid_type",
        ) from None


def create_openai_app(
    *, api_key: str = "sk-test", models: tuple[str, ...] = ("gpt-image-1", "dall-e-3", "dall-e-2")
) -> Flask:
    """A Flask app faking api.openai.com's image endpoints; see the module docstring."""
    app = Flask(__name__)
    app.config.update(REQUESTS=[], FILES={}, SLOW_SECONDS=5)
    image_models = {m: IMAGE_MODELS[m] for m in models if m in IMAGE_MODELS}
    # A real account lists chat models next to the image ones; clients must filter.
    listed = list(dict.fromkeys([*models, "gpt-4o-mini"]))
    counter = itertools.count(1)

    def record() -> None:
        record_request(app)

    @app.before_request
    def authenticate() -> Response | None:
        record()
        if request.endpoint in (None, "serve_file", "static"):
            return None  # unknown URLs 404; result URLs are pre-signed, so need no key
        header = request.headers.get("Authorization", "").strip()
        scheme, _, token = header.partition(" ")
        if not header or (scheme.lower() == "bearer" and not token.strip()):
            raise OpenAIError(401, _NO_KEY)
        if scheme.lower() != "bearer" or token.strip() != api_key:
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
        data = [_model_object(m) for m in listed]
        return jsonify({"object": "list", "data": data})

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
        prompt = _prompt(body.get("prompt"))
        name, spec = _model(body.get("model"), body, editing=False)
        _unknown(body.keys(), spec.generate_params)
        params = _common(body, name, spec)
        if not spec.gpt_image and "style" in body:
            _one_of(body["style"], ("vivid", "natural"), "style")
        _gate(prompt, spec)
        items = []
        for i in range(params["n"]):
            key = f"{name}|{prompt}|{params['size']}|{i}|{next(counter)}"
            image = draw_image(*params["dims"], key, transparent=params["transparent"])
            items.append(_item(image, prompt, name, spec, params))
        return jsonify(_result(items, spec, params, prompt, images_in=0))

    @app.post("/v1/images/edits")
    def edits() -> Response:
        if request.mimetype != "multipart/form-data":
            raise OpenAIError(
                400,
                f"Invalid Content-Type header ({request.mimetype or 'none'}), expected "
                "multipart/form-data. (HINT: If you're using curl, you can pass -H "
                "'Content-Type: multipart/form-data')",
            )
        form: dict[str, Any] = request.form.to_dict()
        prompt = _prompt(form.get("prompt"))
        name, spec = _model(form.get("model"), form, editing=True)
        assert spec.edit_params is not None  # _model refused models that cannot edit
        _unknown([*form.keys(), *request.files.keys()], spec.edit_params)
        uploads = request.files.getlist("image") + (
            request.files.getlist("image[]") if spec.gpt_image else []
        )
        if not uploads:
            raise OpenAIError(
                400,
                "Missing required parameter: 'image'.",
                param="image",
                code="missing_required_parameter",
            )
        field = "image[]" if "image[]" in request.files else "image"
        sources = [_open_upload(f, field, i, spec) for i, f in enumerate(uploads)]
        mask = None
        if "mask" in request.files:
            mask = _open_upload(request.files["mask"], "mask", 0, spec)
            if mask.size != sources[0].size:
                raise OpenAIError(
                    400,
                    "Invalid mask image format - mask size does not match image size",
                    type_="image_generation_user_error",
                    param="mask",
                    code="invalid_mask_image_format",
                )
        if not spec.gpt_image:
            _check_dalle2_source(sources[0], has_mask=mask is not None)
        params = _common(form, name, spec, source=sources[0])
        _gate(prompt, spec)
        items = []
        for i in range(params["n"]):
            edited = _edit(sources[0], mask, params["dims"], f"{prompt}|{i}")
            items.append(_item(edited, prompt, name, spec, params))
        return jsonify(_result(items, spec, params, prompt, images_in=len(sources)))

    # --- helpers that need the app's state -------------------------------------------------

    def _model_object(model_id: str) -> dict[str, Any]:
        created = _MODEL_CREATED.get(model_id, 1700000000)
        return {"id": model_id, "object": "model", "created": created, "owned_by": "system"}

    def _model(value: Any, body: dict[str, Any], *, editing: bool) -> tuple[str, ImageModel]:
        # Documented default: dall-e-2, unless a GPT-image-only parameter is present.
        gpt_only = {"background", "moderation", "output_format", "output_compression"}
        name = value or ("gpt-image-1" if gpt_only & body.keys() else "dall-e-2")
        allowed = tuple(
            m for m, s in image_models.items() if not editing or s.edit_params is not None
        )
        if name not in allowed:
            raise _invalid_value(name, allowed, "model")
        return name, image_models[name]

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
            time.sleep(float(app.config["SLOW_SECONDS"]))

    return app


# --- request validation shared by both image endpoints ------------------------------------


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
            f"Invalid type for 'prompt': expected a string, but got {type(value).__name__} "
            "instead.",
            param="prompt",
            code="invalid_type",
        )
    if not value.strip():
        raise OpenAIError(
            400,
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an "
            "empty string instead.",
            param="prompt",
            code="empty_string",
        )
    return value


def _unknown(names: Any, allowed: frozenset[str]) -> None:
    for name in names:
        if name not in allowed:
            raise OpenAIError(
                400, f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
            )


def _common(
    body: dict[str, Any], name: str, spec: ImageModel, source: Image.Image | None = None
) -> dict[str, Any]:
    """Validate n, size, quality and the output options; return what the response needs."""
    n = _as_int(body.get("n", 1), "n")
    if n < 1:
        raise OpenAIError(400, f"{n} is less than the minimum of 1 - 'n'")
    if n > 10:
        raise OpenAIError(400, f"{n} is greater than the maximum of 10 - 'n'")
    if n > spec.max_n:
        raise OpenAIError(400, "You must provide n=1 for this model.")

    size = body.get("size") or spec.default_size
    quality = body.get("quality") or ("auto" if spec.gpt_image else "standard")
    if spec.gpt_image:
        if size not in spec.sizes:
            raise _invalid_value(size, spec.sizes, "size")
        if quality not in spec.qualities:
            raise _invalid_value(quality, spec.qualities, "quality")
    else:
        _one_of(size, spec.sizes, "size")
        if quality not in spec.qualities:
            raise _invalid_value(quality, spec.qualities, "quality")
    if size == "auto":
        # The model picks; follow the source's orientation when editing, else square.
        size = "1024x1024"
        if source is not None and source.width != source.height:
            size = "1536x1024" if source.width > source.height else "1024x1536"
    if quality == "auto":
        quality = "high" if spec.gpt_image else "standard"
    width, height = (int(v) for v in size.split("x"))

    params: dict[str, Any] = {
        "n": n, "size": size, "dims": (width, height), "quality": quality,
        "response_format": "url", "output_format": "png", "compression": None,
        "background": "opaque", "transparent": False,
    }
    if spec.gpt_image:
        fmt = body.get("output_format") or "png"
        if fmt not in ("png", "jpeg", "webp"):
            raise _invalid_value(fmt, ("png", "jpeg", "webp"), "output_format")
        background = body.get("background") or "auto"
        if background not in ("transparent", "opaque", "auto"):
            raise _invalid_value(background, ("transparent", "opaque", "auto"), "background")
        compression = body.get("output_compression")
        params.update(
            output_format=fmt,
            compression=None if compression is None else _as_int(compression, "output_compression"),
            background="transparent" if background == "transparent" else "opaque",
            transparent=background == "transparent" and fmt != "jpeg",
        )
    else:
        response_format = body.get("response_format") or "url"
        _one_of(response_format, ("url", "b64_json"), "response_format")
        params["response_format"] = response_format
    return params


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
        text_tokens = max(1, len(prompt.split()))
        image_tokens = 194 * images_in
        output_tokens = _GPT_OUTPUT_TOKENS[params["quality"]][params["size"]] * params["n"]
        result.update(
            background=params["background"],
            output_format=params["output_format"],
            quality=params["quality"],
            size=params["size"],
            usage={
                "input_tokens": text_tokens + image_tokens,
                "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
                "output_tokens": output_tokens,
                "total_tokens": text_tokens + image_tokens + output_tokens,
            },
        )
    return result


def _open_upload(upload: Any, field: str, index: int, spec: ImageModel) -> Image.Image:
    """Check the part's declared type like the real API, then decode it."""
    # A part without a Content-Type is judged by its file name (clients such as requests send
    # none); an explicit non-image type such as application/octet-stream is refused.
    declared = upload.headers.get("Content-Type")
    mimetype = upload.mimetype if declared else _guess(upload.filename or "")
    if mimetype not in spec.edit_mimetypes:
        formats = _supported(spec.edit_mimetypes)
        raise OpenAIError(
            400,
            f"Invalid file '{field}': unsupported mimetype ('{mimetype}'). Supported file formats "
            f"are {formats}.",
            param=field,
            code="unsupported_file_mimetype",
        )
    try:
        image = Image.open(io.BytesIO(upload.read()))
        image.load()
    except (UnidentifiedImageError, OSError):
        raise OpenAIError(
            400,
            f"Invalid image file or mode for image {index + 1}, please check your image file.",
            param=field,
            code="invalid_image_file",
        ) from None
    return image


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

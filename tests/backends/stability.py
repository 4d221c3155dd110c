"""A fake Stability AI REST API: v2beta ``stable-image/generate/{sd3,core}`` and ``v1/user``.

Shapes follow Stability's OpenAPI document (https://api.stability.ai/v2alpha/openapi, as vendored
by github.com/tryAGI/StabilityAI ``src/libs/StabilityAI/openapi.yaml`` at commit
016c91ba97c1d174b3e2a01966f6223379aab94f and rendered by its generated client at 67b31be4 /
435be305; the error parts are trimmed into ``tests/fixtures/stability/``) and bodies captured
from the live API by other projects, not memory:

* v2beta errors are ``{"id", "name", "errors": [...]}``; ``name`` is, in the spec's words,
  "useful for discriminating between errors with the same status code". The sd3 operation
  documents 400 (``bad_request``), 403 (``ContentModerationResponse``: ``name`` is the enum
  ``content_moderation``, example message "Your request was flagged by our content moderation
  system, as a result your request was denied and you were not charged."), 413
  (``payload_too_large``: "body: payloads cannot be larger than 10MiB in size"), 422, 429
  (``rate_limit_exceeded``) and 500 (``internal_error``); it documents no 401;
* a missing or wrong key on v2beta is 401
  ``{"errors": ["authorization: invalid or missing header value"], "name": "unauthorized"}``
  (captured live by other projects; not in the spec);
* v1 errors are the spec's ``Error`` ``{"id", "name", "message"}``: 401 ``unauthorized``
  (``missing authorization header`` without a key; a wrong one gets
  ``Incorrect API key provided: <key>. You can find your API key at https://stability.ai.``,
  captured live: the API echoes the key) and 403 ``permission_denied``;
* the generate endpoints take ``multipart/form-data`` only: no body is
  ``content-type: required``, anything else ``content-type: must be multipart/form-data``;
* ``accept`` is ``image/*`` (the default; raw bytes plus ``seed`` and ``finish-reason`` headers)
  or ``application/json`` (``{"image": b64, "seed", "finish_reason"}``, content type
  ``application/json; type=image/<format>``);
* sd3 ``output_format`` is ``jpeg``, ``png`` or ``webp`` (default ``png``); core the same;
* a blocked prompt is 403 ``content_moderation`` with the documented message;
* ``GET /v1/user/account`` answers ``{"id", "email", "profile_picture", "organizations"}``.

So a client tells a moderation refusal from a credentials problem by ``name``, not by status:
403 ``content_moderation`` (v2beta) is about the prompt or image; 401 ``unauthorized`` (both
versions) and 403 ``permission_denied`` (v1) are about the key. A generation that succeeds but
whose output was blurred by moderation is a 200 with ``finish-reason: CONTENT_FILTERED``.

Approximated (the documented pattern is ``"<field>: <problem>"``, e.g. ``some-field: is
required``, but no captured body was found for these): the wording of field-validation errors,
the answer to an ``accept`` outside the enum, and refusing ``aspect_ratio`` in image-to-image
mode (the docs say it only applies to text-to-image). Unknown form fields are ignored, so the
documented Python idiom ``files={"none": ""}`` works. ``*/*`` and any ``image/...`` accept are
treated as ``image/*``.

Sizes: sd3 draws the 1-megapixel buckets (1:1 is the documented 1024x1024); core draws 1:1 at
1536x1536 (seen live) and the other ratios scaled from the sd3 buckets by 1.5. Image-to-image
keeps the input's aspect ratio at about one megapixel (sides rounded to 64).

Triggers: a prompt containing ``CONTENT_POLICY`` is refused with 403; ``SLOW`` sleeps
``app.config["SLOW_SECONDS"]`` (default 5) first. Seed 0 (or none) draws from a per-app
``random.Random(app.config["RANDOM_SEED"])`` so runs are reproducible. Every request is appended
to ``app.config["REQUESTS"]``; a body over 10 MiB is refused with the documented 413. The 404
for an unknown URL is approximated (``{"id", "name": "not_found", "errors"}``).
"""

from __future__ import annotations

import base64
import io
import math
import random
import time
import uuid
from typing import Any

from flask import Flask, Response, jsonify, request
from PIL import Image, UnidentifiedImageError

from . import draw_image, record_request

CONTENT_POLICY = "CONTENT_POLICY"
SLOW = "SLOW"
SEED_MAX = 4294967294

SD3_MODELS = (
    "sd3.5-large",
    "sd3.5-large-turbo",
    "sd3.5-medium",
    "sd3.5-flash",
    "sd3-large",
    "sd3-large-turbo",
    "sd3-medium",
)
STYLE_PRESETS = (
    "3d-model", "analog-film", "anime", "cinematic", "comic-book", "digital-art", "enhance",
    "fantasy-art", "isometric", "line-art", "low-poly", "modeling-compound", "neon-punk",
    "origami", "photographic", "pixel-art", "tile-texture",
)
# SD3's one-megapixel buckets per aspect ratio.
SD3_SIZES: dict[str, tuple[int, int]] = {
    "16:9": (1344, 768),
    "1:1": (1024, 1024),
    "21:9": (1536, 640),
    "2:3": (832, 1216),
    "3:2": (1216, 832),
    "4:5": (896, 1088),
    "5:4": (1088, 896),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
CORE_SIZES = {ratio: (w * 3 // 2, h * 3 // 2) for ratio, (w, h) in SD3_SIZES.items()}
MAX_BODY = 10 * 1024 * 1024  # "Your request was larger than 10MiB."
_MODERATION = (
    "Your request was flagged by our content moderation system, as a result your request was "
    "denied and you were not charged."
)
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class StabilityError(Exception):
    """A v2beta error: ``{"id", "name", "errors"}``."""

    def __init__(self, status: int, name: str, *errors: str):
        super().__init__(errors[0] if errors else name)
        self.status = status
        self.body: dict[str, Any] = {"id": uuid.uuid4().hex, "name": name, "errors": list(errors)}


class StabilityV1Error(Exception):
    """A v1 error: ``{"id", "name", "message"}``."""

    def __init__(self, status: int, name: str, message: str):
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"id": uuid.uuid4().hex, "name": name, "message": message}


def bad_request(*errors: str) -> StabilityError:
    return StabilityError(400, "bad_request", *errors)


def encode(image: Image.Image, fmt: str) -> bytes:
    """Encode IMAGE; compress_level=1 keeps a 1536x1536 PNG at a few tens of ms."""
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, "PNG", compress_level=1)
    else:
        image.convert("RGB").save(buffer, fmt.upper(), quality=85)
    return buffer.getvalue()


def _enum(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        expected = " | ".join(f"'{a}'" for a in allowed)
        raise bad_request(f"{field}: invalid enum value. Expected {expected}, received '{value}'")


def _number(form: dict[str, str], field: str, low: float, high: float) -> float | None:
    raw = form.get(field)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"{field}: must be a number") from None
    if not low <= value <= high:
        raise bad_request(f"{field}: must be between {low:g} and {high:g}")
    return value


def create_stability_app(*, api_key: str = "sk-stab") -> Flask:
    """A Flask app faking api.stability.ai; see the module docstring."""
    app = Flask(__name__)
    app.config.update(REQUESTS=[], SLOW_SECONDS=5, RANDOM_SEED=1234)
    rng: dict[str, random.Random] = {}

    def record() -> None:
        record_request(app, accept=request.headers.get("Accept"))

    @app.before_request
    def authenticate() -> None:
        record()
        if request.endpoint in (None, "static"):
            return
        header = request.headers.get("Authorization", "").strip()
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else header
        if token == api_key:
            return
        if request.path.startswith("/v1/"):
            if not header:
                raise StabilityV1Error(401, "unauthorized", "missing authorization header")
            raise StabilityV1Error(
                401,
                "unauthorized",
                f"Incorrect API key provided: {token}. You can find your API key at "
                "https://stability.ai.",
            )
        raise StabilityError(401, "unauthorized", "authorization: invalid or missing header value")

    @app.after_request
    def request_id(response: Response) -> Response:
        response.headers.setdefault("x-request-id", uuid.uuid4().hex)
        return response

    @app.errorhandler(StabilityError)
    @app.errorhandler(StabilityV1Error)
    def api_error(error: StabilityError | StabilityV1Error) -> tuple[Response, int]:
        return jsonify(error.body), error.status

    @app.errorhandler(404)
    @app.errorhandler(405)
    def not_found(_error: Exception) -> tuple[Response, int]:
        body = StabilityError(404, "not_found", f"{request.method} {request.path}: not found")
        return jsonify(body.body), 404

    @app.get("/v1/user/account")
    def account() -> Response:
        return jsonify(
            {
                "id": "user-1234",
                "email": "tester@example.com",
                "profile_picture": "https://api.stability.ai/example.png",
                "organizations": [
                    {"id": "org-1234", "name": "Test Organization", "role": "MEMBER",
                     "is_default": True}
                ],
            }
        )

    @app.get("/v1/user/balance")
    def balance() -> Response:
        return jsonify({"credits": 42.5})

    @app.post("/v2beta/stable-image/generate/sd3")
    def sd3() -> Response:
        as_json, form = _preamble()
        mode = form.get("mode") or "text-to-image"
        _enum("mode", mode, ("text-to-image", "image-to-image"))
        model = form.get("model") or "sd3.5-large"
        _enum("model", model, SD3_MODELS)
        fmt = form.get("output_format") or "png"
        _enum("output_format", fmt, ("jpeg", "png", "webp"))
        _optional_common(form)
        _number(form, "cfg_scale", 1, 10)
        if mode == "image-to-image":
            if "aspect_ratio" in form:
                raise bad_request("aspect_ratio: not allowed when mode is image-to-image")
            upload = request.files.get("image")
            if upload is None:
                raise bad_request("image: is required")
            strength = _number(form, "strength", 0, 1)
            if strength is None:
                raise bad_request("strength: is required")
            source = _open(upload)
            size = _one_megapixel(source.width / source.height)
        else:
            ratio = form.get("aspect_ratio") or "1:1"
            _enum("aspect_ratio", ratio, tuple(SD3_SIZES))
            size, source, strength = SD3_SIZES[ratio], None, 0.0
        return _generate(form, f"sd3|{model}", size, fmt, as_json, source, strength)

    @app.post("/v2beta/stable-image/generate/core")
    def core() -> Response:
        as_json, form = _preamble()
        fmt = form.get("output_format") or "png"
        _enum("output_format", fmt, ("png", "jpeg", "webp"))
        ratio = form.get("aspect_ratio") or "1:1"
        _enum("aspect_ratio", ratio, tuple(CORE_SIZES))
        _optional_common(form)
        return _generate(form, "core", CORE_SIZES[ratio], fmt, as_json, None, 0.0)

    # --- helpers -------------------------------------------------------------------------

    def _preamble() -> tuple[bool, dict[str, str]]:
        """Size, content type, accept and prompt, in the order the real API checks them."""
        if (request.content_length or 0) > MAX_BODY:
            raise StabilityError(413, "payload_too_large",
                                 "body: payloads cannot be larger than 10MiB in size")
        if not request.content_type:
            raise bad_request("content-type: required")
        if request.mimetype != "multipart/form-data":
            raise bad_request("content-type: must be multipart/form-data")
        accept = (request.headers.get("Accept") or "image/*").split(",")[0].split(";")[0].strip()
        if accept == "application/json":
            as_json = True
        elif accept == "*/*" or accept.startswith("image/"):
            as_json = False
        else:
            raise bad_request("accept: must be one of image/*, application/json")
        form = request.form.to_dict()
        if "prompt" not in form:
            raise bad_request("prompt: is required")
        if not form["prompt"].strip():
            raise bad_request("prompt: cannot be empty")
        if len(form["prompt"]) > 10000:
            raise bad_request("prompt: must be at most 10000 characters")
        return as_json, form

    def _generate(
        form: dict[str, str],
        route: str,
        size: tuple[int, int],
        fmt: str,
        as_json: bool,
        source: Image.Image | None,
        strength: float,
    ) -> Response:
        prompt = form["prompt"]
        if CONTENT_POLICY in prompt:
            raise StabilityError(403, "content_moderation", _MODERATION)
        if SLOW in prompt:
            time.sleep(float(app.config["SLOW_SECONDS"]))
        seed = int(_number(form, "seed", 0, SEED_MAX) or 0)
        if seed == 0:
            generator = rng.setdefault("rng", random.Random(app.config["RANDOM_SEED"]))
            seed = generator.randint(1, SEED_MAX)
        image = draw_image(*size, f"{route}|{prompt}|{form.get('negative_prompt', '')}|{seed}")
        if source is not None:
            # Higher strength means less of the input survives, as the docs describe it.
            base = source.convert("RGB").resize(size)
            image = Image.blend(base, image, strength)
        data = encode(image, fmt)
        if as_json:
            response = jsonify(
                {"image": base64.b64encode(data).decode(), "seed": seed, "finish_reason": "SUCCESS"}
            )
            response.headers["Content-Type"] = f"application/json; type={_MIME[fmt]}"
            return response
        response = Response(data, mimetype=_MIME[fmt])
        response.headers["seed"] = str(seed)
        response.headers["finish-reason"] = "SUCCESS"
        return response

    return app


def _optional_common(form: dict[str, str]) -> None:
    if len(form.get("negative_prompt", "")) > 10000:
        raise bad_request("negative_prompt: must be at most 10000 characters")
    if form.get("style_preset"):
        _enum("style_preset", form["style_preset"], STYLE_PRESETS)
    raw_seed = form.get("seed")
    if raw_seed not in (None, ""):
        try:
            seed = float(raw_seed)
        except ValueError:
            raise bad_request("seed: must be a number") from None
        if seed != int(seed) or not 0 <= seed <= SEED_MAX:
            raise bad_request(f"seed: must be an integer between 0 and {SEED_MAX}")


def _open(upload: Any) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(upload.read()))
        image.load()
    except (UnidentifiedImageError, OSError):
        raise bad_request("image: unsupported or corrupt image") from None
    if min(image.size) < 64:
        raise bad_request("image: every side must be at least 64 pixels")
    return image


def _one_megapixel(ratio: float) -> tuple[int, int]:
    """About 1 MP at RATIO (width / height), sides rounded to multiples of 64."""
    width = max(64, round(math.sqrt(1024 * 1024 * ratio) / 64) * 64)
    height = max(64, round(math.sqrt(1024 * 1024 / ratio) / 64) * 64)
    return width, height

"""Built-in demo backend: an emulator of a subset of the AUTOMATIC1111 WebUI 1.10.1 HTTP API.

It draws deterministic procedural pictures with Pillow (no model, no GPU) so the app works out of
the box and end-to-end tests have a real HTTP backend. The app talks to it exactly as to a real
A1111 server, through the same definition file.

Routes (all under ``/sdapi/v1/``):

- GET ``memory``, ``sd-models``, ``samplers``, ``schedulers``, ``upscalers``,
  ``latent-upscale-modes``, ``loras``, ``sd-vae``; GET/POST ``options``; GET ``progress``
  (query ``skip_current_image``); POST ``interrupt``, ``skip``, ``refresh-checkpoints``,
  ``refresh-loras``, ``refresh-vae`` (all answer ``null``); POST ``txt2img`` and ``img2img``.

Behaviour that follows the real server (see the contract material the project keeps):

- Request bodies are checked like FastAPI + pydantic v1 (coercion included: ``"20"`` is a valid
  ``steps``, ``12.7`` becomes ``12``); invalid fields give 422 ``{"detail": [{loc, msg, type}]}``.
  Unknown top-level keys are ignored (so a top-level ``sd_model_checkpoint`` does nothing).
- The checkpoint comes from ``override_settings.sd_model_checkpoint`` (title, model name, file
  name or hash of a listed model), else from the ``sd_model_checkpoint`` option; an unknown
  override falls back to the option, as A1111 does.
- An unknown ``sampler_name`` becomes "DPM++ 2M"; a missing one falls back to ``sampler_index``
  ("Euler" by default). A sampler name with a schedule suffix ("DPM++ 2M Karras") is split. An
  unknown scheduler gives "Schedule type: Automatic".
- seed -1 draws a random seed; images get seed, seed+1, ... over batch_size * n_iter images (all
  the same seed when subseed_strength != 0, the variation seed then increments instead).
- ``info`` is a JSON *string*; every PNG carries its infotext in a ``parameters`` text chunk.
- ``parameters`` echoes the validated request with defaults (img2img: ``init_images`` and
  ``mask`` are nulled unless ``include_init_images`` is true).
- One job at a time (a queue lock). ``/progress`` reports A1111's fraction and ETA formula;
  ``current_image`` is a PNG preview only while ``show_progress_every_n_steps`` > 0 (and
  ``live_previews_enable``), refreshed every n steps. ``/interrupt`` ends the job: the request
  returns 200 with the images of every batch made so far, the current batch as partial
  (noisy) images. ``/skip`` ends the current batch early, keeps its partial images and goes on
  with the next batch, as A1111 does.
- Errors outside validation use A1111's ``{"error", "detail", "body", "errors"}`` shape:
  img2img without ``init_images`` -> 404 "Init image not found"; an undecodable init image or
  mask -> 500 "Invalid encoded image"; an ``http(s)://`` init image -> 500 "Requests not allowed"
  (the demo never fetches URLs); a non-string init image -> 500 AttributeError; more init images
  than batch_size -> 500 RuntimeError; a ``script_name`` -> 422 "Script '...' not found" (the demo
  has no scripts); POST options with an unknown checkpoint -> 500 RuntimeError.

Decisions of the demo (not A1111 behaviour):

- No grid image is ever returned (``index_of_first_image`` is always 0).
- The exact width x height is honoured (A1111 would round down to a multiple of 8). Limits:
  8..4096 pixels a side, 1..1000 steps, batch_size 1..64, at most 100 images a request;
  outside them -> 500 ``ValueError`` in the A1111 error shape.
- Each image costs ``steps * step_delay`` seconds: a batch sleeps ``batch_size * step_delay`` a
  step. img2img runs ``int(min(denoising_strength, 0.999) * steps) + 1`` steps, like A1111.
- img2img: resize_mode 0 and 3 stretch the init image to width x height, 1 crops to fill, 2 fits
  and fills the borders with a blurred stretched copy. The init image is blended with the
  generated picture by denoising_strength (0 -> the init image, 1 -> purely generated). A mask
  limits the change to its white part (``inpainting_mask_invert`` flips it, ``mask_blur``
  softens it). Other inpainting settings are ignored.
- enable_hr renders directly at the hires size (``hr_resize_x/y`` or ``hr_scale``) and adds the
  Hires infotext fields; there is no second pass. ``styles``, ``infotext``, ``alwayson_scripts``
  and sampler tuning fields are accepted and ignored.
- ``<lora:name:weight>`` tags naming a demo LoRA tint the picture and add "Lora hashes".
  The "demo-pastel" model paints with a pastel palette.
- ``create_demo_app(api_auth="user:pass[,user2:pass2]")`` enables HTTP basic auth like
  ``--api-auth`` (401 on every route except ``loras``).
"""

from __future__ import annotations

import base64
import colorsys
import copy
import datetime
import hashlib
import io
import json
import math
import random
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps, PngImagePlugin
from werkzeug.exceptions import HTTPException

__all__ = ["create_demo_app"]

DATA_DIR = Path(__file__).with_name("demo_data")
API_PREFIX = "/sdapi/v1"
# GET routes that answer a fixed list (or object) from demo_data/<name>.json.
LIST_ROUTES = ("memory", "sd-models", "samplers", "schedulers", "upscalers",
               "latent-upscale-modes", "loras", "sd-vae")
VERSION = "demo"

MAX_SIDE = 4096
MIN_SIDE = 8
MAX_STEPS = 1000
MAX_BATCH_SIZE = 64
MAX_IMAGES = 100

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

# Tints of the demo LoRAs; unknown names never get here (A1111 ignores unknown networks).
_LORA_TINTS = {"demo-warm": (255, 150, 60), "demo-cool": (60, 140, 255)}

# Colour words in the prompt steer the palette (and in the negative prompt, keep it away).
_COLOR_WORDS = {
    "red": (214, 48, 49),
    "crimson": (180, 20, 60),
    "orange": (245, 140, 40),
    "amber": (250, 180, 40),
    "gold": (240, 190, 60),
    "golden": (240, 190, 60),
    "yellow": (245, 215, 70),
    "lime": (170, 220, 60),
    "green": (60, 170, 90),
    "forest": (40, 110, 60),
    "teal": (30, 150, 150),
    "cyan": (60, 200, 220),
    "blue": (50, 100, 220),
    "ocean": (30, 90, 170),
    "sky": (120, 180, 240),
    "navy": (25, 40, 110),
    "purple": (130, 70, 190),
    "violet": (150, 90, 220),
    "magenta": (210, 60, 170),
    "pink": (240, 130, 180),
    "brown": (130, 85, 50),
    "white": (240, 240, 240),
    "snow": (235, 240, 250),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "black": (20, 20, 25),
    "night": (20, 25, 60),
    "sunset": (250, 120, 80),
}

_EXTRA_NETWORK_RE = re.compile(r"<(\w+):([^>]+)>")


# --------------------------------------------------------------------------------------------
# Errors


class _ApiError(Exception):
    """An error answered with a given status and JSON payload."""

    def __init__(self, status: int, payload: Any, headers: dict[str, str] | None = None):
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
    def __init__(self, msg: str, type_: str):
        super().__init__(msg)
        self.msg = msg
        self.type = type_


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


def _validate_model(body: Any, fields: list[_FieldSpec]) -> dict[str, Any]:
    """Validate a request body like a pydantic v1 model whose fields are all Optional."""
    data = _body_dict(body)
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, kind, default in fields:
        if name not in data:
            values[name] = copy.deepcopy(default)
            continue
        raw = data[name]
        if raw is None:
            values[name] = None
            continue
        try:
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
        except _Invalid as exc:
            errors.append({"loc": ["body", name], "msg": exc.msg, "type": exc.type})
    if errors:
        raise _validation_error(errors)
    return values


def _read_json_body() -> Any:
    """Read the request body the way FastAPI does for a JSON body parameter."""
    raw = request.get_data(cache=True)
    if not raw:
        return None
    content_type = request.headers.get("Content-Type")
    mimetype = request.mimetype or ""
    main, _, sub = mimetype.partition("/")
    if content_type and not (main == "application" and (sub == "json" or sub.endswith("+json"))):
        # FastAPI hands the raw bytes to the model, which then is "not a valid dict".
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _validation_error(
            [
                {
                    "loc": ["body", exc.pos],
                    "msg": exc.msg,
                    "type": "value_error.jsondecode",
                    "ctx": {
                        "msg": exc.msg,
                        "doc": exc.doc,
                        "pos": exc.pos,
                        "lineno": exc.lineno,
                        "colno": exc.colno,
                    },
                }
            ]
        ) from None


# --------------------------------------------------------------------------------------------
# Images


def _seed_int(*parts: Any) -> int:
    # hashlib, not hash(): str hashes are salted per process and would break determinism.
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, int, int]:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


def _art_text(prompt: str) -> str:
    """The prompt as the painter sees it: no extra-network tags, normalised spaces."""
    return " ".join(_EXTRA_NETWORK_RE.sub(" ", prompt).lower().split())


@dataclass(frozen=True)
class _Look:
    """Everything a procedural picture depends on."""

    prompt: str
    negative: str
    seed: int
    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str
    schedule: str
    style: str
    loras: tuple[tuple[str, float], ...] = ()


def _palette(look: _Look) -> list[tuple[int, int, int]]:
    text = _art_text(look.prompt)
    banned = set(re.findall(r"[a-z]+", look.negative.lower()))
    words = re.findall(r"[a-z]+", text)
    # The prompt sets the mood (base hue), the seed nudges it so seeds differ but stay related.
    rng = random.Random(_seed_int("palette", look.seed, text))
    base = (_seed_int("hue", text) % 1000) / 1000.0 + rng.uniform(-0.06, 0.06)
    offsets = rng.choice(
        [(0.0, 0.08, 0.5, -0.08, 0.58), (0.0, 0.33, 0.66, 0.12, 0.45), (0.0, -0.1, 0.1, 0.5, 0.2)]
    )
    if look.style == "pastel":
        sat, val = (0.22, 0.42), (0.88, 1.0)
    else:
        sat, val = (0.5, 0.9), (0.55, 0.95)
    colors: list[tuple[int, int, int]] = []
    for offset in offsets:
        r, g, b = colorsys.hsv_to_rgb((base + offset) % 1.0, rng.uniform(*sat), rng.uniform(*val))
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    named = [_COLOR_WORDS[w] for w in words if w in _COLOR_WORDS and w not in banned]
    for index, color in enumerate(dict.fromkeys(named)):
        if index >= len(colors):
            break
        if look.style == "pastel":
            color = _mix(color, (255, 255, 255), 0.45)
        # Keep a little of the generated colour so repeated words still vary with the seed.
        colors[(index * 2) % len(colors)] = _mix(color, colors[index], 0.15)
    return colors


def _gradient(colors: list[tuple[int, int, int]], angle: float, size: int = 32) -> Image.Image:
    """A small three-stop gradient; resized up it becomes a smooth background."""
    dx, dy = math.cos(angle), math.sin(angle)
    c0, c1, c2 = colors[0], colors[1], colors[2]
    data = []
    for y in range(size):
        v = y / (size - 1) - 0.5
        for x in range(size):
            u = x / (size - 1) - 0.5
            t = _clamp(0.5 + (u * dx + v * dy) * 1.3, 0.0, 1.0)
            data.append(_mix(c0, c1, t * 2) if t < 0.5 else _mix(c1, c2, (t - 0.5) * 2))
    image = Image.new("RGB", (size, size))
    image.putdata(data)
    return image


def _paint(look: _Look) -> Image.Image:
    """Draw the finished picture for one image: deterministic for a given look."""
    w, h = look.width, look.height
    unit = min(w, h)
    text = _art_text(look.prompt)
    rng = random.Random(_seed_int("layout", look.seed, text))
    # The sampler and scheduler move things a little, as a different sampler would.
    jitter = random.Random(_seed_int("sampler", look.sampler, look.schedule, look.seed))
    jx = jitter.uniform(-0.02, 0.02) * unit
    jy = jitter.uniform(-0.02, 0.02) * unit
    colors = _palette(look)
    darks = [_mix(c, (10, 10, 30), 0.35 + 0.15 * i) for i, c in enumerate(colors)]

    angle = rng.uniform(0, 2 * math.pi) + jitter.uniform(-0.1, 0.1)
    image = _gradient([colors[0], colors[1], colors[4]], angle).resize(
        (w, h), Image.Resampling.BICUBIC
    )
    draw = ImageDraw.Draw(image, "RGBA")

    # A sun or moon with a soft halo.
    sx, sy = rng.uniform(0.15, 0.85) * w + jx, rng.uniform(0.12, 0.45) * h + jy
    radius = rng.uniform(0.07, 0.16) * unit
    sun = _mix(colors[3], (255, 250, 235), 0.35)
    for ring in range(5, 0, -1):
        r = radius * (1 + ring * 0.35)
        draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=(*sun, 18 + 6 * (5 - ring)))
    draw.ellipse((sx - radius, sy - radius, sx + radius, sy + radius), fill=(*sun, 235))

    # Small dots (stars, pollen, dust).
    for _ in range(rng.randint(8, 30)):
        px, py = rng.uniform(0, w), rng.uniform(0, h * 0.6)
        pr = rng.uniform(0.004, 0.012) * unit
        dot = (255, 255, 245, rng.randint(90, 210))
        draw.ellipse((px - pr, py - pr, px + pr, py + pr), fill=dot)

    # Floating shapes.
    for _ in range(rng.randint(2, 5)):
        kind = rng.choice(["circle", "ring", "triangle", "diamond"])
        cx, cy = rng.uniform(0.05, 0.95) * w + jx, rng.uniform(0.1, 0.7) * h + jy
        size = rng.uniform(0.04, 0.14) * unit
        color = (*rng.choice(colors), rng.randint(70, 170))
        if kind == "circle":
            draw.ellipse((cx - size, cy - size, cx + size, cy + size), fill=color)
        elif kind == "ring":
            draw.ellipse(
                (cx - size, cy - size, cx + size, cy + size),
                outline=color,
                width=max(1, round(size * 0.25)),
            )
        elif kind == "triangle":
            corners = [(cx, cy - size), (cx + size, cy + size), (cx - size, cy + size)]
            draw.polygon(corners, fill=color)
        else:
            corners = [(cx, cy - size), (cx + size, cy), (cx, cy + size), (cx - size, cy)]
            draw.polygon(corners, fill=color)

    # Hills, back to front: lighter and higher first.
    layers = rng.randint(2, 3)
    for layer in range(layers):
        base_y = h * (0.55 + 0.12 * layer + rng.uniform(-0.05, 0.05)) + jy
        amplitude = h * rng.uniform(0.04, 0.14)
        knots = [rng.uniform(-1, 1) for _ in range(rng.randint(4, 8))]
        points = [(0.0, float(h))]
        samples = 48
        for i in range(samples + 1):
            pos = i / samples * (len(knots) - 1)
            k = min(int(pos), len(knots) - 2)
            t = pos - k
            # Cosine interpolation keeps ridges smooth without numpy.
            t2 = (1 - math.cos(t * math.pi)) / 2
            value = knots[k] * (1 - t2) + knots[k + 1] * t2
            points.append((i / samples * w, base_y - value * amplitude))
        points.append((float(w), float(h)))
        shade = darks[(layer + 2) % len(darks)]
        draw.polygon(points, fill=(*_mix(shade, colors[0], 0.3 / (layer + 1)), 235))

    # Fewer steps look softer, as an under-sampled picture would.
    blur = unit / 512 * (0.7 + 10 / max(look.steps, 1))
    image = image.filter(ImageFilter.GaussianBlur(blur))
    # CFG scale drives saturation and contrast.
    image = ImageEnhance.Color(image).enhance(_clamp(0.35 + look.cfg_scale * 0.1, 0.3, 2.0))
    image = ImageEnhance.Contrast(image).enhance(_clamp(0.8 + look.cfg_scale * 0.03, 0.7, 1.4))
    if look.style == "pastel":
        image = Image.blend(image, Image.new("RGB", (w, h), (250, 246, 255)), 0.18)
    for name, weight in look.loras:
        tint = _LORA_TINTS.get(name, (200, 200, 200))
        if weight < 0:
            tint = (255 - tint[0], 255 - tint[1], 255 - tint[2])
        alpha = _clamp(0.22 * abs(weight), 0.0, 0.6)
        if alpha > 0:
            image = Image.blend(image, Image.new("RGB", (w, h), tint), alpha)
    return image


def _noise(seed: int, width: int, height: int) -> Image.Image:
    """Latent-like noise (an eighth of the size, scaled up): the look of an unfinished image."""
    lw, lh = max(1, (width + 7) // 8), max(1, (height + 7) // 8)
    data = random.Random(_seed_int("noise", seed, width, height)).randbytes(lw * lh * 3)
    small = Image.frombytes("RGB", (lw, lh), data)
    # Toned down towards grey: raw random colours are harsh in previews.
    small = Image.blend(small, Image.new("RGB", (lw, lh), (128, 128, 128)), 0.35)
    return small.resize((width, height), Image.Resampling.BILINEAR)


def _png_b64(image: Image.Image, infotext: str | None = None) -> str:
    buffer = io.BytesIO()
    info = None
    if infotext is not None:
        # Like A1111: a tEXt chunk "parameters" (Pillow switches to iTXt for non-latin-1 text).
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", infotext)
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


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


def _flatten(image: Image.Image, background: str) -> Image.Image:
    """An RGB init image; transparency goes onto img2img_background_color, as in A1111."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        try:
            flat = Image.new("RGBA", rgba.size, background)
        except ValueError:
            flat = Image.new("RGBA", rgba.size, "#ffffff")
        flat.alpha_composite(rgba)
        image = flat
    return image.convert("RGB")


def _mask_from(image: Image.Image) -> Image.Image:
    """A grey mask; a partly transparent RGBA mask uses its alpha, like create_binary_mask."""
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        return image.getchannel("A")
    return image.convert("L")


def _resize_for(image: Image.Image, width: int, height: int, mode: int) -> Image.Image:
    if image.size == (width, height):
        return image.copy()
    if mode == 1:
        return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    if mode == 2:
        inner = ImageOps.contain(image, (width, height), Image.Resampling.LANCZOS)
        back = image.resize((width, height), Image.Resampling.BILINEAR)
        back = back.filter(ImageFilter.GaussianBlur(max(width, height) / 40))
        back.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
        return back
    return image.resize((width, height), Image.Resampling.LANCZOS)


# --------------------------------------------------------------------------------------------
# Generation plan


def _quote(value: Any) -> Any:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return value
    return json.dumps(text, ensure_ascii=False)


_UNSET = object()


@dataclass
class _Plan:
    """A validated, resolved generation request."""

    mode: str
    params: dict[str, Any]
    model: dict[str, Any]
    options: dict[str, Any]
    persist: dict[str, Any]
    sampler: str
    schedule: str
    extra: dict[str, Any]
    prompts: list[str]
    negatives: list[str]
    seeds: list[int]
    subseeds: list[int]
    subseed_strength: float
    width: int
    height: int
    out_width: int
    out_height: int
    steps: int
    sampling_steps: int
    cfg_scale: float
    batch_size: int
    n_iter: int
    denoising: float | None
    loras: tuple[tuple[str, float], ...]
    init_images: list[Image.Image] = field(default_factory=list)
    mask: Image.Image | None = None

    @property
    def style(self) -> str:
        return "pastel" if "pastel" in self.model["model_name"] else "vivid"

    def look(self, index: int, seed: int) -> _Look:
        return _Look(
            prompt=self.prompts[index],
            negative=self.negatives[index],
            seed=seed,
            width=self.out_width,
            height=self.out_height,
            steps=self.steps,
            cfg_scale=self.cfg_scale,
            sampler=self.sampler,
            schedule=self.schedule,
            style=self.style,
            loras=self.loras,
        )

    def target(self, index: int) -> Image.Image:
        """The finished generated picture of image ``index`` (before any img2img blending)."""
        image = _paint(self.look(index, self.seeds[index]))
        if self.subseed_strength:
            variation = _paint(self.look(index, self.subseeds[index]))
            image = Image.blend(image, variation, _clamp(self.subseed_strength, 0.0, 1.0))
        return image

    def frame(self, index: int, target: Image.Image, fraction: float) -> Image.Image:
        """The picture of image ``index`` after ``fraction`` of its sampling steps."""
        if fraction >= 1:
            image = target
        else:
            noise = _noise(self.seeds[index], self.out_width, self.out_height)
            image = Image.blend(noise, target, _clamp(fraction, 0.0, 1.0))
        if self.mode != "img2img":
            return image
        init = self.init_images[index % len(self.init_images)]
        strength = _clamp(self.denoising or 0.0, 0.0, 1.0)
        if strength <= 0:
            blended = init.copy()
        elif strength >= 1:
            blended = image
        else:
            blended = Image.blend(init, image, strength)
        if self.mask is not None:
            blended = Image.composite(blended, init, self.mask)
        return blended

    def infotext(self, index: int) -> str:
        opts = self.options
        params = self.params
        restore_faces = bool(params.get("restore_faces"))
        clip_skip = _int_or(opts.get("CLIP_stop_at_last_layers"), 1)
        resize_w = _int_or(params.get("seed_resize_from_w"), -1)
        resize_h = _int_or(params.get("seed_resize_from_h"), -1)
        generation = {
            "Steps": self.steps,
            "Sampler": self.sampler,
            "Schedule type": self.schedule,
            "CFG scale": self.cfg_scale,
            "Seed": self.seeds[index],
            "Face restoration": opts.get("face_restoration_model") if restore_faces else None,
            "Size": f"{self.width}x{self.height}",
            "Model hash": self.model["hash"] if opts.get("add_model_hash_to_info", True) else None,
            "Model": self.model["model_name"] if opts.get("add_model_name_to_info", True) else None,
            "Variation seed": self.subseeds[index] if self.subseed_strength else None,
            "Variation seed strength": self.subseed_strength or None,
            "Seed resize from": (
                f"{resize_w}x{resize_h}" if resize_w > 0 and resize_h > 0 else None
            ),
            "Denoising strength": self.extra.get("Denoising strength"),
            "Clip skip": clip_skip if clip_skip > 1 else None,
            "Tiling": "True" if params.get("tiling") else None,
            **self.extra,
            "Version": VERSION if opts.get("add_version_to_infotext", True) else None,
        }
        text = ", ".join(
            k if k == v else f"{k}: {_quote(v)}" for k, v in generation.items() if v is not None
        )
        negative = self.negatives[index]
        negative_text = f"\nNegative prompt: {negative}" if negative else ""
        return f"{self.prompts[index]}{negative_text}\n{text}".strip()

    def info(self, infotexts: list[str], job_timestamp: str) -> str:
        opts = self.options
        restore_faces = bool(self.params.get("restore_faces"))
        styles = self.params.get("styles")
        obj = {
            "prompt": self.prompts[0],
            "all_prompts": self.prompts,
            "negative_prompt": self.negatives[0],
            "all_negative_prompts": self.negatives,
            "seed": self.seeds[0],
            "all_seeds": self.seeds,
            "subseed": self.subseeds[0],
            "all_subseeds": self.subseeds,
            "subseed_strength": self.params.get("subseed_strength"),
            "width": self.width,
            "height": self.height,
            "sampler_name": self.sampler,
            "cfg_scale": self.cfg_scale,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "restore_faces": restore_faces,
            "face_restoration_model": opts.get("face_restoration_model") if restore_faces else None,
            "sd_model_name": self.model["model_name"],
            "sd_model_hash": self.model["hash"],
            "sd_vae_name": None,
            "sd_vae_hash": None,
            "seed_resize_from_w": self.params.get("seed_resize_from_w"),
            "seed_resize_from_h": self.params.get("seed_resize_from_h"),
            "denoising_strength": self.denoising,
            "extra_generation_params": self.extra,
            "index_of_first_image": 0,
            "infotexts": infotexts,
            "styles": list(styles) if styles else [],
            "job_timestamp": job_timestamp,
            "clip_skip": _int_or(opts.get("CLIP_stop_at_last_layers"), 1),
            "is_using_inpainting_conditioning": False,
            "version": VERSION,
        }
        # Processed.js() in A1111 uses json.dumps with its default separators.
        return json.dumps(obj)


def _int_or(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _value(params: dict[str, Any], key: str, default: Any) -> Any:
    # Every field is Optional: an explicit null falls back to the model default here.
    value = params.get(key)
    return default if value is None else value


def _lora_hash(name: str) -> str:
    return hashlib.sha256(f"demo-lora:{name}".encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Backend state


@dataclass
class _JobState:
    """Mirror of A1111's shared.state fields reported by /progress."""

    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0
    time_start: float = 0.0
    current_image: Image.Image | None = None
    textinfo: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "stopping_generation": self.stopping_generation,
            "job": self.job,
            "job_count": self.job_count,
            "job_timestamp": self.job_timestamp,
            "job_no": self.job_no,
            "sampling_step": self.sampling_step,
            "sampling_steps": self.sampling_steps,
        }


def _load(name: str) -> Any:
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


class _Backend:
    """State of one demo server: options, job progress and the queue lock."""

    def __init__(self, step_delay: float):
        self.step_delay = max(0.0, float(step_delay))
        self.lists = {name: _load(f"{name}.json") for name in LIST_ROUTES}
        self.options: dict[str, Any] = _load("options.json")
        self.queue_lock = threading.Lock()
        # Guards state and options; waited on between steps so interrupt/skip act at once.
        self.cond = threading.Condition()
        self.state = _JobState()

    # -- lookups ------------------------------------------------------------------------------

    @property
    def models(self) -> list[dict[str, Any]]:
        return self.lists["sd-models"]

    def find_model(self, name: Any) -> dict[str, Any] | None:
        if not isinstance(name, str) or not name:
            return None
        for model in self.models:
            file_name = model["filename"].rsplit("/", 1)[-1]
            aliases = {
                model["title"],
                model["model_name"],
                file_name,
                f"{file_name} [{model['hash']}]",
                model["hash"],
                model["sha256"],
            }
            if name in aliases:
                return model
        return None

    def find_lora(self, name: str) -> dict[str, Any] | None:
        for lora in self.lists["loras"]:
            if name in (lora["name"], lora["alias"]):
                return lora
        return None

    def resolve_sampler(self, requested: str | None, scheduler: str | None) -> tuple[str, str]:
        """Return (sampler name, schedule type label) as A1111 1.10 resolves them."""
        samplers = self.lists["samplers"]
        schedulers = self.lists["schedulers"]
        by_name = {s["name"]: s for s in samplers}
        schedule_map = {s["name"]: s for s in schedulers}
        schedule_map.update({s["label"]: s for s in schedulers})
        # sd_samplers.get_sampler_and_scheduler: an unknown sampler falls back to the first.
        found = schedule_map.get(scheduler or "", schedulers[0])
        name = requested or samplers[0]["name"]
        label = found["label"]
        if " " in name:
            for item in schedulers:
                if name.endswith(" " + item["label"]):
                    name = name[: -len(item["label"]) - 1]
                    label = item["label"]
                    break
        sampler = by_name.get(name, samplers[0])
        # The API keeps an explicit scheduler; otherwise it uses the label found above.
        effective = scheduler if scheduler else (label if label != "Automatic" else None)
        # The k-diffusion sampler then resolves "Automatic" to the sampler's own default.
        effective = effective or "Automatic"
        if effective == "Automatic":
            effective = sampler.get("options", {}).get("scheduler")
        resolved = schedule_map.get(effective or "")
        if resolved is None or resolved["label"] == "Automatic":
            return sampler["name"], "Automatic"
        return sampler["name"], resolved["label"]

    # -- planning -----------------------------------------------------------------------------

    def plan(self, mode: str, params: dict[str, Any]) -> _Plan:
        """Resolve a validated request into a plan, raising A1111-style errors."""
        with self.cond:
            options = copy.deepcopy(self.options)
        background = str(options.get("img2img_background_color") or "#ffffff")

        mask: Image.Image | None = None
        if mode == "img2img":
            if params.get("init_images") is None or params["init_images"] == []:
                raise _http_exception(404, "Init image not found")
            if params.get("mask"):
                mask = _mask_from(_decode_image(params["mask"]))
        if params.get("script_name"):
            raise _http_exception(422, f"Script '{params['script_name']}' not found")

        sampler, schedule = self.resolve_sampler(
            params.get("sampler_name") or params.get("sampler_index"), params.get("scheduler")
        )
        init_images: list[Image.Image] = []
        if mode == "img2img":
            init_images = [_flatten(_decode_image(x), background) for x in params["init_images"]]

        # Checkpoint: an override naming a known model wins, otherwise the current option.
        overrides = dict(params.get("override_settings") or {})
        override_model = self.find_model(overrides.get("sd_model_checkpoint"))
        if override_model is None:
            overrides.pop("sd_model_checkpoint", None)
        else:
            overrides["sd_model_checkpoint"] = override_model["title"]
        model = override_model or self.find_model(options.get("sd_model_checkpoint"))
        model = model or self.models[0]
        options.update(overrides)
        persist = {} if _value(params, "override_settings_restore_afterwards", True) else overrides

        width = _value(params, "width", 512)
        height = _value(params, "height", 512)
        steps = _value(params, "steps", 50)
        batch_size = _value(params, "batch_size", 1)
        n_iter = _value(params, "n_iter", 1)
        cfg_scale = float(_value(params, "cfg_scale", 7.0))
        subseed_strength = float(_value(params, "subseed_strength", 0))
        denoising = params.get("denoising_strength")
        for value in params.values():
            if isinstance(value, float) and not math.isfinite(value):
                # What Starlette's JSON encoder raises on the echoed parameters.
                raise _a1111_error(
                    500, "ValueError", errors="Out of range float values are not JSON compliant"
                )
        if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
            raise _a1111_error(
                500,
                "ValueError",
                errors=f"demo backend: width and height must be {MIN_SIDE}..{MAX_SIDE}",
            )
        if not 1 <= steps <= MAX_STEPS:
            raise _a1111_error(
                500, "ValueError", errors=f"demo backend: steps must be 1..{MAX_STEPS}"
            )
        if not 1 <= batch_size <= MAX_BATCH_SIZE or n_iter < 1:
            raise _a1111_error(
                500,
                "ValueError",
                errors=f"demo backend: batch_size must be 1..{MAX_BATCH_SIZE}, n_iter >= 1",
            )
        if mode == "img2img" and len(init_images) > 1:
            if len(init_images) > batch_size:
                raise _a1111_error(
                    500,
                    "RuntimeError",
                    errors=f"bad number of images passed: {len(init_images)}; "
                    f"expecting {batch_size} or less",
                )
            # A1111 shrinks the batch to the number of init images.
            batch_size = len(init_images)
        total = batch_size * n_iter
        if total > MAX_IMAGES:
            raise _a1111_error(
                500, "ValueError", errors=f"demo backend: at most {MAX_IMAGES} images a request"
            )

        extra: dict[str, Any] = {}
        out_width, out_height = width, height
        sampling_steps = steps
        if mode == "img2img":
            denoising = float(_value(params, "denoising_strength", 0.75))
            extra["Denoising strength"] = denoising
            # sd_samplers_common.setup_img2img_steps without img2img_fix_steps.
            sampling_steps = int(min(_clamp(denoising, 0.0, 1.0), 0.999) * steps) + 1
        elif _value(params, "enable_hr", False):
            if denoising is None:
                denoising = 0.7
            extra["Denoising strength"] = denoising
            out_width, out_height = self._hires_size(params, width, height, extra)
            if not (MIN_SIDE <= out_width <= MAX_SIDE and MIN_SIDE <= out_height <= MAX_SIDE):
                raise _a1111_error(
                    500,
                    "ValueError",
                    errors=f"demo backend: the hires size must be {MIN_SIDE}..{MAX_SIDE}",
                )
            hr_steps = _value(params, "hr_second_pass_steps", 0)
            if hr_steps:
                extra["Hires steps"] = hr_steps
            if params.get("hr_upscaler"):
                extra["Hires upscaler"] = params["hr_upscaler"]

        prompt = _value(params, "prompt", "")
        negative = _value(params, "negative_prompt", "")
        loras: list[tuple[str, float]] = []
        if not _value(params, "disable_extra_networks", False):
            default_weight = options.get("extra_networks_default_multiplier", 1.0)
            for kind, args in _EXTRA_NETWORK_RE.findall(prompt):
                if kind != "lora":
                    continue
                parts = args.split(":")
                lora = self.find_lora(parts[0])
                if lora is None:
                    continue
                try:
                    weight = float(parts[1]) if len(parts) > 1 else float(default_weight)
                except ValueError:
                    weight = 1.0
                loras.append((lora["name"], weight))
            if loras:
                names = dict.fromkeys(name for name, _ in loras)
                extra["Lora hashes"] = ", ".join(f"{n}: {_lora_hash(n)}" for n in names)
        if schedule != "Automatic":
            extra["Schedule type"] = schedule

        seed = params.get("seed")
        if seed is None or seed == -1:
            seed = random.randrange(4294967294)
        subseed = params.get("subseed")
        if subseed is None or subseed == -1:
            subseed = random.randrange(4294967294)
        seeds = [seed + (i if subseed_strength == 0 else 0) for i in range(total)]
        subseeds = [subseed + i for i in range(total)]

        plan = _Plan(
            mode=mode,
            params=params,
            model=model,
            options=options,
            persist=persist,
            sampler=sampler,
            schedule=schedule,
            extra=extra,
            prompts=[prompt] * total,
            negatives=[negative] * total,
            seeds=seeds,
            subseeds=subseeds,
            subseed_strength=subseed_strength,
            width=width,
            height=height,
            out_width=out_width,
            out_height=out_height,
            steps=steps,
            sampling_steps=sampling_steps,
            cfg_scale=cfg_scale,
            batch_size=batch_size,
            n_iter=n_iter,
            denoising=denoising,
            loras=tuple(loras),
        )
        if mode == "img2img":
            resize_mode = _value(params, "resize_mode", 0)
            plan.init_images = [
                _resize_for(img, out_width, out_height, resize_mode) for img in init_images
            ]
            if mask is not None:
                mask = _resize_for(mask, out_width, out_height, resize_mode)
                if _value(params, "inpainting_mask_invert", 0):
                    mask = ImageOps.invert(mask)
                blur = params.get("mask_blur")
                if blur is None:
                    blur = max(_value(params, "mask_blur_x", 4), _value(params, "mask_blur_y", 4))
                if blur > 0:
                    mask = mask.filter(ImageFilter.GaussianBlur(blur / 2))
                plan.mask = mask
        return plan

    @staticmethod
    def _hires_size(
        params: dict[str, Any], width: int, height: int, extra: dict[str, Any]
    ) -> tuple[int, int]:
        resize_x = _value(params, "hr_resize_x", 0)
        resize_y = _value(params, "hr_resize_y", 0)
        if resize_x == 0 and resize_y == 0:
            scale = float(_value(params, "hr_scale", 2.0))
            extra["Hires upscale"] = scale
            return int(width * scale), int(height * scale)
        extra["Hires resize"] = f"{resize_x}x{resize_y}"
        if resize_y == 0:
            return resize_x, resize_x * height // width
        if resize_x == 0:
            return resize_y * width // height, resize_y
        return resize_x, resize_y

    # -- running ------------------------------------------------------------------------------

    def _previews_every(self) -> int:
        # Called with self.cond held.
        if not self.options.get("live_previews_enable", True):
            return 0
        return max(0, _int_or(self.options.get("show_progress_every_n_steps"), 0))

    def run(self, plan: _Plan) -> tuple[list[Image.Image], list[int], str]:
        """Run a plan under the queue lock; return images, their indexes and the timestamp."""
        with self.queue_lock:
            with self.cond:
                state = self.state
                state.sampling_step = 0
                state.sampling_steps = 0
                state.time_start = time.time()
                state.job_count = plan.n_iter
                state.job_no = 0
                state.job_timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
                state.current_image = None
                state.skipped = False
                state.interrupted = False
                state.stopping_generation = False
                state.textinfo = None
                state.job = f"scripts_{plan.mode}"
                if plan.persist:
                    self._apply_options(plan.persist)
                # Like A1111, override_settings hold for the whole job (so /progress sees e.g.
                # show_progress_every_n_steps) and are restored afterwards.
                overrides = {k: v for k, v in plan.options.items() if self.options.get(k) != v}
                restore = {k: self.options.get(k, _UNSET) for k in overrides}
                self.options.update(overrides)
                job_timestamp = state.job_timestamp
            try:
                return (*self._sample_all(plan), job_timestamp)
            finally:
                with self.cond:
                    # A1111's state.end() only clears these; the rest stays readable.
                    self.state.job = ""
                    self.state.job_count = 0
                    for key, value in restore.items():
                        if key in plan.persist:
                            continue
                        if value is _UNSET:
                            self.options.pop(key, None)
                        else:
                            self.options[key] = value

    def _sample_all(self, plan: _Plan) -> tuple[list[Image.Image], list[int]]:
        images: list[Image.Image] = []
        indexes: list[int] = []
        state = self.state
        for iteration in range(plan.n_iter):
            with self.cond:
                if state.skipped:
                    state.skipped = False
                # Never before the first batch: an interrupted job still returns one batch.
                if iteration and (state.interrupted or state.stopping_generation):
                    break
                state.job_no = iteration
                state.sampling_step = 0
                state.sampling_steps = plan.sampling_steps
            batch = range(iteration * plan.batch_size, (iteration + 1) * plan.batch_size)
            targets = [plan.target(i) for i in batch]
            done = plan.sampling_steps
            for step in range(plan.sampling_steps):
                with self.cond:
                    stopped = self.cond.wait_for(
                        lambda: state.interrupted or state.skipped,
                        timeout=self.step_delay * len(batch),
                    )
                    if stopped:
                        done = step
                        break
                    state.sampling_step = step + 1
                    every = self._previews_every()
                if every and (step + 1) % every == 0:
                    preview = plan.frame(batch[0], targets[0], (step + 1) / plan.sampling_steps)
                    with self.cond:
                        state.current_image = preview
            fraction = done / plan.sampling_steps
            for offset, index in enumerate(batch):
                images.append(plan.frame(index, targets[offset], fraction))
                indexes.append(index)
        return images, indexes

    def _apply_options(self, values: dict[str, Any]) -> None:
        # Called with self.cond held.
        for key, value in values.items():
            if key == "sd_model_checkpoint":
                model = self.find_model(value)
                if model is None:
                    continue
                self.options["sd_model_checkpoint"] = model["title"]
                self.options["sd_checkpoint_hash"] = model["sha256"]
            else:
                self.options[key] = value

    def set_options(self, values: dict[str, Any]) -> None:
        """POST /options: reject an unknown checkpoint like A1111, merge the rest."""
        checkpoint = values.get("sd_model_checkpoint")
        if checkpoint is not None and self.find_model(checkpoint) is None:
            raise _a1111_error(500, "RuntimeError", errors=f"model {checkpoint!r} not found")
        with self.cond:
            self._apply_options(values)

    def interrupt(self) -> None:
        with self.cond:
            self.state.interrupted = True
            self.cond.notify_all()

    def skip(self) -> None:
        with self.cond:
            self.state.skipped = True
            self.cond.notify_all()

    def progress(self, skip_current_image: bool) -> dict[str, Any]:
        """The /progress body, with A1111's progress and ETA formula."""
        with self.cond:
            state = self.state
            snapshot = state.as_dict()
            if state.job_count == 0:
                return {
                    "progress": 0.0,
                    "eta_relative": 0.0,
                    "state": snapshot,
                    "current_image": None,
                    "textinfo": state.textinfo,
                }
            progress = 0.01
            progress += state.job_no / state.job_count
            if state.sampling_steps > 0:
                progress += 1 / state.job_count * state.sampling_step / state.sampling_steps
            elapsed = time.time() - state.time_start
            eta_relative = elapsed / progress - elapsed
            preview = None
            if not skip_current_image and self._previews_every() > 0:
                preview = state.current_image
            textinfo = state.textinfo
        return {
            "progress": min(progress, 1.0),
            "eta_relative": eta_relative,
            "state": snapshot,
            "current_image": _png_b64(preview) if preview is not None else None,
            "textinfo": textinfo,
        }


# --------------------------------------------------------------------------------------------
# Flask app


def _json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Starlette's JSONResponse: compact, UTF-8, no NaN, keys in insertion order.
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body, status=status, mimetype="application/json", headers=headers)


def _parse_auth(api_auth: str | None) -> dict[str, str]:
    credentials: dict[str, str] = {}
    for item in (api_auth or "").split(","):
        user, sep, password = item.strip().partition(":")
        if sep:
            credentials[user] = password
    return credentials


def create_demo_app(*, step_delay: float = 0.02, api_auth: str | None = None) -> Flask:
    """Create the demo backend app.

    step_delay: seconds each sampling step of each image takes (0 for no delay).
    api_auth: optional "user:pass[,user2:pass2]" to require HTTP basic auth like A1111's
    --api-auth (every route but /loras then answers 401 without valid credentials).
    """
    backend = _Backend(step_delay)
    credentials = _parse_auth(api_auth)
    app = Flask(__name__)
    app.extensions["webui_demo_backend"] = backend

    @app.errorhandler(_ApiError)
    def _api_error(exc: _ApiError) -> Response:
        return _json_response(exc.payload, exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # FastAPI's own answer for unknown routes and methods.
        return _json_response({"detail": exc.name}, exc.code or 500)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # A1111's catch-all exception handler.
        payload = {"error": type(exc).__name__, "detail": "", "body": "", "errors": str(exc)}
        return _json_response(payload, 500)

    if credentials:

        @app.before_request
        def _check_auth() -> Response | None:
            if request.path == f"{API_PREFIX}/loras":
                return None
            headers = {"WWW-Authenticate": "Basic"}
            auth = request.authorization
            if auth is None or auth.type != "basic":
                raise _http_exception(401, "Not authenticated", headers)
            expected = credentials.get(auth.username or "")
            if expected is None or not secrets.compare_digest(
                (auth.password or "").encode(), expected.encode()
            ):
                raise _http_exception(401, "Incorrect username or password", headers)
            return None

    def static_list(name: str) -> None:
        def view() -> Response:
            return _json_response(backend.lists[name])

        app.add_url_rule(f"{API_PREFIX}/{name}", f"list_{name}", view, methods=["GET"])

    for list_name in LIST_ROUTES:
        static_list(list_name)

    @app.get(f"{API_PREFIX}/options")
    def get_options() -> Response:
        with backend.cond:
            return _json_response(backend.options)

    @app.post(f"{API_PREFIX}/options")
    def post_options() -> Response:
        values = _body_dict(_read_json_body())
        backend.set_options({str(k): v for k, v in values.items()})
        return _json_response(None)

    @app.get(f"{API_PREFIX}/progress")
    def progress() -> Response:
        skip = False
        raw = request.args.get("skip_current_image")
        if raw is not None:
            try:
                skip = _v_bool(raw)
            except _Invalid as exc:
                raise _validation_error(
                    [{"loc": ["query", "skip_current_image"], "msg": exc.msg, "type": exc.type}]
                ) from None
        return _json_response(backend.progress(skip))

    @app.post(f"{API_PREFIX}/interrupt")
    def interrupt() -> Response:
        backend.interrupt()
        return _json_response(None)

    @app.post(f"{API_PREFIX}/skip")
    def skip() -> Response:
        backend.skip()
        return _json_response(None)

    for refresh in ("refresh-checkpoints", "refresh-loras", "refresh-vae"):
        app.add_url_rule(
            f"{API_PREFIX}/{refresh}",
            refresh,
            lambda: _json_response(None),
            methods=["POST"],
        )

    def generate(mode: str, fields: list[_FieldSpec]) -> Response:
        params = _validate_model(_read_json_body(), fields)
        plan = backend.plan(mode, params)
        images, indexes, job_timestamp = backend.run(plan)
        infotexts = [plan.infotext(i) for i in indexes]
        send = _value(params, "send_images", True)
        pairs = zip(images, infotexts, strict=True)
        encoded = [_png_b64(img, text) for img, text in pairs] if send else []
        echo = dict(params)
        if mode == "img2img" and not _value(params, "include_init_images", False):
            echo["init_images"] = None
            echo["mask"] = None
        return _json_response(
            {"images": encoded, "parameters": echo, "info": plan.info(infotexts, job_timestamp)}
        )

    @app.post(f"{API_PREFIX}/txt2img")
    def txt2img() -> Response:
        return generate("txt2img", TXT2IMG_FIELDS)

    @app.post(f"{API_PREFIX}/img2img")
    def img2img() -> Response:
        return generate("img2img", IMG2IMG_FIELDS)

    return app

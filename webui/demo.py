"""Built-in demo backend: an emulator of a subset of the AUTOMATIC1111 WebUI 1.10.1 HTTP API.

It draws deterministic procedural pictures with Pillow (no model, no GPU) so the app works out of
the box and end-to-end tests have a real HTTP backend. The app talks to it exactly as to a real
A1111 server, through the same definition file.

Routes (all under ``/sdapi/v1/``):

- GET ``memory``, ``sd-models``, ``samplers``, ``schedulers``, ``upscalers``,
  ``latent-upscale-modes``, ``loras``, ``sd-vae``; GET/POST ``options``; GET ``progress``
  (query ``skip_current_image``); POST ``interrupt`` (answers ``{}``), ``skip``,
  ``refresh-checkpoints``, ``refresh-loras``, ``refresh-vae`` (these answer ``null``); POST
  ``txt2img`` and ``img2img``.

Behaviour that follows the real server (the contract material in /work/shared/a1111 and the
source of AUTOMATIC1111/stable-diffusion-webui 1.10.1; notes/a1111-family.md has the citations):

- Request bodies are checked like FastAPI + pydantic v1 (coercion included: ``"20"`` is a valid
  ``steps``, ``12.7`` becomes ``12``); invalid fields give 422 ``{"detail": [{loc, msg, type}]}``.
  Unknown top-level keys are ignored (so a top-level ``sd_model_checkpoint`` does nothing).
- Checkpoints (modules/sd_models.py ``CheckpointInfo``): one the server never loaded has no
  known hash, so /sd-models lists it with ``title`` = its file name and ``hash``/``sha256``
  null; loading it computes the hash and the title becomes ``"name [shorthash]"``
  (``model_name`` and ``filename`` do not change). At start the configured checkpoint is
  loaded. A checkpoint is named by one of ``CheckpointInfo.ids`` (``checkpoint_aliases``): the
  old 8-digit hash, ``model_name``, the current title, the file name (title without hash), the
  file name without extension, ``"name [old hash]"`` and, once hashed, the short hash, the
  sha256, ``"name [shorthash]"`` and ``"name_for_extra [shorthash]"``.
- processing.process_images: ``override_settings.sd_model_checkpoint`` must be such an alias,
  else it is dropped and the job runs on the checkpoint of the ``sd_model_checkpoint`` option
  (reloading it if an earlier override left another one in memory). Every other override key
  goes through ``Options.set``: an unknown key is a 500 KeyError; ``restrict_api`` options are
  ignored. Loading a checkpoint writes its title into the option (``load_model_weights``) and
  its sha256 into ``sd_checkpoint_hash``; after the job the overridden options are restored
  (``override_settings_restore_afterwards``, default true) by plain assignment, so
  ``sd_checkpoint_hash`` keeps naming the checkpoint last loaded. ``info``
  (``sd_model_name`` = file name without extension, ``sd_model_hash``) and the infotext
  ("Model", "Model hash") name the checkpoint the job ran on.
- ``refiner_checkpoint`` and ``hr_checkpoint_name`` are found with
  ``get_closet_checkpoint_match`` (an alias, else the shortest title containing the text, else
  the same without a "[hash]" suffix); none -> 500 Exception "Could not find checkpoint with
  name ...". A used refiner adds "Refiner" (its short title before loading) and "Refiner switch
  at" to the infotext; such passes load their checkpoint without writing the option.
- An unknown ``sampler_name`` becomes "DPM++ 2M"; a missing one falls back to ``sampler_index``
  ("Euler" by default). A sampler name with a schedule suffix ("DPM++ 2M Karras") is split. An
  unknown scheduler gives "Schedule type: Automatic".
- seed -1 draws a random seed; images get seed, seed+1, ... over batch_size * n_iter images (all
  the same seed when subseed_strength != 0, the variation seed then increments instead).
- ``info`` is a JSON *string*; every PNG carries its infotext in a ``parameters`` text chunk.
- ``parameters`` echoes the validated request with defaults (img2img: ``init_images`` and
  ``mask`` are nulled unless ``include_init_images`` is true).
- One job at a time (a queue lock). ``/progress`` reports A1111's fraction and ETA formula.
  Live previews follow modules/shared_state.py: each /progress call makes a preview from the
  latest step (a grid for a batch, ``show_progress_grid``) when at least
  ``show_progress_every_n_steps`` steps passed since the last one (default 10; 0 = on every
  call; -1 = never during sampling, but ``nextjob()`` makes one when a batch ends) and
  ``live_previews_enable`` is on; ``current_image`` then carries the latest preview.
  ``/interrupt`` ends the job: the request returns 200 with the images of every batch made so
  far, the current batch as partial (noisy) images. ``/skip`` ends the current batch early,
  keeps its partial images and goes on with the next batch, as A1111 does.
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
- The refiner switch is not simulated per step: a found refiner other than the job's
  checkpoint counts as used unless ``refiner_switch_at`` >= 1 (A1111 switches once the
  sigma-based completed ratio reaches it, which happens before the last step for values
  below 1). The picture keeps the look of the job's checkpoint.
- ``create_demo_app(api_auth="user:pass[,user2:pass2]")`` enables HTTP basic auth like
  ``--api-auth`` (401 on every route except ``loras``).
- ``create_demo_app(backend=...)`` serves a ``DemoBackend`` subclass: the test suite's fakes of
  the A1111 forks (Forge, SD.Next) are built that way.
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

__all__ = ["DemoBackend", "create_demo_app"]

DATA_DIR = Path(__file__).with_name("demo_data")
API_PREFIX = "/sdapi/v1"
# GET routes that answer a fixed list (or object) from demo_data/<name>.json.
# cmd-flags: the launch flags of an API-only A1111 1.10.1 at their defaults (the Flags schema
# of its /openapi.json); webui's a1111 definition recognises A1111 by them.
LIST_ROUTES = ("memory", "sd-models", "samplers", "schedulers", "upscalers",
               "latent-upscale-modes", "loras", "sd-vae", "cmd-flags")
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
    # Validated override_settings (applied for the job) and whether they are restored after it.
    overrides: dict[str, Any]
    restore: bool
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
    # Checkpoints a pass switches to (refiner_checkpoint, hr_checkpoint_name).
    refiner: dict[str, Any] | None = None
    hr_model: dict[str, Any] | None = None
    # Free room for DemoBackend subclasses (the fork fakes) to keep what their infotext needs.
    fork: dict[str, Any] = field(default_factory=dict)

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
        model_name = _name_for_extra(self.model)
        generation = {
            "Steps": self.steps,
            "Sampler": self.sampler,
            "Schedule type": self.schedule,
            "CFG scale": self.cfg_scale,
            "Seed": self.seeds[index],
            "Face restoration": opts.get("face_restoration_model") if restore_faces else None,
            "Size": f"{self.width}x{self.height}",
            "Model hash": self.model["hash"] if opts.get("add_model_hash_to_info", True) else None,
            # p.sd_model_name = sd_checkpoint_info.name_for_extra, p.sd_model_hash = shorthash
            "Model": model_name if opts.get("add_model_name_to_info", True) else None,
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
            "sd_model_name": _name_for_extra(self.model),
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


# Checkpoint names as A1111's CheckpointInfo derives them (modules/sd_models.py).
_MODEL_DIR = "models/Stable-diffusion/"
# sd_models.re_strip_checksum
_RE_CHECKSUM = re.compile(r"\s*\[[^]]+]\s*$")


def _ckpt_name(model: dict[str, Any]) -> str:
    """CheckpointInfo.name: the file's path below the checkpoint directory."""
    filename = model["filename"]
    return filename[len(_MODEL_DIR) :] if filename.startswith(_MODEL_DIR) else filename


def _name_for_extra(model: dict[str, Any]) -> str:
    """CheckpointInfo.name_for_extra: the file name without extension ("Model:" infotext)."""
    return model["filename"].rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _model_name(model: dict[str, Any]) -> str:
    """CheckpointInfo.model_name: the name with "/" as "_", without extension."""
    return _ckpt_name(model).replace("/", "_").rsplit(".", 1)[0]


def _hashed_title(model: dict[str, Any]) -> str:
    return f"{_ckpt_name(model)} [{model['hash']}]"


def _legacy_hash(model: dict[str, Any]) -> str:
    """sd_models.model_hash, the old 8-digit hash (of file bytes; here derived from the name)."""
    return hashlib.sha256(f"demo-legacy:{model['filename']}".encode()).hexdigest()[:8]


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
    # The latest "latent" (plan, batch indexes, targets, fraction done) and the preview made
    # from it, with the step it was made at (State.current_latent / current_image).
    current_latent: tuple[Any, ...] | None = None
    current_image: Image.Image | None = None
    current_image_sampling_step: int = 0
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


class DemoBackend:
    """State of one demo server: options, checkpoints, job progress and the queue lock.

    The methods below are the A1111 1.10.1 behaviour. The fakes of the A1111 forks in the test
    suite (tests/backends/a1111_variants.py) subclass this and override the parts their real
    server does differently (request model, option handling, lists, infotext).
    """

    # override_settings keys the API may not change (OptionInfo(restrict_api=True) in A1111's
    # modules/shared_options.py): Options.set() ignores them for API callers.
    restrict_api = frozenset({"api_enable_requests", "api_forbid_local_requests", "api_useragent"})
    # A1111's load_model_weights writes the loaded checkpoint's title into the
    # sd_model_checkpoint option (unless SkipWritingToConfig); Forge does not.
    write_checkpoint_title = True

    def __init__(self, step_delay: float):
        self.step_delay = max(0.0, float(step_delay))
        self.lists = {name: _load(f"{name}.json") for name in LIST_ROUTES}
        self.options: dict[str, Any] = _load("options.json")
        # Options.set() looks keys up in data_labels: other keys raise KeyError.
        self.option_keys = set(self.options)
        self.queue_lock = threading.Lock()
        # Guards state, options and checkpoints; waited on between steps so that
        # interrupt/skip act at once.
        self.cond = threading.Condition()
        self.state = _JobState()
        # Checkpoints whose sha256 is known (A1111 hashes a checkpoint when it first loads it)
        # and the one in memory. At start the server has loaded its configured checkpoint.
        self.hashed: set[str] = set()
        self.loaded: dict[str, Any] | None = None
        configured = self.options.get("sd_model_checkpoint")
        startup = next(
            (m for m in self.models if configured in (_hashed_title(m), _ckpt_name(m))),
            self.models[0],
        )
        self._load_checkpoint(startup)

    # -- checkpoints (modules/sd_models.py CheckpointInfo) -------------------------------------

    @property
    def models(self) -> list[dict[str, Any]]:
        """The checkpoints as demo_data/sd-models.json knows them (their hashes included)."""
        return self.lists["sd-models"]

    def is_hashed(self, model: dict[str, Any]) -> bool:
        return model["filename"] in self.hashed

    def title(self, model: dict[str, Any]) -> str:
        """CheckpointInfo.title: "name [shorthash]", or just the name while no hash is known."""
        return _hashed_title(model) if self.is_hashed(model) else _ckpt_name(model)

    def short_title(self, model: dict[str, Any]) -> str:
        """CheckpointInfo.short_title (used by the refiner and hires checkpoint infotext)."""
        base = _name_for_extra(model)
        return f"{base} [{model['hash']}]" if self.is_hashed(model) else base

    def aliases(self, model: dict[str, Any]) -> list[str]:
        """CheckpointInfo.ids: the keys register() puts into checkpoint_aliases."""
        name, extra, legacy = _ckpt_name(model), _name_for_extra(model), _legacy_hash(model)
        ids = [legacy, _model_name(model), self.title(model), name, extra, f"{name} [{legacy}]"]
        if self.is_hashed(model):
            short = model["hash"]
            ids += [short, model["sha256"], f"{name} [{short}]", f"{extra} [{short}]"]
        return ids

    def find_model(self, name: Any) -> dict[str, Any] | None:
        """checkpoint_aliases.get(name): an exact alias or nothing."""
        if isinstance(name, (list, dict, set)):
            # A dict lookup with an unhashable key.
            raise _a1111_error(
                500, "TypeError", errors=f"unhashable type: '{type(name).__name__}'"
            )
        if not isinstance(name, str) or not name:
            return None
        found = None
        for model in self.models:
            if name in self.aliases(model):
                found = model  # register() runs model by model: the last one wins
        return found

    def closest_model(self, search: Any) -> dict[str, Any] | None:
        """sd_models.get_closet_checkpoint_match (used for refiner and hires checkpoints)."""
        if not search:
            return None
        found = self.find_model(search)
        if found is not None:
            return found
        text = str(search)
        for needle in (text, _RE_CHECKSUM.sub("", text)):
            matches = sorted(
                (m for m in self.models if needle in self.title(m)),
                key=lambda m: len(self.title(m)),
            )
            if matches:
                return matches[0]
        return None

    def _find_pass_model(self, name: Any) -> dict[str, Any]:
        model = self.closest_model(name)
        if model is None:
            # raise Exception(f'Could not find checkpoint with name {...}')
            message = f"Could not find checkpoint with name {name}"
            raise _a1111_error(500, "Exception", errors=message)
        return model

    def select_checkpoint(self, options: dict[str, Any]) -> dict[str, Any]:
        """sd_models.select_checkpoint: the option's checkpoint, else the first one listed."""
        return self.find_model(options.get("sd_model_checkpoint")) or self.models[0]

    def model_item(self, model: dict[str, Any]) -> dict[str, Any]:
        """One /sd-models entry (Api.get_sd_models): hash and sha256 stay null until hashed."""
        hashed = self.is_hashed(model)
        return {
            "title": self.title(model),
            "model_name": _model_name(model),
            "hash": model["hash"] if hashed else None,
            "sha256": model["sha256"] if hashed else None,
            "filename": model["filename"],
            "config": model.get("config"),
        }

    def _load_checkpoint(self, model: dict[str, Any], write_config: bool = True) -> None:
        """reload_model_weights + load_model_weights. Called with self.cond held (or in init)."""
        self.hashed.add(model["filename"])  # calculate_shorthash(): the title gains the hash
        self.loaded = model
        if write_config and self.write_checkpoint_title:
            self.options["sd_model_checkpoint"] = self.title(model)
        self.options["sd_checkpoint_hash"] = model["sha256"]

    def list_answer(self, name: str) -> Any:
        """The body of GET /sdapi/v1/<name> for the fixed lists."""
        if name == "sd-models":
            with self.cond:
                return [self.model_item(m) for m in self.models]
        return self.lists[name]

    # -- options (modules/options.py Options.set) ----------------------------------------------

    def set_option(
        self, target: dict[str, Any], key: str, value: Any, *, is_api: bool = True
    ) -> bool:
        """Options.set(key, value, is_api): change one option of ``target``.

        Returns whether it changed. An unknown key raises KeyError (data_labels[key]) unless
        the value equals the current one (None for a missing key).
        """
        if target.get(key) == value:
            return False
        if key not in self.option_keys:
            raise _a1111_error(500, "KeyError", errors=repr(key))
        if is_api and key in self.restrict_api:
            return False
        target[key] = value
        return True

    def set_options(self, values: dict[str, Any]) -> None:
        """POST /options (Api.set_config): reject an unknown checkpoint, then set key by key."""
        checkpoint = values.get("sd_model_checkpoint")
        with self.cond:
            if checkpoint is not None and self.find_model(checkpoint) is None:
                raise _a1111_error(500, "RuntimeError", errors=f"model {checkpoint!r} not found")
            for key, value in values.items():
                changed = self.set_option(self.options, key, value)
                if changed and key == "sd_model_checkpoint":
                    # The option's onchange callback reloads the weights.
                    self._load_checkpoint(self.select_checkpoint(self.options))

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

        # processing.process_images: an override naming no checkpoint alias is dropped and the
        # request runs on the checkpoint of the sd_model_checkpoint option. Every other key
        # goes through Options.set (an unknown key is a KeyError).
        overrides = dict(params.get("override_settings") or {})
        with self.cond:
            override_model = self.find_model(overrides.get("sd_model_checkpoint"))
            if override_model is None:
                overrides.pop("sd_model_checkpoint", None)
            model = override_model or self.select_checkpoint(options)
            for key, value in overrides.items():
                self.set_option(options, key, value)
            if override_model is not None:
                options["sd_model_checkpoint"] = self.title(model)
            # process_images_inner / StableDiffusionProcessingTxt2Img.init: a refiner or hires
            # checkpoint is found with get_closet_checkpoint_match, or the request fails.
            refiner = hr_model = None
            refiner_name = params.get("refiner_checkpoint")
            if refiner_name not in (None, "", "None", "none"):
                refiner = self._find_pass_model(refiner_name)
            hr_name = params.get("hr_checkpoint_name")
            hires = mode == "txt2img" and _value(params, "enable_hr", False)
            if hires and hr_name and hr_name != "Use same checkpoint":
                hr_model = self._find_pass_model(hr_name)
            hr_short_title = self.short_title(hr_model) if hr_model is not None else None
        restore = bool(_value(params, "override_settings_restore_afterwards", True))

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
            if hr_short_title is not None:
                extra["Hires checkpoint"] = hr_short_title
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
            overrides=overrides,
            restore=restore,
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
            refiner=refiner,
            hr_model=hr_model,
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

    def run(self, plan: _Plan) -> tuple[list[Image.Image], list[int], str]:
        """Run a plan under the queue lock; return images, their indexes and the timestamp."""
        with self.queue_lock:
            with self.cond:
                state = self.state
                # shared_state.State.begin()
                state.sampling_step = 0
                state.sampling_steps = 0
                state.time_start = time.time()
                state.job_count = plan.n_iter
                state.job_no = 0
                state.job_timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
                state.current_latent = None
                state.current_image = None
                state.current_image_sampling_step = 0
                state.skipped = False
                state.interrupted = False
                state.stopping_generation = False
                state.textinfo = None
                state.job = f"scripts_{plan.mode}"
                # process_images: remember the options the overrides change, apply them (they
                # hold for the whole job, so /progress sees e.g. show_progress_every_n_steps)
                # and load the checkpoint the job runs on.
                stored = {k: self.options[k] for k in plan.overrides if k in self.options}
                if "sd_model_checkpoint" not in plan.overrides:
                    self._load_checkpoint(plan.model)
                for key, value in plan.overrides.items():
                    self.set_option(self.options, key, value)
                    if key == "sd_model_checkpoint":
                        self._load_checkpoint(plan.model)
                job_timestamp = state.job_timestamp
            try:
                return (*self._sample_all(plan), job_timestamp)
            finally:
                with self.cond:
                    self._finish_passes(plan)
                    # State.end() only clears these; the rest stays readable.
                    self.state.job = ""
                    self.state.job_count = 0
                    if plan.restore:
                        # setattr(opts, k, v): a plain assignment, no reload of the weights.
                        self.options.update(stored)

    def _finish_passes(self, plan: _Plan) -> None:
        """The checkpoints a refiner or hires pass loaded (with SkipWritingToConfig)."""
        if plan.hr_model is not None and plan.hr_model is not plan.model:
            self._load_checkpoint(plan.hr_model, write_config=False)
        refiner = plan.refiner
        # sd_samplers_common.apply_refiner: nothing to do when the refiner is the model itself.
        if refiner is not None and refiner is not self.loaded:
            switch_at = plan.params.get("refiner_switch_at")
            # The switch comes once the completed ratio (by sigma) reaches refiner_switch_at,
            # which it does before the last step unless the value is 1 or more.
            if switch_at is None or switch_at < 1:
                plan.extra["Refiner"] = self.short_title(refiner)
                if switch_at is not None:
                    plan.extra["Refiner switch at"] = switch_at
                self._load_checkpoint(refiner, write_config=False)

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
            batch = list(range(iteration * plan.batch_size, (iteration + 1) * plan.batch_size))
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
                    # sd_samplers_common.store_latent: the latent after this step; a preview is
                    # only decoded from it when /progress asks (State.set_current_image).
                    state.current_latent = (plan, batch, targets, (step + 1) / plan.sampling_steps)
            fraction = done / plan.sampling_steps
            for offset, index in enumerate(batch):
                images.append(plan.frame(index, targets[offset], fraction))
                indexes.append(index)
            self._next_job()
        return images, indexes

    def _next_job(self) -> None:
        """shared_state.State.nextjob(), called after each batch."""
        with self.cond:
            every = _int_or(self.options.get("show_progress_every_n_steps"), 10)
            latent = self.state.current_latent
            # -1: the preview is only made now, from the batch's last latent.
            make_preview = self.options.get("live_previews_enable", True) and every == -1
        image = self._preview_image(latent) if make_preview and latent is not None else None
        with self.cond:
            if image is not None:
                self.state.current_image = image
                self.state.current_image_sampling_step = self.state.sampling_step
            self.state.job_no += 1
            self.state.sampling_step = 0
            self.state.current_image_sampling_step = 0

    @staticmethod
    def _preview_image(latent: tuple[Any, ...]) -> Image.Image:
        """sample_to_image / samples_to_image_grid (show_progress_grid) of a stored latent."""
        plan, batch, targets, fraction = latent
        frames = [plan.frame(i, targets[n], fraction) for n, i in enumerate(batch)]
        if len(frames) == 1:
            return frames[0]
        # images.image_grid with n_rows -1: round(sqrt(n)) rows.
        rows = min(len(frames), max(1, round(math.sqrt(len(frames)))))
        cols = math.ceil(len(frames) / rows)
        width, height = frames[0].size
        grid = Image.new("RGB", (cols * width, rows * height), "black")
        for n, frame in enumerate(frames):
            grid.paste(frame, ((n % cols) * width, (n // cols) * height))
        return grid

    def interrupt(self) -> None:
        with self.cond:
            self.state.interrupted = True
            self.cond.notify_all()

    def skip(self) -> None:
        with self.cond:
            self.state.skipped = True
            self.cond.notify_all()

    def progress(self, skip_current_image: bool) -> dict[str, Any]:
        """The /progress body (Api.progressapi): A1111's progress and ETA formula.

        As in A1111, a preview is decoded here, when asked, from the latest latent: only if
        ``show_progress_every_n_steps`` steps passed since the last one (0: on every call, -1:
        never; State.set_current_image) and ``live_previews_enable`` is on.
        """
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
            every = _int_or(self.options.get("show_progress_every_n_steps"), 10)
            due = (
                state.sampling_step - state.current_image_sampling_step >= every
                and self.options.get("live_previews_enable", True)
                and every != -1
            )
            latent = state.current_latent if due else None
            step = state.sampling_step
        if latent is not None:
            image = self._preview_image(latent)
            with self.cond:
                state.current_image = image
                state.current_image_sampling_step = step
        with self.cond:
            preview = None if skip_current_image else state.current_image
            textinfo = state.textinfo
        return {
            "progress": min(progress, 1.0),
            "eta_relative": eta_relative,
            "state": snapshot,
            "current_image": _png_b64(preview) if preview is not None else None,
            "textinfo": textinfo,
        }

    # -- responses ------------------------------------------------------------------------------

    def validate(self, mode: str, body: Any) -> dict[str, Any]:
        """Validate a txt2img/img2img body into the request model's fields (FastAPI + pydantic)."""
        return _validate_model(body, TXT2IMG_FIELDS if mode == "txt2img" else IMG2IMG_FIELDS)

    def infotext(self, plan: _Plan, index: int) -> str:
        return plan.infotext(index)

    def info(self, plan: _Plan, infotexts: list[str], job_timestamp: str) -> str:
        return plan.info(infotexts, job_timestamp)

    def echo(self, mode: str, params: dict[str, Any]) -> dict[str, Any]:
        """The ``parameters`` of the answer: vars() of the validated request."""
        echo = dict(params)
        if mode == "img2img" and not _value(params, "include_init_images", False):
            echo["init_images"] = None
            echo["mask"] = None
        return echo

    def exception_payload(self, exc: Exception) -> tuple[int, Any]:
        """What an unexpected exception becomes (A1111's api_middleware handle_exception)."""
        return 500, {"error": type(exc).__name__, "detail": "", "body": "", "errors": str(exc)}


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


def create_demo_app(
    *,
    step_delay: float = 0.02,
    api_auth: str | None = None,
    backend: DemoBackend | None = None,
) -> Flask:
    """Create the demo backend app.

    step_delay: seconds each sampling step of each image takes (0 for no delay).
    api_auth: optional "user:pass[,user2:pass2]" to require HTTP basic auth like A1111's
    --api-auth (every route but /loras then answers 401 without valid credentials).
    backend: the state to serve (a DemoBackend subclass for the emulated forks); by default a
    fresh A1111 one with ``step_delay``.
    """
    backend = backend if backend is not None else DemoBackend(step_delay)
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
        status, payload = backend.exception_payload(exc)
        return _json_response(payload, status)

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
            return _json_response(backend.list_answer(name))

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
        # Api.interruptapi returns {}.
        return _json_response({})

    @app.post(f"{API_PREFIX}/skip")
    def skip() -> Response:
        backend.skip()
        # Api.skip returns nothing.
        return _json_response(None)

    for refresh in ("refresh-checkpoints", "refresh-loras", "refresh-vae"):
        app.add_url_rule(
            f"{API_PREFIX}/{refresh}",
            refresh,
            lambda: _json_response(None),
            methods=["POST"],
        )

    def generate(mode: str) -> Response:
        params = backend.validate(mode, _read_json_body())
        plan = backend.plan(mode, params)
        images, indexes, job_timestamp = backend.run(plan)
        infotexts = [backend.infotext(plan, i) for i in indexes]
        send = _value(params, "send_images", True)
        pairs = zip(images, infotexts, strict=True)
        encoded = [_png_b64(img, text) for img, text in pairs] if send else []
        return _json_response(
            {
                "images": encoded,
                "parameters": backend.echo(mode, params),
                "info": backend.info(plan, infotexts, job_timestamp),
            }
        )

    @app.post(f"{API_PREFIX}/txt2img")
    def txt2img() -> Response:
        return generate("txt2img")

    @app.post(f"{API_PREFIX}/img2img")
    def img2img() -> Response:
        return generate("img2img")

    return app

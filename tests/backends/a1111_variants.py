"""Test backends for the A1111 forks, built on the demo emulator (webui.demo.DemoBackend).

Each fake takes the A1111 1.10.1 behaviour of the demo and changes what its real server does
differently. Sources (read with git; the request fields and lists are extracted into
tests/fixtures/forge and tests/fixtures/sdnext, whose READMEs say how):

- Forge: lllyasviel/stable-diffusion-webui-forge, main at
  dfdcbab685e57677014f05a3309b48cc87383167 (2025-06-26).
- SD.Next: vladmandic/sdnext, master at 058a7f0cf326f39c0135c6257d7b7e61073e51fd (2026-07-23).

The code next to each behaviour names its source file and function; /work/notes/a1111-family.md
has the line-level citations. What the fakes do not emulate is said in each class docstring.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from PIL import Image, ImageOps

from webui.demo import (
    DemoBackend,
    _ApiError,
    _flatten,
    _name_for_extra,
    _Plan,
    _quote,
    _value,
    create_demo_app,
)

FIXTURES = Path(__file__).parent.parent / "fixtures"
API = "/sdapi/v1"

FORGE_COMMIT = "dfdcbab685e57677014f05a3309b48cc87383167"
SDNEXT_COMMIT = "058a7f0cf326f39c0135c6257d7b7e61073e51fd"
# SD.Next added /sdapi/v1/schedulers in "api audit" (6fc0830d, 2026-07-01); before it: 404.
SDNEXT_SCHEDULERS_ADDED = "6fc0830d2ca7daf2631eedb267ed20dbe1af097f"

# /sdapi/v1/sd-modules of the Forge fake: modules_forge/main_entry.py refresh_models() maps the
# file name to its path for every file under models/VAE and models/text_encoder.
FORGE_MODULES = [
    {"model_name": "ae.safetensors", "filename": "/opt/forge/models/VAE/ae.safetensors"},
    {
        "model_name": "clip_l.safetensors",
        "filename": "/opt/forge/models/text_encoder/clip_l.safetensors",
    },
    {
        "model_name": "t5xxl_fp8_e4m3fn.safetensors",
        "filename": "/opt/forge/models/text_encoder/t5xxl_fp8_e4m3fn.safetensors",
    },
]


def _fixture(*parts: str) -> Any:
    return json.loads(FIXTURES.joinpath(*parts).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# FastAPI + pydantic v2 request validation (Forge: fastapi 0.104.1 + pydantic 2.8.2, whose
# errors carry a "url"; SD.Next: fastapi 0.124.4, which drops the url: errors(include_url=False)).
# Neither request model forbids extra fields (create_model with a ConfigDict without "extra"):
# unknown keys are ignored.


class _V2Error(Exception):
    def __init__(self, type_: str, msg: str, loc: tuple[Any, ...] = ()):
        super().__init__(msg)
        self.type, self.msg, self.loc = type_, msg, loc


# Field annotations (as in the fixtures) -> the validation this emulates.
_KINDS = {
    "str": "str", "str | None": "str", "Optional[str]": "str",
    "Image": "str",  # PydanticModelGenerator.field_type_generator: 'Image' -> 'str' (Forge)
    "int": "int", "int | None": "int",
    "float": "float", "float | None": "float",
    "bool": "bool", "bool | None": "bool",
    "list": "list", "list | None": "list", "Optional[list]": "list",
    "Optional[list[ItemIPAdapter]]": "list", "Optional[list[ItemControlUnit]]": "list",
    "list[str]": "list[str]", "list[str] | None": "list[str]",
    "dict": "dict", "dict | None": "dict", "Optional[dict]": "dict",
    "dict[str, Any]": "dict", "dict[str, Any] | None": "dict",
    "Optional[ItemFace]": "model",
    "Any": "any",
    "int | str": "int|str",
}  # fmt: skip

_MSG = {
    "int_from_float": "Input should be a valid integer, got a number with a fractional part",
    "int_parsing": "Input should be a valid integer, unable to parse string as an integer",
    "float_parsing": "Input should be a valid number, unable to parse string as a number",
    "bool_parsing": "Input should be a valid boolean, unable to interpret input",
}
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
_TYPE_ERRORS = {
    "str": ("string_type", "Input should be a valid string"),
    "int": ("int_type", "Input should be a valid integer"),
    "float": ("float_type", "Input should be a valid number"),
    "bool": ("bool_type", "Input should be a valid boolean"),
    "list": ("list_type", "Input should be a valid list"),
    "list[str]": ("list_type", "Input should be a valid list"),
    "dict": ("dict_type", "Input should be a valid dictionary"),
    "model": ("model_type", "Input should be a valid dictionary or instance of ItemFace"),
}


def _lax(kind: str, v: Any) -> Any:
    """pydantic v2 lax-mode validation of one Python value (the JSON FastAPI parsed)."""
    if kind == "any":
        return v
    if kind == "str" and isinstance(v, str):
        return v
    if kind == "int":
        if isinstance(v, (bool, int)):
            return int(v)
        if isinstance(v, float):
            if not math.isfinite(v):
                raise _V2Error("finite_number", "Input should be a finite number")
            if v.is_integer():
                return int(v)
            raise _V2Error("int_from_float", _MSG["int_from_float"])
        if isinstance(v, str):
            try:
                return int(v.strip())
            except ValueError:
                raise _V2Error("int_parsing", _MSG["int_parsing"]) from None
    if kind == "float":
        if isinstance(v, (bool, int, float)):
            return float(v)
        if isinstance(v, str):
            try:
                return float(v.strip())
            except ValueError:
                raise _V2Error("float_parsing", _MSG["float_parsing"]) from None
    if kind == "bool":
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
            return v.strip().lower() in _TRUE
        if isinstance(v, (int, float)) and not isinstance(v, str) and v in (0, 1):
            return v == 1
        if isinstance(v, (int, float, str)):
            raise _V2Error("bool_parsing", _MSG["bool_parsing"])
    if kind in ("list", "list[str]") and isinstance(v, (list, tuple)):
        items = list(v)
        if kind == "list[str]":
            for index, item in enumerate(items):
                if not isinstance(item, str):
                    raise _V2Error("string_type", "Input should be a valid string", (index,))
        return items
    if kind in ("dict", "model") and isinstance(v, dict):
        return v
    if kind == "int|str":
        # Smart-mode union: an exact type match first, then lax int; else one error per member.
        if isinstance(v, (int, str)) and not isinstance(v, bool):
            return v
        errors = []
        for member in ("int", "str"):
            try:
                return _lax(member, v)
            except _V2Error as exc:
                errors.append((member, exc))
        raise _UnionError(errors)
    raise _V2Error(*_TYPE_ERRORS[kind])


class _UnionError(Exception):
    def __init__(self, errors: list[tuple[str, _V2Error]]):
        super().__init__("union")
        self.errors = errors


class PydanticV2Model:
    """A FastAPI request model built by PydanticModelGenerator, validated like pydantic v2."""

    def __init__(self, fields: list[dict[str, Any]], url_version: str | None):
        self.fields = fields
        self.url_version = url_version

    def _error(self, type_: str, loc: list[Any], msg: str, value: Any, **extra: Any) -> dict:
        error = {"type": type_, "loc": loc, "msg": msg, "input": value, **extra}
        if self.url_version:
            error["url"] = f"https://errors.pydantic.dev/{self.url_version}/v/{type_}"
        return error

    def read_body(self) -> Any:
        """FastAPI's body reading: JSON for a JSON content type (or none), else the bytes."""
        raw = request.get_data(cache=True)
        if not raw:
            return None
        content_type = request.headers.get("Content-Type")
        main, _, sub = (request.mimetype or "").partition("/")
        is_json = main == "application" and (sub == "json" or sub.endswith("+json"))
        if content_type and not is_json:
            return raw
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            # fastapi/routing.py get_request_handler: built by hand, never with a url.
            raise _ApiError(
                422,
                {
                    "detail": [
                        {
                            "type": "json_invalid",
                            "loc": ["body", exc.pos],
                            "msg": "JSON decode error",
                            "input": {},
                            "ctx": {"error": exc.msg},
                        }
                    ]
                },
            ) from None

    def validate(self, body: Any) -> dict[str, Any]:
        if body is None:
            # fastapi/_compat.py get_missing_field_error
            raise _ApiError(
                422, {"detail": [self._error("missing", ["body"], "Field required", None)]}
            )
        if not isinstance(body, dict):
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            raise _ApiError(
                422,
                {
                    "detail": [
                        self._error(
                            "model_attributes_type",
                            ["body"],
                            "Input should be a valid dictionary or object to extract fields from",
                            text,
                        )
                    ]
                },
            )
        values: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for spec in self.fields:
            name = spec["name"]
            key = spec.get("alias", name)
            if key not in body:
                values[name] = json.loads(json.dumps(spec["default"]))
                continue
            raw = body[key]
            if raw is None and spec["nullable"]:
                values[name] = None
                continue
            kind = _KINDS[spec["annotation"]]
            try:
                if raw is None:
                    if kind == "int|str":
                        raise _UnionError(
                            [
                                ("int", _V2Error(*_TYPE_ERRORS["int"])),
                                ("str", _V2Error(*_TYPE_ERRORS["str"])),
                            ]
                        )
                    raise _V2Error(*_TYPE_ERRORS[kind])
                values[name] = _lax(kind, raw)
            except _UnionError as exc:
                for member, error in exc.errors:
                    errors.append(
                        self._error(error.type, ["body", key, member], error.msg, raw)
                    )
            except _V2Error as exc:
                value = raw[exc.loc[0]] if exc.loc else raw
                errors.append(self._error(exc.type, ["body", key, *exc.loc], exc.msg, value))
        if errors:
            raise _ApiError(422, {"detail": errors})
        return values


# --------------------------------------------------------------------------------------------
# Forge


class ForgeBackend(DemoBackend):
    """Forge (lllyasviel/stable-diffusion-webui-forge @ dfdcbab6): A1111 1.10 with these changes.

    - Request model: modules/processing.py StableDiffusionProcessingTxt2Img/Img2Img dataclasses
      through modules/api/models.py PydanticModelGenerator, on pydantic v2 (422 bodies in the
      pydantic 2.8 shape, with "url"); fields in tests/fixtures/forge/*-fields.json. Extra
      fields are ignored, as in A1111.
    - txt2img with enable_hr and no hr_additional_modules: the first pass runs, then
      StableDiffusionProcessingTxt2Img.sample evaluates ``'Use same choices' not in
      self.hr_additional_modules`` on None -> 500 TypeError (issue #2680 of that repository).
    - Lists: modules/sd_samplers*.py + modules_forge/alter_samplers.py samplers and
      modules/sd_schedulers.py schedulers (tests/fixtures/forge); GET /sd-modules
      (Api.get_sd_vaes_and_text_encoders); no /sd-vae route (404).
    - Options (modules/sysinfo.py set_config): ``sd_model_checkpoint`` is stored as given
      (main_entry.checkpoint_change), never rewritten to the loaded title;
      ``forge_additional_modules`` takes module names or paths, keeps the known ones as paths
      (main_entry.modules_change); other keys go through Options.set like A1111.
    - Infotext: "Module N" for each additional module (processing.create_infotext), "Hires CFG
      Scale" and "Hires Module N" with hires fix (StableDiffusionProcessingTxt2Img.init).

    Not emulated: Distilled CFG (only models using it report "Distilled CFG Scale"), hr_cfg's
    effect (a hires pass with hr_cfg 1 drops the negative prompt), the hires pass itself (the
    demo renders at the hires size at once).
    """

    write_checkpoint_title = False
    # modules_forge/shared_options.py register()
    forge_options = {
        "forge_unet_storage_dtype": "Automatic",
        "forge_inference_memory": 1024,
        "forge_async_loading": "Queue",
        "forge_pin_shared_memory": "CPU",
        "forge_preset": "sd",
        "forge_additional_modules": [],
        "forge_canvas_plain": False,
        "forge_canvas_toolbar_always": False,
    }

    def __init__(self, step_delay: float):
        super().__init__(step_delay)
        self.lists["samplers"] = _fixture("forge", "samplers.json")
        # modules/cmd_args.py + backend/args.py flags (tests/fixtures/identify/README.md)
        self.lists["cmd-flags"] = _fixture("identify", "forge-cmd-flags.json")
        self.lists["schedulers"] = _fixture("forge", "schedulers.json")
        del self.lists["sd-vae"]
        self.options.update(json.loads(json.dumps(self.forge_options)))
        self.option_keys |= set(self.forge_options)
        self.modules = {m["model_name"]: m["filename"] for m in FORGE_MODULES}
        self.models_txt2img = PydanticV2Model(_fixture("forge", "txt2img-fields.json"), "2.8")
        self.models_img2img = PydanticV2Model(_fixture("forge", "img2img-fields.json"), "2.8")

    def validate(self, mode: str, body: Any) -> dict[str, Any]:
        model = self.models_txt2img if mode == "txt2img" else self.models_img2img
        return model.validate(body)

    def list_answer(self, name: str) -> Any:
        if name == "sd-vae":
            raise _ApiError(404, {"detail": "Not Found"})
        return super().list_answer(name)

    def set_option(self, target: dict[str, Any], key: str, value: Any, *, is_api: bool = True):
        if key == "forge_additional_modules" and isinstance(value, list):
            # main_entry.modules_change: basename of each value, kept if module_list has it.
            names = [str(v).replace("\\", "/").rsplit("/", 1)[-1] for v in value]
            value = [self.modules[n] for n in names if n in self.modules]
            if sorted(value) == sorted(target.get(key) or []):
                return False
        return super().set_option(target, key, value, is_api=is_api)

    def plan(self, mode: str, params: dict[str, Any]) -> _Plan:
        plan = super().plan(mode, params)
        if mode == "txt2img" and _value(params, "enable_hr", False):
            modules = params.get("hr_additional_modules")
            # StableDiffusionProcessingTxt2Img.init
            if isinstance(modules, list):
                if modules == []:
                    plan.extra["Hires Module 1"] = "Built-in"
                elif "Use same choices" in modules:
                    plan.extra["Hires Module 1"] = "Use same choices"
                else:
                    for i, m in enumerate(modules):
                        name = str(m).replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
                        plan.extra[f"Hires Module {i + 1}"] = name
            plan.extra["Hires CFG Scale"] = _value(params, "hr_cfg", 1.0)
            plan.fork["hires_modules_missing"] = modules is None
        return plan

    def run(self, plan: _Plan) -> tuple[list[Image.Image], list[int], str]:
        if not plan.fork.get("hires_modules_missing"):
            return super().run(plan)
        # The first pass runs at the requested size; the hires pass never starts.
        plan.out_width, plan.out_height = plan.width, plan.height
        super().run(plan)
        raise _ApiError(
            500,
            {
                "error": "TypeError",
                "detail": "",
                "body": "",
                "errors": "argument of type 'NoneType' is not iterable",
            },
        )

    def infotext(self, plan: _Plan, index: int) -> str:
        text = super().infotext(plan, index)
        extra = []
        dtype = plan.options.get("forge_unet_storage_dtype", "Automatic")
        if dtype != "Automatic":
            extra.append(f"Diffusion in Low Bits: {_quote(dtype)}")
        for i, path in enumerate(plan.options.get("forge_additional_modules") or []):
            name = str(path).rsplit("/", 1)[-1].rsplit(".", 1)[0]
            extra.append(f"Module {i + 1}: {_quote(name)}")
        return f"{text}, {', '.join(extra)}" if extra else text


def create_forge_app(step_delay: float = 0.001) -> Flask:
    backend = ForgeBackend(step_delay)
    app = _recording(create_demo_app(backend=backend))

    @app.get(f"{API}/sd-modules")
    def sd_modules() -> Response:
        # Api.get_sd_vaes_and_text_encoders: [{"model_name": name, "filename": path}]
        return _json(FORGE_MODULES)

    return app


# --------------------------------------------------------------------------------------------
# SD.Next


SDNEXT_RESIZE_MODES = _fixture("sdnext", "resize-modes.json")  # modules/shared.py resize_modes
_RE_HASH = re.compile(r"\s*\[[^]]+]\s*$")


class SDNextBackend(DemoBackend):
    """SD.Next (vladmandic/sdnext @ 058a7f0c) through its A1111-compatible /sdapi/v1.

    - Request model: modules/processing_class.py StableDiffusionProcessing.__init__ through
      modules/api/models.py ReqTxt2Img/ReqImg2Img (pydantic v2, fastapi 0.124: 422 without
      "url"); fields in tests/fixtures/sdnext/*-fields.json. Unknown keys (``scheduler``,
      ``refiner_checkpoint``, ``refiner_switch_at``, ``hr_checkpoint_name``, ...) are dropped.
      Defaults differ: steps 20, cfg_scale 6, 1024x1024, sampler_name "Default", img2img
      denoising_strength 0.5, txt2img 0.3.
    - Sampler (modules/api/helpers.py validate_sampler_name): a divider row or an unknown name
      -> 404 "Sampler not found"; a case-insensitive match becomes the canonical name;
      "Default" is valid though GET /samplers omits it (modules/api/endpoints.py get_samplers
      skips 'All', 'Default', 'Res4Lyf' since d9a2a21c, 2026-02-04).
    - Lists: /samplers from sd_samplers_diffusers.config; /upscalers with SD.Next's built-in
      names (upscaler_simple.py, upscaler_vae.py, upscaler_algo.py: "Latent Nearest", ...);
      no /latent-upscale-modes (404); /schedulers: 404 before 6fc0830d (2026-07-01), after it
      the route answers list_samplers() but the "Default" and divider rows have no class
      (cls None against ItemScheduler.cls: str): 500 ResponseValidationError.
    - Checkpoints (modules/sd_checkpoint.py CheckpointInfo): name = path without extension,
      title "name [shorthash]" once hashed, /sd-models items carry "type"; aliases name,
      filename, shorthash, title. A top-level ``sd_model_checkpoint`` switches the server's
      checkpoint for good (StableDiffusionProcessing.__init__); one that matches nothing
      aborts: 200 with no images and info "". ``override_settings.sd_model_checkpoint`` /
      ``sd_model_refiner`` must be aliases, else dropped (processing.process_images); override
      keys SD.Next does not know are accepted and do nothing.
    - Refiner (processing_helpers.is_refiner_enabled): runs only with enable_hr, refiner_steps
      > 0, 0 < refiner_start < 1 and a refiner model (override_settings.sd_model_refiner or the
      option); the infotext then says "Refiner", "Refiner steps", "Refiner start".
    - Clip skip is the top-level ``clip_skip`` (infotext "CLiP-skip" when > 1, info
      "clip_skip"); the legacy option CLIP_stop_at_last_layers is read by nothing.
    - Hires (processing_diffusers.process_hires): the image is only upscaled when
      hr_resize_mode > 0 and hr_upscaler is not "None"; a latent upscaler name SD.Next does not
      list (A1111's "Latent") leaves the size unchanged.
    - img2img resize_mode: 0 None (the init image keeps its size, rounded up to a multiple of
      8), 1 Fixed (stretch), 2 Crop, 3 Fill (image_background #000000), 4 Outpaint, 5 Context
      aware (modules/image/resize.py resize_image); infotext "Resize mode" by name.
    - Errors (modules/api/middleware.py handle_exception) add "code"; with starlette >= 0.28
      ``str(HTTPException)`` is "404: Sampler not found", so "errors" repeats the detail.
      POST /interrupt and /skip answer 204 without a body (modules/api/server.py).
    - Infotext (modules/processing_info.py create_infotext) and info (processing.Processed.js,
      no "sd_model_name") follow SD.Next's keys.

    Not emulated: the "Scheduler"/"Pipeline" infotext keys (class names of a real model),
    outpainting and seam carving (modes 4 and 5 fill with black / stretch), SD.Next's live
    preview and progress formula (the A1111 ones of the demo are used), the refiner's and the
    hires pass's effect on the picture, extras (extra-single-image is the demo's A1111 one:
    SD.Next's Upscaler.upscale does not floor the target to a multiple of 8, and its
    ReqProcess takes factors of 1 to 8 only).
    """

    write_checkpoint_title = True

    def __init__(self, step_delay: float, *, schedulers_route: bool = True):
        super().__init__(step_delay)
        self.schedulers_route = schedulers_route
        self.lists["samplers"] = _fixture("sdnext", "samplers.json")
        self.lists["upscalers"] = _fixture("sdnext", "upscalers.json")
        del self.lists["latent-upscale-modes"]
        self.sampler_names = _fixture("sdnext", "sampler-names.json")
        # modules/ui_definitions.py options the fake reads (sd_model_refiner 'None',
        # image_background '#000000', show_progress_every_n_steps 1) and the compatibility
        # option clip_skip (cmd_args.py: opts.data['clip_skip'] = 1)
        extra = {
            "sd_model_refiner": "None",
            "image_background": "#000000",
            "show_progress_every_n_steps": 1,
            "clip_skip": 1,
        }
        self.options.update(extra)
        self.option_keys |= set(extra)
        self.models_txt2img = PydanticV2Model(_fixture("sdnext", "txt2img-fields.json"), None)
        self.models_img2img = PydanticV2Model(_fixture("sdnext", "img2img-fields.json"), None)
        with self.cond:
            self.options["sd_model_checkpoint"] = self.title(self.loaded or self.models[0])

    # -- checkpoints: modules/sd_checkpoint.py ------------------------------------------------

    @staticmethod
    def _name(model: dict[str, Any]) -> str:
        """CheckpointInfo.name: the path below the model folder, without extension."""
        return _name_for_extra(model)

    def title(self, model: dict[str, Any]) -> str:
        name = self._name(model)
        return f"{name} [{model['hash']}]" if self.is_hashed(model) else name

    def short_title(self, model: dict[str, Any]) -> str:
        return self.title(model)

    def aliases(self, model: dict[str, Any]) -> list[str]:
        # CheckpointInfo.register(): name, filename, shorthash, title
        ids = [self._name(model), model["filename"], self.title(model)]
        if self.is_hashed(model):
            ids.append(model["hash"])
        return ids

    def closest_model(self, search: Any) -> dict[str, Any] | None:
        """sd_checkpoint.get_closest_checkpoint_match (alias, file name, name without hash)."""
        if not isinstance(search, str):
            return None
        found = self.find_model(search)
        if found is not None:
            return found
        for key in (
            lambda m: self.title(m).rsplit("/", 1)[-1].lower() == search.lower(),
            lambda m: _RE_HASH.sub("", self.title(m)).lower() == _RE_HASH.sub("", search).lower(),
        ):
            matches = [m for m in self.models if key(m)]
            if len(matches) == 1:
                return matches[0]
        return None

    def model_item(self, model: dict[str, Any]) -> dict[str, Any]:
        # endpoints.get_sd_models -> models.ItemModel
        hashed = self.is_hashed(model)
        return {
            "title": self.title(model),
            "model_name": self._name(model),
            "filename": model["filename"],
            "type": model["filename"].rsplit(".", 1)[-1].lower(),
            "sha256": model["sha256"] if hashed else None,
            "hash": model["hash"] if hashed else None,
            "config": None,
        }

    # -- options: modules/options_handler.py ---------------------------------------------------

    def set_option(self, target: dict[str, Any], key: str, value: Any, *, is_api: bool = True):
        if target.get(key) == value:
            return False
        if key not in self.option_keys:
            # Options.__setattr__ on an unknown key sets a Python attribute: no error, no effect.
            return False
        target[key] = value
        return True

    def list_answer(self, name: str) -> Any:
        if name == "latent-upscale-modes":
            raise _ApiError(404, {"detail": "Not Found"})
        if name == "prompt-styles":
            # modules/api/endpoints.py get_prompt_styles: each style of its styles folder with
            # extra, filename and preview besides A1111's three fields.
            return [{**style, "extra": "", "filename": f"models/styles/{style['name']}.json",
                     "preview": ""} for style in super().list_answer(name)]
        return super().list_answer(name)

    def schedulers_answer(self) -> tuple[int, Any]:
        if not self.schedulers_route:
            return 404, {"detail": "Not Found"}
        rows = [
            {"name": n, "cls": "<lambda>" if _is_sampler(n) else None, "options": {}}
            for n in self.sampler_names
        ]
        bad = [r for r in rows if r["cls"] is None]
        errors = "\n".join(
            f"  {{'type': 'string_type', 'loc': ('response', {rows.index(r)}, 'cls'), "
            f"'msg': 'Input should be a valid string', 'input': None}}"
            for r in bad
        )
        return 500, {
            "error": "ResponseValidationError",
            "code": 500,
            "detail": "",
            "body": rows,
            "errors": f"{len(bad)} validation errors:\n{errors}",
        }

    # -- requests ------------------------------------------------------------------------------

    def validate(self, mode: str, body: Any) -> dict[str, Any]:
        model = self.models_txt2img if mode == "txt2img" else self.models_img2img
        return model.validate(body)

    def http_error(self, status: int, detail: str) -> _ApiError:
        return _ApiError(
            status,
            {
                "error": "HTTPException",
                "code": status,
                "detail": detail,
                "body": "",
                "errors": f"{status}: {detail}",
            },
        )

    def exception_payload(self, exc: Exception) -> tuple[int, Any]:
        if isinstance(exc, TypeError):
            # general_exception_handler: a TypeError becomes the bare message string.
            return 500, str(exc)
        return 500, {
            "error": type(exc).__name__,
            "code": 500,
            "detail": "",
            "body": "",
            "errors": str(exc),
        }

    def validate_sampler(self, name: Any) -> str:
        """modules/api/helpers.py validate_sampler_name."""
        if isinstance(name, str) and name.startswith("─"):
            raise self.http_error(404, "Sampler not found")
        if name in self.sampler_names:
            return name
        if isinstance(name, str) and name not in ("", "None"):
            for known in self.sampler_names:
                if known.lower() == name.lower():
                    return known
        raise self.http_error(404, "Sampler not found")

    def plan(self, mode: str, params: dict[str, Any]) -> _Plan:
        fork: dict[str, Any] = {"ops": []}
        if mode == "img2img" and params.get("init_images") is None:
            # generate.post_img2img
            raise _ApiError(400, {"error": "Init image is none"})
        sampler = self.validate_sampler(params.get("sampler_name") or params.get("sampler_index"))
        hr_sampler = params.get("hr_sampler_name") or "Same as primary"
        fork["hr_sampler"] = sampler if hr_sampler == "Same as primary" else hr_sampler

        # StableDiffusionProcessing.__init__: a top-level checkpoint switches the server's one.
        top = params.get("sd_model_checkpoint")
        if top:
            with self.cond:
                chosen = self.closest_model(top) if len(top) >= 3 else None
                if chosen is None:
                    fork["abort"] = True
                else:
                    self.options["sd_model_checkpoint"] = top
                    self._load_checkpoint(chosen)

        overrides = {
            k: v
            for k, v in (params.get("override_settings") or {}).items()
            if self.options.get(k) != v  # process_images pops unchanged values
        }
        with self.cond:
            refiner = None
            if "sd_model_refiner" in overrides:
                refiner = self.find_model(overrides["sd_model_refiner"])
                if refiner is None:
                    overrides.pop("sd_model_refiner")
            if refiner is None and self.options.get("sd_model_refiner") not in (None, "None"):
                refiner = self.closest_model(self.options["sd_model_refiner"])

        width = 8 * int(_value(params, "width", 1024) / 8)  # vae_scale_factor rounding
        height = 8 * int(_value(params, "height", 1024) / 8)
        fork.update(width=width, height=height, clip_skip=_value(params, "clip_skip", 1))
        demo = {
            k: params.get(k)
            for k in (
                "prompt", "negative_prompt", "seed", "subseed", "subseed_strength",
                "seed_resize_from_h", "seed_resize_from_w", "batch_size", "n_iter", "steps",
                "cfg_scale", "styles", "tiling", "override_settings_restore_afterwards",
                "send_images",
            )
        }  # fmt: skip
        demo["override_settings"] = {
            k: v for k, v in overrides.items() if k in self.option_keys
        }
        out_w, out_h = width, height
        if mode == "img2img":
            init, out_w, out_h = self._sdnext_init_images(params, width, height, fork)
            demo["init_images"] = init
            demo["denoising_strength"] = _value(params, "denoising_strength", 0.5)
            if params.get("mask"):
                demo["mask"] = params["mask"]
                demo["inpainting_mask_invert"] = params.get("inpainting_mask_invert")
                demo["mask_blur"] = params.get("mask_blur")
            fork["ops"].append("img2img")
        else:
            fork["ops"].append("txt2img")
            out_w, out_h = self._sdnext_hires(params, width, height, fork)
        demo["width"], demo["height"] = out_w, out_h
        fork["refiner"] = None
        if (
            _value(params, "enable_hr", False)
            and _value(params, "refiner_steps", 5) > 0
            and 0 < _value(params, "refiner_start", 0) < 1
            and refiner is not None
        ):
            fork["refiner"] = refiner
            fork["ops"].append("refine")
        plan = super().plan(mode, demo)
        plan.params = params
        plan.sampler = sampler
        plan.width, plan.height = fork.pop("size", (width, height))
        plan.denoising = demo.get("denoising_strength", _value(params, "denoising_strength", 0.3))
        plan.fork = fork
        return plan

    def _sdnext_hires(
        self, params: dict[str, Any], width: int, height: int, fork: dict[str, Any]
    ) -> tuple[int, int]:
        """processing_diffusers.process_hires / StableDiffusionProcessingTxt2Img.init_hr."""
        if not _value(params, "enable_hr", False):
            return width, height
        upscaler = params.get("hr_upscaler")
        mode = _value(params, "hr_resize_mode", 0)
        rx, ry = _value(params, "hr_resize_x", 0), _value(params, "hr_resize_y", 0)
        scale = float(_value(params, "hr_scale", 2.0))
        if rx == 0 and ry == 0:
            to = (int(width * scale), int(height * scale))
        elif ry == 0:
            to = (int(rx), int(rx * height // width))
        elif rx == 0:
            to = (int(ry * width // height), int(ry))
        else:
            to = (int(rx), int(ry))
        fork["hires"] = {"upscaler": upscaler, "mode": mode, "to": to, "fixed": rx > 0 or ry > 0}
        out = (width, height)
        if mode > 0 and (upscaler != "None" or mode == 5):
            fork["ops"].append("upscale")
            known = {u["name"].lower().replace("-", " ") for u in self.lists["upscalers"]}
            is_latent = str(upscaler).lower().startswith("latent")
            # images.resize_image: a latent tensor is only resized by a listed upscaler; an
            # image falls back to plain resampling.
            if not is_latent or str(upscaler).lower().replace("-", " ") in known:
                out = to
        strength = _value(params, "hr_denoising_strength", 0.0) or _value(
            params, "denoising_strength", 0.3
        )
        force = _value(params, "hr_force", False)
        second_pass = str(upscaler).lower().startswith("latent") or force
        if upscaler is not None and second_pass and strength > 0:
            fork["ops"].append("hires")
        return out

    def _sdnext_init_images(
        self, params: dict[str, Any], width: int, height: int, fork: dict[str, Any]
    ) -> tuple[list[str], int, int]:
        """StableDiffusionProcessingImg2Img.init + processing_helpers.resize_init_images."""
        images = [self._decode(x) for x in params["init_images"]]
        if not images:
            raise _ApiError(400, {"error": "Init image is none"})
        mode = _value(params, "resize_mode", 0)
        first = images[0]
        fork["init_size"] = first.size
        background = str(self.options.get("img2img_background_color") or "#ffffff")
        out = []
        for image in images:
            image = _flatten(image, background)
            if mode > 0:
                image = self._resize(image, mode, width, height)
            out.append(image)
        size = out[0].size
        if mode > 0:
            width, height = size
        # resize_init_images: round up to a multiple of the VAE scale factor (8)
        target = (8 * math.ceil(size[0] / 8), 8 * math.ceil(size[1] / 8))
        if size != target:
            out = [im.resize(target, Image.Resampling.LANCZOS) for im in out]
            width, height = target
        fork["size"] = (width, height)
        fork["resize_mode"] = mode
        return [_b64(im) for im in out], target[0], target[1]

    def _decode(self, encoding: Any) -> Image.Image:
        """modules/api/helpers.py decode_base64_to_image."""
        if not isinstance(encoding, str):
            raise self.http_error(500, "Invalid encoded image")
        if encoding.startswith("data:image/"):
            parts = encoding.split(";", 1)
            if len(parts) == 2:
                parts2 = parts[1].split(",", 1)
                encoding = parts2[1] if len(parts2) == 2 else parts2[0]
        try:
            image = Image.open(io.BytesIO(base64.b64decode(encoding)))
            image.load()
            return image
        except Exception as exc:
            raise self.http_error(500, "Invalid encoded image") from exc

    def _resize(self, image: Image.Image, mode: int, width: int, height: int) -> Image.Image:
        """modules/image/resize.py resize_image for PIL images."""
        if image.size == (width, height) or (width == 0 and height == 0):
            return image.copy()
        if mode == 2:  # crop: cover the target, centred
            ratio, src_ratio = width / height, image.width / image.height
            src_w = width if ratio > src_ratio else image.width * height // image.height
            src_h = height if ratio <= src_ratio else image.height * width // image.width
            resized = image.resize((src_w, src_h), Image.Resampling.LANCZOS)
            res = Image.new(image.mode, (width, height))
            res.paste(resized, (width // 2 - src_w // 2, height // 2 - src_h // 2))
            return res
        if mode in (3, 4):  # fill (4, outpaint, first fills with black)
            color = self.options.get("image_background", "#000000") if mode == 3 else "#000000"
            inner = ImageOps.contain(image, (width, height), Image.Resampling.LANCZOS)
            res = Image.new(image.mode, (width, height), color)
            res.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
            return res
        return image.resize((width, height), Image.Resampling.LANCZOS)  # 1 fixed (5 approx.)

    def run(self, plan: _Plan) -> tuple[list[Image.Image], list[int], str]:
        if plan.fork.get("abort"):
            return [], [], ""
        images, indexes, stamp = super().run(plan)
        refiner = plan.fork.get("refiner")
        if refiner is not None:
            with self.cond:
                # sd_models.reload_model_weights(op='refiner') hashes it and writes its title
                # into sd_model_refiner (an override of that option was restored already).
                self.hashed.add(refiner["filename"])
                if "sd_model_refiner" not in plan.overrides:
                    self.options["sd_model_refiner"] = self.title(refiner)
        return images, indexes, stamp

    def infotext(self, plan: _Plan, index: int) -> str:
        """modules/processing_info.py create_infotext (the keys a fake can know)."""
        p = plan.params
        fork = plan.fork
        ops = fork["ops"]
        clip_skip = fork["clip_skip"]
        args: dict[str, Any] = {
            "Steps": plan.steps,
            "Size": f"{plan.width}x{plan.height}",
            "Sampler": plan.sampler if plan.sampler != "Default" else None,
            "Seed": plan.seeds[index],
            "CFG scale": plan.cfg_scale if plan.cfg_scale > -1 else None,
            "CFG rescale": _value(p, "cfg_rescale", 0.0),
            "CLiP-skip": clip_skip if clip_skip > 1 else None,
            "Batch": f"{plan.n_iter}x{plan.batch_size}"
            if plan.n_iter > 1 or plan.batch_size > 1
            else None,
            "App": "SD.Next",
            "Version": "demo",
            "Operations": "; ".join(ops) if ops else "none",
            "Model": self._name(plan.model),
            "Model hash": plan.model["hash"],
        }
        if plan.n_iter > 1 or plan.batch_size > 1:
            args["Index"] = f"{index // plan.batch_size + 1}x{index + 1}"
        if "txt2img" in ops and plan.subseed_strength > 0:
            args["Variation seed"] = plan.subseeds[index]
            args["Variation strength"] = plan.subseed_strength
        hires = fork.get("hires")
        if hires and ("hires" in ops or "upscale" in ops):
            args["Refine"] = True
            if hires["mode"] > 0 and (hires["upscaler"] != "None" or hires["mode"] == 5):
                args["HiRes mode"] = hires["mode"]
                args["Hires upscaler"] = hires["upscaler"]
                if hires["fixed"]:
                    rx, ry = _value(p, "hr_resize_x", 0), _value(p, "hr_resize_y", 0)
                    args["Hires fixed"] = f"{rx}x{ry}"
                else:
                    args["Hires scale"] = _value(p, "hr_scale", 2.0)
                args["Hires size"] = f"{hires['to'][0]}x{hires['to'][1]}"
            if _value(p, "hr_force", False) or "Latent" in str(hires["upscaler"]):
                args["Hires force"] = _value(p, "hr_force", False)
                args["Hires steps"] = _value(p, "hr_second_pass_steps", 0)
                args["Hires strength"] = _value(p, "hr_denoising_strength", 0.0)
                hs = fork["hr_sampler"]
                args["Hires sampler"] = hs if hs != "Default" else None
        if "refine" in ops:
            args["Refine"] = True
            args["Refiner"] = self._name(fork["refiner"])
            args["Refiner steps"] = _value(p, "refiner_steps", 5)
            args["Refiner start"] = _value(p, "refiner_start", 0)
            args["Hires steps"] = _value(p, "hr_second_pass_steps", 0)
            hs = fork["hr_sampler"]
            args["Hires sampler"] = hs if hs != "Default" else None
        if "img2img" in ops:
            iw, ih = fork["init_size"]
            args["Init image size"] = f"{iw}x{ih}"
            args["Denoising strength"] = plan.denoising
            if args["Size"] != args["Init image size"]:
                name = SDNEXT_RESIZE_MODES[fork["resize_mode"]]
                args["Resize mode"] = name if name != "None" else None
        text = ", ".join(
            k if k == v else f"{k}: {_quote(v)}" for k, v in args.items() if v is not None
        )
        negative = plan.negatives[index]
        negative_text = f"\nNegative prompt: {negative}" if negative else ""
        return f"{plan.prompts[index]}{negative_text}\n{text}".strip()

    def info(self, plan: _Plan, infotexts: list[str], job_timestamp: str) -> str:
        """processing.Processed.js()"""
        if plan.fork.get("abort"):
            return ""
        p = plan.params
        cfg_end = _value(p, "cfg_end", 1)
        return json.dumps(
            {
                "prompt": plan.prompts[0],
                "all_prompts": plan.prompts,
                "negative_prompt": plan.negatives[0],
                "all_negative_prompts": plan.negatives,
                "seed": plan.seeds[0],
                "all_seeds": plan.seeds,
                "subseed": plan.subseeds[0],
                "all_subseeds": plan.subseeds,
                "subseed_strength": plan.subseed_strength,
                "width": plan.width,
                "height": plan.height,
                "sampler_name": plan.sampler,
                "cfg_scale": plan.cfg_scale,
                "cfg_end": cfg_end if cfg_end < 1 else None,
                "steps": plan.steps,
                "batch_size": plan.batch_size,
                "detailer": bool(_value(p, "detailer_enabled", False)),
                "detailer_model": "Detailer" if _value(p, "detailer_enabled", False) else None,
                "sd_model_hash": plan.model["hash"],
                "seed_resize_from_w": _value(p, "seed_resize_from_w", -1),
                "seed_resize_from_h": _value(p, "seed_resize_from_h", -1),
                "denoising_strength": plan.denoising,
                "extra_generation_params": {},
                "index_of_first_image": 0,
                "infotexts": infotexts,
                "styles": p.get("styles") or [],
                "job_timestamp": job_timestamp,
                "clip_skip": plan.fork["clip_skip"],
            }
        )

    def echo(self, mode: str, params: dict[str, Any]) -> dict[str, Any]:
        echo = dict(params)
        if mode == "img2img" and not _value(params, "include_init_images", False):
            echo["init_images"] = None
            echo["mask"] = None
        return echo


def _is_sampler(name: str) -> bool:
    return name not in ("Default", "Same as primary") and not name.startswith("─")


def _b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def create_sdnext_app(step_delay: float = 0.001, *, schedulers_route: bool = True) -> Flask:
    """The SD.Next fake; ``schedulers_route=False`` is SD.Next before 6fc0830d (2026-07-01)."""
    backend = SDNextBackend(step_delay, schedulers_route=schedulers_route)
    app = _recording(create_demo_app(backend=backend))

    def schedulers() -> Response:
        status, body = backend.schedulers_answer()
        return _json(body, status)

    def no_content(action: str):
        def view() -> Response:
            getattr(backend, action)()
            # modules/api/server.py post_interrupt / post_skip: Response(status_code=204)
            return Response(status=204)

        return view

    app.view_functions["list_schedulers"] = schedulers
    # modules/cmd_args.py + installer.add_args flags (tests/fixtures/identify/README.md)
    backend.lists["cmd-flags"] = _fixture("identify", "sdnext-cmd-flags.json")

    @app.get(f"{API}/version")
    def version() -> Response:
        # modules/api/server.py get_version -> installer.get_version(): "app" is always sd.next
        return _json({"app": "sd.next", "updated": "2026-07-23", "commit": "058a7f0cf",
                      "branch": "master", "url": "https://github.com/vladmandic/sdnext/tree/master",
                      "kanvas": "main", "ui": "main"})

    app.view_functions["interrupt"] = no_content("interrupt")
    app.view_functions["skip"] = no_content("skip")
    return app


# --------------------------------------------------------------------------------------------
# Helpers


def _json(obj: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(obj, ensure_ascii=False, separators=(",", ":")),
        status=status,
        mimetype="application/json",
    )


def _recording(app: Flask) -> Flask:
    """Keep every request (method, path, JSON body) in app.config["REQUESTS"] for the tests."""
    app.config["REQUESTS"] = []

    @app.before_request
    def record() -> None:
        app.config["REQUESTS"].append(
            {
                "method": request.method,
                "path": request.path,
                "json": request.get_json(silent=True) if request.is_json else None,
            }
        )

    return app


__all__ = ["ForgeBackend", "SDNextBackend", "create_forge_app", "create_sdnext_app"]

"""State of one demo server (DemoBackend): the fixed lists and options, checkpoints, job
planning and running, progress, interrupt and skip.

Behaviour that follows the real server (sources: see the package docstring):

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
- ``parameters`` echoes the validated request with defaults (img2img: ``init_images`` and
  ``mask`` are nulled unless ``include_init_images`` is true).
- One job at a time (a queue lock). ``/progress`` reports A1111's fraction and ETA formula.
  Live previews follow modules/shared_state.py: each /progress call makes a preview from the
  latest step (a grid for a batch, ``show_progress_grid``) when at least
  ``show_progress_every_n_steps`` steps passed since the last one (default 10; 0 = on every
  call; -1 = never during sampling, but ``nextjob()`` makes one when a batch ends) and
  ``live_previews_enable`` is on; ``current_image`` then carries the latest preview, at the
  size ``show_progress_type`` decodes to (the default "Approx NN": a quarter of the image a
  side; "Full": the image's size).
  ``/interrupt`` ends the job: the request returns 200 with the images of every batch made so
  far, the current batch as partial (noisy) images. ``/skip`` ends the current batch early,
  keeps its partial images and goes on with the next batch, as A1111 does.

Decisions of the demo (not A1111 behaviour):

- The exact width x height is honoured (A1111 would round down to a multiple of 8). Limits:
  8..4096 pixels a side, 1..1000 steps, batch_size 1..64, at most 100 images a request;
  outside them -> 500 ``ValueError`` in the A1111 error shape.
- Each image costs ``steps * step_delay`` seconds: a batch sleeps ``batch_size * step_delay`` a
  step. img2img runs ``int(min(denoising_strength, 0.999) * steps) + 1`` steps, like A1111.
- enable_hr renders directly at the hires size (``hr_resize_x/y`` or ``hr_scale``) and adds the
  Hires infotext fields; there is no second pass. ``styles``, ``infotext``, ``alwayson_scripts``
  and sampler tuning fields are accepted and ignored.
- The refiner switch is not simulated per step: a found refiner other than the job's
  checkpoint counts as used unless ``refiner_switch_at`` >= 1 (A1111 switches once the
  sigma-based completed ratio reaches it, which happens before the last step for values
  below 1). The picture keeps the look of the job's checkpoint.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageFilter, ImageOps

from . import extras
from .checkpoints import (
    _RE_CHECKSUM,
    _ckpt_name,
    _hashed_title,
    _legacy_hash,
    _model_name,
    _name_for_extra,
)
from .painter import _EXTRA_NETWORK_RE, _clamp, _flatten, _mask_from, _png_b64, _resize_for
from .plan import _int_or, _Plan
from .validation import (
    EXTRAS_FIELDS,
    EXTRAS_LIMITS,
    IMG2IMG_FIELDS,
    TXT2IMG_FIELDS,
    _a1111_error,
    _decode_image,
    _http_exception,
    _validate_model,
    _value,
)

DATA_DIR = Path(__file__).with_name("data")
# GET routes that answer a fixed list (or object) from data/<name>.json.
# cmd-flags: the launch flags of an API-only A1111 1.10.1 at their defaults (the Flags schema
# of its /openapi.json); webui's a1111 definition recognises A1111 by them.
# prompt-styles: modules/api/api.py get_prompt_styles, one {name, prompt, negative_prompt} per
# style of the server's styles.csv (none without one; the demo has three).
LIST_ROUTES = ("memory", "sd-models", "samplers", "schedulers", "upscalers",
               "latent-upscale-modes", "loras", "sd-vae", "cmd-flags", "prompt-styles")

MAX_SIDE = 4096
MIN_SIDE = 8
MAX_STEPS = 1000
MAX_BATCH_SIZE = 64
MAX_IMAGES = 100


# extensions-builtin/Lora/extra_networks_lora.py remove_symbols.
_HASH_KEY_DROPS = str.maketrans("", "", ":,")


def _lora_hash(name: str) -> str:
    return hashlib.sha256(f"demo-lora:{name}".encode()).hexdigest()[:12]


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

    def __init__(self, step_delay: float) -> None:
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
        """The checkpoints as data/sd-models.json knows them (their hashes included)."""
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

    def prompt_loras(self, prompt: str) -> list[tuple[str, str, float]]:
        """(name as written, LoRA name, unet weight) of each LoRA the prompt's tags apply, as
        A1111 1.10.1 reads them. modules/extra_networks.py parse_prompt finds every
        ``<(\\w+):([^>]+)>`` and splits its text at ":"; ExtraNetworkParams makes each part
        holding one "=" a named argument, the others positional. extensions-builtin/Lora/
        extra_networks_lora.py activate: the name is positional[0], the text-encoder weight
        positional[1] or te= (1.0 without), the unet weight positional[2] or unet= (else the
        text-encoder one); a weight that is no number (a name holding ":") raises, which
        extra_networks.activate catches (errors.display): then no LoRA of the prompt is
        applied and the job goes on. A name is looked up among names and aliases
        (networks.available_network_aliases); one not found is skipped."""
        found: list[tuple[str, str, float]] = []
        for kind, args in _EXTRA_NETWORK_RE.findall(prompt):
            if kind != "lora":
                continue
            positional: list[str] = []
            named: dict[str, str] = {}
            for item in args.split(":"):
                parts = item.split("=", 2)
                if len(parts) == 2:
                    named[parts[0]] = parts[1]
                else:
                    positional.append(item)
            try:
                mentioned = positional[0]
                te = float(positional[1]) if len(positional) > 1 else 1.0
                te = float(named.get("te", te))
                unet = float(positional[2]) if len(positional) > 2 else te
                unet = float(named.get("unet", unet))
            except (IndexError, ValueError):
                return []
            lora = self.find_lora(mentioned)
            if lora is not None:
                found.append((mentioned, lora["name"], unet))
        return found

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
        loras: list[tuple[str, str, float]] = []
        if not _value(params, "disable_extra_networks", False):
            loras = self.prompt_loras(prompt)
            if loras:
                # p.lora_hashes: keyed by the name as the prompt wrote it, ":" and "," removed.
                hashes = {mentioned.translate(_HASH_KEY_DROPS): _lora_hash(name)
                          for mentioned, name, _ in loras}
                extra["Lora hashes"] = ", ".join(f"{k}: {v}" for k, v in hashes.items())
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
            loras=tuple((name, weight) for _, name, weight in loras),
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
                # The infotext of StableDiffusionProcessingImg2Img.init (modules/processing.py
                # at Forge 04c6ab68, A1111 1.10.1's base, L1614-1644): "Mask mode" when
                # inverted, "Mask blur" when blurred (the mask_blur property: the common value
                # of x and y, else None), "Inpaint area"/"Masked area padding" with
                # inpaint_full_res (the API's default: true) unless the mask is blank.
                if _value(params, "inpainting_mask_invert", 0):
                    mask = ImageOps.invert(mask)
                    plan.extra["Mask mode"] = "Inpaint not masked"
                blur = params.get("mask_blur")
                blur_x = blur_y = blur
                if blur is None:
                    blur_x = _value(params, "mask_blur_x", 4)
                    blur_y = _value(params, "mask_blur_y", 4)
                    blur = max(blur_x, blur_y)
                if blur > 0:
                    mask = mask.filter(ImageFilter.GaussianBlur(blur / 2))
                    if blur_x == blur_y:  # None (unequal) is left out of the infotext
                        plan.extra["Mask blur"] = blur_x
                if _value(params, "inpaint_full_res", True) and mask.getbbox() is not None:
                    plan.extra["Inpaint area"] = "Only masked"
                    plan.extra["Masked area padding"] = _value(params,
                                                               "inpaint_full_res_padding", 0)
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
            method = self.options.get("show_progress_type", "Approx NN")
        image = (self._preview_image(latent, method) if make_preview and latent is not None
                 else None)
        with self.cond:
            if image is not None:
                self.state.current_image = image
                self.state.current_image_sampling_step = self.state.sampling_step
            self.state.job_no += 1
            self.state.sampling_step = 0
            self.state.current_image_sampling_step = 0

    @staticmethod
    def _preview_image(latent: tuple[Any, ...], method: Any) -> Image.Image:
        """sample_to_image / samples_to_image_grid (show_progress_grid) of a stored latent,
        at the size the preview method decodes to (modules/sd_samplers_common.py
        samples_to_images_tensor, 1.10.1, ``show_progress_type``): "Full" (the VAE) and "TAESD"
        decode to the image's size; "Approx NN", the default, to twice the latent's (the
        latent is 1/8 of the image; modules/sd_vae_approx.py VAEApprox.forward doubles it and
        its unpadded convolutions take back the 11 pixels it pads): a quarter of the image a
        side; "Approx cheap" to the latent's own size. An unknown name counts as "Full"
        (``approximation_indexes.get(opts.show_progress_type, 0)``)."""
        plan, batch, targets, fraction = latent
        frames = [plan.frame(i, targets[n], fraction) for n, i in enumerate(batch)]
        latent_scale = {"Approx NN": 2, "Approx cheap": 1}.get(method)
        if latent_scale is not None:
            width, height = frames[0].size
            size = (max(1, width // 8) * latent_scale, max(1, height // 8) * latent_scale)
            frames = [frame.resize(size, Image.Resampling.BOX) for frame in frames]
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
            method = self.options.get("show_progress_type", "Approx NN")
        if latent is not None:
            image = self._preview_image(latent, method)
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

    # -- extras (modules/postprocessing.py run_postprocessing; see extras.py) -----------------

    def extras_single_image(self, body: Any) -> dict[str, Any]:
        """POST extra-single-image: the ExtrasSingleImageResponse ``{html_info, image}``."""
        params = _validate_model(body, EXTRAS_FIELDS, EXTRAS_LIMITS)
        image = _decode_image(params["image"])
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGB")
        with self.queue_lock:
            with self.cond:
                # State.begin(job="extras"), one image (job_count), nextjob() before it.
                state = self.state
                state.job, state.job_count, state.job_no = "extras", 1, 0
                state.sampling_step = state.sampling_steps = 0
                state.time_start = time.time()
                state.interrupted = state.skipped = state.stopping_generation = False
                state.job_timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
            try:
                with self.cond:
                    state.job_no += 1
                texts = extras.text_chunks(image)
                result, info = extras.upscale(image, params, self.lists["upscalers"], MAX_SIDE,
                                              self._upscaler_pass)
                text = extras.infotext(info)
                texts["postprocessing"] = text
            finally:
                with self.cond:
                    # State.end()
                    state.job, state.job_count = "", 0
        return {"html_info": extras.html_info(text), "image": _png_b64(result, texts=texts)}

    def _upscaler_pass(self) -> bool:
        """The time a model upscaler's pass takes (20 steps); True if interrupted."""
        with self.cond:
            return self.cond.wait_for(lambda: self.state.interrupted,
                                      timeout=self.step_delay * 20)

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

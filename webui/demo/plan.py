"""The generation plan of the demo backend: a validated, resolved txt2img/img2img request and
what it produces (each image's picture at a given fraction of its steps, its infotext, the
``info`` of the answer).

Behaviour that follows the real server (sources: see the package docstring):

- ``info`` is a JSON *string*; every PNG carries its infotext in a ``parameters`` text chunk.

Decisions of the demo (not A1111 behaviour):

- No grid image is ever returned (``index_of_first_image`` is always 0).
- img2img: resize_mode 0 and 3 stretch the init image to width x height, 1 crops to fill, 2 fits
  and fills the borders with a blurred stretched copy. The init image is blended with the
  generated picture by denoising_strength (0 -> the init image, 1 -> purely generated). A mask
  limits the change to its white part (``inpainting_mask_invert`` flips it, ``mask_blur``
  softens it). Other inpainting settings are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .checkpoints import _name_for_extra
from .painter import _clamp, _Look, _noise, _paint

VERSION = "demo"


def _quote(value: Any) -> Any:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return value
    return json.dumps(text, ensure_ascii=False)


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

"""The demo's Extras tab: one image upscaled (POST /sdapi/v1/extra-single-image).

Behaviour that follows the real server (AUTOMATIC1111/stable-diffusion-webui 1.10.1, read in
lllyasviel/stable-diffusion-webui-forge at 04c6ab68, its "1.10.1" base, and A1111's own
commit 45b8a49 where they agree: modules/api/api.py ``extras_single_image_api``,
modules/postprocessing.py ``run_postprocessing``/``run_extras``,
scripts/postprocessing_upscale.py ``ScriptPostprocessingUpscale``, modules/upscaler.py):

- ``upscaler_1`` "None" leaves the image alone (no step, no info); an unknown name fails
  ``assert upscaler1``: 500 AssertionError "could not find upscaler named X" (likewise
  ``upscaler_2``, checked only when upscaler 1 is a real one).
- Scale by (``resize_mode`` 0): the target is ``int(w * factor // 8 * 8)`` x the same for h
  (``Upscaler.upscale``); the upscaler runs until the image is at least that big (at most 3
  times, at least once unless the factor is 1), then the image is resized to exactly the
  target with Lanczos. Lanczos and Nearest resize by the factor in one go; a model upscaler
  multiplies by its own ``scale`` (data/upscalers.json) each time.
- Scale to (``resize_mode`` 1): the factor is ``max(W / w, H / h)``; with ``upscaling_crop``
  the result is pasted centred on a black W x H canvas.
- ``upscaler_2`` with a visibility above 0 upscales the original the same way and is blended
  over the first (``Image.blend``).
- The info (infotext, and ``html_info`` as ``<p>…</p>``): "Postprocess upscale by: 2.0"
  (or "Postprocess upscale to: WxH" and "Postprocess crop to: WxH"), "Postprocess upscaler:
  name", "Postprocess upscaler 2: name". The answered PNG keeps the text chunks of the image
  sent (its ``parameters`` too) and gains ``postprocessing`` with that infotext
  (``pp.image.info``; ``encode_pil_to_base64`` writes every text item).

Decisions of the demo (not A1111 behaviour): a model upscaler is a Lanczos resize by its
scale followed by an unsharp mask (no network), each pass taking 20 steps' time
(``step_delay``); an interrupt ends the passes, as in 1.10.1; GFPGAN and CodeFormer
(visibility > 0) and ``upscale_first`` are accepted and do nothing; the result's sides are
limited like a generation's (MAX_SIDE, else 500 ValueError); ``/skip`` during an upscale
does nothing (A1111 would then answer a 500: run_postprocessing has no image to return).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageFilter

from .plan import _quote
from .validation import _a1111_error

# modules/images.py IGNORED_INFO_KEYS: image.info items read_info_from_image drops.
IGNORED_INFO_KEYS = {
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background",
    "timestamp", "duration", "progressive", "progression", "icc_profile", "chromaticity",
    "photoshop",
}


def _do_upscale(image: Image.Image, upscaler: dict[str, Any], scale: float) -> Image.Image:
    """One pass of an upscaler (``Upscaler.do_upscale``)."""
    name = upscaler["name"]
    if name in ("Lanczos", "Nearest"):
        resample = Image.Resampling.LANCZOS if name == "Lanczos" else Image.Resampling.NEAREST
        return image.resize((int(image.width * scale), int(image.height * scale)), resample)
    factor = float(upscaler.get("scale") or 4)
    bigger = image.resize((int(image.width * factor), int(image.height * factor)),
                          Image.Resampling.LANCZOS)
    return bigger.filter(ImageFilter.UnsharpMask(radius=2, percent=80, threshold=2))


def _upscale_once(image: Image.Image, upscaler: dict[str, Any], scale: float,
                  max_side: int, work: Callable[[], bool]) -> Image.Image:
    """``Upscaler.upscale``: passes until the target is reached (or an interrupt), then
    exactly the target. ``work()`` takes a model pass's time and says if interrupted."""
    dest_w = int((image.width * scale) // 8 * 8)
    dest_h = int((image.height * scale) // 8 * 8)
    if max(dest_w, dest_h) > max_side or min(dest_w, dest_h) < 1:
        raise _a1111_error(500, "ValueError",
                           errors=f"the demo makes images of 1..{max_side} pixels a side, "
                                  f"not {dest_w}x{dest_h}")
    img = image
    for i in range(3):
        if img.width >= dest_w and img.height >= dest_h and (i > 0 or scale != 1):
            break
        # 1.10.1 (F110 modules/upscaler.py): an interrupt ends the passes; the image is
        # still brought to the target and answered.
        if upscaler["name"] not in ("Lanczos", "Nearest") and work():
            break
        shape = img.size
        img = _do_upscale(img, upscaler, scale)
        if img.size == shape:
            break
    if img.size != (dest_w, dest_h):
        img = img.resize((dest_w, dest_h), Image.Resampling.LANCZOS)
    return img


def _find(upscalers: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((u for u in upscalers if u["name"] == name), None)


def upscale(image: Image.Image, params: dict[str, Any], upscalers: list[dict[str, Any]],
            max_side: int, work: Callable[[], bool] = lambda: False,
            ) -> tuple[Image.Image, dict[str, Any]]:
    """``ScriptPostprocessingUpscale.process``: the upscaled image and the info it adds.
    ``work()`` stands for a model pass's time and says whether the job was interrupted."""
    info: dict[str, Any] = {}
    name1 = None if params["upscaler_1"] == "None" else params["upscaler_1"]
    first = _find(upscalers, name1) if name1 is not None else None
    if name1 is not None and first is None:
        raise _a1111_error(500, "AssertionError",
                           errors=f"could not find upscaler named {name1}")
    if first is None:
        return image, info
    name2 = None if params["upscaler_2"] == "None" else params["upscaler_2"]
    second = _find(upscalers, name2) if name2 is not None else None
    if name2 is not None and second is None:
        raise _a1111_error(500, "AssertionError",
                           errors=f"could not find upscaler named {name2}")

    def one(upscaler: dict[str, Any]) -> Image.Image:
        width, height = params["upscaling_resize_w"], params["upscaling_resize_h"]
        if params["resize_mode"] == 1:
            scale = max(width / image.width, height / image.height)
            info["Postprocess upscale to"] = f"{width}x{height}"
        else:
            scale = params["upscaling_resize"]
            info["Postprocess upscale by"] = scale
        result = _upscale_once(image, upscaler, scale, max_side, work)
        if params["resize_mode"] == 1 and params["upscaling_crop"]:
            canvas = Image.new("RGB", (width, height))
            canvas.paste(result, (width // 2 - result.width // 2,
                                  height // 2 - result.height // 2))
            result = canvas
            info["Postprocess crop to"] = f"{result.width}x{result.height}"
        return result

    out = one(first)
    info["Postprocess upscaler"] = first["name"]
    visibility = params["extras_upscaler_2_visibility"]
    if second is not None and visibility > 0:
        other = one(second)
        if other.mode != out.mode:
            other = other.convert(out.mode)
        out = Image.blend(out, other, visibility)
        info["Postprocess upscaler 2"] = second["name"]
    return out, info


def infotext(info: dict[str, Any]) -> str:
    """run_postprocessing's infotext of the info items."""
    return ", ".join(k if k == v else f"{k}: {_quote(v)}" for k, v in info.items()
                     if v is not None)


def html_info(text: str) -> str:
    """modules/ui_common.py plaintext_to_html."""
    return "<p>" + "<br>\n".join(html.escape(x) for x in text.split("\n")) + "</p>"


def text_chunks(image: Image.Image) -> dict[str, str]:
    """The text items the answer's PNG keeps (read_info_from_image's ``existing_pnginfo``,
    ``parameters`` put back; encode_pil_to_base64 writes only the str ones)."""
    return {k: v for k, v in (image.info or {}).items()
            if isinstance(k, str) and isinstance(v, str) and k not in IGNORED_INFO_KEYS}

"""The pictures of the demo backend: deterministic procedural images drawn with Pillow (no
model, no GPU), the latent-like noise of unfinished images, the preparation of img2img init
images and masks, and PNG encoding.

Decisions of the demo (not A1111 behaviour):

- ``<lora:name:weight>`` tags naming a demo LoRA tint the picture and add "Lora hashes".
  The "demo-pastel" model paints with a pastel palette.
"""

from __future__ import annotations

import base64
import colorsys
import hashlib
import io
import math
import random
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps, PngImagePlugin

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


def _png_b64(image: Image.Image, infotext: str | None = None,
             texts: dict[str, str] | None = None) -> str:
    buffer = io.BytesIO()
    info = None
    items = {**(texts or {}), **({"parameters": infotext} if infotext is not None else {})}
    if items:
        # Like A1111: a tEXt chunk "parameters" (Pillow switches to iTXt for non-latin-1 text),
        # and one per other text item (encode_pil_to_base64).
        info = PngImagePlugin.PngInfo()
        for key, text in items.items():
            info.add_text(key, text)
    image.save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


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

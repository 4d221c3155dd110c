"""Fake image-generation backends for tests: small Flask apps answering like the real servers."""


import hashlib
from typing import Any

from flask import Flask, request
from PIL import Image, ImageDraw


def record_request(app: Flask, **extra: Any) -> dict[str, Any]:
    """Append what the current request carried to ``app.config["REQUESTS"]`` (tests assert on
    it): method, path, auth presence, JSON body or multipart fields and file names."""
    entry: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "auth": "Authorization" in request.headers,
        **extra,
        "content_type": request.mimetype,
        "json": None,
        "form": {},
        "files": {},
    }
    if request.is_json:
        entry["json"] = request.get_json(silent=True)
    elif request.mimetype == "multipart/form-data":
        entry["form"] = request.form.to_dict()
        entry["files"] = {
            name: [f.filename for f in request.files.getlist(name)] for name in request.files
        }
    app.config["REQUESTS"].append(entry)
    return entry


def draw_image(width: int, height: int, key: str, *, transparent: bool = False) -> Image.Image:
    """A deterministic, cheap picture for KEY: flat colour plus two shapes, at full size."""
    d = hashlib.sha256(key.encode()).digest()
    mode = "RGBA" if transparent else "RGB"
    background = (d[0], d[1], d[2], 0) if transparent else (d[0], d[1], d[2])
    image = Image.new(mode, (width, height), background)
    draw = ImageDraw.Draw(image)
    x0, y0 = width * d[6] // 512, height * d[7] // 512
    draw.ellipse((x0, y0, x0 + width // 2, y0 + height // 2), fill=(d[3], d[4], d[5]))
    x1, y1 = width * d[11] // 512, height * d[12] // 512
    draw.rectangle((x1, y1, x1 + width // 3, y1 + height // 4), fill=(d[8], d[9], d[10]))
    return image

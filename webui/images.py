"""Result images: decoding what a backend returned, checking it is an image, and writing it
to disk atomically before anything shows it.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image, UnidentifiedImageError

_DATA_URL = re.compile(r"^data:([\w/+.-]+)?(;[\w=.-]+)*;base64,", re.IGNORECASE)
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


class ImageDataError(ValueError):
    """Bytes or text that are not an image."""


@dataclass(frozen=True)
class ImageInfo:
    mime: str
    ext: str
    width: int
    height: int


def decode_base64(text: str) -> bytes:
    """Decode base64 image text, with or without a ``data:…;base64,`` prefix."""
    text = _DATA_URL.sub("", text.strip(), count=1)
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageDataError("is not valid base64") from None


def decode_data_url(text: str) -> bytes:
    if not _DATA_URL.match(text.strip()):
        raise ImageDataError("is not a base64 data: URL")
    return decode_base64(text)


def inspect(data: bytes) -> ImageInfo:
    """Identify an image; raise ImageDataError if Pillow cannot read it."""
    if not data:
        raise ImageDataError("is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
            fmt = (img.format or "").upper()
            width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageDataError(f"is not an image ({len(data)} bytes that no decoder "
                             "recognises)") from None
    ext = {"JPEG": "jpg"}.get(fmt, fmt.lower() or "bin")
    return ImageInfo(Image.MIME.get(fmt, "application/octet-stream"), ext, width, height)


def to_base64(data: bytes, mime: str | None = None) -> str:
    text = base64.b64encode(data).decode("ascii")
    return f"data:{mime};base64,{text}" if mime else text


class ImageStore:
    """The folder result images are saved in, one sub-folder per day."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def save(self, data: bytes, ext: str, label: str) -> str:
        """Write ``data`` atomically; return its path relative to the root (with '/')."""
        now = datetime.now()
        folder = self.root / now.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{now.strftime('%H%M%S')}-{_SAFE.sub('-', label).strip('-')[:60]}"
        name = f"{stem}-{secrets.token_hex(3)}.{ext}"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=f".{ext}")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, folder / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return f"{folder.name}/{name}"

    def path(self, relative: str) -> Path:
        return self.root / relative

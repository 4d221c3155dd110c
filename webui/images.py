"""Images: decoding what a backend returned, the one check that bytes are a usable image,
atomic writes, thumbnails, and uploaded input images.

Every image — a backend's result, a live preview, an upload, a file sent on from the gallery —
goes through :func:`check` before anything uses it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import heapq
import io
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

# One limit for every image webui reads: an upload, a result, a preview.
MAX_IMAGE_BYTES = 30 * 1024 * 1024
MAX_IMAGE_PIXELS = 64_000_000

_DATA_URL = re.compile(r"^data:([\w/+.-]+)?(;[\w=.-]+)*;base64,", re.IGNORECASE)
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")
# Base64 of an image: only the base64 alphabet, and longer than any image header.
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]{64,}={0,2}")
_PILLOW_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError,
                  Image.DecompressionBombError)


class StorageError(Exception):
    """The data folder cannot take a file (full, read-only): the message says which and why."""


def storage_problem(path: Path, exc: OSError) -> StorageError:
    """A sentence for a failed write: what happened, to which folder."""
    folder = path if path.is_dir() else path.parent
    if exc.errno == errno.ENOSPC:
        why = f"the disk holding {folder} is full"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = f"{folder} is not writable"
    else:
        why = f"writing to {folder} failed ({exc.strerror or exc})"
    return StorageError(f"webui could not save a file: {why}. Free some space or fix the "
                        "folder's permissions; nothing else was lost.")


class ImageDataError(ValueError):
    """Bytes or text that are not a usable image; the message completes "the image …"."""


@dataclass(frozen=True)
class ImageInfo:
    mime: str
    ext: str
    width: int
    height: int


class UploadedImage:
    """An input image (an upload, or an image of the gallery sent on), already checked. Kept in
    memory until :meth:`on_disk` moves it to a file: a queued job then holds a path, not the
    bytes, and survives a restart."""

    __slots__ = ("_data", "filename", "height", "mime", "path", "size", "width")

    def __init__(self, data: bytes, mime: str, filename: str, width: int, height: int,
                 path: Path | None = None, size: int | None = None):
        self._data = data
        self.mime = mime
        self.filename = filename
        self.width = width
        self.height = height
        self.path = path
        self.size = len(data) if size is None else size

    @property
    def data(self) -> bytes:
        if self.path is not None:
            return self.path.read_bytes()
        return self._data

    def on_disk(self, path: Path) -> UploadedImage:
        """The same image, written to ``path`` (atomically) and read from there from now on."""
        data = self._data
        write_atomic(path, lambda fh: fh.write(data))
        return UploadedImage(b"", self.mime, self.filename, self.width, self.height, path,
                             self.size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UploadedImage) and (self.data, self.mime, self.filename) == (
            other.data, other.mime, other.filename)

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"UploadedImage({self.filename!r}, {self.width}×{self.height}{where})"


def check(data: bytes) -> ImageInfo:
    """The one check: a format Pillow reads, within the byte and pixel limits (the pixel
    count is read from the header, before anything is decoded)."""
    if not data:
        raise ImageDataError("is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageDataError(f"is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageDataError(f"is too large ({width}×{height} pixels)")
            img.verify()
            fmt = (img.format or "").upper()
    except ImageDataError:
        raise
    except Image.DecompressionBombError:
        # Refused by Pillow from its header alone: far beyond our own limit.
        raise ImageDataError(f"is too large (more than {MAX_IMAGE_PIXELS:,} pixels: a "
                             "decompression bomb)") from None
    except ValueError as exc:
        if "Decompressed data too large" in str(exc):  # Pillow's guard on PNG text chunks
            raise ImageDataError("carries a compressed text that inflates beyond what is read "
                                 "(a decompression bomb)") from None
        raise ImageDataError(f"is not an image ({len(data)} bytes that no decoder "
                             "recognises)") from None
    except _PILLOW_ERRORS:
        raise ImageDataError(f"is not an image ({len(data)} bytes that no decoder "
                             "recognises)") from None
    ext = {"JPEG": "jpg"}.get(fmt, fmt.lower() or "bin")
    return ImageInfo(Image.MIME.get(fmt, "application/octet-stream"), ext, width, height)


def upload(data: bytes, filename: str) -> UploadedImage:
    """An input image from bytes; ImageDataError if they are not a usable image."""
    info = check(data)
    return UploadedImage(data, info.mime, filename, info.width, info.height)


def painted_mask(mask: UploadedImage, size: tuple[int, int], transparent: bool) -> UploadedImage:
    """A mask painted in the form as a service takes it: a PNG of ``size`` (its input
    image's, which some services require), white where to repaint on black or, with
    ``transparent``, opaque black with that area fully transparent. The painted mask marks
    the area by its alpha (opaque: repaint; its colour is only for show) or, without
    transparency, by its brightness (white: repaint)."""
    with Image.open(io.BytesIO(mask.data)) as img:
        # What a canvas exports has transparency: its alpha is the paint.
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            white = img.convert("RGBA").getchannel("A")
        else:
            white = img.convert("L")
    if white.size != size:
        white = white.resize(size, Image.Resampling.BILINEAR)
    if transparent:
        out = Image.new("RGBA", size, (0, 0, 0, 255))
        out.putalpha(ImageOps.invert(white))
    else:
        out = white
    buf = io.BytesIO()
    out.save(buf, "PNG")
    data = buf.getvalue()
    return UploadedImage(data, "image/png", "mask.png", size[0], size[1])


def text_kind(text: str, encoding: str) -> str:
    """How an image given as text is encoded: "base64", "data_url" or "url". ``auto``
    decides per value; base64 text may itself start with "/" (every JPEG's: "/9j/")."""
    if encoding != "auto":
        return encoding
    text = text.strip()
    if text.startswith("data:"):
        return "data_url"
    if text.startswith(("http://", "https://")) or (
            text.startswith("/") and not _BASE64_TEXT.fullmatch(text)):
        return "url"
    return "base64"


def decode_text(text: str, encoding: str) -> bytes:
    """The bytes of an image given as base64 text or a data URL (``auto``: either)."""
    kind = text_kind(text, encoding)
    if kind == "url":
        raise ImageDataError("is a URL, not image data")
    if kind == "data_url" and not _DATA_URL.match(text.strip()):
        raise ImageDataError("is not a base64 data: URL")
    text = _DATA_URL.sub("", text.strip(), count=1)
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageDataError("is not valid base64") from None


def to_base64(data: bytes, mime: str | None = None) -> str:
    text = base64.b64encode(data).decode("ascii")
    return f"data:{mime};base64,{text}" if mime else text


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file so that it appears complete or not at all (a temporary file in the same
    folder, synced, then renamed over the name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ImageStore:
    """The folder result images are saved in, one sub-folder per day."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def save(self, data: bytes, ext: str, label: str) -> str:
        """Write ``data`` atomically; return its path relative to the root (with '/')."""
        now = datetime.now()
        folder = self.root / now.strftime("%Y-%m-%d")
        stem = f"{now.strftime('%H%M%S')}-{_SAFE.sub('-', label).strip('-')[:60]}"
        name = f"{stem}-{secrets.token_hex(3)}.{ext}"
        try:
            write_atomic(folder / name, lambda fh: fh.write(data))
        except OSError as exc:
            raise storage_problem(folder, exc) from None
        return f"{folder.name}/{name}"

    def path(self, relative: str) -> Path:
        return self.root / relative


class DraftStore:
    """Input images chosen in a form before Generate (dropped, pasted, picked), so that a
    reload keeps them: the form remembers a draft's name, not its bytes. A draft is named by
    its content (choosing the same image twice stores it once) and kept for DRAFT_DAYS after
    it was last chosen; the oldest go beyond DRAFT_COUNT."""

    NAME = re.compile(r"d-[0-9a-f]{32}\.[a-z0-9]{2,5}")
    DRAFT_DAYS = 7
    DRAFT_COUNT = 200

    def __init__(self, root: Path):
        self.root = Path(root)

    def save(self, data: bytes) -> tuple[str, ImageInfo]:
        """Check and keep ``data``; return (its draft name, what it is). ImageDataError if it
        is not a usable image, StorageError if it cannot be written."""
        info = check(data)
        name = f"d-{hashlib.sha256(data).hexdigest()[:32]}.{info.ext}"
        path = self.root / name
        try:
            if path.is_file():
                path.touch()  # chosen again: kept longer
            else:
                write_atomic(path, lambda fh: fh.write(data))
        except OSError as exc:
            raise storage_problem(self.root, exc) from None
        self._prune(keep=path)
        return name, info

    def path(self, name: str) -> Path | None:
        """The file of a draft name, or None for a name that is not one or is gone."""
        if not self.NAME.fullmatch(name):
            return None
        path = self.root / name
        return path if path.is_file() else None

    def _prune(self, keep: Path) -> None:
        """Drop drafts not chosen for DRAFT_DAYS, and the oldest beyond DRAFT_COUNT (never
        ``keep``, the one just chosen)."""
        others = [f for f in self.root.glob("d-*") if f != keep]
        ages = sorted(((f.stat().st_mtime, f) for f in others), reverse=True)
        too_old = time.time() - self.DRAFT_DAYS * 86400
        for i, (mtime, old) in enumerate(ages):
            if i >= self.DRAFT_COUNT - 1 or mtime < too_old:
                old.unlink(missing_ok=True)


# A gallery tile is 180–240 CSS pixels wide (at most six columns; two on a phone): the small
# thumbnail serves screens of one device pixel per CSS pixel, the 384 one the denser ones
# (the browser picks from the tile's srcset).
THUMB_SIZE = 384
SMALL_THUMB_SIZE = 256


class ThumbnailError(Exception):
    """A thumbnail that could not be made (the source is missing or unreadable, or the
    thumbnail folder cannot be written)."""


def make_thumbnail(src: Path, dst: Path, size: int = THUMB_SIZE) -> tuple[int, int]:
    """Write a WEBP thumbnail of ``src`` fitting in ``size``×``size`` to ``dst`` and return its
    size. An existing ``dst`` is kept (thumbnails are made once); the file appears complete or
    not at all.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists():
        try:
            with Image.open(dst) as done:
                return done.size
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            pass  # damaged by something else: make it again
    try:
        with Image.open(src) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
            thumb = ImageOps.exif_transpose(img)
            alpha = thumb.mode in ("RGBA", "LA", "PA") or "transparency" in thumb.info
            thumb = thumb.convert("RGBA" if alpha else "RGB")
            thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    except FileNotFoundError:
        raise ThumbnailError(f"Cannot make a thumbnail: {src} does not exist") from None
    except _PILLOW_ERRORS as exc:
        raise ThumbnailError(f"Cannot make a thumbnail of {src}: it is not a readable image "
                           f"({exc})") from None
    try:
        write_atomic(dst, lambda fh: thumb.save(fh, format="WEBP", quality=80, method=4))
    except OSError as exc:
        raise ThumbnailError(f"Cannot write the thumbnail {dst}: {exc}") from None
    return thumb.size


def thumb_name(path: str) -> str:
    """The thumbnail of the image ``path`` (relative to the images folder): ``x.png`` →
    ``x.png.webp``, in the thumbnails folder."""
    return f"{path}.webp"


def small_thumb_name(name: str) -> str:
    """The small thumbnail kept beside the thumbnail ``name``: ``x.png.webp`` →
    ``x.png.256.webp``."""
    return f"{name.removesuffix('.webp')}.{SMALL_THUMB_SIZE}.webp"


def thumb_of_small(name: str) -> str | None:
    """The thumbnail a small thumbnail ``name`` is made from; None if ``name`` is not one."""
    suffix = f".{SMALL_THUMB_SIZE}.webp"
    return name.removesuffix(suffix) + ".webp" if name.endswith(suffix) else None


def make_thumbnails(src: Path, thumbs: Path, name: str) -> None:
    """The thumbnail ``name`` of ``src`` in the folder ``thumbs``, and its small one (made from
    it: quick). Raises ThumbnailError when the first cannot be made; the small one is made
    again when it is first asked for if it could not be made now."""
    make_thumbnail(src, thumbs / name, THUMB_SIZE)
    with contextlib.suppress(ThumbnailError):
        make_thumbnail(thumbs / name, thumbs / small_thumb_name(name), SMALL_THUMB_SIZE)


class Thumbnailer:
    """Makes thumbnails in the background, one at a time, in a thread of its own.

    A job's thumbnails are asked for as it ends, to be made ``delay`` seconds later, and while
    no job waits or runs (``busy``), up to ``longest`` seconds after they were asked for: only
    the gallery needs them, the browser is fetching and decoding the images just shown, and a
    batch of jobs has the machine first. A job is shown ended without waiting for them. Until
    one is made the gallery shows the picture itself, and asks for the thumbnail (made as soon
    as the thread is free, busy or not). Asked twice, made once.
    """

    def __init__(self, thumbs: Path, delay: float = 1.0, *,
                 busy: Callable[[], bool] = lambda: False, longest: float = 30.0):
        self.thumbs = Path(thumbs)
        self.delay = delay
        self.busy = busy
        self.longest = longest
        self._cond = threading.Condition()
        # A heap of [when, order, src, name, latest]: "latest" is when it is made even if busy.
        self._due: list[list] = []
        self._asked: set[str] = set()
        self._failed: set[str] = set()  # not made (an unreadable picture): not tried again
        self._order = 0
        self._working = False
        self._thread: threading.Thread | None = None

    def request(self, src: Path, name: str, *, now: bool = False) -> None:
        """Make the thumbnail ``name`` (and its small one) of ``src``: later, or as soon as the
        thread is free when ``now``."""
        with self._cond:
            if name in self._failed:
                return  # said once in the log; the gallery shows the picture itself
            if name in self._asked:
                if now:  # asked for later, wanted now
                    for entry in self._due:
                        if entry[3] == name:
                            entry[0] = entry[4] = 0.0
                    heapq.heapify(self._due)
                    self._cond.notify_all()
                return
            self._asked.add(name)
            self._order += 1
            start = time.monotonic()
            when = 0.0 if now else start + self.delay
            latest = 0.0 if now else start + self.longest
            heapq.heappush(self._due, [when, self._order, Path(src), name, latest])
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="thumbnails",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Whether everything asked for was made (or failed) within ``timeout`` s, neither the
        delay nor the jobs waited for: what is due later is made now."""
        deadline = time.monotonic() + timeout
        with self._cond:
            for entry in self._due:
                entry[0] = entry[4] = 0.0
            heapq.heapify(self._due)
            self._cond.notify_all()
            while self._due or self._working:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _next(self) -> tuple[Path, str]:
        """The next thumbnail to make, once it is its time (with the lock)."""
        while True:
            if not self._due:
                self._cond.wait()
                continue
            now = time.monotonic()
            when, _order, src, name, latest = self._due[0]
            if when > now:
                self._cond.wait(when - now)
            elif now < latest and self.busy():
                self._cond.wait(min(0.25, latest - now))  # a job has the machine
            else:
                heapq.heappop(self._due)
                return src, name

    def _work(self) -> None:
        while True:
            with self._cond:
                src, name = self._next()
                self._working = True
            try:
                make_thumbnails(src, self.thumbs, name)
                if not src.exists():  # deleted from the gallery meanwhile
                    for made in (name, small_thumb_name(name)):
                        (self.thumbs / made).unlink(missing_ok=True)
            except ThumbnailError as exc:
                log.warning("no thumbnail for %s: %s", src, exc)
                with self._cond:
                    self._failed.add(name)
            except Exception:
                log.exception("making the thumbnail %s failed", name)
            finally:
                with self._cond:
                    self._working = False
                    self._asked.discard(name)
                    self._cond.notify_all()


# --- Images kept for PNG Info ------------------------------------------------------------------

_TOKEN = re.compile(r"[0-9a-f]{32}")


class KeptImages:
    """Images read by PNG Info, kept so that its links (fill a form from it, use it as the
    input image) still work after a reload: named by a hash of their content, so the same file
    dropped twice is one file, and only the newest ``keep`` are kept."""

    def __init__(self, root: Path, keep: int = 50):
        self.root = Path(root)
        self.keep = keep

    def add(self, data: bytes, ext: str) -> str:
        """Keep checked image bytes; return their token. StorageError if they cannot be kept."""
        token = hashlib.sha256(data).hexdigest()[:32]
        path = self.root / f"{token}.{_SAFE.sub('', ext) or 'bin'}"
        try:
            if path.is_file():
                path.touch()  # the newest again
            else:
                write_atomic(path, lambda fh: fh.write(data))
            old = sorted((p for p in self.root.iterdir() if _TOKEN.fullmatch(p.stem)),
                         key=lambda p: p.stat().st_mtime, reverse=True)[self.keep:]
            for stale in old:
                stale.unlink(missing_ok=True)
        except OSError as exc:
            raise storage_problem(self.root, exc) from None
        return token

    def find(self, token: str) -> Path | None:
        """The file of a token; None for a token that is malformed or no longer kept."""
        if not _TOKEN.fullmatch(token or "") or not self.root.is_dir():
            return None
        return next((p for p in self.root.glob(f"{token}.*") if p.is_file()), None)

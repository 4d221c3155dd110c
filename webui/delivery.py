"""How answers travel to the browser: text compressed, static files at addresses that name
their content and kept by the browser for a year.

- Compression: HTML, CSS, JavaScript, JSON and SVG answers of at least MIN_BYTES go out
  compressed to a browser that accepts it (``Vary: Accept-Encoding``): brotli where the
  browser takes it (every current one does; 12% smaller than gzip on webui's static files,
  which is what brings a first visit of a form under 41 KB), else gzip. Images are compressed
  already; streamed answers (server-sent events, files sent as they are read) are left as they
  are: compressing them would hold back what they stream. Static files are compressed once
  per version of the file, at the highest level; pages and fragments as they are made, at a
  level that costs little time.
- Static addresses: ``url_for('static', filename=...)`` (the one helper templates use) adds
  ``?v=<hash of the file's content>``. An answer to the address of the file's current content
  is cached ``immutable`` for a year: a later page load asks nothing for it, and a changed file
  has another address. Any other address of a static file is revalidated (ETag) as before.
- The icon is written into each page as a ``data:`` URL (a few hundred bytes): a first visit
  makes one request fewer.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, request
from werkzeug.security import safe_join

try:
    import brotli
except ImportError:  # a dependency; without it (a stripped install), gzip alone
    brotli = None

# Below this, compression's framing and the work cost more than they save.
MIN_BYTES = 1024
# Pages and fragments are made for each request: levels that cost little time per byte.
DYNAMIC_GZIP = 6
DYNAMIC_BROTLI = 5
IMMUTABLE = "public, max-age=31536000, immutable"
HASH_CHARS = 12
_TEXT_TYPES = frozenset({
    "text/html", "text/css", "text/javascript", "text/plain", "text/markdown",
    "application/javascript", "application/json", "application/xml", "image/svg+xml",
})


def compressible(mimetype: str | None) -> bool:
    """Whether answers of this type are worth compressing (text, not images)."""
    if not mimetype:
        return False
    return mimetype in _TEXT_TYPES or mimetype.endswith("+json")


def chosen_encoding() -> str | None:
    """The encoding to answer this request in: "br" or "gzip", by the browser's preference
    (q values; brotli on a tie), or None when it takes neither."""
    accept = request.accept_encodings
    offers = [("br", accept["br"])] if brotli is not None else []
    offers.append(("gzip", accept["gzip"]))
    name, quality = max(offers, key=lambda o: o[1])  # max keeps the first of equals
    return name if quality > 0 else None


def _window(size: int) -> int:
    """Brotli's window (log2 bytes) for SIZE bytes: no larger than the data needs. Its default
    (4 MB) costs a buffer of that size per call, which each server thread's memory arena then
    keeps (+11 MB for 8 threads, measured)."""
    return min(22, max(16, size.bit_length()))


def _compressor(encoding: str, static: bool) -> Callable[[bytes], bytes]:
    if encoding == "br":
        quality = 11 if static else DYNAMIC_BROTLI
        return lambda data: brotli.compress(data, quality=quality, lgwin=_window(len(data)))
    level = 9 if static else DYNAMIC_GZIP
    return lambda data: gzip.compress(data, compresslevel=level, mtime=0)


Entry = tuple[int, int, str, dict[str, bytes]]


class StaticFiles:
    """The static folder's files: each one's content hash and its compressed bytes (per
    encoding), kept per version of the file (its size and modification time)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        # file name -> (size, mtime_ns, hash, {encoding: compressed bytes, made when asked})
        self._files: dict[str, Entry] = {}

    def _entry(self, filename: str) -> tuple[str, Entry] | None:
        path = safe_join(self.folder, filename)
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        with self._lock:
            hit = self._files.get(filename)
        if hit is not None and hit[:2] == (st.st_size, st.st_mtime_ns):
            return path, hit
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:HASH_CHARS]
        entry: Entry = (st.st_size, st.st_mtime_ns, digest, {})
        with self._lock:
            self._files[filename] = entry
        return path, entry

    def version(self, filename: str) -> str | None:
        """The hash of the file's current content (None: no such file)."""
        found = self._entry(filename)
        return found[1][2] if found else None

    def compressed(self, filename: str, encoding: str = "gzip") -> bytes | None:
        """The file's current content compressed ("br" or "gzip"), at the highest level,
        made once per version of the file."""
        found = self._entry(filename)
        if found is None:
            return None
        path, (_size, _mtime, _digest, packed) = found
        if encoding not in packed:
            # Two first requests at once may both compress it: the same bytes, kept once.
            packed[encoding] = _compressor(encoding, static=True)(Path(path).read_bytes())
        return packed[encoding]


def data_url(files: StaticFiles, filename: str, mime: str) -> str:
    """A small static file as a ``data:`` URL, to write into the page itself (the icon: one
    request fewer on a first visit)."""
    found = files._entry(filename)
    if found is None:
        return ""
    path, (_size, _mtime, _digest, packed) = found
    if "data-url" not in packed:
        text = Path(path).read_text(encoding="utf-8")
        packed["data-url"] = f"data:{mime},{quote(text, safe=':/=;,.-_()')}".encode()
    return packed["data-url"].decode()


# One per static folder in a process (every app of the tests shares the compressed files).
_shared: dict[str, StaticFiles] = {}
_shared_lock = threading.Lock()


def static_files(folder: str) -> StaticFiles:
    """The StaticFiles of a folder, shared by every app serving it."""
    with _shared_lock:
        return _shared.setdefault(folder, StaticFiles(folder))


def warm(app: Flask) -> threading.Thread:
    """Compress the static text files now, in the background (a server starting), so that
    the first visit does not wait for brotli's highest level."""
    files = app.extensions["webui.static_files"]

    def work() -> None:
        for path in sorted(Path(files.folder).rglob("*")):
            name = path.relative_to(files.folder).as_posix()
            mime = mimetypes.guess_type(name)[0]
            if path.is_file() and compressible(mime) and path.stat().st_size >= MIN_BYTES:
                for encoding in ("br", "gzip") if brotli is not None else ("gzip",):
                    files.compressed(name, encoding)

    thread = threading.Thread(target=work, name="webui-static-warm", daemon=True)
    thread.start()
    return thread


def install(app: Flask) -> None:
    """Hash the static URLs the app makes and compress and mark what it answers."""
    files = static_files(app.static_folder or "static")
    app.extensions["webui.static_files"] = files
    app.jinja_env.globals["static_data_url"] = lambda filename, mime: data_url(
        files, filename, mime)

    @app.url_defaults
    def versioned_static(endpoint: str, values: dict[str, Any]) -> None:
        if endpoint == "static" and "v" not in values and "filename" in values:
            version = files.version(values["filename"])
            if version is not None:
                values["v"] = version

    @app.after_request
    def deliver(response: Response) -> Response:
        if request.endpoint == "static":
            return _static(files, response)
        return _compress(response)


def _static(files: StaticFiles, response: Response) -> Response:
    """A static file's answer: immutable for its current hashed address; compressed (once per
    version of the file) when it is text and the browser accepts it."""
    filename = (request.view_args or {}).get("filename", "")
    version = files.version(filename)
    if response.status_code not in (200, 304) or version is None:
        return response
    if request.args.get("v") == version:
        response.headers["Cache-Control"] = IMMUTABLE
        # Never revalidated by date, never saved as a file: bytes of every first visit.
        for name in ("Last-Modified", "Content-Disposition"):
            response.headers.pop(name, None)
    # A whole answer only: a range (206) is of the file as it is on disk.
    if response.status_code != 200 or not compressible(response.mimetype) or (
            response.content_length or 0) < MIN_BYTES:
        return response
    response.vary.add("Accept-Encoding")
    encoding = chosen_encoding()
    if encoding is None or "Content-Encoding" in response.headers:
        return response
    packed = files.compressed(filename, encoding)
    if packed is None:
        return response
    response.close()  # the file send_static_file opened
    response.direct_passthrough = False
    _set_compressed(response, packed, encoding)
    return response


def _compress(response: Response) -> Response:
    """Compress a page or fragment made for this request, when it is worth it."""
    if (response.direct_passthrough or response.is_streamed or response.status_code < 200
            or response.status_code in (204, 206, 304) or not compressible(response.mimetype)
            or "Content-Encoding" in response.headers):
        return response
    body = response.get_data()
    if len(body) < MIN_BYTES:
        return response
    response.vary.add("Accept-Encoding")
    encoding = chosen_encoding()
    if encoding is not None:
        _set_compressed(response, _compressor(encoding, static=False)(body), encoding)
    return response


def _set_compressed(response: Response, packed: bytes, encoding: str) -> None:
    response.set_data(packed)
    response.headers["Content-Encoding"] = encoding
    # Another representation of the same content: a weak validator still revalidates (304).
    etag, weak = response.get_etag()
    if etag and not weak:
        response.set_etag(etag, weak=True)
    response.headers.pop("Accept-Ranges", None)

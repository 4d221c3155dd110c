"""How answers travel to the browser: text compressed, static files at addresses that name
their content and kept by the browser for a year.

- Compression: HTML, CSS, JavaScript, JSON and SVG answers of at least MIN_BYTES go out
  gzipped to a browser that accepts it (``Vary: Accept-Encoding``). Images are compressed
  already; streamed answers (server-sent events, files sent as they are read) are left as they
  are: compressing them would hold back what they stream. Static files are compressed once
  per version of the file, at the highest level; pages and fragments as they are made.
- Static addresses: ``url_for('static', filename=...)`` (the one helper templates use) adds
  ``?v=<hash of the file's content>``. An answer to the address of the file's current content
  is cached ``immutable`` for a year: a later page load asks nothing for it, and a changed file
  has another address. Any other address of a static file is revalidated (ETag) as before.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.security import safe_join

# Below this, gzip's header and the work cost more than they save.
MIN_BYTES = 1024
# Pages and fragments are made for each request: a level that costs little time per byte.
DYNAMIC_LEVEL = 6
IMMUTABLE = "public, max-age=31536000, immutable"
HASH_CHARS = 12
_TEXT_TYPES = frozenset({
    "text/html", "text/css", "text/javascript", "text/plain", "text/markdown",
    "application/javascript", "application/json", "application/xml", "image/svg+xml",
})


def compressible(mimetype: str | None) -> bool:
    """Whether answers of this type are worth gzipping (text, not a stream)."""
    if not mimetype:
        return False
    return mimetype in _TEXT_TYPES or mimetype.endswith("+json")


def accepts_gzip() -> bool:
    """Whether the request's Accept-Encoding allows gzip (and does not refuse it: q=0)."""
    return request.accept_encodings["gzip"] > 0


class StaticFiles:
    """The static folder's files: each one's content hash and its gzipped bytes, kept per
    version of the file (its size and modification time)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        # file name -> (size, mtime_ns, hash, gzipped bytes or None until asked for)
        self._files: dict[str, tuple[int, int, str, bytes | None]] = {}

    def _entry(self, filename: str) -> tuple[str, tuple[int, int, str, bytes | None]] | None:
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
        entry = (st.st_size, st.st_mtime_ns, digest, None)
        with self._lock:
            self._files[filename] = entry
        return path, entry

    def version(self, filename: str) -> str | None:
        """The hash of the file's current content (None: no such file)."""
        found = self._entry(filename)
        return found[1][2] if found else None

    def gzipped(self, filename: str) -> bytes | None:
        """The file's current content gzipped (made once per version of the file)."""
        found = self._entry(filename)
        if found is None:
            return None
        path, (size, mtime, digest, packed) = found
        if packed is None:
            packed = gzip.compress(Path(path).read_bytes(), compresslevel=9, mtime=0)
            with self._lock:
                self._files[filename] = (size, mtime, digest, packed)
        return packed


def install(app: Flask) -> None:
    """Hash the static URLs the app makes and compress and mark what it answers."""
    files = StaticFiles(app.static_folder or "static")
    app.extensions["webui.static_files"] = files

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
    """A static file's answer: immutable for its current hashed address; gzipped (from the
    cache) when it is text and the browser accepts it."""
    filename = (request.view_args or {}).get("filename", "")
    version = files.version(filename)
    if response.status_code not in (200, 304) or version is None:
        return response
    if request.args.get("v") == version:
        response.headers["Cache-Control"] = IMMUTABLE
    # A whole answer only: a range (206) is of the file as it is on disk.
    if response.status_code != 200 or not compressible(response.mimetype) or (
            response.content_length or 0) < MIN_BYTES:
        return response
    response.vary.add("Accept-Encoding")
    if not accepts_gzip() or "Content-Encoding" in response.headers:
        return response
    packed = files.gzipped(filename)
    if packed is None:
        return response
    response.close()  # the file send_static_file opened
    response.direct_passthrough = False
    _set_gzipped(response, packed)
    return response


def _compress(response: Response) -> Response:
    """Gzip a page or fragment made for this request, when it is worth it."""
    if (response.direct_passthrough or response.is_streamed or response.status_code < 200
            or response.status_code in (204, 206, 304) or not compressible(response.mimetype)
            or "Content-Encoding" in response.headers):
        return response
    body = response.get_data()
    if len(body) < MIN_BYTES:
        return response
    response.vary.add("Accept-Encoding")
    if accepts_gzip():
        _set_gzipped(response, gzip.compress(body, compresslevel=DYNAMIC_LEVEL, mtime=0))
    return response


def _set_gzipped(response: Response, packed: bytes) -> None:
    response.set_data(packed)
    response.headers["Content-Encoding"] = "gzip"
    # Another representation of the same content: a weak validator still revalidates (304).
    etag, weak = response.get_etag()
    if etag and not weak:
        response.set_etag(etag, weak=True)
    response.headers.pop("Accept-Ranges", None)

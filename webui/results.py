"""Reading a generation's answers: images (base64, data URLs, URLs to fetch, raw bytes),
seeds, infotexts and info; each image checked and saved before it is shown."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from . import backend, expr, images
from .backend import Auth, BackendError, origin, read_json, resolve_auth
from .format import Mode, Result, items_text
from .format.check import WEBUI_KEYWORD
from .images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, ImageDataError, ImageStore
from .infotext import build_infotext, read_png_infotext, write_png_infotext, write_png_text
from .redact import redact_url
from .service import Service

FETCH_TIMEOUT = 60.0


@dataclass(frozen=True)
class SavedImage:
    path: str
    mime: str
    width: int
    height: int
    seed: Any = None
    infotext: str | None = None


@dataclass
class Generation:
    service: str
    mode: str
    images: list[SavedImage]
    info: Any = None
    seconds: float = 0.0
    prompt: str | None = None


def extract(
    service: Service,
    mode: Mode,
    result: Result,
    responses: list[requests.Response],
    store: ImageStore,
    values: dict[str, Any] | None = None,
    on_image: Callable[[SavedImage], None] | None = None,
    stamp: dict[str, Any] | None = None,
) -> Generation:
    """Find, decode, check and save the images of the final response(s). ``stamp``: webui's
    note written into each PNG (with the image's own seed), so PNG Info knows its service."""
    raw_images: list[Any] = []
    seeds: list[Any] = []
    infos: list[Any] = []
    info_values: list[Any] = []
    for response in responses:
        if result.as_ == "bytes":
            data: Any = {}  # the answer is the image; header() and status() still read it
            found: list[Any] = [response.content]
        else:
            data = read_json(service, response)
            hit = search(service, result.images, data, "images", None, response)
            found = hit if isinstance(hit, list) else ([] if hit is None else [hit])
        raw_images.extend(found)
        seeds.extend(_per_image(_field(service, result, "seeds", data, response), len(found)))
        infos.extend(_per_image(_field(service, result, "infotexts", data, response), len(found)))
        info = _field(service, result, "info", data, response)
        if info is not None:
            info_values.append(info)
    if not raw_images:
        where = f" (nothing at {result.images!r})" if result.images else ""
        raise BackendError(f"{service.name} answered without any image{where}.", kind="empty")
    fallback = _sent_seed(mode, values or {})
    saved_images = []
    for i, raw in enumerate(raw_images):
        try:
            blob = _decode(service, result, raw)
            meta = images.check(blob)
        except ImageDataError as exc:
            raise BackendError(f"{service.name} returned image {i + 1} of {len(raw_images)} "
                               f"in a form that could not be read: it {exc}.",
                               kind="garbage") from None
        seed = seeds[i] if seeds[i] is not None else fallback
        label = f"{service.id}-{mode.name}" + (f"-{seed}" if seed is not None else "")
        info = infos[i] if isinstance(infos[i], str) else None
        # Every saved image carries A1111's "parameters" text, so A1111's PNG Info and other
        # tools read it: the backend's own if it wrote one, else ours.
        embedded = read_png_infotext(blob)
        info = info or embedded or describe(mode, values or {}, seed)
        if meta.mime == "image/png" and not embedded:
            blob = write_png_infotext(blob, info)
        if meta.mime == "image/png" and stamp is not None:
            note = json.dumps({**stamp, "seed": seed}, ensure_ascii=True, default=str)
            blob = write_png_text(blob, WEBUI_KEYWORD, note)
        path = store.save(blob, meta.ext, label)
        saved = SavedImage(path, meta.mime, meta.width, meta.height, seed, info)
        saved_images.append(saved)
        if on_image:
            on_image(saved)
    info_value = info_values[0] if len(info_values) == 1 else (info_values or None)
    return Generation(service.id, mode.name, saved_images, info_value)


def describe(mode: Mode, values: dict[str, Any], seed: Any) -> str:
    """An A1111-style infotext of what was asked for (for backends that write none)."""
    prompt_p = next((p for p in mode.parameters if p.kind == "prompt"), None) or next(
        (p for p in mode.parameters if p.type == "textarea"), None)
    negative_p = next((p for p in mode.parameters if p.kind == "negative"), None)
    skip = {p.key for p in (prompt_p, negative_p) if p is not None}
    fields = {p.key: items_text(values.get(p.key)) for p in mode.parameters
              if p.type != "image" and p.key not in skip}
    if seed is not None:
        fields["seed"] = seed
    prompt = values.get(prompt_p.key) if prompt_p else None
    negative = values.get(negative_p.key) if negative_p else None
    return build_infotext(prompt if isinstance(prompt, str) else "",
                          negative if isinstance(negative, str) else None, fields)


def _field(
    service: Service, result: Result, name: str, data: Any, response: requests.Response
) -> Any:
    value = search(service, getattr(result, name), data, name, None, response)
    if name == "seeds" and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)  # a seed read from a header is text
    return value


def _sent_seed(mode: Mode, values: dict[str, Any]) -> Any:
    """The seed we sent, when the backend does not report one (and it was not 'random')."""
    for p in mode.parameters:
        if p.type == "seed":
            value, low = values.get(p.key), p.bounds[0]
            # The lowest value of a seed's range means "random" (-1 in A1111, 0 elsewhere).
            return value if isinstance(value, int) and value > (low if low is not None else -1) \
                else None
    return None


def search(
    service: Service, text: str | None, data: Any, what: str,
    variables: dict[str, Any] | None = None, response: requests.Response | None = None,
) -> Any:
    """A definition's expression on an answer; ``header()``/``status()`` read ``response``."""
    if not text or data is None:
        return None
    context = expr.Context(variables, response.status_code if response is not None else None,
                           response.headers if response is not None else None)
    try:
        return expr.search(text, data, context)
    except expr.ExprError as exc:
        raise BackendError(f"{service.name}: cannot read {what} from the answer ({exc}).",
                           kind="garbage") from None


def _per_image(value: Any, count: int) -> list[Any]:
    if isinstance(value, list):
        return (value + [None] * count)[:count]
    return [value] * count


def _decode(service: Service, result: Result, raw: Any) -> bytes:
    if result.as_ == "bytes":
        return raw
    if not isinstance(raw, str):
        raise ImageDataError(f"is a {type(raw).__name__}, not text")
    if images.text_kind(raw, result.as_) == "url":
        return _fetch(service, result, raw.strip())
    return images.decode_text(raw, result.as_)


def may_fetch(service: Service, result: Result, url: str) -> bool:
    """Whether an image URL may be fetched: http(s), on the service's own address or a host
    the definition lists in ``fetchFrom`` (a host name: https on port 443; an origin)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return False
    where = origin(url)
    if where == origin(service.base_url):
        return True
    for entry in result.fetchFrom:
        allowed = origin(entry) if "://" in entry else ("https", entry.lower(), 443)
        if where == allowed:
            return True
    return False


def _fetch(service: Service, result: Result, url: str) -> bytes:
    """GET an image URL, only where it may be fetched from (each redirect checked too), within
    FETCH_TIMEOUT s and the image size limit; credentials go only to the service's own
    address. Errors name the address, never the size or content of what came."""
    absolute = urljoin(service.base_url.rstrip("/") + "/", url)
    home = origin(service.base_url)
    auth = resolve_auth(service) if origin(absolute) == home else None

    def hop(target: str) -> Auth | None:
        if not may_fetch(service, result, target):
            raise backend.Refused(target)
        return auth if origin(target) == home else None

    try:
        hop(absolute)
        response = backend.exchange(
            "GET", absolute, seconds=FETCH_TIMEOUT, max_bytes=MAX_IMAGE_BYTES, auth=auth,
            redirects=hop, headers=auth.headers if auth else None)
    except backend.Refused as exc:
        raise ImageDataError(
            f"points elsewhere: webui refused to fetch {redact_url(exc.url)} (not the "
            "service's own address; a definition lists the other hosts it may fetch from in "
            "result.fetchFrom)") from None
    except backend.TooManyRedirects:
        raise ImageDataError("could not be downloaded: redirected too many times") from None
    except backend.TooLarge:
        raise ImageDataError(f"is larger than {MAX_IMAGE_BYTES // backend.MB} MB") from None
    except backend.TooSlow:
        raise ImageDataError(f"could not be downloaded within {FETCH_TIMEOUT:g} s") from None
    except requests.exceptions.RequestException as exc:
        raise ImageDataError(f"could not be downloaded ({type(exc).__name__})") from None
    if response.status_code >= 400:
        raise ImageDataError(f"could not be downloaded (HTTP {response.status_code})")
    try:
        images.check(response.content)
    except ImageDataError:
        raise ImageDataError(
            f"was downloaded from {redact_url(response.url)}, but what came is not an image "
            f"webui accepts (a picture file of at most {MAX_IMAGE_BYTES // backend.MB} MB and "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels)") from None
    return response.content

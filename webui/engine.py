"""The generation engine: validated values -> request body -> backend call -> images on disk.

It knows HTTP, paths and encodings; everything about a particular service comes from its
definition.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import jmespath
import requests

from .client import BackendError, Service, call, read_json, resolve_auth
from .definitions import Mode, Result
from .forms import UploadedImage
from .images import ImageDataError, ImageStore, decode_base64, decode_data_url, inspect, to_base64
from .paths import PathError, set_path

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
    warnings: list[str] = field(default_factory=list)


def build_body(service: Service, mode: Mode, values: dict[str, Any]) -> dict[str, Any]:
    """The JSON body for ``mode`` from validated values (None = not sent)."""
    definition = service.definition
    body: dict[str, Any] = copy.deepcopy(mode.endpoint.body or {})
    values = dict(values)
    for p in mode.parameters:
        if p.appendTo is None or values.get(p.key) in (None, ""):
            continue
        fields = {k: ("" if v is None else v) for k, v in values.items()}
        fields["value"] = values[p.key]
        try:
            text = p.appendTo.format.format(**fields)
        except (ValueError, KeyError, IndexError) as exc:
            raise BackendError(f"The definition's format for {p.key!r} cannot be applied: "
                               f"{exc}", kind="definition") from None
        values[p.appendTo.to] = (values.get(p.appendTo.to) or "") + text
    targets = definition.targets[mode.name]
    for p in mode.parameters:
        if p.key not in targets:
            continue
        value = values.get(p.key)
        if value is None:
            continue
        if isinstance(value, UploadedImage):
            value = to_base64(value.data, value.mime if p.encode == "data_url" else None)
        try:
            set_path(body, targets[p.key], value)
        except PathError as exc:
            raise BackendError(f"Cannot place {p.key!r} in the request: {exc}",
                               kind="definition") from None
    return body


def generate(
    service: Service, mode: Mode, values: dict[str, Any], store: ImageStore
) -> Generation:
    """Run one generation; every image is on disk when this returns. Raises BackendError."""
    started = time.monotonic()
    body = build_body(service, mode, values)
    response = call(service, mode.endpoint, json_body=body)
    result = mode.endpoint.result
    assert result is not None  # guaranteed by the loader for generation endpoints
    generation = extract(service, mode, result, response, store)
    generation.seconds = time.monotonic() - started
    prompt = values.get("prompt")
    generation.prompt = prompt if isinstance(prompt, str) else None
    return generation


def extract(
    service: Service, mode: Mode, result: Result, response: requests.Response, store: ImageStore
) -> Generation:
    """Find, decode, check and save the images of a response."""
    if result.encoding == "bytes":
        data: Any = None
        raw_images: list[Any] = [response.content]
    else:
        data = read_json(service, response)
        if isinstance(data, dict):
            data = _parse_json_fields(service, data, result.parseJson)
        found = _search(service, result.images, data, "images")
        raw_images = found if isinstance(found, list) else ([] if found is None else [found])
    if not raw_images:
        raise BackendError(f"{service.name} answered without any image "
                           f"(nothing at {result.images!r}).", kind="empty")
    seeds = _per_image(_search(service, result.seeds, data, "seeds"), len(raw_images))
    infos = _per_image(_search(service, result.infotexts, data, "infotexts"), len(raw_images))
    images = []
    for i, raw in enumerate(raw_images):
        try:
            blob = _decode(service, raw, result.encoding)
            meta = inspect(blob)
        except ImageDataError as exc:
            raise BackendError(f"{service.name} returned image {i + 1} of {len(raw_images)} "
                               f"in a form that could not be read: it {exc}.",
                               kind="garbage") from None
        seed = seeds[i]
        label = f"{service.id}-{mode.name}" + (f"-{seed}" if seed is not None else "")
        path = store.save(blob, meta.ext, label)
        info = infos[i]
        images.append(SavedImage(path, meta.mime, meta.width, meta.height, seed,
                                 info if isinstance(info, str) else None))
    info_value = _search(service, result.info, data, "info") if result.info else None
    return Generation(service.id, mode.name, images, info_value)


def _parse_json_fields(service: Service, data: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    data = dict(data)
    for key in keys:
        if isinstance(data.get(key), str):
            try:
                data[key] = json.loads(data[key])
            except ValueError:
                raise BackendError(f"{service.name} returned a {key!r} field that should hold "
                                   "JSON but does not.", kind="garbage") from None
    return data


def _search(service: Service, expr: str | None, data: Any, what: str) -> Any:
    if not expr or data is None:
        return None
    try:
        return jmespath.search(expr, data)
    except jmespath.exceptions.JMESPathError as exc:
        raise BackendError(f"{service.name}: cannot read {what} from the answer ({exc}).",
                           kind="garbage") from None


def _per_image(value: Any, count: int) -> list[Any]:
    if isinstance(value, list):
        return (value + [None] * count)[:count]
    return [value] * count


def _decode(service: Service, raw: Any, encoding: str) -> bytes:
    if encoding == "bytes":
        return raw
    if not isinstance(raw, str):
        raise ImageDataError(f"is a {type(raw).__name__}, not text")
    if encoding == "auto":
        text = raw.strip()
        if text.startswith("data:"):
            encoding = "data_url"
        elif text.startswith(("http://", "https://", "/")):
            encoding = "url"
        else:
            encoding = "base64"
    if encoding == "base64":
        return decode_base64(raw)
    if encoding == "data_url":
        return decode_data_url(raw)
    return _fetch(service, raw.strip())


def _fetch(service: Service, url: str) -> bytes:
    """GET an image URL; credentials go only to the service's own origin."""
    absolute = urljoin(service.base_url.rstrip("/") + "/", url)
    same_origin = urlsplit(absolute)[:2] == urlsplit(service.base_url)[:2]
    auth = resolve_auth(service) if same_origin else None
    try:
        response = requests.get(
            absolute,
            headers=auth.headers if auth else None,
            auth=auth.basic if auth else None,
            timeout=(5.0, FETCH_TIMEOUT),
        )
    except requests.exceptions.RequestException as exc:
        raise ImageDataError(f"could not be downloaded ({type(exc).__name__})") from None
    if response.status_code >= 400:
        raise ImageDataError(f"could not be downloaded (HTTP {response.status_code})")
    return response.content

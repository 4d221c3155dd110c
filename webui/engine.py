"""The generation engine: validated values -> request body -> backend call -> images on disk.

It knows HTTP, paths and encodings; everything about a particular service comes from its
definition.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests

from . import expr
from .client import BackendError, Service, call, humanize, read_json, resolve_auth, scrub
from .definitions import (
    DEFAULT_SEED_RANGE,
    FILE_KEY,
    PLACEHOLDER,
    Mode,
    Result,
    Step,
    parse_target,
)
from .forms import UploadedImage
from .images import ImageDataError, ImageStore, decode_base64, decode_data_url, inspect, to_base64
from .infotext import build_infotext, read_png_infotext, write_png_infotext
from .paths import PathError, get_path, parse_path, set_path

FETCH_TIMEOUT = 60.0
# Base64 of an image: only the base64 alphabet, and longer than any image header.
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/]{64,}={0,2}")
# After a stop was asked for, how long a polled job may take to confirm it.
STOP_GRACE = 15.0


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


def prepare_values(mode: Mode, values: dict[str, Any]) -> dict[str, Any]:
    """Values as they will be sent: appended text joined in, random seeds picked."""
    values = dict(values)
    for p in mode.parameters:
        if p.type == "seed" and p.pickRandom and values.get(p.key) in (None, -1):
            low, high = p.bounds
            low = max(0, int(low or 0))
            high = int(high if high is not None else DEFAULT_SEED_RANGE[1])
            values[p.key] = low + secrets.randbelow(high - low + 1)
    for p in mode.parameters:
        if p.appendTo is None or values.get(p.key) in (None, ""):
            continue
        fields = {k: ("" if v is None else v) for k, v in values.items()}
        fields["value"] = values[p.key]
        try:
            text = p.appendTo.format.format(**fields)
        except (ValueError, KeyError, IndexError, AttributeError) as exc:
            raise BackendError(f"The definition's format for {p.key!r} cannot be applied: "
                               f"{exc}", kind="definition") from None
        values[p.appendTo.to] = (values.get(p.appendTo.to) or "") + text
    return values


def build_body(
    service: Service,
    mode: Mode,
    values: dict[str, Any],
    step: int = 0,
    variables: dict[str, Any] | None = None,
    *,
    prepared: bool = False,
) -> dict[str, Any]:
    """The body of one step of ``mode`` from validated values (None = not sent)."""
    definition = service.definition
    if not prepared:
        values = prepare_values(mode, values)
    variables = {"client_id": "", **(variables or {})}
    spec = mode.endpoint.step_list[step]
    resolved = definition.bodies[mode.name][step]
    body: dict[str, Any] = (_instantiate(spec.body, resolved, variables)
                            if spec.body is not None else {})
    encoding = spec.encoding
    for p in mode.parameters:
        value = values.get(p.key)
        if value is None:
            continue
        for target in definition.targets[mode.name].get(p.key, ()):
            if target.step != step:
                continue
            if isinstance(value, UploadedImage) and encoding == "json":
                value = to_base64(value.data, value.mime if p.encode == "data_url" else None)
            _write(body, target.tokens, copy.copy(value), p.key)
    for path, raw in spec.set.items():
        _write(body, parse_path(path), substitute(raw, variables), path)
    # Last, so a removed node stays removed whatever else was written into it.
    for p in mode.parameters:
        if p.ifEmpty and values.get(p.key) in (None, "", []):
            _apply_if_empty(body, p.ifEmpty, mode.endpoint.step_list, step)
    return body


def _apply_if_empty(body: dict[str, Any], edits: Any, steps: list[Step], step: int) -> None:
    for path, value in edits.set.items():
        target = parse_target(path, steps)
        if target.step == step:
            _write(body, target.tokens, copy.deepcopy(value), path)
    for path in edits.remove:
        target = parse_target(path, steps)
        index, tokens = target.step, target.tokens
        if index == step:
            try:
                parent = get_path(body, tokens[:-1])
            except KeyError:
                continue
            if isinstance(parent, dict):
                parent.pop(tokens[-1], None)


def _write(body: dict[str, Any], tokens: tuple[Any, ...], value: Any, what: str) -> None:
    try:
        set_path(body, tokens, value)
    except PathError as exc:
        raise BackendError(f"Cannot place {what!r} in the request: {exc}",
                           kind="definition") from None


def _instantiate(raw: Any, resolved: Any, variables: dict[str, Any]) -> Any:
    """A fresh copy of a step's body: placeholders filled in the definition's own strings,
    file-loaded parts (workflows) copied untouched."""
    if isinstance(raw, dict):
        if set(raw) == {FILE_KEY}:
            return copy.deepcopy(resolved)
        return {k: _instantiate(v, resolved[k], variables) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_instantiate(v, r, variables) for v, r in zip(raw, resolved, strict=True)]
    return substitute(raw, variables)


def substitute(node: Any, variables: dict[str, Any], *, quote_values: bool = False) -> Any:
    """Fill ``{name}`` / ``{name.key}`` placeholders. A string that is one placeholder becomes
    the variable's value itself (a number stays a number); in a URL path (``quote_values``)
    every value is percent-encoded."""
    if isinstance(node, dict):
        return {k: substitute(v, variables) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, variables) for v in node]
    if not isinstance(node, str) or "{" not in node:
        return node
    whole = PLACEHOLDER.fullmatch(node)
    if whole and not quote_values:
        return _lookup(whole, variables)

    def text(match: re.Match[str]) -> str:
        value = str(_lookup(match, variables))
        return quote(value, safe="") if quote_values else value

    return PLACEHOLDER.sub(text, node)


def _lookup(match: re.Match[str], variables: dict[str, Any]) -> Any:
    name, rest = match.group(1), match.group(2)
    if name not in variables:
        raise BackendError(f"The definition uses {{{name}}}, which has no value here.",
                           kind="definition")
    value = variables[name]
    for key in filter(None, rest.split(".")):
        value = value.get(key) if isinstance(value, dict) else None
    return "" if value is None else value


@dataclass
class Control:
    """Hooks of a running generation: asked to stop (an interrupt or cancel), told of each
    image as soon as it is on disk, of the values its steps saved (a job id the interrupt
    needs), and of where the job stands in the service's own queue."""

    should_stop: Callable[[], bool] = lambda: False
    on_image: Callable[[SavedImage], None] = lambda image: None
    on_saved: Callable[[], None] = lambda: None
    on_remote: Callable[[str, int | None], None] = lambda where, ahead: None
    variables: dict[str, Any] = field(default_factory=dict)


def generate(
    service: Service,
    mode: Mode,
    values: dict[str, Any],
    store: ImageStore,
    control: Control | None = None,
) -> Generation:
    """Run one generation (every step of its endpoint); every image is on disk when this
    returns. Raises BackendError."""
    control = control or Control()
    started = time.monotonic()
    values = prepare_values(mode, values)
    variables = control.variables
    variables["client_id"] = uuid.uuid4().hex
    steps = mode.endpoint.step_list
    responses: list[requests.Response] = []
    for index, step in enumerate(steps):
        items: list[Any] = [None]
        if step.forEach is not None:
            listed = variables.get(step.forEach)
            items = listed if isinstance(listed, list) else ([] if listed is None else [listed])
        responses = []
        for item in items:
            if control.should_stop() and responses:
                break  # keep what was fetched; the job ends as interrupted
            scope = {**variables, "item": item} if step.forEach else variables
            body = build_body(service, mode, values, index, scope, prepared=True)
            responses.append(_send(service, step, body, scope, control))
        if step.save and responses:
            data = read_json(service, responses[-1])
            for var, text in step.save.items():
                variables[var] = _search(service, text, data, var)
            control.on_saved()
    result = mode.endpoint.result
    assert result is not None  # guaranteed by the loader for generation endpoints
    generation = extract(service, mode, result, responses, store, values, control.on_image)
    generation.seconds = time.monotonic() - started
    prompt = values.get("prompt")
    generation.prompt = prompt if isinstance(prompt, str) else None
    return generation


def _send(
    service: Service, step: Step, body: dict[str, Any], variables: dict[str, Any],
    control: Control,
) -> requests.Response:
    """One step's request; a polled step is repeated (it is a GET) until done or failed."""
    path = substitute(step.path, variables, quote_values=True)
    query = substitute(step.query, variables)
    headers = substitute(step.headers, variables)
    send_body = body if (step.body is not None or body) else None
    if step.poll is None:
        return call(service, step, body=send_body, path=path, query=query, headers=headers)
    poll = step.poll
    deadline = time.monotonic() + poll.timeout
    stop_by: float | None = None

    def ask() -> tuple[requests.Response, bool]:
        """One poll: (the answer, done); raises when the service reports a failure."""
        response = call(service, step, path=path, query=query, headers=headers)
        data = read_json(service, response)
        if poll.failWhen and _search(service, poll.failWhen, data, "failWhen", variables):
            detail = (_search(service, poll.failMessage, data, "failMessage", variables)
                      if poll.failMessage else None)
            message = scrub(service, humanize(detail)) or "no reason given"
            raise BackendError(f"{service.name} reports that the job failed: {message}",
                               kind="failed")
        return response, bool(_search(service, poll.until, data, "until", variables))

    while True:
        response, done = ask()
        if done:
            return response
        if poll.backendQueue is not None:
            where, ahead = _where(service, poll.backendQueue, variables)
            if where is None:
                # Not in its queue and not running: finished between the two answers, or gone.
                response, done = ask()
                if done:
                    return response
                if control.should_stop():
                    raise BackendError(f"Stopped: {service.name} took the job out of its "
                                       "queue before it ran.", kind="interrupted")
                raise BackendError(f"{service.name} no longer has this job: it is neither in "
                                   "its queue nor finished (another client may have removed "
                                   f"it, or {service.name} restarted).", kind="gone")
            control.on_remote(where, ahead)
        now = time.monotonic()
        if now + poll.every > deadline:
            raise BackendError(f"{service.name} did not finish the job within "
                               f"{poll.timeout:g} s.", kind="timeout")
        if control.should_stop():
            if not service.definition.jobs.interrupt_calls:
                raise BackendError(f"Stopped following the job: the definition gives no way "
                                   f"to stop it, so {service.name} may still be running it.",
                                   kind="interrupted")
            # The stop was sent to the service: wait for it to say the job ended.
            stop_by = stop_by or now + STOP_GRACE
            if now > stop_by:
                raise BackendError(f"{service.name} did not confirm the stop within "
                                   f"{STOP_GRACE:g} s; webui stopped following the job.",
                                   kind="interrupted")
        time.sleep(poll.every)


def _where(
    service: Service, spec: Any, variables: dict[str, Any]
) -> tuple[str | None, int | None]:
    """("running" | "waiting" | None, jobs ahead) from the service's own queue."""
    data = read_json(service, call(service, service.definition.endpoints[spec.endpoint]))
    if _search(service, spec.running, data, "backendQueue.running", variables):
        return "running", None
    if _search(service, spec.waiting, data, "backendQueue.waiting", variables):
        ahead = _search(service, spec.ahead, data, "backendQueue.ahead", variables)
        return "waiting", ahead if isinstance(ahead, int) and not isinstance(ahead, bool) else None
    return None, None


def extract(
    service: Service,
    mode: Mode,
    result: Result,
    responses: list[requests.Response],
    store: ImageStore,
    values: dict[str, Any] | None = None,
    on_image: Callable[[SavedImage], None] | None = None,
) -> Generation:
    """Find, decode, check and save the images of the final response(s)."""
    raw_images: list[Any] = []
    seeds: list[Any] = []
    infos: list[Any] = []
    info_values: list[Any] = []
    for response in responses:
        if result.encoding == "bytes":
            data: Any = None
            found: list[Any] = [response.content]
        else:
            data = read_json(service, response)
            if isinstance(data, dict):
                data = _parse_json_fields(service, data, result.parseJson)
            hit = _search(service, result.images, data, "images")
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
    images = []
    for i, raw in enumerate(raw_images):
        try:
            blob = _decode(service, raw, result.encoding)
            meta = inspect(blob)
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
        path = store.save(blob, meta.ext, label)
        saved = SavedImage(path, meta.mime, meta.width, meta.height, seed, info)
        images.append(saved)
        if on_image:
            on_image(saved)
    info_value = info_values[0] if len(info_values) == 1 else (info_values or None)
    return Generation(service.id, mode.name, images, info_value)


def describe(mode: Mode, values: dict[str, Any], seed: Any) -> str:
    """An A1111-style infotext of what was asked for (for backends that write none)."""
    prompt_key = "prompt" if mode.parameter("prompt") else next(
        (p.key for p in mode.parameters if p.type == "textarea"), None)
    fields = {p.key: values.get(p.key) for p in mode.parameters
              if p.type != "image" and p.key not in (prompt_key, "negative_prompt")}
    if seed is not None:
        fields["seed"] = seed
    prompt = values.get(prompt_key) if prompt_key else None
    negative = values.get("negative_prompt")
    return build_infotext(prompt if isinstance(prompt, str) else "",
                          negative if isinstance(negative, str) else None, fields)


def _field(
    service: Service, result: Result, name: str, data: Any, response: requests.Response
) -> Any:
    header = result.headers.get(name)  # type: ignore[call-overload]
    if header:
        value = response.headers.get(header)
        if name == "seeds" and value is not None and value.lstrip("-").isdigit():
            return int(value)
        return value
    return _search(service, getattr(result, name), data, name)


def _sent_seed(mode: Mode, values: dict[str, Any]) -> Any:
    """The seed we sent, when the backend does not report one (and it was not 'random')."""
    for p in mode.parameters:
        if p.type == "seed":
            value, low = values.get(p.key), p.bounds[0]
            # The lowest value of a seed's range means "random" (-1 in A1111, 0 elsewhere).
            return value if isinstance(value, int) and value > (low if low is not None else -1) \
                else None
    return None


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


def _search(
    service: Service, text: str | None, data: Any, what: str,
    variables: dict[str, Any] | None = None,
) -> Any:
    if not text or data is None:
        return None
    try:
        return expr.search(text, data, expr.Context(variables))
    except expr.ExprError as exc:
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
        elif text.startswith(("http://", "https://")) or (
                text.startswith("/") and not _BASE64_TEXT.fullmatch(text)):
            # A path; base64 text can start with "/" too (every JPEG's: "/9j/").
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

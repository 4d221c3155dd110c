"""A generation's requests: validated values -> request bodies -> the endpoint's steps (save,
poll, for each) -> the answers, handed to :mod:`webui.results`.

It knows HTTP, paths and encodings; everything about a particular service comes from its
definition. A POST is never sent twice.
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
from urllib.parse import quote

import requests

from .backend import BackendError, call, humanize, read_json, scrub
from .format import DEFAULT_SEED_RANGE, FILE_KEY, PLACEHOLDER, Mode, Step, item_parts
from .format.paths import PathError, format_path, get_path, set_path
from .format.resolved import Copies, Edits
from .images import ImageStore, UploadedImage, painted_mask, to_base64
from .results import Generation, SavedImage, extract, search
from .service import Service

# After a stop was asked for, how long a polled job may take to confirm it.
STOP_GRACE = 15.0

# The value (among a job's values) holding the prompt styles chosen on the form, each as it
# was when the job was made: {name, prompt, negative, source}. Not a parameter key (those are
# identifiers), so no definition's parameter can take its place.
STYLES_KEY = "webui-styles"


def prepare_values(mode: Mode, values: dict[str, Any]) -> dict[str, Any]:
    """Values as they will be sent: styles merged into the prompts, appended text joined in,
    random seeds picked."""
    values = dict(values)
    for p in mode.parameters:
        if p.picks_seed and values.get(p.key) in (None, -1):
            low, high = p.bounds
            low = max(0, int(low or 0))
            high = int(high if high is not None else DEFAULT_SEED_RANGE[1])
            values[p.key] = low + secrets.randbelow(high - low + 1)
    styles = [s for s in values.get(STYLES_KEY) or [] if isinstance(s, dict)]
    for role, part in (("prompt", "prompt"), ("negative", "negative")):
        p = next((q for q in mode.parameters if q.kind == role), None)
        if p is not None and styles:
            values[p.key] = apply_styles(values.get(p.key) or "",
                                         [str(s.get(part) or "") for s in styles])
    for p in mode.parameters:
        if p.appendTo is None or values.get(p.key) in (None, "", []):
            continue
        items = values[p.key] if isinstance(values[p.key], list) else [values[p.key]]
        for item in items:
            fields = {k: ("" if v is None else v) for k, v in values.items()}
            value, weight = item_parts(item)
            fields["value"] = value
            if p.weight:
                fields[p.weight] = weight
            try:
                text = p.appendTo.format.format(**fields)
            except (ValueError, KeyError, IndexError, AttributeError) as exc:
                raise BackendError(f"The definition's format for {p.key!r} cannot be applied: "
                                   f"{exc}", kind="definition") from None
            values[p.appendTo.to] = (values.get(p.appendTo.to) or "") + text
    # A painted mask goes as the service takes it, at its input image's size.
    mask, init = mode.by_role("mask"), mode.by_role("init_image")
    if mask is not None and init is not None and isinstance(values.get(mask.key), UploadedImage):
        image = values.get(init.key)
        size = ((image.width, image.height) if isinstance(image, UploadedImage)
                else (values[mask.key].width, values[mask.key].height))
        values[mask.key] = painted_mask(values[mask.key], size, mask.maskTransparent)
    return values


def apply_styles(prompt: str, styles: list[str]) -> str:
    """Each style's text merged into the prompt in turn, as A1111 does (modules/styles.py
    merge_prompts, apply_styles_to_prompt): a style with ``{prompt}`` puts the prompt there;
    any other is added after it with ", " (empty parts left out)."""
    for style in styles:
        if "{prompt}" in style:
            prompt = style.replace("{prompt}", prompt)
        else:
            prompt = ", ".join(part for part in (prompt.strip(), style.strip()) if part)
    return prompt


# Where a ``query:``/``path:``/``header:`` target writes in a Request.
PLACES = {"query": "query", "path": "path", "header": "headers"}


@dataclass
class Request:
    """One step's request as built from the values: its body, and what goes into its query,
    the ``{name}``s of its path and its headers."""

    body: dict[str, Any]
    query: dict[str, Any] = field(default_factory=dict)
    path: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def build_body(
    mode: Mode,
    values: dict[str, Any],
    step: int = 0,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of one step of ``mode`` from prepared values (None = not sent)."""
    return build_request(mode, values, step, variables).body


def build_request(
    mode: Mode,
    values: dict[str, Any],
    step: int = 0,
    variables: dict[str, Any] | None = None,
) -> Request:
    """One step of ``mode`` from prepared values (None = not sent)."""
    variables = {"client_id": "", **(variables or {})}
    spec = mode.endpoint.step_list[step]
    request = Request(_instantiate(spec.body, mode.bodies[step], variables)
                      if spec.body is not None else {})
    for p in mode.parameters:
        value = values.get(p.key)
        if value is None or p.key in mode.repeats:
            continue  # a repeated object's values go into its copies (below)
        for target in mode.targets.get(p.key, ()):
            if target.step != step:
                continue
            if target.place != "body":
                text = json.dumps(value) if isinstance(value, list | dict) else (
                    str(value).lower() if isinstance(value, bool) else str(value))
                getattr(request, PLACES[target.place])[target.tokens[0]] = text
                continue
            if isinstance(value, UploadedImage) and spec.encoding == "json":
                value = to_base64(value.data, value.mime if p.encode == "data_url" else None)
            _write(request.body, target.tokens, copy.copy(value), p.key)
    for tokens, raw in mode.sets[step]:
        _write(request.body, tokens, substitute(raw, variables), format_path(tokens))
    for key, copies in mode.repeats.items():
        items = values.get(key)
        if copies.object.step == step and items not in (None, "", []):
            _repeat(request.body, copies, items if isinstance(items, list) else [items], key)
    # Last, so a removed node stays removed whatever else was written into it.
    for key, edits in mode.if_empty.items():
        if values.get(key) in (None, "", []):
            _apply_if_empty(request.body, edits, step)
    return request


def _apply_if_empty(body: dict[str, Any], edits: Edits, step: int) -> None:
    for target, value in edits.set:
        if target.step == step:
            _write(body, target.tokens, copy.deepcopy(value), format_path(target.tokens))
    for target in edits.remove:
        if target.step != step:
            continue
        try:
            parent = get_path(body, target.tokens[:-1])
        except KeyError:
            continue
        if isinstance(parent, dict):
            parent.pop(target.tokens[-1], None)


def _repeat(body: dict[str, Any], copies: Copies, items: list[Any], key: str) -> None:
    """The repeated object copied once per item, in its place: ``<key>-1``, ``<key>-2``, …
    and the object's own key for the last copy, so whatever referred to the object gets the
    end of the chain. Each copy gets its item's value and weight where the parameter and its
    weight target inside the object; each copy after the first gets ``chain``."""
    tokens = copies.object.tokens
    try:
        parent = get_path(body, tokens[:-1])
        template = parent[tokens[-1]]
    except (KeyError, TypeError):
        raise BackendError(f"Cannot repeat {format_path(tokens)!r} for {key!r}: it is not "
                           "in the request.", kind="definition") from None
    name = str(tokens[-1])
    names: list[str] = []
    counter = 0
    for _ in items[:-1]:
        counter += 1
        while f"{name}-{counter}" in parent:
            counter += 1
        names.append(f"{name}-{counter}")
    names.append(name)
    made: dict[str, Any] = {}
    previous: str | None = None
    for item, copy_name in zip(items, names, strict=True):
        node = copy.deepcopy(template)
        value, weight = item_parts(item)
        writes = [(path, value) for path in copies.value]
        writes += [(path, weight) for path in copies.weight if weight is not None]
        if previous is not None:
            writes += [(path, substitute(raw, {"previous": previous}))
                       for path, raw in copies.chain]
        for path, written in writes:
            _write(node, path, copy.copy(written), f"{key}: {format_path(path)}")
        made[copy_name] = node
        previous = copy_name
    # The copies take the object's place in the mapping's order.
    rebuilt: dict[str, Any] = {}
    for k, v in parent.items():
        if k == tokens[-1]:
            rebuilt.update(made)
        else:
            rebuilt[k] = v
    parent.clear()
    parent.update(rebuilt)


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
    # Asked once, just before the first request: False (a stop came first) sends nothing.
    begin: Callable[[], bool] = lambda: True
    on_image: Callable[[SavedImage], None] = lambda image: None
    on_saved: Callable[[], None] = lambda: None
    on_remote: Callable[[str, int | None], None] = lambda where, ahead: None
    variables: dict[str, Any] = field(default_factory=dict)
    # webui's own note in each PNG (service, mode, the values as asked): see webui.reuse.
    stamp: dict[str, Any] | None = None


def generate(
    service: Service,
    mode: Mode,
    values: dict[str, Any],
    store: ImageStore,
    control: Control | None = None,
) -> Generation:
    """Run one generation (every step of its endpoint) with values as :func:`prepare_values`
    made them; every image is on disk when this returns. Raises BackendError."""
    control = control or Control()
    started = time.monotonic()
    variables = control.variables
    # Given before the job started when a websocket listens for this client's messages.
    variables.setdefault("client_id", uuid.uuid4().hex)
    steps = mode.endpoint.step_list
    responses: list[requests.Response] = []
    if not control.begin():
        raise BackendError("Stopped before anything was sent.", kind="cancelled")
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
            request = build_request(mode, values, index, scope)
            responses.append(_send(service, step, request, scope, control))
        if step.save and responses:
            data = read_json(service, responses[-1])
            for var, text in step.save.items():
                variables[var] = search(service, text, data, var)
            control.on_saved()
    result = mode.endpoint.result
    assert result is not None  # guaranteed by the loader for generation endpoints
    generation = extract(service, mode, result, responses, store, values, control.on_image,
                         control.stamp)
    generation.seconds = time.monotonic() - started
    prompt = next((values.get(p.key) for p in mode.parameters if p.kind == "prompt"), None)
    generation.prompt = prompt if isinstance(prompt, str) else None
    return generation


def fill(endpoint: Step, variables: dict[str, Any],
         request: Request | None = None) -> tuple[str, dict[str, Any], dict[str, str]]:
    """An endpoint's path, query and headers with the job's values filled in (``client_id``
    is empty until one is given), and what a step's parameters put there (``request``)."""
    request = request or Request({})
    scope = {"client_id": "", **variables}
    path = substitute(endpoint.path or "", {**scope, **request.path}, quote_values=True)
    query = {**substitute(endpoint.query, scope), **request.query}
    headers = {k: str(v) for k, v in substitute(endpoint.headers, scope).items()}
    return path, query, {**headers, **request.headers}


def _send(
    service: Service, step: Step, request: Request, variables: dict[str, Any],
    control: Control,
) -> requests.Response:
    """One step's request; a polled step is repeated (it is a GET) until done or failed."""
    path, query, headers = fill(step, variables, request)
    body = request.body
    send_body = body if (step.body is not None or body) else None
    if step.poll is None:
        return call(service, step, body=send_body, path=path, query=query, headers=headers)
    poll = step.poll
    deadline = time.monotonic() + poll.timeout
    stop_by: float | None = None

    def ask() -> tuple[requests.Response, bool]:
        """One poll: (the answer, done); raises when the service reports a failure. An
        answer that is not JSON (the image itself, once ready) is read as {}: header() and
        status() tell it apart."""
        response = call(service, step, path=path, query=query, headers=headers)
        data = read_json(service, response) if _is_json(response) else {}
        context = (variables, response)  # var(), header() and status() read these
        failed = search(service, poll.failWhen, data, "failWhen", *context)
        if failed:
            reason = failed if isinstance(failed, str | list | dict) else None
            message = scrub(service, humanize(reason)) or "no reason given"
            raise BackendError(f"{service.name} reports that the job failed: {message}",
                               kind="failed")
        return response, bool(search(service, poll.until, data, "until", *context))

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
    """("running" | "waiting" | None, jobs ahead) from the service's own queue: the
    backendQueue path gives {running, waiting, ahead}."""
    data = read_json(service, call(service, service.definition.endpoints[spec.endpoint]))
    found = search(service, spec.path, data, "backendQueue", variables)
    found = found if isinstance(found, dict) else {}
    if found.get("running"):
        return "running", None
    if found.get("waiting"):
        ahead = found.get("ahead")
        return "waiting", ahead if isinstance(ahead, int) and not isinstance(ahead, bool) else None
    return None, None


def _is_json(response: requests.Response) -> bool:
    kind = response.headers.get("Content-Type", "")
    return "json" in kind or (not kind and response.content[:1] in (b"{", b"["))

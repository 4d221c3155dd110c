"""Select choices (models, samplers, LoRAs, …) fetched from the backends.

Each endpoint's answer is cached briefly per service, so a form with five selects on the same
backend and the server-side check of a submitted value cost one request per endpoint, not one
per field; the refresh control bypasses the cache.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from . import expr
from .backend import BackendError, call, read_json
from .format import Choice, OptionsSource, Parameter, find_choice
from .service import Service

CACHE_SECONDS = 120.0


class _Flight:
    """One request for an endpoint's answer, which concurrent askers wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.data: Any = None
        self.error: BackendError | None = None


class OptionsCache:
    """Endpoint answers by (service id, base URL, endpoint name), for CACHE_SECONDS. Asked
    for one while it is being fetched (many tabs, many selects on one endpoint), the askers
    share that one request."""

    def __init__(self, ttl: float = CACHE_SECONDS):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._data: dict[tuple[str, str, str], tuple[float, Any]] = {}
        self._flights: dict[tuple[str, str, str], _Flight] = {}

    def fetch(self, service: Service, endpoint: str, *, refresh: bool = False) -> Any:
        key = (service.id, service.base_url, endpoint)
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
            if hit and not refresh and now - hit[0] < self.ttl:
                return hit[1]
            flight = self._flights.get(key)
            mine = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not mine:  # being fetched right now: that answer is as fresh as any
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.data
        try:
            flight.data = read_json(service, call(service, service.definition.endpoints[endpoint]))
            with self._lock:
                self._data[key] = (time.monotonic(), flight.data)
        except BackendError as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return flight.data


def choices(
    service: Service, param: Parameter, cache: OptionsCache, *, refresh: bool = False
) -> list[Choice]:
    """All choices of a select: static options first, then each source's, without repeats."""
    out: list[Choice] = [Choice(o.value, o.label or str(o.value)) for o in param.options or []]
    fetched: dict[str, Any] = {}
    for source in param.sources:
        if source.endpoint not in fetched:
            fetched[source.endpoint] = cache.fetch(service, source.endpoint, refresh=refresh)
        out.extend(extract(service, source, fetched[source.endpoint]))
    seen: set[str] = set()
    unique = []
    for c in out:
        if str(c.value) not in seen:
            seen.add(str(c.value))
            unique.append(c)
    return unique


def extract(service: Service, source: OptionsSource, data: Any) -> list[Choice]:
    """Apply a source's path and keys to an endpoint's answer."""
    items = _search(service, source, source.path, data) if source.path else data
    if items is None:
        items = []
    if isinstance(items, dict) and not (source.valueKey or source.labelKey):
        # A mapping of value -> description, as some APIs list models.
        return [Choice(k, str(k)) for k in items]
    if not isinstance(items, list):
        raise BackendError(f"{service.name}: the answer of {source.endpoint!r} has no list at "
                           f"{source.path or 'the top level'!r}")
    result = []
    if not source.valueKey and any(isinstance(item, dict) for item in items):
        raise BackendError(f"{service.name}: {source.endpoint!r} lists objects; the definition "
                           "must name the field to use (optionsValueKey / valueKey).",
                           kind="definition")
    for item in items:
        if isinstance(item, dict):
            value = item.get(source.valueKey) if source.valueKey else None
            if value is None:
                continue
            label = item.get(source.labelKey) if source.labelKey else None
            aliases = (_search(service, source, a, item) for a in source.aliases)
            result.append(Choice(value, str(label if label is not None else value), tuple(
                str(a) for a in aliases if isinstance(a, str | int | float) and a != "")))
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            result.append(Choice(item, str(item)))
    return result


def _search(service: Service, source: OptionsSource, text: str, data: Any) -> Any:
    try:
        return expr.search(text, data)
    except expr.ExprError as exc:
        raise BackendError(f"{service.name}: cannot read the answer of {source.endpoint!r} "
                           f"({exc}).", kind="garbage") from None


def current_value(
    service: Service, param: Parameter, cache: OptionsCache, *, refresh: bool = False
) -> str | None:
    """The value a select's ``defaultFrom`` reads from the service, as text."""
    spec = param.defaultFrom
    assert spec is not None
    data = cache.fetch(service, spec.endpoint, refresh=refresh)
    try:
        value = expr.search(spec.path, data)
    except expr.ExprError as exc:
        raise BackendError(f"{service.name}: cannot read {spec.path!r} from the answer of "
                           f"{spec.endpoint!r} ({exc}).", kind="garbage") from None
    return None if value in (None, "") or isinstance(value, dict | list) else str(value)


def match_current(
    param: Parameter, current: list[str], found: list[Choice]
) -> tuple[list[str], list[str]]:
    """(the choice values the current values stand for, the values that match no choice)."""
    selected: list[str] = []
    stale: list[str] = []
    for value in current:
        hit = find_choice(param, found, value)
        if hit is None:
            stale.append(value)
        elif str(hit.value) not in selected:
            selected.append(str(hit.value))
    return selected, stale

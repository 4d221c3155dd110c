"""Select choices (models, samplers, LoRAs, …) and prompt styles fetched from the backends.

Each endpoint's answer is cached briefly per service, so a form with five selects on the same
backend and the server-side check of a submitted value cost one request per endpoint, not one
per field; the refresh control bypasses the cache. The choices read from an answer are kept
with it (with their text to search), so a long list (thousands of LoRAs) is read once per
answer, not once per keystroke of a search.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import expr
from .backend import BackendError, call, read_json
from .format import Choice, OptionsSource, Parameter, find_choice
from .service import Service

CACHE_SECONDS = 120.0

# Entries of what was read from cached answers before they are all dropped (each definition
# reload makes new parameters: without a bound they would pile up).
MAX_DERIVED = 512

# A search answers this many matches at most, and how many more there are.
SEARCH_LIMIT = 50


class NotCached(LookupError):
    """An endpoint's answer is not in the cache: asked with ``cached_only``, which never
    calls the backend."""


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
        # What was read from answers: (service, URL, reader) -> (the answers it was read from,
        # what was read). Valid while the cache hands out those same answer objects.
        self._read: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = {}

    def derived(self, key: tuple[Any, ...], answers: tuple[Any, ...],
                make: Callable[[], Any]) -> Any:
        """What ``make`` reads from ``answers`` (objects fetched from this cache, and what
        else it depends on), made once per set of them: a refreshed or expired answer is a new
        object, so it is read again."""
        with self._lock:
            hit = self._read.get(key)
        if hit is not None and len(hit[0]) == len(answers) and all(
                a is b for a, b in zip(hit[0], answers, strict=True)):
            return hit[1]
        value = make()
        with self._lock:
            if len(self._read) > MAX_DERIVED:
                self._read.clear()  # definitions reloaded many times: start again
            self._read[key] = (answers, value)
        return value

    def fresh(self, service: Service, endpoints: set[str]) -> bool:
        """Whether the answers of all these endpoints are cached and younger than the TTL."""
        now = time.monotonic()
        with self._lock:
            hits = [self._data.get((service.id, service.base_url, e)) for e in endpoints]
        return all(hit is not None and now - hit[0] < self.ttl for hit in hits)

    def fetch(self, service: Service, endpoint: str, *, refresh: bool = False,
              cached_only: bool = False) -> Any:
        """The endpoint's answer: from the cache while fresh, else fetched once for all who
        ask at the same moment. ``cached_only``: the last answer however old (see ``fresh``),
        or NotCached; never a call to the backend (a page drawing what webui already has)."""
        key = (service.id, service.base_url, endpoint)
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
            if hit and not refresh and now - hit[0] < self.ttl:
                return hit[1]
            if cached_only:
                if hit:
                    return hit[1]
                raise NotCached(endpoint)
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
    service: Service, param: Parameter, cache: OptionsCache, *, refresh: bool = False,
    cached_only: bool = False,
) -> list[Choice]:
    """All choices of a select: static options first, then each source's, without repeats."""
    return choice_index(service, param, cache, refresh=refresh, cached_only=cached_only).choices


@dataclass(frozen=True)
class ChoiceIndex:
    """A select's choices with the text a search looks in: label, value and aliases, in
    lower case, one string per choice."""

    choices: list[Choice]
    texts: list[str]


@dataclass(frozen=True)
class Found:
    """What a search found: the first matches (best first) and how many there are."""

    items: list[Choice]
    total: int


def choice_index(
    service: Service, param: Parameter, cache: OptionsCache, *, refresh: bool = False,
    cached_only: bool = False,
) -> ChoiceIndex:
    """A select's choices, read once per answer of its endpoints (see OptionsCache.derived)."""
    fetched: dict[str, Any] = {}
    for source in param.sources:
        if source.endpoint not in fetched:
            fetched[source.endpoint] = cache.fetch(service, source.endpoint, refresh=refresh,
                                                   cached_only=cached_only)
    answers = tuple(fetched.values())

    def read() -> ChoiceIndex:
        out: list[Choice] = [Choice(o.value, o.label or str(o.value))
                             for o in param.options or []]
        for source in param.sources:
            out.extend(extract(service, source, fetched[source.endpoint]))
        seen: set[str] = set()
        unique = []
        for c in out:
            if str(c.value) not in seen:
                seen.add(str(c.value))
                unique.append(c)
        texts = ["\x1f".join(dict.fromkeys((c.label, str(c.value), *c.aliases))).casefold()
                 for c in unique]
        return ChoiceIndex(unique, texts)

    # The parameter is one of the things it is read from: a reloaded definition's parameter
    # is another object (that may reuse this one's id), read anew.
    return cache.derived((service.id, service.base_url, "choices", id(param)),
                         (param, *answers), read)


def search(index: ChoiceIndex, query: str, limit: int = SEARCH_LIMIT) -> Found:
    """The choices whose label, value or an alias holds every word of ``query`` (any case),
    best first: the text starting with the query, then a word starting with it, then the
    rest, each in the list's order. An empty query lists the first ones."""
    words = query.casefold().split()
    if not words:
        return Found(index.choices[:limit], len(index.choices))
    texts = index.texts
    first = words[0]
    # Comprehensions, not a loop of statements: 20,000 texts in about a millisecond.
    hits = [i for i, text in enumerate(texts) if first in text]
    for word in words[1:]:
        hits = [i for i in hits if word in texts[i]]
    best = [i for i in hits if texts[i].startswith(first)]
    if len(best) < limit:
        taken = set(best)
        at_word = re.compile(r"[\W_]" + re.escape(first))
        best += [i for i in hits if i not in taken and at_word.search(texts[i])][:limit]
        if len(best) < limit:
            taken = set(best)
            best += [i for i in hits if i not in taken][:limit]
    return Found([index.choices[i] for i in best[:limit]], len(hits))


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
    service: Service, param: Parameter, cache: OptionsCache, *, refresh: bool = False,
    cached_only: bool = False,
) -> str | None:
    """The value a select's ``defaultFrom`` reads from the service, as text."""
    spec = param.defaultFrom
    assert spec is not None
    data = cache.fetch(service, spec.endpoint, refresh=refresh, cached_only=cached_only)
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


@dataclass(frozen=True)
class Style:
    """A prompt style: a snippet merged into the prompt (``{prompt}`` stands for the user's
    text) and one for the negative prompt. ``source`` is "webui" for webui's own, else the
    name of the service that lists it."""

    name: str
    prompt: str = ""
    negative: str = ""
    source: str = "webui"


def service_styles(service: Service, cache: OptionsCache, *, refresh: bool = False) -> list[Style]:
    """The styles the service itself keeps, where its definition says how to list them
    (``styles``: an endpoint and a path giving {name, prompt, negative} objects)."""
    spec = service.definition.styles
    if spec is None:
        return []
    data = cache.fetch(service, spec.endpoint, refresh=refresh)

    def read() -> list[Style]:
        try:
            items = expr.search(spec.path, data)
        except expr.ExprError as exc:
            raise BackendError(f"{service.name}: cannot read its styles from the answer of "
                               f"{spec.endpoint!r} ({exc}).", kind="garbage") from None
        styles = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
                styles.append(Style(item["name"], _text(item.get("prompt")),
                                    _text(item.get("negative")), service.name))
        return styles

    return cache.derived((service.id, service.base_url, "styles", spec.endpoint, spec.path),
                         (data,), read)


def _text(value: Any) -> str:
    # A1111 lists a style read from its CSV without a negative prompt as null.
    return value if isinstance(value, str) else ""

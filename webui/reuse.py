"""Filling a form from elsewhere: the generation parameters an image carries (PNG Info, a file
dropped on a form) and another job's values (Compare), each mapped onto a mode's parameters.

What an image can carry, most telling first:

- webui's own note (the PNG text chunk ``webui``, written by :mod:`webui.results`): the service,
  the mode and the values of the job, by the service's own keys;
- a chunk a definition's ``images`` names with a reader (a workflow graph): values
  read by the definition's expressions, by that definition's keys;
- A1111's infotext (``parameters``, or a JPEG's/WEBP's EXIF UserComment): labels mapped to A1111's
  API field names (:func:`webui.infotext.infotext_to_fields`).

Values move between services by key where the keys mean the same thing (one definition, or
those extending it; A1111's field names, which webui's infotext uses for every service), and
by role elsewhere (prompt, negative, seed, size, batch).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import expr
from .format import FieldError, Mode, Parameter, coerce, item_parts, items_text
from .format.check import WEBUI_KEYWORD
from .infotext import (
    MAX_INFOTEXT,
    InfotextError,
    image_infotext,
    infotext_to_fields,
    parse_infotext,
    png_text,
    png_text_keywords,
)
from .service import Service

# The largest JSON chunk read (a graph, webui's note). ComfyUI's API graph of a big workflow is
# tens of KB; its editor graph ("workflow", never parsed here) can be larger.
MAX_JSON_TEXT = 1024 * 1024

# The roles a value keeps from one service to another, whatever their keys.
CARRIED_ROLES = ("prompt", "negative", "seed", "width", "height", "batch")
# A1111's field name for each role: what an infotext gives them as.
_A1111_KEY = {"prompt": "prompt", "negative": "negative_prompt", "seed": "seed",
              "width": "width", "height": "height", "batch": "batch_size"}


def family(service: Service) -> str:
    """The definition whose keys a service's values use: its own, or the one it extends."""
    model = service.definition.model
    return model.extends or model.id


@dataclass
class Reading:
    """One way of reading an image's parameters: whose they are and their values."""

    kind: str                       # "webui", "graph" or "infotext"
    source: str                     # what the file carries, said for people
    values: dict[str, Any]          # by the keys of `family` (infotext: A1111's field names)
    roles: dict[str, Any]           # role -> value
    shown: list[tuple[str, str]]    # labelled values, in order
    family: str | None = None       # None: keys anyone may share (A1111's field names)
    service_id: str | None = None   # webui's note: the service the image came from
    mode: str | None = None         # ... and its mode
    text: str = ""                  # the text as read (infotext, graph JSON)
    services: list[Service] = field(default_factory=list)  # who it is for, best first

    def values_for(self, service: Service, mode: Mode) -> dict[str, Any]:
        """This reading's values for a mode's form (see :func:`carry`)."""
        same = self.family is None or self.family == family(service)
        return carry(mode, self.values, self.roles, by_key=same, loose=self.family is None)


def carry(mode: Mode, values: dict[str, Any], roles: dict[str, Any], *, by_key: bool,
          loose: bool = False) -> dict[str, Any]:
    """Values for ``mode``'s form: by role first, then (``by_key``) by key — or, ``loose``, by the
    last name of the parameter's target (A1111's ``override_settings.sd_model_checkpoint`` is
    the infotext's ``sd_model_checkpoint``). Without ``by_key``, only keys of plain values
    (numbers, text) carry over: a select's choices belong to its service. Each value is made
    the parameter's type where it fits; one that does not stays as written, for the form to
    show and Generate to refuse with a reason."""
    out: dict[str, Any] = {}
    for p in mode.parameters:
        if p.type == "image":
            continue
        raw = roles.get(p.kind) if p.kind in CARRIED_ROLES else None
        if raw in (None, ""):
            raw = None
            names = [p.key]
            if loose:
                names.append((p.targets[0] if p.targets else p.key)
                             .rsplit(".", 1)[-1].rsplit(":", 1)[-1])
            if by_key or p.type != "select":
                raw = next((values[n] for n in names if values.get(n) not in (None, "")), None)
        if raw is None:
            continue
        value = typed(p, raw)
        if p.weight and isinstance(value, list):
            weight = mode.parameter(p.weight)
            for item in value:  # a value written without its weight: the weight's default
                if item["weight"] is None and weight is not None:
                    item["weight"] = weight.defaultValue
        if value is not None:
            out[p.key] = value
    return out


def typed(p: Parameter, raw: Any) -> Any:
    """A carried value in its parameter's type; as written when it does not fit (a number out
    of range is shown and refused on Generate), None for what no field can show."""
    if isinstance(raw, dict) or (isinstance(raw, list) and not p.multiple):
        return None  # a graph link, an upload's record: not a value of a field
    if p.multiple:
        items = raw if isinstance(raw, list) else [raw]
        if p.weight:  # each chosen value with its weight (None: not written)
            return [{"value": str(v), "weight": w} for v, w in map(item_parts, items)]
        return [str(item_parts(v)[0]) for v in items]
    try:
        return coerce(p, raw, None)
    except FieldError:
        return None if p.type == "boolean" else str(raw)


def job_roles(mode: Mode, values: dict[str, Any]) -> dict[str, Any]:
    """A job's values by role."""
    return {p.kind: values.get(p.key) for p in mode.parameters
            if p.kind in CARRIED_ROLES and values.get(p.key) is not None}


# --- What an image carries -------------------------------------------------------------------


class UnreadableMetadata(ValueError):
    """Generation parameters that are there but cannot be read (too long); says why."""


def read(data: bytes, services: Iterable[Service]) -> list[Reading]:
    """Every reading of an image's parameters, most telling first; an empty list when it
    carries none. UnreadableMetadata when what it carries is too long to read."""
    services = list(services)
    readings: list[Reading] = []
    try:
        note = _json(png_text(data, WEBUI_KEYWORD, MAX_JSON_TEXT))
        if isinstance(note, dict):
            reading = _from_note(note, services)
            if reading is not None:
                readings.append(reading)
        readings += _from_definitions(data, services)
        text = image_infotext(data)
    except InfotextError as exc:
        raise UnreadableMetadata(str(exc)) from None
    if text:
        readings.append(_from_infotext(text, services))
    return readings


def for_service(readings: list[Reading], service: Service) -> Reading | None:
    """The reading meant for this service (its own note, its own graph), else the first."""
    return next((r for r in readings if any(s.id == service.id for s in r.services)),
                readings[0] if readings else None)


def keywords(data: bytes) -> list[tuple[str, int]]:
    """The text chunks a PNG carries (keyword, size in bytes), for the record."""
    return png_text_keywords(data)


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _labels(services: list[Service], fam: str | None, mode_name: str | None = None
            ) -> dict[str, str]:
    """Parameter key -> its label, from a service of this family (the mode named first)."""
    for s in services:
        if family(s) == fam:
            modes = sorted(s.definition.modes.values(), key=lambda m: m.name != mode_name)
            labels: dict[str, str] = {}
            for m in modes:
                for p in m.parameters:
                    labels.setdefault(p.key, p.title)
            return labels
    return {}


# What a page shows of a reading at most: a file may carry thousands of labels, or megabytes.
MAX_SHOWN = 200
MAX_SHOWN_TEXT = 5000


def _chosen_item(item: Any) -> bool:
    """One value of a multiple select as an image may carry it: text, or {value, weight}."""
    if isinstance(item, dict):
        weight = item.get("weight")
        return isinstance(item.get("value"), str) and set(item) <= {"value", "weight"} and (
            weight is None or (isinstance(weight, int | float) and not isinstance(weight, bool)))
    return isinstance(item, str)


def _shown(values: dict[str, Any], labels: dict[str, str]) -> list[tuple[str, str]]:
    def text(value: Any) -> str:
        value = items_text(value)
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)

    return _capped((labels.get(key, key), text(value)) for key, value in values.items()
                   if value not in (None, "") and not isinstance(value, dict))


def _capped(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """At most MAX_SHOWN labelled values, each at most MAX_SHOWN_TEXT characters."""
    out = []
    for label, text in pairs:
        if len(out) == MAX_SHOWN:
            break
        if len(text) > MAX_SHOWN_TEXT:
            text = text[:MAX_SHOWN_TEXT] + f"… ({len(text)} characters)"
        out.append((label[:200], text))
    return out


def _for_family(services: list[Service], fam: str | None, first: str | None = None
                ) -> list[Service]:
    """The services using this family's keys: the one named first, then the configured."""
    found = [s for s in services if family(s) == fam]
    return sorted(found, key=lambda s: (s.id != first, not s.configured))


def _from_note(note: dict[str, Any], services: list[Service]) -> Reading | None:
    """webui's own note: {service, mode, values, seed}."""
    service_id, mode = note.get("service"), note.get("mode")
    values = note.get("values")
    if not isinstance(service_id, str) or not isinstance(values, dict):
        return None
    origin = next((s for s in services if s.id == service_id), None)
    if origin is None:
        return None  # a service not loaded here: what else the file says is read instead
    seed_key = None
    roles: dict[str, Any] = {}
    if isinstance(mode, str) and mode in origin.definition.modes:
        m = origin.definition.modes[mode]
        roles = job_roles(m, values)
        seed_key = next((p.key for p in m.parameters if p.kind == "seed"), None)
    if note.get("seed") is not None:
        # The seed of this very image, not the -1 the job was asked with.
        roles["seed"] = note["seed"]
        if seed_key:
            values = {**values, seed_key: note["seed"]}
    fam = family(origin)
    mode_label = origin.definition.modes[mode].label if (
        isinstance(mode, str) and mode in origin.definition.modes) else mode
    return Reading(
        "webui", f"Made by webui with {origin.name} · {mode_label}", values, roles,
        _shown(values, _labels(services, fam, mode if isinstance(mode, str) else None)),
        family=fam, service_id=service_id, mode=mode if isinstance(mode, str) else None,
        text=json.dumps(note, indent=2, ensure_ascii=False),
        services=[origin])


def _from_definitions(data: bytes, services: list[Service]) -> list[Reading]:
    """The chunks definitions name with a reader (a graph), read once per family."""
    readings = []
    seen: set[tuple[str, str]] = set()
    for s in services:
        fam = family(s)
        for keyword, reader in s.definition.model.images.items():
            if isinstance(reader, str) or (fam, keyword) in seen:
                continue
            seen.add((fam, keyword))
            raw = png_text(data, keyword, MAX_JSON_TEXT)
            doc = _json(raw)
            if doc is None:
                continue
            values = {}
            for key, text in reader.items():
                try:
                    value = expr.search(text, doc)
                except expr.ExprError:
                    continue
                if isinstance(value, str | int | float | bool) or (
                        isinstance(value, list) and all(map(_chosen_item, value))):
                    values[key] = value
            if not values:
                continue  # JSON, but not this service's: none of its values is there
            labels = _labels(services, fam)
            modes = [m for sv in services if family(sv) == fam
                     for m in sv.definition.modes.values()]
            roles = {}
            for m in modes:
                for role, value in job_roles(m, values).items():
                    roles.setdefault(role, value)
            nodes = f" ({len(doc)} nodes)" if isinstance(doc, dict) else ""
            readings.append(Reading(
                "graph", f"{s.definition.model.name} “{keyword}” text{nodes}", values, roles,
                _shown(values, labels), family=fam,
                text=json.dumps(doc, indent=2, ensure_ascii=False),
                services=_for_family(services, fam)))
    return readings


def _from_infotext(text: str, services: list[Service]) -> Reading:
    """A1111's infotext: offered to the services whose definitions write it."""
    prompt, negative, labelled = parse_infotext(text)
    fields = {"prompt": prompt, "negative_prompt": negative, **infotext_to_fields(labelled)}
    roles = {role: fields.get(key) for role, key in _A1111_KEY.items()
             if fields.get(key) not in (None, "")}
    shown = _capped([*((label, value) for label, value in
                        (("Prompt", prompt), ("Negative prompt", negative)) if value),
                     *labelled.items()])
    writers = [s for s in services
               if any(r == "infotext" for r in s.definition.model.images.values())]
    writers.sort(key=lambda s: not s.configured)
    return Reading("infotext", "A1111 parameters text", fields, roles, shown, family=None,
                   text=text, services=writers)


__all__ = ["MAX_INFOTEXT", "Reading", "UnreadableMetadata", "carry", "family", "for_service",
           "job_roles", "keywords", "read", "typed"]

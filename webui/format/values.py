"""Values of parameters: a raw value (form text, a definition's default) turned into the
parameter's type and checked against its range, step and choices. Pure: used by the form on
the server and by the load-time check of defaults."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import expr
from .conditions import condition_holds
from .model import Parameter

TRUE = {"on", "true", "1", "yes"}


FALSE = {"off", "false", "0", "no", ""}


# A prompt of a few thousand characters is long already; 2 MB of one only fills memory and pages.
MAX_TEXT = 20_000


class FieldError(ValueError):
    """A value that does not fit its parameter; the message is shown beside the field."""


@dataclass(frozen=True)
class Choice:
    value: Any
    label: str
    # Other keys the same choice is known by (its earlier value, its file name…).
    aliases: tuple[str, ...] = ()


def coerce(
    p: Parameter, raw: Any, allowed: Sequence[Choice] | None,
    values: dict[str, Any] | None = None,
) -> Any:
    """Turn a raw value (a form string, or a definition default) into the parameter's type.

    ``allowed`` lists the choices (``.value``, ``.aliases``) the backend offered for an
    endpoint-fed select (None when not checked here, e.g. for defaults at load time);
    ``values`` are the form's other values, for options offered only ``when`` they hold (None:
    every option counts).
    """
    if p.type in ("text", "textarea"):
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            raise FieldError("must be text")
        text = str(raw)
        low, high = p.range or (0, MAX_TEXT)
        if len(text) > high:
            raise FieldError(f"is longer than {_fmt(high)} characters ({len(text)})")
        if text.strip() and len(text) < low:
            raise FieldError(f"is shorter than {_fmt(low)} characters")
        problem = refused(p, text) if text else None
        if problem:
            raise FieldError(f"is refused: {problem}")
        return text
    if p.type == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in TRUE | FALSE:
            return raw.strip().lower() in TRUE
        raise FieldError("must be on or off")
    if p.type in ("integer", "seed"):
        return _check_number(p, _to_int(raw))
    if p.type == "number":
        return _check_number(p, _to_float(raw))
    if p.type == "select":
        value = _choose(p, raw, allowed, values)
        problem = refused(p, value)
        if problem:
            raise FieldError(f"{str(value)!r} is refused: {problem}")
        return value
    raise FieldError(f"cannot take a value of type {p.type}")


def item_parts(item: Any) -> tuple[Any, Any]:
    """(value, weight) of one chosen value: a ``{value, weight}`` of a select with weights,
    or a plain value (no weight)."""
    if isinstance(item, dict) and "value" in item:
        return item["value"], item.get("weight")
    return item, None


def items_text(value: Any) -> Any:
    """The chosen values of a select with weights as text, ``name: weight, …`` (as A1111
    writes its "Lora hashes"); any other value as it is."""
    if isinstance(value, list) and value and all(
            isinstance(v, dict) and "value" in v for v in value):
        return ", ".join(f"{v['value']}: {v.get('weight')}" for v in value)
    return value


def refused(p: Parameter, value: Any) -> str | None:
    """Why the parameter refuses a value (the message of the first ``refuse`` pattern it
    matches), or None. Checked on the server at Generate, and said by a picker as soon as
    such a value is chosen."""
    if value is None:
        return None
    text = str(value)
    return next((message for regex, message in p.refuse.items() if re.search(regex, text)),
                None)


def _to_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise FieldError("must be a whole number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip()
        try:
            return int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise FieldError("must be a whole number") from None
            if value.is_integer():
                return int(value)
    raise FieldError("must be a whole number")


def _to_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise FieldError("must be a number")
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        raise FieldError("must be a number") from None
    if not math.isfinite(value):
        raise FieldError("must be a finite number")
    return value


def _check_number(p: Parameter, value: int | float) -> int | float:
    if value == -1 and p.picks_seed:
        return value  # "random": webui picks the seed (the service has no value for it)
    low, high = p.bounds
    if low is not None and value < low:
        raise FieldError(f"must be at least {_fmt(low)}")
    if high is not None and value > high:
        raise FieldError(f"must be at most {_fmt(high)}")
    if p.step:
        base = low if low is not None else 0
        ratio = (value - base) / p.step
        if abs(ratio - round(ratio)) > 1e-6:
            raise FieldError(f"must be a multiple of {_fmt(p.step)}"
                             + (f" from {_fmt(base)}" if base else ""))
    return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _choose(
    p: Parameter, raw: Any, allowed: Sequence[Choice] | None, values: dict[str, Any] | None
) -> Any:
    static = [o for o in p.options or [] if values is None or condition_holds(o.when, values)]
    hit = next((o.value for o in static if str(o.value) == str(raw)), None)
    if hit is not None:
        return hit
    if p.sources:
        if allowed is None:
            return raw
        # A value saved earlier under another name of the same choice (A1111 adds a hash to a
        # checkpoint's title once it was loaded): the choice's current value is sent.
        choice = find_choice(p, list(allowed), raw)
        if choice is not None:
            return choice.value
    if any(str(o.value) == str(raw) for o in p.options or []):
        raise FieldError(f"{str(raw)!r} is not available with the other values chosen")
    if p.sources:
        raise FieldError(f"{str(raw)!r} is not one of the choices offered by the backend now "
                         "(↻ reloads the list)")
    raise FieldError(f"{str(raw)!r} is not one of the choices offered by the definition")


def find_choice(param: Parameter, found: list[Choice], raw: Any) -> Choice | None:
    """The choice a value stands for: its own value, else one sharing a key with it. A value
    saved earlier may name a choice the service has renamed since (A1111 adds "[hash]" to a
    checkpoint's title once it was loaded): the sources' aliases are computed for both."""
    raw = str(raw)
    hit = next((c for c in found if str(c.value) == raw), None)
    if hit is not None:
        return hit
    keys = {raw}
    for source in param.sources:
        if not source.valueKey:
            continue
        for alias in source.aliases:
            try:
                value = expr.search(alias, {source.valueKey: raw})
            except expr.ExprError:
                continue
            if isinstance(value, str | int | float) and value != "":
                keys.add(str(value))
    return next((c for c in found if keys & {str(c.value), *c.aliases}), None)

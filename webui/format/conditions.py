"""``when``: parameters (and static options) that count only while others have given values."""

from __future__ import annotations

import json
import re
from typing import Any

from .model import Parameter, When


def condition_order(params: list[Parameter]) -> list[Parameter]:
    """The parameters ordered so that each comes after those its ``when`` names (the form
    decides what is on in this order). ValueError naming the circle, if there is one."""
    by_key = {p.key: p for p in params}
    done: dict[str, Parameter] = {}
    visiting: list[str] = []

    def visit(p: Parameter) -> None:
        if p.key in done:
            return
        if p.key in visiting:
            circle = visiting[visiting.index(p.key):] + [p.key]
            raise ValueError(f"conditions go round in a circle: {' → '.join(circle)}")
        visiting.append(p.key)
        for key in p.when or {}:
            if key in by_key and key != p.key:
                visit(by_key[key])
        visiting.pop()
        done[p.key] = p

    for p in params:
        visit(p)
    return list(done.values())


def when_json(when: When | None) -> str:
    """A condition as the page's script reads it (data-when)."""
    return json.dumps({k: v if isinstance(v, list) else [v] for k, v in (when or {}).items()})


def condition_holds(when: When | None, values: dict[str, Any]) -> bool:
    """Whether every named parameter has (one of) the wanted values."""
    for key, wanted in (when or {}).items():
        choices = wanted if isinstance(wanted, list) else [wanted]
        if not any(same_value(values.get(key), w) for w in choices):
            return False
    return True


def pattern_of(wanted: Any) -> str | None:
    """The regular expression a wanted value stands for ("/^gpt-image/"), or None."""
    if isinstance(wanted, str) and len(wanted) >= 2 and wanted[0] == wanted[-1] == "/":
        return wanted[1:-1]
    return None


def same_value(value: Any, wanted: Any) -> bool:
    """A form value equals a value written in a definition (true == on, 1 == 1.0 == "1"), or
    matches its "/regex/"."""
    if isinstance(value, list):
        return any(same_value(v, wanted) for v in value)
    pattern = pattern_of(wanted)
    if pattern is not None:
        return value is not None and re.search(pattern, str(value)) is not None
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted or (isinstance(value, bool) and str(value).lower() == str(
            wanted).lower())
    if value is None:
        return False
    if isinstance(value, int | float) and isinstance(wanted, int | float):
        return value == wanted
    return str(value) == str(wanted)

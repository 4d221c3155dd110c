"""Reading definition files: YAML/JSON text, ``{$file: …}`` references, ``extends``; then the
model and the checks."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .check import resolve
from .legacy import upgrade
from .limits import (
    MAX_DEFINITION_BYTES,
    MAX_DEPTH,
    MAX_VALUES,
    TOO_DEEP,
    LimitError,
    read_regular_file,
)
from .merge import inherit
from .model import Definition, error_loc
from .resolved import FILE_KEY, DefinitionError, ServiceDefinition

# Where read_raw keeps the rewrites of old keywords (see legacy.py) until the model is built.
WARNINGS_KEY = "$warnings"
# libyaml's loader where PyYAML has it: the bundled files parse in ~13 ms instead of ~180.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_text(text: str, source: str) -> Any:
    """Parse YAML (a superset of JSON) text; raise DefinitionError with the line on failure.

    The document is first read as a stream of events, which costs no more than its length,
    and refused when its values nest more than MAX_DEPTH levels or its aliases expand to more
    than MAX_VALUES values (the "billion laughs"); only then is it built.
    """
    try:
        _check_shape(text, source)
        return yaml.load(text, Loader=_LOADER)  # safe: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(source, [(where, f"not valid YAML/JSON: {problem}")]) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # A value YAML recognises but Python cannot hold: 2001-02-30, a 5,000-digit integer.
        raise DefinitionError(source, [("", f"not valid YAML/JSON: {exc}")]) from None


def _check_shape(text: str, source: str) -> None:
    """DefinitionError if the document nests too deep or expands to too many values."""
    # Per open mapping or list: [anchor, values, height]; per anchor: (values, height).
    open_: list[list[Any]] = []
    anchors: dict[str, tuple[int, int]] = {}
    total, aliases = 0, False

    def refuse(event: yaml.Event, message: str) -> DefinitionError:
        mark = event.start_mark
        return DefinitionError(source, [(f"line {mark.line + 1}, column {mark.column + 1}",
                                         message)])

    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_) >= MAX_DEPTH:
                raise refuse(event, TOO_DEEP)
            open_.append([event.anchor, 1, 1])
            total += 1
        elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionEndEvent)):
            if isinstance(event, yaml.CollectionEndEvent):
                anchor, values, height = open_.pop()
            elif isinstance(event, yaml.ScalarEvent):
                anchor, values, height = event.anchor, 1, 0
                total += 1
            else:
                anchor, aliases = None, True
                if any(event.anchor == o[0] for o in open_):
                    raise refuse(event, "an alias inside the value it names (a loop)")
                values, height = anchors.get(event.anchor, (1, 0))  # unknown: load says so
                if len(open_) + height > MAX_DEPTH:
                    raise refuse(event, f"{TOO_DEEP} once its aliases are expanded")
                total += values
            if anchor is not None:
                anchors[anchor] = (values, height)
            if open_:
                open_[-1][1] += values
                open_[-1][2] = max(open_[-1][2], height + 1)
        if total > MAX_VALUES:
            raise refuse(event, f"{'aliases expand to' if aliases else 'the file holds'} more "
                                f"than {MAX_VALUES:,} values")


Lookup = Callable[[str], "tuple[dict[str, Any], Path] | None"]



def read_raw(path: Path) -> dict[str, Any]:
    """Parse a definition file; ``{$file: name}`` references become absolute paths.

    Only a regular file of at most MAX_DEFINITION_BYTES is read; a ``{$file: …}`` must name a
    file in the definition's folder or below it.
    """
    try:
        text = read_regular_file(path, MAX_DEFINITION_BYTES, "a definition").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(str(path), [("", f"cannot read file: {exc}")]) from None
    except LimitError as exc:
        raise DefinitionError(str(path), [("", str(exc))]) from None
    data = parse_text(text, str(path))
    if not isinstance(data, dict):
        raise DefinitionError(str(path), [("", "a definition must be a mapping (YAML object)")])
    data, warnings = upgrade(data)
    problems: list[tuple[str, str]] = []
    data = _absolutize(data, path.parent.resolve(), (), problems)
    if problems:
        raise DefinitionError(str(path), problems)
    if warnings:
        data[WARNINGS_KEY] = warnings
    return data


def _absolutize(
    node: Any, base: Path, at: tuple[Any, ...], problems: list[tuple[str, str]]
) -> Any:
    if isinstance(node, dict):
        if set(node) == {FILE_KEY} and isinstance(node[FILE_KEY], str):
            target = (base / node[FILE_KEY]).resolve()
            if not target.is_relative_to(base):
                problems.append((error_loc(at), f"{{$file: {node[FILE_KEY]!r}}}: only files in "
                                                "the definition's folder (or below it) can be "
                                                "included"))
            return {FILE_KEY: str(target)}
        return {k: _absolutize(v, base, (*at, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolutize(v, base, (*at, i), problems) for i, v in enumerate(node)]
    return node


def load_file(
    path: Path, lookup: Lookup | None = None, raw: dict[str, Any] | None = None
) -> ServiceDefinition:
    """Read, validate and resolve one definition file. ``lookup`` finds the raw data of a
    definition by id, for ``extends``; ``raw`` is the file already parsed by read_raw."""
    data = copy.deepcopy(raw) if raw is not None else read_raw(path)
    parents: list[Path] = []
    try:
        data = _apply_extends(data, str(path), lookup, parents, (path,))
        return load_data(data, str(path), path, tuple(parents))
    except DefinitionError as exc:
        exc.dependencies = (path, *parents, *exc.dependencies)  # and the files it included
        raise


def _apply_extends(
    data: dict[str, Any], source: str, lookup: Lookup | None, parents: list[Path],
    chain: tuple[Path, ...],
) -> dict[str, Any]:
    parent_id = data.get("extends")
    if parent_id is None:
        return data
    found = lookup(parent_id) if lookup and isinstance(parent_id, str) else None
    if found is None:
        raise DefinitionError(source, [("extends", f"no definition with id {parent_id!r} "
                                                   "(bundled, or in the same folder)")])
    if "id" not in data:
        raise DefinitionError(source, [("id", "a definition that extends another needs its "
                                              "own id")])
    parent, parent_path = found
    if parent_path in chain:
        raise DefinitionError(source, [("extends", "definitions extend each other in a loop")])
    parents.append(parent_path)
    parent = _apply_extends(parent, str(parent_path), lookup, parents, (*chain, parent_path))
    return inherit(data, parent, parent_id)


def load_data(
    data: Any, source: str, path: Path | None = None, parents: tuple[Path, ...] = ()
) -> ServiceDefinition:
    """Validate and resolve already-parsed (and already inherited) definition data."""
    if not isinstance(data, dict):
        raise DefinitionError(source, [("", "a definition must be a mapping (YAML object)")])
    data = dict(data)
    warnings = tuple(data.pop(WARNINGS_KEY, ()))
    if path is None:  # data given directly (tests, imports): upgraded here
        data, more = upgrade(data)
        warnings += tuple(more)
    try:
        model = Definition.model_validate(data)
    except ValidationError as exc:
        problems = [(error_loc(e["loc"]), e["msg"]) for e in exc.errors()]
        raise DefinitionError(source, problems) from None
    definition = resolve(model, source, path, parents)
    return dataclasses.replace(definition, warnings=warnings) if warnings else definition

"""Reading definition files: YAML/JSON text, ``{$file: …}`` references, ``extends``; then the
model and the checks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .check import resolve
from .merge import inherit
from .model import Definition, error_loc
from .resolved import FILE_KEY, DefinitionError, ServiceDefinition

# libyaml's loader where PyYAML has it: the bundled files parse in ~13 ms instead of ~180.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_text(text: str, source: str) -> Any:
    """Parse YAML (a superset of JSON) text; raise DefinitionError with the line on failure."""
    try:
        return yaml.load(text, Loader=_LOADER)  # safe: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(source, [(where, f"not valid YAML/JSON: {problem}")]) from None


Lookup = Callable[[str], "tuple[dict[str, Any], Path] | None"]



def read_raw(path: Path) -> dict[str, Any]:
    """Parse a definition file; ``{$file: name}`` references become absolute paths."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(str(path), [("", f"cannot read file: {exc}")]) from None
    data = parse_text(text, str(path))
    if not isinstance(data, dict):
        raise DefinitionError(str(path), [("", "a definition must be a mapping (YAML object)")])
    return _absolutize(data, path.parent)


def _absolutize(node: Any, base: Path) -> Any:
    if isinstance(node, dict):
        if set(node) == {FILE_KEY} and isinstance(node[FILE_KEY], str):
            return {FILE_KEY: str((base / node[FILE_KEY]).resolve())}
        return {k: _absolutize(v, base) for k, v in node.items()}
    if isinstance(node, list):
        return [_absolutize(v, base) for v in node]
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
        exc.dependencies = (path, *parents)
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
    try:
        model = Definition.model_validate(data)
    except ValidationError as exc:
        problems = [(error_loc(e["loc"]), e["msg"]) for e in exc.errors()]
        raise DefinitionError(source, problems) from None
    return resolve(model, source, path, parents)

"""The format's reference, generated from the model (docs/definition-reference.md): every object
with its fields, types, defaults and meaning, webui's expression functions, and the format's
size (object types, field names, enumerated values), counted from its JSON Schema."""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .. import expr
from . import model
from .schema import json_schema

# The objects of a file, in the order an author meets them.
OBJECTS: list[type[BaseModel]] = [
    model.Definition, model.Authentication, model.Configuration, model.Argument,
    model.Capability, model.Endpoint, model.Result, model.Poll, model.Source,
    model.Parameter, model.Option, model.Append, model.IfEmpty, model.ParameterSet,
    model.Jobs, model.Progress,
]


def concept_count() -> tuple[int, int, int]:
    """(object types, distinct field names, distinct enumerated values) of the format."""
    schema = json_schema()
    names: set[str] = set()
    enums: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            enums.update(map(str, node.get("enum", [])))
            if "const" in node:
                enums.add(str(node["const"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return len(schema.get("$defs", {})) + 1, len(names), len(enums)


def reference_markdown() -> str:
    objects, names, enums = concept_count()
    lines = [
        "# Definition reference",
        "",
        "Generated from the model (`webui schema --reference docs/definition-reference.md`); "
        "the tutorial is [definition-format.md](definition-format.md). A test fails when this "
        "file is not current.",
        "",
        f"The format has **{objects} object types, {names} field names and {enums} enumerated "
        "values** (counted from its JSON Schema).",
        "",
    ]
    for cls in OBJECTS:
        lines += _object(cls)
    lines += ["## Expression functions", "",
              "Every expression is JMESPath (https://jmespath.org), with its own functions "
              "(`length()`, `contains()`, `sort_by()`, …) and these added:",
              ""]
    for name in sorted(expr.FUNCTION_HELP):
        call, _, meaning = expr.FUNCTION_HELP[name].partition(": ")
        lines.append(f"- `{call}`: {meaning}")
    lines.append("")
    return "\n".join(lines)


def _object(cls: type[BaseModel]) -> list[str]:
    doc = inspect.cleandoc(cls.__doc__ or "").replace("\n", " ")
    out = [f"## {cls.__name__}", ""]
    if doc:
        out += [doc, ""]
    out += ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, info in cls.model_fields.items():
        shown = info.alias or name
        out.append(f"| `{shown}` | {_type(info)} | {_default(info)} | "
                   f"{(info.description or '').replace('|', '/')} |")
    out.append("")
    return out


def _type(info: FieldInfo) -> str:
    text = _type_name(info.annotation)
    return text.replace("|", "or")


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " / ".join(f"`{a}`" for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin in (list, tuple):
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"[{inner}]"
    if origin is dict:
        return f"map of {_type_name(args[1])}" if len(args) == 2 else "map"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
        return {str: "text", int: "integer", float: "number", bool: "true/false"}.get(
            annotation, annotation.__name__)
    if annotation is Any:
        return "any"
    return str(annotation).replace("typing.", "")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    value = info.default
    if value is PydanticUndefined or value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "—"
    return f"`{json.dumps(value)}`"

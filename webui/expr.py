"""JMESPath, the expression language of definitions: compiled once, with a few functions of
webui's own, and one error policy.

Functions added to standard JMESPath:

- ``var(name)``: a value saved by an earlier step of the job (``var('prompt_id')``), null if
  none was saved;
- ``status()``: the HTTP status of the answer being read (in error rules);
- ``header(name)``: a header of the answer being read, null if absent;
- ``split(text, separator)``: a string cut into a list (``split(title, ' [')[0]``);
- ``json(text)``: JSON text read as a value (``json(info).all_seeds``), null if it is not JSON;
- ``bytes_after(base64, n)``: base64 of what follows the first n bytes (a binary message's
  header skipped);
- ``get(object, key)``: the value under a key computed by an expression (a node of a graph
  found by the id another node links to), null if there is none.
"""

from __future__ import annotations

import base64
import binascii
import json as json_module
from functools import lru_cache
from typing import Any

import jmespath
import jmespath.exceptions
from jmespath import functions

# webui's functions, as the reference lists them.
FUNCTION_HELP = {
    "var": "var('name'): a value saved by an earlier step of the job, null if none",
    "status": "status(): the HTTP status of the answer being read",
    "header": "header('name'): a header of the answer being read, null if absent",
    "split": "split(text, separator): the text cut into a list (split(title, ' [')[0])",
    "json": "json(text): JSON text read as a value (json(info).all_seeds), null if not JSON",
    "bytes_after": "bytes_after(base64, n): base64 of what follows the first n bytes (a "
                   "binary message's header skipped)",
    "get": "get(object, key): the value under a computed key, null if none ({g: @, s: "
           "sampler} | get(g, s.inputs.positive[0]): the node a link names)",
}


class ExprError(ValueError):
    """An expression that cannot be compiled, or that failed on the data it was given."""


class Context:
    """What the functions above read: the job's variables and the answer's status/headers."""

    def __init__(
        self,
        variables: dict[str, Any] | None = None,
        status: int | None = None,
        headers: Any = None,
    ):
        self.variables = variables or {}
        self.status = status
        self.headers = headers or {}


class _Functions(functions.Functions):
    def __init__(self, context: Context):
        super().__init__()
        self.context = context

    @functions.signature({"types": ["string"]})
    def _func_var(self, name: str) -> Any:
        return self.context.variables.get(name)

    @functions.signature()
    def _func_status(self) -> Any:
        return self.context.status

    @functions.signature({"types": ["string"]})
    def _func_header(self, name: str) -> Any:
        return self.context.headers.get(name)

    @functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_split(self, text: str, separator: str) -> list[str]:
        if not separator:
            raise jmespath.exceptions.JMESPathError("split() needs a non-empty separator")
        return text.split(separator)


    @functions.signature({"types": ["string", "null"]})
    def _func_json(self, text: str | None) -> Any:
        if text is None:
            return None
        try:
            return json_module.loads(text)
        except ValueError:
            return None

    @functions.signature({"types": ["string"]}, {"types": ["number"]})
    def _func_bytes_after(self, data: str, count: float) -> str | None:
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return None
        return base64.b64encode(raw[int(count):]).decode("ascii")


    @functions.signature({"types": ["object", "null"]},
                         {"types": ["string", "number", "null"]})
    def _func_get(self, obj: dict[str, Any] | None, key: str | float | None) -> Any:
        if obj is None or key is None:
            return None
        # A graph's ids are object keys, hence text; a link may give the id as a number.
        if isinstance(key, float) and key.is_integer():
            key = int(key)
        return obj.get(str(key))


# The functions' names, for the load-time check (an unknown function is a compile-time
# success in jmespath.py but fails on every search).
FUNCTIONS = frozenset(name[6:] for name in dir(_Functions) if name.startswith("_func_"))


@lru_cache(maxsize=2048)
def compile_expr(text: str) -> Any:
    """Compile (cached); ExprError with the parser's first line on a syntax error."""
    try:
        return jmespath.compile(text)
    except jmespath.exceptions.JMESPathError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExprError(f"invalid JMESPath {text!r}: {first}") from None


def search(text: str, data: Any, context: Context | None = None) -> Any:
    """Evaluate ``text`` on ``data``; ExprError when it does not apply to this data."""
    parsed = compile_expr(text)
    options = jmespath.Options(custom_functions=_Functions(context or Context()))
    try:
        return parsed.search(data, options=options)
    except jmespath.exceptions.JMESPathError as exc:
        raise ExprError(str(exc).strip().splitlines()[0]) from None
    except (TypeError, ValueError, AttributeError) as exc:
        # jmespath.py lets some type mismatches through as Python errors.
        raise ExprError(f"{type(exc).__name__}: {exc}") from None


def check(text: str) -> str | None:
    """A problem with an expression written in a definition, or None."""
    try:
        parsed = compile_expr(text)
    except ExprError as exc:
        return str(exc)
    unknown = sorted(_function_names(parsed.parsed) - FUNCTIONS - _BUILTIN)
    if unknown:
        return f"unknown function {unknown[0]}() in {text!r}"
    return None


_BUILTIN = frozenset(name[6:] for name in dir(functions.Functions) if name.startswith("_func_"))


def _function_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        if node.get("type") == "function_expression":
            names.add(node.get("value"))
        for child in node.get("children", []):
            names |= _function_names(child)
    return names

"""Small helpers for paths into request bodies: ``override_settings.sd_model_checkpoint``,
``init_images[0]``, ``prompt.6.inputs.text``.

A dotted segment is always a mapping key (so numeric node ids of workflow graphs stay keys);
``[n]`` is a list index. This is the whole language: values are written with it, results are
read with JMESPath.
"""

from __future__ import annotations

import re
from typing import Any

Token = str | int

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]|(\.)")


class PathError(ValueError):
    """A target path that cannot be parsed or written."""


def parse_path(path: str) -> tuple[Token, ...]:
    """Split ``a.b[0].c`` into ``("a", "b", 0, "c")``; raise PathError if malformed."""
    if not path or path.startswith(".") or path.endswith("."):
        raise PathError(f"invalid path {path!r}")
    tokens: list[Token] = []
    pos = 0
    expect_key = True
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if not m:
            raise PathError(f"invalid path {path!r} at position {pos}")
        key, index, dot = m.groups()
        if dot:
            if expect_key:
                raise PathError(f"invalid path {path!r}: empty segment")
            expect_key = True
        elif key is not None:
            if not expect_key:
                raise PathError(f"invalid path {path!r}: missing '.' before {key!r}")
            tokens.append(key)
            expect_key = False
        else:
            if not tokens:
                raise PathError(f"invalid path {path!r}: cannot start with an index")
            tokens.append(int(index))
            expect_key = False
        pos = m.end()
    if expect_key:
        raise PathError(f"invalid path {path!r}")
    return tuple(tokens)


def set_path(doc: dict[str, Any], tokens: tuple[Token, ...], value: Any) -> None:
    """Write ``value`` into ``doc`` at ``tokens``, creating dicts and lists on the way."""
    node: Any = doc
    for i, token in enumerate(tokens):
        last = i == len(tokens) - 1
        nxt: Any = None if last else ([] if isinstance(tokens[i + 1], int) else {})
        if isinstance(token, int):
            if not isinstance(node, list):
                raise PathError(f"cannot index {type(node).__name__} with [{token}]")
            while len(node) <= token:
                node.append(None)
            if last:
                node[token] = value
            else:
                if node[token] is None:
                    node[token] = nxt
                node = node[token]
        else:
            if not isinstance(node, dict):
                raise PathError(f"cannot set key {token!r} in {type(node).__name__}")
            if last:
                node[token] = value
            else:
                if node.get(token) is None:
                    node[token] = nxt
                node = node[token]


def get_path(doc: Any, tokens: tuple[Token, ...]) -> Any:
    """Read the value at ``tokens``; raise KeyError if any part is missing."""
    node = doc
    for token in tokens:
        if isinstance(token, int):
            if not isinstance(node, list) or token >= len(node):
                raise KeyError(token)
            node = node[token]
        else:
            if not isinstance(node, dict) or token not in node:
                raise KeyError(token)
            node = node[token]
    return node


def overlaps(a: tuple[Token, ...], b: tuple[Token, ...]) -> bool:
    """True if writing one path would overwrite (part of) the other."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def format_path(tokens: tuple[Token, ...]) -> str:
    """Inverse of parse_path."""
    out = ""
    for token in tokens:
        out += f"[{token}]" if isinstance(token, int) else (f".{token}" if out else token)
    return out

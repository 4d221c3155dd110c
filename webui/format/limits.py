"""What loading one definition may cost, whatever its files hold: the size of the files read,
how deep their values nest, how many values a YAML document's aliases expand to; and reading a
file within those limits (a regular file only: never a FIFO, a device or a folder)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
MAX_DEFINITION_BYTES = 1 * MIB  # a definition file
MAX_INCLUDED_BYTES = 4 * MIB  # a file a definition includes ({$file: …}, a workflow)
MAX_DEPTH = 64  # mappings and lists inside each other, aliases expanded
MAX_VALUES = 100_000  # values in a definition file, aliases expanded (the bundled: < 1,000)

TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"


class LimitError(ValueError):
    """A file that is not read: not a regular file, too large, nested too deep."""


def read_regular_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes (``what``: "a
    definition", named in the message); LimitError otherwise, or if it cannot be read.

    The file is checked with stat before it is opened, so a FIFO is never opened (an open
    would wait for a writer) and a device never read; it is opened without blocking and
    checked again, in case it was replaced in between, and read no further than the limit.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise LimitError("not a regular file")
        if info.st_size > limit:
            raise LimitError(_too_large(info.st_size, limit, what))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise LimitError("not a regular file")
            data = file.read(limit + 1)
    except OSError as exc:
        raise LimitError(f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > limit:  # it grew since stat
        raise LimitError(_too_large(len(data), limit, what))
    return data


def _too_large(size: int, limit: int, what: str) -> str:
    return f"the file is {size:,} bytes; {what} is at most {limit // MIB} MiB"


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether mappings and lists nest more than ``limit`` levels in ``value`` (without
    recursion: the value may come from anywhere)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else (
            node if isinstance(node, list) else None)
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False

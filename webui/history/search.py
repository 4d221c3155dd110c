"""Gallery paging and search: keyset cursors and FTS5 expressions that only ever search."""

from __future__ import annotations

import math
import re

from .records import Cursor

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def cursor_text(cursor: Cursor) -> str:
    """A cursor as text for a URL (``1712345678.25_123``); ``parse_cursor`` reads it back."""
    return f"{cursor[0]!r}_{cursor[1]}"


def parse_cursor(text: str | None) -> Cursor | None:
    """Read ``cursor_text``; None for a missing or malformed value (the first page)."""
    created, sep, image_id = (text or "").partition("_")
    try:
        cursor = (float(created), int(image_id)) if sep else None
    except ValueError:
        return None
    return cursor if cursor is None or math.isfinite(cursor[0]) else None


def match_expression(query: str) -> str | None:
    """A user's search text as an FTS5 MATCH expression over the prompt column; None if it
    has no words.

    Every whitespace-separated term becomes a quoted prefix phrase, so FTS5's syntax (quotes,
    AND/OR/NOT, NEAR, ``*``, ``:``, parentheses) is only ever searched for, never run: all
    terms must appear, each as the start of a word ("cat" finds "cats").
    """
    # FTS5 ends a string at a NUL character, whatever the quoting: control characters go.
    terms = [t for t in _CONTROL.sub(" ", query).split() if re.search(r"\w", t)]
    if not terms:
        return None
    return " AND ".join('prompt : "{}"*'.format(t.replace('"', '""')) for t in terms)

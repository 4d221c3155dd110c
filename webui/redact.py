"""Keeping secrets out of what webui shows and stores: URLs without credentials, secret
values masked in text a backend wrote, parameters named like secrets blanked."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

_SECRET_KEY = re.compile(
    r"(?:^|[_\-.])(?:password|passwd|secret|token|api[_\-]?key|apikey|authorization|auth|"
    r"credentials?|cookie)(?:$|[_\-.])", re.IGNORECASE)


def is_secret_key(name: str) -> bool:
    """A field name that says it holds a secret (password, token, api_key, …)."""
    return bool(_SECRET_KEY.search(name))


def redact_url(url: str | None) -> str | None:
    """A URL as it may be shown and stored: no user, password, query or fragment."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret masked where it stands as a whole token, never inside a word
    (a user name "user" leaves "username" alone)."""
    for value in sorted(secrets, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", "•••", text)
    return text

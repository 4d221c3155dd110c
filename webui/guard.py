"""Who may ask what: the names webui answers to (DNS rebinding), requests other websites make
(cross-site requests), the UI's own password, and the headers that keep pages out of
other sites' frames and scripts.

A browser tells where a request comes from with ``Sec-Fetch-Site`` — but only to trustworthy
origins (https, localhost). Served on a LAN over plain HTTP it sends ``Origin`` (and a
``Referer``) instead, so those are checked when the fetch metadata is absent. A client that is
not a browser sends neither and may still post (scripts, ``curl``); it cannot be driven by
another website.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Flask, Response, request

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# No inline script or style, nothing from elsewhere, never inside another site's frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# A script, a style sheet or a raster image is never shown as a document: what a document may
# do (its policy, its frames, its referrers) means nothing on it, and would cost some 330 bytes
# on each. It keeps nosniff: used as a script or a style, it must be one.
SUBRESOURCE_HEADERS = {"X-Content-Type-Options": "nosniff"}
_NEVER_DOCUMENTS = ("text/javascript", "application/javascript", "text/css")


def _may_be_a_document(mimetype: str | None) -> bool:
    """Whether an answer of this type can be opened as a page (HTML, SVG, text, anything
    unknown) and so needs the document headers."""
    mimetype = mimetype or ""
    if mimetype in _NEVER_DOCUMENTS:
        return False
    return not (mimetype.startswith("image/") and mimetype != "image/svg+xml")


def is_loopback(host: str) -> bool:
    """Whether a --host value only serves this machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def host_name(netloc: str) -> str:
    """``example.com:7870`` -> ``example.com``; ``[::1]:7870`` -> ``::1``."""
    parts = urlsplit(f"//{netloc}")
    return (parts.hostname or "").lower()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def install(app: Flask, allowed_hosts: list[str], password: str | None,
            problem: Callable[[str, int], object]) -> None:
    """Check every request and mark every answer. ``allowed_hosts``: names webui is reached
    by beyond the loopback names and IP addresses (a rebinding attack needs a name of the
    attacker's); ``password``: the UI's password, or None."""
    names = {h.lower() for h in allowed_hosts} | LOOPBACK_NAMES

    @app.before_request
    def check_request():
        host = host_name(request.host)
        if host not in names and not _is_ip(host):
            return problem(f"Refused: webui does not answer to the name {host!r}. Start it "
                           f"with --allow-host {host} if that is how you reach it.", 421)
        if password is not None:
            given = request.authorization.password if request.authorization else None
            if given is None or not hmac.compare_digest(given.encode(), password.encode()):
                answer = Response("webui needs its password (WEBUI_PASSWORD).", 401,
                                  {"WWW-Authenticate": 'Basic realm="webui", charset="UTF-8"'})
                return answer
        if request.method not in SAFE_METHODS and not _same_site():
            return problem("Refused: this request came from another website.", 403)
        return None

    @app.after_request
    def mark_answer(response: Response) -> Response:
        headers = HEADERS if _may_be_a_document(response.mimetype) else SUBRESOURCE_HEADERS
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response


def _same_site() -> bool:
    """Whether a state-changing request comes from webui's own pages (or no browser)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    for header in ("Origin", "Referer"):
        value = request.headers.get(header)
        if value is None:
            continue
        parts = urlsplit(value)
        # "null" (a sandboxed frame, a file) or another host: another website.
        return parts.netloc.lower() == request.host.lower() and parts.scheme in ("http",
                                                                                 "https")
    return True  # not a browser: a script or curl, which no website can drive

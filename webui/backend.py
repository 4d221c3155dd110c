"""One HTTP call to a backend: base URL, authentication, timeouts, and turning every failure into a
:class:`BackendError` whose message a user can act on.

Nothing here retries. A POST that timed out may still be running on the backend; sending it
again would start a second (paid, slow) generation, so the user decides.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import requests

from . import expr
from .format import Request
from .redact import mask
from .service import Service

MAX_MESSAGE = 600


class BackendError(Exception):
    """A failed call to a backend, with a message fit to show the user."""

    def __init__(self, message: str, *, status: int | None = None, kind: str = "error"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind


class SetupError(BackendError):
    """The service is not configured well enough to be called (e.g. a missing secret)."""

    def __init__(self, message: str):
        super().__init__(message, kind="setup")


@dataclass
class Auth:
    headers: dict[str, str] = field(default_factory=dict)
    basic: tuple[str, str] | None = None


def resolve_auth(service: Service) -> Auth:
    """Read the service's secrets from the environment (at call time, never cached)."""
    spec = service.definition.model.authentication
    if spec.type == "none":
        return Auth()
    if spec.type == "basic":
        assert spec.usernameEnv and spec.passwordEnv
        user, password = os.environ.get(spec.usernameEnv), os.environ.get(spec.passwordEnv)
        if user and password is not None:
            return Auth(basic=(user, password))
        missing = [spec.usernameEnv, spec.passwordEnv]
    else:
        assert spec.tokenEnv
        token = os.environ.get(spec.tokenEnv)
        if token:
            name = "Authorization" if spec.type == "bearer" else (spec.header or "")
            value = f"Bearer {token}" if spec.type == "bearer" else token
            return Auth(headers={name: value})
        missing = [spec.tokenEnv]
    if spec.required:
        raise SetupError(f"{service.name} needs credentials: set the environment variable(s) "
                         f"{', '.join(missing)} before starting webui.")
    return Auth()


def secret_values(service: Service) -> list[str]:
    """The secrets this service's definition names, as set now (to keep them out of text),
    with the form Basic authentication sends them in."""
    spec = service.definition.model.authentication
    names = [n for n in (spec.usernameEnv, spec.passwordEnv, spec.tokenEnv) if n]
    values = [v for v in (os.environ.get(n) for n in names) if v]
    if spec.type == "basic" and spec.usernameEnv and spec.passwordEnv:
        user, password = os.environ.get(spec.usernameEnv), os.environ.get(spec.passwordEnv)
        if user and password is not None:
            values.append(base64.b64encode(f"{user}:{password}".encode()).decode())
    return [v for v in values if len(v) >= 4]


def scrub(service: Service, text: str) -> str:
    """Remove the service's secrets from text a backend wrote (some APIs echo a wrong key)."""
    return mask(text, secret_values(service))


def call(
    service: Service,
    endpoint: Request,
    *,
    body: dict[str, Any] | None = None,
    path: str | None = None,
    query: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
) -> requests.Response:
    """Make one request; return the 2xx response or raise BackendError. ``path``, ``query`` and
    ``headers`` replace the endpoint's own (after placeholders were filled in)."""
    auth = resolve_auth(service)
    path = path if path is not None else endpoint.path
    assert path is not None
    url = service.url(path)
    limit = timeout if timeout is not None else endpoint.timeout
    try:
        response = requests.request(
            endpoint.method,
            url,
            params=(query if query is not None else endpoint.query) or None,
            headers={**(headers if headers is not None else endpoint.headers), **auth.headers},
            auth=auth.basic,
            # Connecting is quick or not at all; the answer may take the whole timeout.
            timeout=(min(5.0, limit), limit),
            allow_redirects=endpoint.method == "GET",
            **encode_body(endpoint.encoding, body if endpoint.method != "GET" else None),
        )
    except requests.exceptions.ConnectTimeout:
        raise BackendError(f"Could not connect to {service.name} at {service.display_url} "
                           "(connection timed out). Is it running and reachable?",
                           kind="offline") from None
    except requests.exceptions.ConnectionError as exc:
        if _dropped(exc):
            again = " The request was not sent again." if endpoint.method != "GET" else ""
            raise BackendError(f"{service.name} at {service.display_url} closed the connection "
                               f"before answering (did it stop or crash?).{again}",
                               kind="dropped") from None
        raise BackendError(f"Could not connect to {service.name} at {service.display_url}: "
                           f"{_reason(exc)}. Is it running?", kind="offline") from None
    except requests.exceptions.ChunkedEncodingError:
        raise BackendError(f"{service.name} at {service.display_url} broke off its answer "
                           "(did it stop or crash?).", kind="dropped") from None
    except requests.exceptions.Timeout:
        again = (" It may still be working on it; the request was not sent again."
                 if endpoint.method != "GET" else "")
        raise BackendError(f"{service.name} did not answer within {limit:g} s.{again}",
                           kind="timeout") from None
    except requests.exceptions.RequestException as exc:
        raise BackendError(f"Request to {service.name} failed: {_reason(exc)}") from None
    if response.status_code >= 400:
        raise http_error(service, endpoint, response)
    return response


def encode_body(encoding: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """requests' keyword arguments for a body: JSON, multipart (files as parts) or a form."""
    if body is None:
        return {}
    if encoding == "json":
        return {"json": body}
    fields: list[tuple[str, Any]] = []
    for key, value in body.items():
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            if hasattr(item, "data") and hasattr(item, "mime"):  # an uploaded image
                fields.append((key, (item.filename, item.data, item.mime)))
            elif isinstance(item, bool):
                fields.append((key, "true" if item else "false"))
            else:
                fields.append((key, item if isinstance(item, str) else json.dumps(item)))
    if encoding == "form":
        return {"data": fields}
    # (name, (None, value)) makes requests send a plain field as a multipart part too.
    return {"files": [(k, v if isinstance(v, tuple) else (None, v)) for k, v in fields]}


def read_json(service: Service, response: requests.Response) -> Any:
    """The JSON body of a successful response, or a BackendError saying what came instead."""
    if not response.content:
        raise BackendError(f"{service.name} answered HTTP {response.status_code} with an empty "
                           "body where JSON was expected.", status=response.status_code)
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("Content-Type", "unknown type")
        raise BackendError(f"{service.name} answered HTTP {response.status_code} with something "
                           f"that is not JSON ({kind}): {_snippet(response.text)}",
                           status=response.status_code) from None


def http_error(service: Service, endpoint: Request, response: requests.Response) -> BackendError:
    status = response.status_code
    detail = scrub(service, describe_error_body(response, service.definition.model.errorMessage))
    reason = f"HTTP {status}" + (f": {detail}" if detail else f" {response.reason or ''}".rstrip())
    if status in (401, 403) and not _credentials_failure(service, response):
        # e.g. a prompt refused by content moderation: the service's own words say why.
        return BackendError(f"{service.name} refused the request ({reason}).", status=status,
                            kind="refused")
    if status in (401, 403):
        spec = service.definition.model.authentication
        names = [n for n in (spec.usernameEnv, spec.passwordEnv, spec.tokenEnv) if n]
        hint = f" (environment: {', '.join(names)})" if names else ""
        return BackendError(f"{service.name} refused the request ({reason}). Check the "
                            f"credentials of {service.name}{hint}.", status=status, kind="auth")
    if status == 404:
        flags = [a.flag for a in service.definition.model.configuration.arguments if a.required]
        hint = f" Was it started with {' '.join(flags)}?" if flags else ""
        path = response.request.path_url.split("?")[0] if response.request else endpoint.path
        return BackendError(f"{service.name} has no {endpoint.method} {path} "
                            f"({reason}).{hint}", status=status, kind="missing")
    if status == 422:
        return BackendError(f"{service.name} rejected the request as invalid ({reason}).",
                            status=status)
    return BackendError(f"{service.name} failed ({reason}).", status=status)


def _credentials_failure(service: Service, response: requests.Response) -> bool:
    """Whether a 401/403 answer means wrong credentials (the definition may say otherwise)."""
    rule = service.definition.model.credentialsFailure
    if not rule:
        return True
    try:
        data = response.json()
    except ValueError:
        data = {}
    try:
        return bool(expr.search(rule, data, expr.Context(status=response.status_code,
                                                         headers=response.headers)))
    except expr.ExprError:
        return True


def describe_error_body(response: requests.Response, text: str | None) -> str:
    """A readable message from an error body: the definition's JMESPath, or common keys."""
    try:
        data = response.json()
    except ValueError:
        return _snippet(response.text) if response.text.strip() else ""
    value: Any = None
    if text:
        try:
            value = expr.search(text, data, expr.Context(status=response.status_code,
                                                         headers=response.headers))
        except expr.ExprError:
            value = None
    if value in (None, "", []) and isinstance(data, dict):
        value = [data[k] for k in ("error", "detail", "message", "errors") if data.get(k)]
    if value in (None, "", []):
        value = data
    return _clip(humanize(value))


def humanize(value: Any) -> str:
    """Flatten an error value (string, list, FastAPI-style {loc, msg}) into one line."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return "; ".join(_distinct([h for h in (humanize(v) for v in value) if h]))
    if isinstance(value, dict):
        msg = value.get("msg") or value.get("message")
        if isinstance(msg, str):
            loc = [str(x) for x in value.get("loc", []) if x != "body"]
            return f"{'.'.join(loc)}: {msg}" if loc else msg
        return json.dumps(value, ensure_ascii=False)
    return str(value)


_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(Error|Exception)$")


def _distinct(parts: list[str]) -> list[str]:
    """Each message once: services repeat one message across fields ("HTTPException",
    "Sampler not found", "404: Sampler not found")."""
    out: list[str] = []
    for part in parts:
        if part in out or any(other != part and other in part for other in parts):
            continue
        out.append(part)
    messages = [p for p in out if not _CLASS_NAME.match(p)]
    return messages or out


def check_health(service: Service, *, identify: bool = False) -> tuple[str, str]:
    """(state, message) from the definition's health endpoint, with a short timeout. The state
    is "online", "offline", "setup" (the service cannot be called as configured) or "other"
    (something answers, but the definition's identify probe, asked when ``identify``, says
    it is another service)."""
    endpoint = service.definition.health
    try:
        if endpoint is None:
            resolve_auth(service)
            state, message = "online", "no health endpoint defined; assumed online"
        else:
            call(service, endpoint, timeout=min(endpoint.timeout, 5.0))
            state, message = "online", "online"
    except BackendError as exc:
        return ("setup" if exc.kind in ("setup", "auth") else "offline"), exc.message
    other = not_this_service(service) if identify else None
    return ("other", other) if other else (state, message)


def not_this_service(service: Service) -> str | None:
    """Why the server at the service's URL is not this service, or None (it is, or the
    definition has no way to tell). Best effort: a probe that fails otherwise says nothing."""
    spec = service.definition.model.identify
    if spec is None:
        return None
    endpoint = service.definition.endpoints[spec.endpoint]
    name = service.definition.model.name
    try:
        data = read_json(service, call(service, endpoint, timeout=min(endpoint.timeout, 5.0)))
    except BackendError as exc:
        if exc.status == 404:
            return (f"Something answers at {service.display_url}, but it is not {name}: it has "
                    f"no {endpoint.method} {endpoint.path}.")
        return None
    try:
        ok = expr.search(spec.when, data)
    except expr.ExprError:
        ok = False
    if ok in (None, False, "", [], {}):
        return (f"Something answers at {service.display_url}, but it is not {name} (its "
                f"{endpoint.path} does not match {spec.when!r}).")
    return None


def _dropped(exc: Exception) -> bool:
    """A connection that was made and then lost, as opposed to one never made."""
    text = str(exc)
    return any(m in text for m in ("Connection aborted", "RemoteDisconnected",
                                   "Connection reset by peer", "BrokenPipe"))


def _reason(exc: Exception) -> str:
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if m:
        return m.group(1).strip().lower()
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    return type(exc).__name__


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return repr(text[:160] + ("…" if len(text) > 160 else ""))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "…"

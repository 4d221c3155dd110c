"""One HTTP call to a backend: base URL, authentication, deadlines, size caps, and turning every
failure into a :class:`BackendError` whose message a user can act on.

Nothing here retries. A POST that timed out may still be running on the backend; sending it
again would start a second (paid, slow) generation, so the user decides.

A backend is not trusted to behave: each call has a wall-clock deadline (a server that trickles
its answer one byte at a time is cut off when it passes, headers included), its answer is read
up to a cap, redirects are followed only where the caller allows, and the secrets of a service
are masked, in every form they travel in, in all text that comes back.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urljoin, urlsplit

import requests
import yaml
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.poolmanager import pool_classes_by_scheme

from . import expr
from .format import Request
from .lookup import addresses_of
from .redact import mask, redact_url
from .service import Service, env_name

log = logging.getLogger(__name__)

MAX_MESSAGE = 600
MB = 1024 * 1024
# The largest answer read by default: generation endpoints (and their steps) carry images, a
# batch of them in base64; every other endpoint answers a list, a setting or a status.
GENERATION_MAX_MB = 200
DEFAULT_MAX_MB = 20
MAX_REDIRECTS = 5
# A status check (health, then identify) takes at most this long in all.
HEALTH_SECONDS = 5.0


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


class SecretsFile:
    """The operator's secrets by service id, in the data folder: ``secrets.yaml`` (or
    ``secrets.yml``, ``secrets.json``) holding ``{service_id: {token: …}}`` or
    ``{service_id: {username: …, password: …}}``. Read again whenever it changes, so a token
    added while webui runs is used at once. ``folder`` is set by the app factory."""

    NAMES = ("secrets.yaml", "secrets.yml", "secrets.json")
    KEYS = ("username", "password", "token")

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        self._lock = threading.Lock()
        self._cache: tuple[Path, tuple[int, int], dict[str, Any] | str] | None = None

    @property
    def path(self) -> Path | None:
        """The file in use (the first that exists), or where it would be."""
        if self.folder is None:
            return None
        found = (self.folder / n for n in self.NAMES)
        return next((p for p in found if p.is_file()), self.folder / self.NAMES[0])

    def describe(self) -> str:
        return str(self.path) if self.path else "secrets.yaml in the data folder"

    def entry(self, service_id: str) -> dict[str, str]:
        """The service's credentials in the file ({} if none). SetupError if the file cannot
        be read: its problem is named, never its content."""
        path = self.path
        if path is None:
            return {}
        try:
            st = path.stat()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SetupError(f"{path} could not be read: {exc.strerror or exc}.") from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._cache
        if cached and cached[0] == path and cached[1] == stamp:
            data = cached[2]
        else:
            data = _read_secrets(path)
            with self._lock:
                self._cache = (path, stamp, data)
        if isinstance(data, str):
            raise SetupError(f"{path.name} could not be read ({path}): {data}.")
        entry = data.get(service_id)
        if entry is None:
            return {}
        if not isinstance(entry, dict) or not all(
                k in self.KEYS and isinstance(v, str | int | float) for k, v in entry.items()):
            raise SetupError(f"{path}: the entry {service_id!r} must be a mapping of "
                             f"{', '.join(self.KEYS)} to text, e.g. {service_id}: "
                             "{token: …}.")
        return {k: str(v) for k, v in entry.items()}


def _read_secrets(path: Path) -> dict[str, Any] | str:
    """The file's mapping, or what is wrong with it (a position, never a line of it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return getattr(exc, "strerror", None) or type(exc).__name__
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg}, line {exc.lineno}, column {exc.colno})"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"not valid YAML{where}"
    if data is None:
        return {}
    if not isinstance(data, dict):
        return "it must be a mapping of service ids to their secrets"
    return data


SECRETS = SecretsFile()


def use_secrets_folder(folder: Path | None) -> None:
    """Where secrets.yaml is looked for (the data folder); the app factory calls this."""
    SECRETS.folder = folder


_ONE_WORD = re.compile(r"[A-Z0-9]+")


def may_read(service: Service, name: str) -> bool:
    """Whether the service's definition may read the environment variable NAME: a bundled one
    any it names; any other only WEBUI_<ID>_<WORD> of its own id (one word, so that a service
    "my" cannot read WEBUI_MY_SD_TOKEN, a variable of "my-sd")."""
    if service.bundled:
        return True
    prefix = env_name(service.id, "")
    return name.startswith(prefix) and bool(_ONE_WORD.fullmatch(name[len(prefix):]))


def _credentials(service: Service) -> dict[str, str]:
    """The service's credentials as its operator gave them: the environment variables its
    definition names (if it may read them), else its entry in the secrets file; {} if none.
    SetupError when the definition names variables it may not read (they are never read) and
    the file has nothing for it, if the credentials are required or such a variable is set."""
    spec = service.definition.model.authentication
    if spec.type == "none":
        return {}
    basic = spec.type == "basic"
    names = [n for n in ((spec.usernameEnv, spec.passwordEnv) if basic else (spec.tokenEnv,))
             if n]
    forbidden = [n for n in names if not may_read(service, n)]
    if not forbidden:
        if basic:
            user, password = (os.environ.get(n) for n in names)
            if user and password is not None:
                return {"username": user, "password": password}
        elif os.environ.get(names[0]):
            return {"token": os.environ[names[0]]}
    else:
        # Names it may not read: the operator's own variables for this service stand in
        # (what the setup message below tells them to set).
        own = env_name(service.id, "")
        if basic and os.environ.get(f"{own}USERNAME") and f"{own}PASSWORD" in os.environ:
            return {"username": os.environ[f"{own}USERNAME"],
                    "password": os.environ[f"{own}PASSWORD"]}
        if not basic and os.environ.get(f"{own}TOKEN"):
            return {"token": os.environ[f"{own}TOKEN"]}
    entry = SECRETS.entry(service.id)
    if basic and entry.get("username") and "password" in entry:
        return {"username": entry["username"], "password": entry["password"]}
    if not basic and entry.get("token"):
        return {"token": entry["token"]}
    # Optional credentials under names it may not read (those a file that extends a1111
    # inherits) mean "none", unless such a variable is set: then someone meant it for this
    # service, and is told how to give it. Either way its value is not read.
    if forbidden and (spec.required or any(n in os.environ for n in forbidden)):
        own = env_name(service.id, "")
        wanted = (f"{own}USERNAME and {own}PASSWORD" if basic else f"{own}TOKEN")
        example = "{username: …, password: …}" if basic else "{token: …}"
        raise SetupError(
            f"{service.name}: its definition asks for the environment variable(s) "
            f"{', '.join(forbidden)}, but a definition file may only read {own}* variables "
            f"or its entry in secrets.yaml, so nothing was read. Set {wanted}, or add "
            f"{service.id}: {example} to {SECRETS.describe()}.")
    return {}


def resolve_auth(service: Service) -> Auth:
    """The service's credentials, read at call time (never cached): from the environment
    variables its definition may read, or its entry in the secrets file."""
    spec = service.definition.model.authentication
    if spec.type == "none":
        return Auth()
    creds = _credentials(service)
    if "username" in creds:
        return Auth(basic=(creds["username"], creds["password"]))
    if "token" in creds:
        name = "Authorization" if spec.type == "bearer" else (spec.header or "")
        value = f"Bearer {creds['token']}" if spec.type == "bearer" else creds["token"]
        return Auth(headers={name: value})
    if spec.required:
        names = [n for n in (spec.usernameEnv, spec.passwordEnv, spec.tokenEnv) if n]
        example = "{username: …, password: …}" if spec.type == "basic" else "{token: …}"
        raise SetupError(f"{service.name} needs credentials: set the environment variable(s) "
                         f"{', '.join(names)} before starting webui, or add {service.id}: "
                         f"{example} to {SECRETS.describe()}.")
    return Auth()


def secret_values(service: Service) -> list[str]:
    """The secrets of this service as set now (to keep them out of text), in every form they
    travel in: as they are, URL-encoded, JSON-escaped, and the user:password pairs (its
    credentials, those written in its URLs) in Basic authentication's base64."""
    try:
        creds = _credentials(service)
    except SetupError:
        creds = {}
    plain = list(creds.values())
    pairs = [(creds["username"], creds["password"])] if "username" in creds else []
    for url in service.urls:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            user, password = unquote(parts.username or ""), unquote(parts.password or "")
            plain += [user, password, parts.username or "", parts.password or ""]
            pairs.append((user, password))
    values = []
    for value in plain:
        values += [value, quote(value, safe=""), quote_plus(value),
                   json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]]
    for user, password in pairs:
        pair = f"{user}:{password}"
        for encoding in ("latin-1", "utf-8"):  # requests sends latin-1 where it can
            with contextlib.suppress(UnicodeEncodeError):
                values.append(base64.b64encode(pair.encode(encoding)).decode())
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def scrub(service: Service, text: str) -> str:
    """Remove the service's secrets from text a backend wrote (some APIs echo a wrong key)."""
    return mask(text, secret_values(service))


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port filled in for http and https."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or default


def response_cap(endpoint: Request) -> int:
    """The largest answer of ENDPOINT read, in bytes."""
    if endpoint.maxResponseMB is not None:
        return int(endpoint.maxResponseMB * MB)
    # A step (it has a name) belongs to a generation endpoint, as does one with a result.
    generation = endpoint.name is not None or endpoint.result is not None
    return (GENERATION_MAX_MB if generation else DEFAULT_MAX_MB) * MB


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
    """Make one request; return the 2xx response, its body read, or raise BackendError.
    ``path``, ``query`` and ``headers`` replace the endpoint's own (after placeholders were
    filled in). The timeout (the endpoint's unless given) is a total for the whole answer."""
    auth = resolve_auth(service)
    path = path if path is not None else endpoint.path
    assert path is not None
    url = service.url(path)
    limit = timeout if timeout is not None else endpoint.timeout
    cap = response_cap(endpoint)
    again = " It may still be working on it; the request was not sent again." if (
        endpoint.method != "GET") else ""
    home = origin(service.base_url)

    def same_origin(target: str) -> Auth:
        if origin(target) != home:
            raise Refused(target)
        return auth

    try:
        response = exchange(
            endpoint.method, url, seconds=limit, max_bytes=cap, auth=auth,
            # Only a GET follows redirects, and only within the service's own address: header
            # authentication is not a header requests drops on the way elsewhere.
            redirects=same_origin if endpoint.method == "GET" else None,
            params=(query if query is not None else endpoint.query) or None,
            headers={**(headers if headers is not None else endpoint.headers), **auth.headers},
            **encode_body(endpoint.encoding, body if endpoint.method != "GET" else None),
        )
    except TooSlow as exc:
        if exc.answering:
            raise BackendError(f"{service.name} answered too slowly: gave up after {limit:g} s."
                               f"{again}", kind="timeout") from None
        raise BackendError(f"{service.name} did not answer within {limit:g} s.{again}",
                           kind="timeout") from None
    except TooLarge:
        raise BackendError(f"{service.name} answered more than {cap / MB:g} MB (the limit of "
                           "this endpoint: maxResponseMB in its definition).",
                           kind="too_large") from None
    except Refused as exc:
        raise BackendError(f"{service.name} redirected to another address "
                           f"({redact_url(exc.url)}); webui follows redirects only within "
                           f"{service.display_url}.", kind="redirect") from None
    except TooManyRedirects:
        raise BackendError(f"{service.name} redirected too many times (more than "
                           f"{MAX_REDIRECTS}).") from None
    except requests.exceptions.ConnectTimeout:
        raise BackendError(f"Could not connect to {service.name} at {service.display_url} "
                           "(connection timed out). Is it running and reachable?",
                           kind="offline") from None
    except requests.exceptions.ConnectionError as exc:
        if _dropped(exc):
            not_again = " The request was not sent again." if again else ""
            raise BackendError(f"{service.name} at {service.display_url} closed the connection "
                               f"before answering (did it stop or crash?).{not_again}",
                               kind="dropped") from None
        raise BackendError(f"Could not connect to {service.name} at {service.display_url}: "
                           f"{_reason(exc)}. Is it running?", kind="offline") from None
    except requests.exceptions.ChunkedEncodingError:
        raise BackendError(f"{service.name} at {service.display_url} broke off its answer "
                           "(did it stop or crash?).", kind="dropped") from None
    except requests.exceptions.Timeout:
        raise BackendError(f"{service.name} did not answer within {limit:g} s.{again}",
                           kind="timeout") from None
    except requests.exceptions.RequestException as exc:
        raise BackendError(f"Request to {service.name} failed: {_reason(exc)}") from None
    if response.status_code >= 400:
        raise http_error(service, endpoint, response)
    return response


# --- The transport: a deadline, a cap and checked redirects ----------------------------------


class TooSlow(Exception):
    """The deadline passed; ``answering``: the answer had begun (its headers had come)."""

    def __init__(self, answering: bool):
        super().__init__("too slow")
        self.answering = answering


class TooLarge(Exception):
    """The answer is larger than the cap."""


class Refused(Exception):
    """A redirect to an address the caller does not allow."""

    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


class TooManyRedirects(Exception):
    pass


class _Deadline:
    """A wall-clock deadline for one exchange: when it passes, every socket the exchange
    opened or reused is shut down, which ends whatever read is waiting on it (a read timeout
    is per read, and a server sending one byte a second never lets one expire)."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds
        self.expired = False
        self._cancelled = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.at

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        # Under the lock: once cancel() has returned, no socket is shut (a kept connection
        # goes back to the pool, where another exchange may be using it).
        with self._lock:
            if self._cancelled:
                return
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()  # the deadline of the exchange this thread is making


def connections_made() -> int:
    """How many connections this thread has opened or taken from a pool so far: when it is
    the same after a call as before it, that call reached no server (it could not connect)."""
    return getattr(_current, "connections", 0)


def _watch(sock: Any) -> None:
    if sock is not None:
        _current.connections = connections_made() + 1
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


# How long a connection without a connect timeout of its own waits for its name (lookup.py).
LOOKUP_SECONDS = 5.0


def _unresolved(exc: Exception) -> bool:
    """Whether requests' exception says the name of the server was not found."""
    return isinstance(getattr(exc.args[0] if exc.args else None, "reason", None),
                      NameResolutionError)


class _Connecting:
    """What webui's connections add to urllib3's: a bounded name lookup (an address stands for
    itself), then each address in turn (as urllib3 does); the socket watched by the deadline of
    its exchange."""

    _dns_host: str
    port: int
    timeout: Any
    sock: Any

    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        seconds = self.timeout if isinstance(self.timeout, (int, float)) else LOOKUP_SECONDS
        try:
            addresses = addresses_of(name, self.port, seconds)
        except socket.gaierror as exc:
            raise NameResolutionError(name, self, exc) from exc
        failed: Exception = NewConnectionError(self, "the name has no address")
        try:
            for address in addresses:
                # Only the address changes: the Host header, TLS's server name and its
                # certificate check still use the name (read after this returns).
                self._dns_host = address
                try:
                    return super()._new_conn()
                except (NewConnectionError, ConnectTimeoutError) as exc:
                    failed = exc
        finally:
            self._dns_host = name
        raise failed

    def connect(self) -> None:
        super().connect()
        _watch(self.sock)


class _HTTPConnection(_Connecting, HTTPConnection):
    pass


class _HTTPSConnection(_Connecting, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _watch(conn.sock)  # a kept connection: its socket was opened by an earlier exchange
        return conn


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _watch(conn.sock)
        return conn


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    """requests' adapter, with connections the deadline of their exchange can shut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if manager.pool_classes_by_scheme is pool_classes_by_scheme:
            manager.pool_classes_by_scheme = _POOLS  # not for SOCKS, which has its own
        return manager


CHUNK = 64 * 1024


# --- Connections kept per instance ----------------------------------------------------------
# A GET (options, status checks, progress, result images: most calls) goes over a connection
# kept open to the instance it asks, as a browser's would: no new TCP (and TLS) handshake per
# call. What is shared is the adapter (its urllib3 pool is thread-safe), not a Session: a
# Session's cookie jar would carry one call's cookies into every other call of every job.
# Any other method goes over a connection of its own, closed after: a kept connection the
# server closes as the request is sent would fail a POST that must never be sent again.

MAX_KEPT = 64  # instances with kept connections (a long run with many edited definitions)
_kept: dict[tuple[str, str, int | None], _Adapter] = {}
_kept_lock = threading.Lock()


def _adapter(method: str, url: str) -> tuple[_Adapter, bool]:
    """(the adapter a request to URL goes through, whether it is a kept one)."""
    if method not in ("GET", "HEAD"):
        return _Adapter(), False
    key = origin(url)
    with _kept_lock:
        adapter = _kept.get(key)
        if adapter is None:
            if len(_kept) >= MAX_KEPT:
                for old in _kept.values():
                    old.close()
                _kept.clear()
            adapter = _kept[key] = _Adapter()
    return adapter, True


def close_kept() -> None:
    """Close every kept connection (tests; a server stopping)."""
    with _kept_lock:
        for adapter in _kept.values():
            adapter.close()
        _kept.clear()


def exchange(
    method: str,
    url: str,
    *,
    seconds: float,
    max_bytes: int,
    auth: Auth | None = None,
    redirects: Callable[[str], Auth | None] | None = None,
    **kwargs: Any,
) -> requests.Response:
    """One request and its whole answer, within SECONDS in all (TooSlow) and MAX_BYTES
    (TooLarge). ``redirects`` decides each redirect: it raises Refused for a URL that may not
    be followed, or returns the authentication to send there; without it, none is followed.
    The response comes back with its body read; requests' exceptions pass through."""
    deadline = _Deadline(seconds)
    adapter, kept = _adapter(method, url)
    session = requests.Session()  # this exchange's cookies, as before
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    _current.deadline = deadline
    try:
        hops = 0
        while True:
            try:
                response = session.request(
                    method, url, stream=True, allow_redirects=False,
                    # Connecting is quick or not at all; then the deadline is what counts.
                    timeout=(min(5.0, seconds), seconds),
                    auth=auth.basic if auth else None, **kwargs)
            except requests.exceptions.ConnectTimeout:
                raise  # could not connect at all: said so, not "too slow"
            except requests.exceptions.RequestException as exc:
                if deadline.passed() and not _unresolved(exc):  # (nor a name not found)
                    raise TooSlow(answering=False) from None
                raise
            if redirects is None or not response.is_redirect:
                break
            target = urljoin(response.url, response.headers["Location"])
            response.close()
            hops += 1
            if hops > MAX_REDIRECTS:
                raise TooManyRedirects()
            hop_auth = redirects(target)
            headers = dict(kwargs.get("headers") or {})
            for name in (auth.headers if auth else {}):
                headers.pop(name, None)
            kwargs["headers"] = {**headers, **(hop_auth.headers if hop_auth else {})}
            auth, url = hop_auth, target
        _read_body(response, deadline, max_bytes)
        return response
    finally:
        _current.deadline = None
        deadline.cancel()
        if not kept:
            adapter.close()


def _read_body(response: requests.Response, deadline: _Deadline, max_bytes: int) -> None:
    """Read the whole body into the response, within the deadline and the cap."""
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise TooLarge()
        body = bytearray()
        try:
            for chunk in response.iter_content(CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise TooLarge()
                if deadline.passed():
                    raise TooSlow(answering=True)
        except requests.exceptions.RequestException:
            if deadline.passed():
                raise TooSlow(answering=True) from None
            raise
        if deadline.expired:  # the body "ended" because the deadline shut the connection
            raise TooSlow(answering=True)
    finally:
        deadline.cancel()  # before the connection goes back to the pool
        response.close()
    response._content = bytes(body)
    response._content_consumed = True


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
        # Masked before it is cut short: a secret cut in two would no longer be recognised.
        raise BackendError(f"{service.name} answered HTTP {response.status_code} with something "
                           f"that is not JSON ({kind}): "
                           f"{_snippet(scrub(service, response.text))}",
                           status=response.status_code) from None


def http_error(service: Service, endpoint: Request, response: requests.Response) -> BackendError:
    status = response.status_code
    detail = describe_error_body(response, service.definition.model.errorMessage,
                                 clean=lambda text: scrub(service, text))
    reason = f"HTTP {status}" + (f": {detail}" if detail else f" {response.reason or ''}".rstrip())
    if status in (401, 403) and not _credentials_failure(service, response):
        # e.g. a prompt refused by content moderation: the service's own words say why.
        return BackendError(f"{service.name} refused the request ({reason}).", status=status,
                            kind="refused")
    if status in (401, 403):
        spec = service.definition.model.authentication
        names = [n for n in (spec.usernameEnv, spec.passwordEnv, spec.tokenEnv)
                 if n and may_read(service, n)]
        entry = f"its entry in {SECRETS.describe()}"
        hint = (f" (environment: {', '.join(names)}, or {entry})" if names
                else f" ({entry})" if spec.type != "none" else "")
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


def describe_error_body(
    response: requests.Response, text: str | None, clean: Callable[[str], str] = str
) -> str:
    """A readable message from an error body: the definition's JMESPath, or common keys.
    ``clean`` (secrets masked) is applied before the text is cut short."""
    try:
        data = response.json()
    except ValueError:
        return _snippet(clean(response.text)) if response.text.strip() else ""
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
    return _clip(clean(humanize(value)))


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


def check_health(
    service: Service, *, identify: bool = False, limit: float = HEALTH_SECONDS
) -> tuple[str, str]:
    """(state, message) from the definition's health endpoint, within LIMIT s in all. The
    state is "online", "offline", "setup" (the service cannot be called as configured) or
    "other": something answers, but not this service — the health endpoint is not there (404)
    or, when ``identify``, its answer fails the endpoint's ``when``."""
    endpoint = service.definition.health
    name = service.definition.model.name
    try:
        if endpoint is None:
            resolve_auth(service)
            return "online", "no health endpoint defined; assumed online"
        response = call(service, endpoint, timeout=min(endpoint.timeout, limit))
    except BackendError as exc:
        if exc.status == 404 and endpoint is not None and endpoint.when:
            flags = [a.flag for a in service.definition.model.configuration.arguments
                     if a.required]
            started = f", or {name} started without {' '.join(flags)}" if flags else ""
            return "other", (f"Something answers at {service.display_url}, but it has no "
                             f"{endpoint.method} {endpoint.path}: it is another service"
                             f"{started}.")
        return ("setup" if exc.kind in ("setup", "auth") else "offline"), exc.message
    if identify and endpoint.when:
        try:
            ok = expr.search(endpoint.when, read_json(service, response))
        except (BackendError, expr.ExprError):
            ok = None  # best effort: an answer that cannot be read says nothing
        if ok in (False, "", [], {}) or (ok is None and response.content[:1] in (b"{", b"[")):
            return "other", (f"Something answers at {service.display_url}, but it is not "
                             f"{name} (its {endpoint.path} does not match "
                             f"{endpoint.when!r}).")
    return "online", "online"


STATUS_SECONDS = 4.0  # how long a status check's answer is shown again without asking
STATUS_WAIT = 1.0  # how long a page's status request waits for a check to end


@dataclass
class _Check:
    definition: Any  # kept, so that the id() in the key stays this definition's
    result: tuple[str, str] | None = None
    at: float = 0.0
    running: threading.Event | None = None


class StatusChecks:
    """The status of services for pages: checks run on threads of their own, never on the
    request's. Each instance is checked by one thread at a time (concurrent requests share its
    answer), an answer is used again for ``ttl`` s, and a request waits at most ``wait`` s: a
    check still running by then answers with the last result, or None ("still checking"). So
    many open tabs, or many slow backends, cannot take all of webui's threads for long."""

    def __init__(self, ttl: float | None = None, wait: float | None = None):
        self.ttl = STATUS_SECONDS if ttl is None else ttl
        self.wait = STATUS_WAIT if wait is None else wait
        self._lock = threading.Lock()
        self._checks: dict[tuple[Any, ...], _Check] = {}

    def get(self, services: list[Service], *, identify: bool = True
            ) -> list[tuple[str, str] | None]:
        """The status of each service (an instance each), as check_health gives it."""
        now = time.monotonic()
        checks, waits = [], []
        with self._lock:
            for key in [k for k, c in self._checks.items()
                        if c.running is None and now - c.at > 30 * self.ttl]:
                del self._checks[key]  # forgotten: definitions and secrets change
            for service in services:
                key = self._key(service, identify)
                check = self._checks.setdefault(key, _Check(service.definition))
                checks.append(check)
                if check.result is not None and now - check.at < self.ttl:
                    continue
                if check.running is None:
                    check.running = threading.Event()
                    threading.Thread(target=self._run, args=(check, service, identify),
                                     name=f"status-{service.id}", daemon=True).start()
                waits.append(check.running)
        end = time.monotonic() + self.wait
        for event in waits:
            event.wait(max(0.0, end - time.monotonic()))
        with self._lock:
            return [c.result for c in checks]

    def known(self, services: list[Service], max_age: float, *, identify: bool = True
              ) -> list[tuple[str, str, float]] | None:
        """The results of checks made within the last ``max_age`` s, with their age, checking
        nothing; None when any of them is older or missing (then ask with get)."""
        now = time.monotonic()
        results = []
        with self._lock:
            for service in services:
                check = self._checks.get(self._key(service, identify))
                if check is None or check.result is None or now - check.at >= max_age:
                    return None
                results.append((*check.result, now - check.at))
        return results

    def _run(self, check: _Check, service: Service, identify: bool) -> None:
        try:
            result = check_health(service, identify=identify)
        except Exception:
            log.exception("checking %s failed unexpectedly", service.id)
            result = ("offline", "Something went wrong inside webui while checking this "
                                 "service; the details are in the server log.")
        with self._lock:
            check.result, check.at = result, time.monotonic()
            done, check.running = check.running, None
        if done is not None:
            done.set()

    @staticmethod
    def _key(service: Service, identify: bool) -> tuple[Any, ...]:
        # Other secrets (one set, changed, added to secrets.yaml) deserve a check of their own.
        secrets = hashlib.sha256("\0".join(secret_values(service)).encode()).hexdigest()
        return (service.id, service.base_url, identify, id(service.definition), secrets)


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

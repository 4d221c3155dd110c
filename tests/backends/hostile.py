"""A hostile backend: a real HTTP server on 127.0.0.1, written on raw sockets so that it can
misbehave in ways a well-behaved framework will not (a status line one byte at a time, a body
without end). Each path is one behaviour; query parameters tune it:

``/trickle?every=S``       headers at once, then the body one byte every S s (default 1), for
                           ``max`` s (default 120) or until the client hangs up
``/trickle-head?every=S``  even the status line and headers one byte at a time
``/silent``                reads the request and never answers (for ``max`` s)
``/endless?mb=N``          N MB of body (no Content-Length) as fast as the client reads; without
                           ``mb``, no end (until the client hangs up)
``/declared?mb=N``         says ``Content-Length: N MB``, sends a few bytes, then waits
``/redirect?to=URL``       ``302`` to URL (``status=`` another 3xx)
``/loop``                  ``302`` to itself
``/garbage``               ``200 text/html`` that is not JSON
``/echo``                  ``200 text/plain``: the request line and every header, Authorization
                           included (as some APIs echo a wrong key); ``?then=`` text appended
``/result?url=U``          an OpenAI-style answer ``{"data": [{"url": U}]}``
``/image``                 a small PNG
anything else              ``200 {"ok": true}``

Every request is appended to ``requests`` (method, target, headers) before it is answered, so
tests can assert on what a backend did (and did not) receive: :meth:`saw` looks for a value in
any of them.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..helpers import image_bytes

MB = 1024 * 1024


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path


@dataclass
class HostileBackend:
    """The server; ``with HostileBackend() as b: … b.url …``."""

    requests: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        backend = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                backend._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self) -> HostileBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def saw(self, value: str) -> bool:
        """Whether any request carried VALUE (in its target, a header or its body)."""
        return any(value in r.target or value.encode() in r.body
                   or any(value in v for v in r.headers.values()) for r in self.requests)

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    # -- one connection ---------------------------------------------------------------------

    def _handle(self, sock: socket.socket) -> None:
        try:
            seen = _read_request(sock)
        except OSError:
            return
        if seen is None:
            return
        self.requests.append(seen)
        parts = urlsplit(seen.target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        behaviour = getattr(self, "_" + parts.path.strip("/").replace("-", "_"), None)
        try:
            if behaviour is None:
                _send(sock, 200, b'{"ok": true}', "application/json")
            else:
                behaviour(sock, seen, query)
        except OSError:
            pass  # the client hung up: that is how most of these end

    @staticmethod
    def _trickle(sock: socket.socket, seen: Seen, query: dict[str, str]) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\nConnection: close\r\n\r\n")
        _drip(sock, b"[" + b"1," * 50000, float(query.get("every", 1)),
              float(query.get("max", 120)))

    @staticmethod
    def _trickle_head(sock: socket.socket, seen: Seen, query: dict[str, str]) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + (
            b"x" * 1000) + b"\r\n\r\n{}"
        _drip(sock, head, float(query.get("every", 1)), float(query.get("max", 120)))

    @staticmethod
    def _silent(sock: socket.socket, seen: Seen, query: dict[str, str]) -> None:
        sock.settimeout(float(query.get("max", 120)))
        with contextlib.suppress(OSError):
            sock.recv(1)  # until the client hangs up, or max

    @staticmethod
    def _endless(sock: socket.socket, seen: Seen, query: dict[str, str]) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\n\r\n")
        block = b'["' + b"A" * (MB - 4) + b'",'
        left = float(query["mb"]) if "mb" in query else float("inf")
        while left > 0:
            sock.sendall(block)
            left -= 1

    @staticmethod
    def _declared(sock: socket.socket, seen: Seen, query: dict[str, str]) -> None:
        size = int(float(query.get("mb", 1000)) * MB)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n[1," % size)
        _drip(sock, b"1," * 1000, 1.0, float(query.get("max", 30)))

    @staticmethod
    def _redirect(sock: socket.socket, seen: Seen, query: dict[str, str]) -> None:
        status = int(query.get("status", 302))
        _send(sock, status, b"", "text/plain", {"Location": query["to"]})

    @staticmethod
    def _loop(sock: socket.socket, seen: Seen, query: dict[str, str]) -> None:
        _send(sock, 302, b"", "text/plain", {"Location": "/loop"})

    @staticmethod
    def _garbage(sock: socket.socket, seen: Seen, query: dict[str, str]) -> None:
        _send(sock, 200, b"<html><body>Internal admin panel: 1234 users</body></html>",
              "text/html")

    @staticmethod
    def _echo(sock: socket.socket, seen: Seen, query: dict[str, str]) -> None:
        # Authorization first, as an API that echoes a wrong key puts it up front.
        headers = sorted(seen.headers.items(), key=lambda kv: kv[0].lower() != "authorization")
        lines = [f"{k}: {v}" for k, v in headers] + [f"{seen.method} {seen.target}"]
        text = "You sent:\n" + "\n".join(lines) + query.get("then", "")
        _send(sock, int(query.get("status", 200)), text.encode(), "text/plain")

    @staticmethod
    def _result(sock: socket.socket, seen: Seen, query: dict[str, str]) -> None:
        body = json.dumps({"created": 0, "data": [{"url": query["url"]}]}).encode()
        _send(sock, 200, body, "application/json")

    @staticmethod
    def _image(sock: socket.socket, seen: Seen, query: dict[str, str]) -> None:
        _send(sock, 200, image_bytes(), "image/png")


def _read_request(sock: socket.socket) -> Seen | None:
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    sock.settimeout(None)
    return Seen(method, target, headers, body)


def _send(sock: socket.socket, status: int, body: bytes, mime: str,
          headers: dict[str, str] | None = None) -> None:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(f"HTTP/1.1 {status} Whatever\r\nContent-Type: {mime}\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n".encode()
                 + body)


def _drip(sock: socket.socket, data: bytes, every: float, limit: float) -> None:
    """DATA one byte every EVERY s, for at most LIMIT s (or until the client hangs up)."""
    end = time.monotonic() + limit
    for i in range(len(data)):
        if time.monotonic() > end:
            return
        sock.sendall(data[i:i + 1])
        time.sleep(every)


def definition(service_id: str, url: str, **capability_endpoints: Any) -> dict[str, Any]:
    """A small definition at URL: a health endpoint, a txt2img mode (one prompt and one select
    fed by ``getModels``) and whatever else is given; each keyword is an endpoint (its dict)."""
    endpoints: dict[str, Any] = {
        "txt2img": {"method": "POST", "path": "/gen", "timeout": 10,
                    "result": {"images": "data[].url", "encoding": "url"}},
        "getModels": {"path": "/models"},
    }
    health = capability_endpoints.pop("health", {"path": "/health"})
    endpoints.update(capability_endpoints)
    return {
        "id": service_id,
        "name": f"Hostile {service_id}",
        "url": url,
        "capabilities": [
            {"capability": "health", "endpoints": {"health": health}},
            {"capability": "image_generation", "endpoints": endpoints,
             "parameters": {"txt2img": [
                 {"key": "prompt", "type": "textarea", "required": True},
                 {"key": "model", "type": "select", "optionsEndpoint": "getModels",
                  "optionsPath": "data", "optionsValueKey": "id"},
             ]}},
        ],
    }

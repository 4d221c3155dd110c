"""A small websocket client for a job's progress: :func:`listen` holds one connection to a
backend and hands each message to a callback until it is told to stop or the server closes.

Progress is best effort, so no network problem raises: a server that is down, refuses the
upgrade, redirects, stalls the handshake past ``connect_timeout``, breaks the protocol, sends a
message over ``max_message`` bytes or drops the connection makes ``listen`` return. Only the
callbacks' own exceptions come out (after the connection is closed).

The protocol is websocket-client's (synchronous, no threads of its own). Two things are added
here: a frame longer than the cap is refused as soon as its header is read, before any of its
payload (websocket-client would read it whole), and a watchdog bounds the whole handshake by
``connect_timeout`` and ``stop`` (websocket-client's timeout is per read, and it reads the
response headers without a size limit), the lookup of the server's name included. Redirects
are not followed and no Origin is sent (a non-browser client has none, and some servers refuse
one that differs from Host). As with
requests, the ``http_proxy``/``https_proxy``/``no_proxy`` environment variables apply
(websocket-client reads them).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies

import websocket
from websocket import ABNF

from .lookup import addresses_of

MAX_MESSAGE = 8 * 1024 * 1024
# How long one read waits before ``stop`` is looked at again, and how long a close we start
# waits for the server's answer: together, how promptly ``listen`` returns once stopped.
POLL_INTERVAL = 0.1
CLOSE_WAIT = 0.2
_DATA = (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT)
_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def websocket_url(url: str) -> str | None:
    """URL with http(s) turned into ws(s) (ws and wss kept); None for anything else."""
    try:
        parts = urlsplit(url)
        scheme = _SCHEMES.get(parts.scheme.lower())
        if scheme is None or not parts.hostname or parts.port == 0:
            return None
    except ValueError:  # a bad IPv6 literal or port
        return None
    return urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))


def listen(
    url: str,
    headers: Mapping[str, str],
    stop: threading.Event,
    on_text: Callable[[str], None],
    on_bytes: Callable[[bytes], None],
    *,
    connect_timeout: float = 5.0,
    max_message: int = MAX_MESSAGE,
    hello: str | None = None,
) -> None:
    """Connect to URL (http, https, ws or wss; the path and query are the caller's) with
    HEADERS, then call ``on_text`` for each text message and ``on_bytes`` for each binary one,
    in the order they arrive, on this thread, until STOP is set (checked every
    ``POLL_INTERVAL`` seconds, also during the handshake; a TCP connect under way is bounded by
    ``connect_timeout`` alone) or the connection ends. Pings are answered. ``hello``: a text
    message sent once, right after connecting. A message (all its fragments) over
    ``max_message`` bytes closes the connection (status 1009)."""
    target = websocket_url(url)
    if target is None or stop.is_set():
        return
    if any("\r" in f"{k}{v}" or "\n" in f"{k}{v}" for k, v in headers.items()):
        return  # a header that would split the request
    conn = _Connection(max_message)
    try:
        if not _open(conn, target, headers, stop, connect_timeout, hello):
            return
        with contextlib.closing(_messages(conn, stop, max_message)) as messages:
            for message in messages:
                if isinstance(message, str):
                    on_text(message)
                else:
                    on_bytes(message)
    finally:
        conn.shutdown()


class _TooBig(websocket.WebSocketProtocolException):
    """A data frame (or a message's fragments together) over the cap."""


class _Frames(websocket.frame_buffer):
    """websocket-client's frame reader, refusing a frame as soon as its length is known: a
    data frame longer than ``budget`` (what is left of the cap for the message being read), a
    control frame longer than the 125 bytes RFC 6455 allows."""

    def __init__(self, recv: Callable[[int], bytes], budget: int):
        super().__init__(recv, skip_utf8_validation=False)
        self.budget = budget

    def recv_length(self) -> None:
        super().recv_length()
        assert self.header is not None and self.length is not None
        opcode = self.header[4]  # (fin, rsv1, rsv2, rsv3, opcode, has_mask, length_bits)
        if opcode in _DATA and self.length > self.budget:
            raise _TooBig(f"a frame of {self.length} bytes")
        if opcode not in _DATA and self.length > 125:
            raise websocket.WebSocketProtocolException("control frame too long")


class _Connection(websocket.WebSocket):
    def __init__(self, max_message: int):
        super().__init__()
        self.frames = _Frames(self.frame_buffer.recv, max_message)
        self.frame_buffer = self.frames


def _open(conn: _Connection, url: str, headers: Mapping[str, str], stop: threading.Event,
          timeout: float, hello: str | None) -> bool:
    """The TCP connection and the handshake, within TIMEOUT seconds in all and abandoned once
    STOP is set: a watchdog shuts the socket down, which ends any read under way."""
    done = threading.Event()

    def watchdog() -> None:
        deadline = time.monotonic() + timeout
        while not done.wait(POLL_INTERVAL):
            if stop.is_set() or time.monotonic() > deadline:
                sock = conn.sock
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    guard = threading.Thread(target=watchdog, name="ws-handshake-deadline", daemon=True)
    conn.settimeout(timeout)
    guard.start()
    try:
        _looked_up(url, timeout)
        conn.connect(url, header=dict(headers), suppress_origin=True, redirect_limit=0)
        if hello is not None:
            conn.send(hello)
    except (websocket.WebSocketException, OSError, ValueError):
        return False
    finally:
        done.set()
        guard.join()
    return not stop.is_set()


def _looked_up(url: str, timeout: float) -> None:
    """Raise OSError when the server's name does not resolve within TIMEOUT (the system's
    resolver takes no timeout, and the watchdog has no socket to shut while it waits). Not
    through a proxy, which looks the name up itself."""
    parts = urlsplit(url)
    if getproxies() or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    addresses_of(parts.hostname, port, timeout)


def _messages(conn: _Connection, stop: threading.Event, cap: int) -> Iterator[str | bytes]:
    """Each whole message as it arrives, until STOP or the end of the connection; then the
    connection is closed as the way it ended asks."""
    parts: list[bytes] = []
    opcode = 0  # of the message being assembled, 0 between messages
    status: int | None = websocket.STATUS_NORMAL
    polite = True  # stopped by us: wait (briefly) for the server's close
    conn.settimeout(POLL_INTERVAL)
    try:
        while not stop.is_set():
            conn.frames.budget = cap - sum(map(len, parts))
            try:
                frame = conn.recv_frame()
            except websocket.WebSocketTimeoutException:
                continue
            if frame.opcode in _DATA:
                if (frame.opcode == ABNF.OPCODE_CONT) != bool(opcode):
                    raise websocket.WebSocketProtocolException("fragments out of order")
                opcode = opcode or frame.opcode
                parts.append(frame.data)
                if not frame.fin:
                    continue
                data = b"".join(parts)
                parts.clear()
                kind, opcode = opcode, 0
                if kind == ABNF.OPCODE_TEXT:
                    try:
                        text = data.decode("utf-8")
                    except UnicodeDecodeError:
                        status, polite = websocket.STATUS_INVALID_PAYLOAD, False
                        return
                    yield text
                else:
                    yield data
            elif frame.opcode == ABNF.OPCODE_CLOSE:
                polite = False  # the server's close: answer it, and that is all
                return
            elif frame.opcode == ABNF.OPCODE_PING:
                conn.pong(frame.data)
    except _TooBig:
        status, polite = websocket.STATUS_MESSAGE_TOO_BIG, False
    except websocket.WebSocketProtocolException:
        status, polite = websocket.STATUS_PROTOCOL_ERROR, False
    except (websocket.WebSocketException, OSError, ValueError):
        status = None  # the connection is gone, or broken mid-frame: just drop it
    finally:
        with contextlib.suppress(websocket.WebSocketException, OSError, ValueError):
            if status is not None and polite:
                conn.close(status, timeout=CLOSE_WAIT)
            elif status is not None:
                conn.send_close(status)
        conn.shutdown()

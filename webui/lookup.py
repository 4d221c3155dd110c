"""Looking up a server's name, within a bound.

The system's resolver (getaddrinfo) takes no timeout: an unreachable DNS server, or an mDNS
name (gpu-box.local) whose machine is off, holds it for tens of seconds, before any socket
exists for a deadline to shut. A lookup runs on a thread of its own and is waited for as long
as connecting may take; one still running is shared by all who ask for the same name, so a
hung resolver ties up one thread per name, not one per call. Used by both transports: HTTP
(backend.py) and websockets (ws.py).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from urllib3.util.connection import allowed_gai_family

_lookups: dict[tuple[str, int], Future[list[Any]]] = {}
_lookups_lock = threading.Lock()


def _is_address(host: str) -> bool:
    """Whether HOST is an IP address (v6 with or without its brackets), not a name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def addresses_of(host: str, port: int, seconds: float) -> list[str]:
    """The addresses of HOST, in the resolver's order; socket.gaierror when it fails or takes
    longer than SECONDS."""
    if _is_address(host):
        return [host.strip("[]")]
    key = (host, port)
    with _lookups_lock:
        pending = _lookups.get(key)
        asked = pending is None
        if asked:
            pending = _lookups[key] = Future()
    if asked:
        # (A daemon thread: a lookup that hangs never holds up webui's exit.)
        threading.Thread(target=_look_up, args=(key, pending), daemon=True,
                         name=f"webui-lookup {host}").start()
    try:
        infos = pending.result(timeout=seconds)
    except FutureTimeout:
        raise socket.gaierror(socket.EAI_AGAIN,
                              f"looking up its name took over {seconds:g} s") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _look_up(key: tuple[str, int], pending: Future[list[Any]]) -> None:
    try:
        # urllib3's choice of address families (IPv6 only where the machine has it).
        pending.set_result(socket.getaddrinfo(*key, allowed_gai_family(), socket.SOCK_STREAM))
    except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
        pending.set_exception(exc)
    finally:
        with _lookups_lock:
            del _lookups[key]

"""webui.ws.listen: a job's websocket to a backend. Against the fake ComfyUI's /ws (real
messages in order, text and binary), and against a raw socket server that sends exact frames
(fragments, pings, a close, oversized and broken frames, a stalled or redirecting handshake)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from PIL import Image

from webui.ws import listen, websocket_url

from .backends.comfyui import create_comfyui_app
from .helpers import ServerThread, free_port, wait_for


def workflow(steps: int) -> dict[str, Any]:
    """A txt2img prompt the fake runs: the same graph as the bundled workflow."""
    text = {"clip": ["4", 1]}
    return {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 1, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
            "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple",
              "inputs": {"ckpt_name": "sd15-demo.safetensors"}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", **text}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", **text}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage",
              "inputs": {"filename_prefix": "webui", "images": ["8", 0]}},
    }


class Listener:
    """``listen`` on a thread of its own, recording what it hands over, in order: text as
    str, binary frames as bytes."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, **options: Any):
        self.stop = threading.Event()
        self.got: list[str | bytes] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(url, headers or {}, options),
                                       daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def _run(self, url: str, headers: dict[str, str], options: dict[str, Any]) -> None:
        try:
            listen(url, headers, self.stop, self.got.append, self.got.append, **options)
        except BaseException as e:  # a test asserts there is none
            self.error = e

    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(m) for m in list(self.got) if isinstance(m, str)]

    def wait_text(self, condition: Callable[[dict[str, Any]], bool],
                  what: str = "message") -> dict[str, Any]:
        return wait_for(lambda: next((m for m in self.texts() if condition(m)), None),
                        timeout=10, what=what)

    def ended(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def stop_and_time(self) -> float:
        """Set stop; the seconds until listen returned."""
        start = time.monotonic()
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()
        return time.monotonic() - start


@pytest.fixture
def comfy() -> Iterator[ServerThread]:
    with ServerThread(create_comfyui_app(polls_before_done=1, previews=True,
                                         preview_format="PNG")) as server:
        yield server


def sockets(server: ServerThread) -> dict[str, Any]:
    return server.server.app.config["COMFYUI"].sockets


# --- against the fake ComfyUI ---------------------------------------------------------------


def test_messages_and_preview_frames_arrive_in_order(comfy):
    job = Listener(f"{comfy.url}/ws?clientId=job-1")
    first = job.wait_text(lambda m: m["type"] == "status", "the status message")
    assert first["data"]["sid"] == "job-1"
    r = requests.post(f"{comfy.url}/prompt", timeout=5,
                      json={"prompt": workflow(steps=3), "client_id": "job-1"})
    prompt_id = r.json()["prompt_id"]
    while not requests.get(f"{comfy.url}/history/{prompt_id}", timeout=5).json():
        pass
    job.wait_text(lambda m: m["type"] == "executing" and m["data"]["node"] is None, "the end")
    assert job.stop_and_time() < 0.5 and job.error is None

    kinds = []
    for message in job.got:
        if isinstance(message, bytes):
            kinds.append("preview")
        else:
            decoded = json.loads(message)
            if decoded["type"] == "progress":
                kinds.append(f"progress {decoded['data']['value']}")
            elif decoded["type"] != "progress_state":
                kinds.append(decoded["type"])
    assert kinds == [
        "status", "status", "status", "execution_start", "execution_cached",
        *["executing"] * 5, "progress 1", "preview", "progress 2", "preview", "progress 3",
        "preview", "executing", "executing", "executed", "execution_success", "status",
        "executing"]
    progress = [m["data"] for m in job.texts() if m["type"] == "progress"]
    assert {p["prompt_id"] for p in progress} == {prompt_id} and progress[-1]["max"] == 3
    # A preview frame: event 1 (PREVIEW_IMAGE), format 2 (PNG), the image.
    frame = next(m for m in job.got if isinstance(m, bytes))
    assert struct.unpack(">II", frame[:8]) == (1, 2)
    assert Image.open(io.BytesIO(frame[8:])).size == (64, 64)
    # The socket is gone from the server once listen returned.
    wait_for(lambda: "job-1" not in sockets(comfy), timeout=5, what="the server's close")


def test_stop_ends_an_idle_connection_within_half_a_second(comfy):
    job = Listener(f"{comfy.url}/api/ws?clientId=idle")
    job.wait_text(lambda m: m["type"] == "status")
    assert "idle" in sockets(comfy)
    time.sleep(0.3)  # well into the read loop
    assert job.stop_and_time() < 0.5 and job.error is None
    wait_for(lambda: "idle" not in sockets(comfy), timeout=5, what="the server's close")


def test_hello_is_sent_once_connected(comfy):
    flags = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
    job = Listener(f"{comfy.url}/ws?clientId=flags", hello=json.dumps(flags))
    reply = job.wait_text(lambda m: m["type"] == "feature_flags", "the feature_flags reply")
    assert reply["data"]["supports_preview_metadata"] is True
    job.stop_and_time()


@pytest.mark.parametrize("path", ["/system_stats", "/no-such-page", "/interrupt"])
def test_a_refused_upgrade_returns_at_once(comfy, path):
    """An address that answers something else than 101 (200, 404, 405): listen returns
    without a message and without raising."""
    job = Listener(f"{comfy.url}{path}")
    assert job.ended(5) and job.error is None and job.got == []


def test_a_server_that_is_down_returns_at_once():
    job = Listener(f"http://127.0.0.1:{free_port()}/ws?clientId=x")
    assert job.ended(5) and job.error is None and job.got == []
    assert time.monotonic() - job.started < 2


def test_a_name_that_never_resolves_returns_within_the_connect_timeout(monkeypatch):
    """The system's resolver takes no timeout (a DNS server that does not answer, a .local
    machine that is off): stood in for by one that holds this name for 20 s."""
    real, release = socket.getaddrinfo, threading.Event()

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "comfy.hung.test":
            release.wait(20)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    try:
        job = Listener("http://comfy.hung.test:8188/ws?clientId=x", connect_timeout=1)
        assert job.ended(5) and job.error is None and job.got == []
        assert time.monotonic() - job.started < 2
    finally:
        release.set()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/ws", "not a url", "http:///ws", ""])
def test_a_url_it_cannot_use_returns_at_once(url):
    job = Listener(url)
    assert job.ended(5) and job.error is None


def test_a_message_over_the_cap_ends_the_connection():
    """256 px PNG previews are well over a 4 KB cap, the text messages well under it: the
    first preview frame ends the connection, without stop, after the progress message before
    it; the server's socket is closed."""
    app = create_comfyui_app(polls_before_done=1, previews=True, preview_format="PNG",
                             preview_size=256)
    with ServerThread(app) as server:
        job = Listener(f"{server.url}/ws?clientId=capped", max_message=4096)
        job.wait_text(lambda m: m["type"] == "status")
        r = requests.post(f"{server.url}/prompt", timeout=5,
                          json={"prompt": workflow(steps=3), "client_id": "capped"})
        requests.get(f"{server.url}/history/{r.json()['prompt_id']}", timeout=5)
        assert job.ended(5) and job.error is None
        assert not any(isinstance(m, bytes) for m in job.got)
        last = job.texts()[-1]
        assert (last["type"], last["data"]["value"]) == ("progress", 1)
        wait_for(lambda: "capped" not in sockets(server), timeout=5, what="the server's close")


def test_a_callbacks_exception_comes_out_after_the_connection_is_closed(comfy):
    stop = threading.Event()

    def fail(text: str) -> None:
        raise RuntimeError("callback bug")

    with pytest.raises(RuntimeError, match="callback bug"):
        listen(f"{comfy.url}/ws?clientId=buggy", {}, stop, fail, lambda b: None)
    wait_for(lambda: "buggy" not in sockets(comfy), timeout=5, what="the server's close")


def test_websocket_url():
    assert websocket_url("http://127.0.0.1:8188/ws?clientId=a") == \
        "ws://127.0.0.1:8188/ws?clientId=a"
    assert websocket_url("HTTPS://comfy.example/prefix/ws") == "wss://comfy.example/prefix/ws"
    assert websocket_url("http://[::1]:8188") == "ws://[::1]:8188/"
    assert websocket_url("wss://h/ws#frag") == "wss://h/ws"
    for bad in ("ftp://h/ws", "http://", "http://[zz]/ws", "http://h:abc/ws", "http://h:0/ws",
                "http://h:99999/ws", "/ws"):
        assert websocket_url(bad) is None, bad


# --- against a raw server: exact frames -----------------------------------------------------


GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


def frame(opcode: int, payload: bytes = b"", fin: bool = True,
          claimed: int | None = None) -> bytes:
    """A server frame (unmasked); CLAIMED: the length its header states, if not the payload's."""
    length = len(payload) if claimed is None else claimed
    head = bytes([(0x80 if fin else 0) | opcode])
    if length < 126:
        head += bytes([length])
    elif length < 1 << 16:
        head += bytes([126]) + struct.pack(">H", length)
    else:
        head += bytes([127]) + struct.pack(">Q", length)
    return head + payload


def read_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def client_frame(conn: socket.socket) -> tuple[int, bytes]:
    """One frame from the client (masked, as RFC 6455 demands): (opcode, payload)."""
    b1, b2 = read_exact(conn, 2)
    assert b2 & 0x80, "client frames are masked"
    length = b2 & 0x7F
    if length == 126:
        (length,) = struct.unpack(">H", read_exact(conn, 2))
    elif length == 127:
        (length,) = struct.unpack(">Q", read_exact(conn, 8))
    mask = read_exact(conn, 4)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(read_exact(conn, length)))
    return b1 & 0x0F, payload


class RawServer:
    """One connection on a raw socket of 127.0.0.1: it reads the handshake request, answers
    it (101, unless ``answer`` gives other bytes, or None for no answer at all), then runs
    SCRIPT(conn). ``request``: the request's header lines; ``replies``: the client's frames
    after the script, read until its close frame or the end."""

    def __init__(self, script: Callable[[socket.socket], None] = lambda conn: None,
                 answer: Callable[[str], bytes | None] | None = None):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/ws"
        self.script, self.answer = script, answer
        self.request: list[str] = []
        self.replies: list[tuple[int, bytes]] = []
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(5)
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            self.request = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
            key = next(line.split(":", 1)[1].strip() for line in self.request
                       if line.lower().startswith("sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            response = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode()
                        + b"\r\n\r\n")
            if self.answer is not None:
                response = self.answer(accept)
            if response is None:
                self.done.wait(10)  # never answers
                return
            conn.sendall(response)
            self.script(conn)
            while True:
                opcode, payload = client_frame(conn)
                self.replies.append((opcode, payload))
                if opcode == 0x8:
                    break
        except (OSError, ConnectionError, StopIteration):
            pass
        finally:
            self.done.set()
            conn.close()
            self.listener.close()

    def close_status(self) -> int | None:
        """The status code of the client's close frame, once the server is done."""
        assert self.done.wait(5)
        closes = [p for op, p in self.replies if op == 0x8]
        return struct.unpack(">H", closes[0][:2])[0] if closes else None


def test_fragments_make_one_message_and_pings_are_answered():
    def script(conn: socket.socket) -> None:
        conn.sendall(frame(0x1, b'{"type": "pro', fin=False) + frame(0x9, b"are you there")
                     + frame(0x0, b'gress", ', fin=False) + frame(0x0, b'"data": {}}')
                     + frame(0x2, b"\x00\x00\x00\x01\x00\x00\x00\x02png"))

    server = RawServer(script)
    job = Listener(server.url, {"Authorization": "Bearer t0ken"})
    wait_for(lambda: len(job.got) == 2, timeout=5, what="two messages")
    assert job.got == ['{"type": "progress", "data": {}}', b"\x00\x00\x00\x01\x00\x00\x00\x02png"]
    job.stop_and_time()
    assert server.close_status() == 1000
    assert (0xA, b"are you there") in server.replies  # the pong, with the ping's payload
    assert "Authorization: Bearer t0ken" in server.request
    assert not any(line.lower().startswith("origin:") for line in server.request)


def test_the_servers_close_ends_it_and_is_answered():
    server = RawServer(lambda conn: conn.sendall(frame(0x1, b"bye") + frame(0x8, b"\x03\xe8")))
    job = Listener(server.url)
    assert job.ended(5) and job.error is None and job.got == ["bye"]
    assert server.close_status() == 1000


def test_a_frame_over_the_cap_is_refused_before_its_payload():
    """The header claims a gigabyte and nothing follows: listen must not wait for it."""
    server = RawServer(lambda conn: conn.sendall(frame(0x2, b"xx", claimed=1 << 30)))
    job = Listener(server.url, max_message=1000)
    assert job.ended(2) and job.error is None and job.got == []
    assert server.close_status() == 1009


def test_fragments_over_the_cap_together_end_the_connection():
    server = RawServer(lambda conn: conn.sendall(frame(0x2, b"a" * 600, fin=False)
                                                 + frame(0x0, b"b" * 600)))
    job = Listener(server.url, max_message=1000)
    assert job.ended(2) and job.error is None and job.got == []
    assert server.close_status() == 1009


@pytest.mark.parametrize(("frames", "status"), [
    (frame(0x1, b"\xff\xfe not utf-8"), 1007),
    (frame(0x0, b"a continuation of nothing"), 1002),
    (frame(0x9, b"p", claimed=300), 1002),  # a control frame over 125 bytes
    (frame(0x3, b"reserved opcode"), 1002),
])
def test_a_broken_frame_ends_the_connection(frames, status):
    server = RawServer(lambda conn: conn.sendall(frames))
    job = Listener(server.url)
    assert job.ended(2) and job.error is None and job.got == []
    assert server.close_status() == status


def test_a_dropped_connection_ends_it():
    """The server goes away in the middle of a frame."""
    def script(conn: socket.socket) -> None:
        conn.sendall(frame(0x1, b"one") + frame(0x1, b"tw", claimed=3))
        conn.shutdown(socket.SHUT_WR)

    server = RawServer(script)
    job = Listener(server.url)
    assert job.ended(5) and job.error is None and job.got == ["one"]


def test_a_stalled_handshake_ends_at_the_connect_timeout_or_at_stop():
    server = RawServer(answer=lambda accept: None)
    job = Listener(server.url, connect_timeout=0.5)
    assert job.ended(3) and job.error is None
    assert 0.4 < time.monotonic() - job.started < 1.5

    server = RawServer(answer=lambda accept: None)
    job = Listener(server.url, connect_timeout=30)
    time.sleep(0.3)
    assert job.stop_and_time() < 0.5 and job.error is None
    server.done.set()


def test_trickled_response_headers_end_at_the_connect_timeout():
    """A byte every 50 ms never trips a read's timeout: the handshake's deadline ends it."""
    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"X-Pad: ")
        for _ in range(100):
            conn.sendall(b"a")
            time.sleep(0.05)

    server = RawServer(trickle, answer=lambda accept: b"HTTP/1.1 101 Switching Protocols\r\n")
    job = Listener(server.url, connect_timeout=0.5)
    assert job.ended(3) and job.error is None and job.got == []
    assert time.monotonic() - job.started < 1.5


def test_a_redirect_is_not_followed(comfy):
    location = f"ws://127.0.0.1:{comfy.url.rsplit(':', 1)[1]}/ws?clientId=redirected"
    server = RawServer(answer=lambda accept: (f"HTTP/1.1 302 Found\r\nLocation: {location}\r\n"
                                              "Content-Length: 0\r\n\r\n").encode())
    job = Listener(server.url)
    assert job.ended(5) and job.error is None and job.got == []
    assert not [r for r in comfy.server.app.config["REQUESTS"] if r["path"] == "/ws"]

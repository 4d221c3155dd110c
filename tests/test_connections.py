"""Fewer and cheaper calls to the backends: a GET reuses the connection kept open to its
instance (a POST never does), safely from many threads and still within its deadline; a list
several selects ask for at the same moment is fetched once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import a1111_response, wait_for
from webui import backend, choices, create_app
from webui.backend import BackendError, exchange


class Counting(ThreadingHTTPServer):
    """A keep-alive HTTP/1.1 server that records each request with the client port it came
    from (one port: one connection). ``/echo/<n>`` answers n; ``/trickle`` sends a byte every
    0.1 s for 30 s; ``/gate/...`` waits for ``gate`` first; anything else answers from
    ``bodies`` (path -> JSON text)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.trickled = 0  # bytes of /trickle written
        self.bodies: dict[str, str] = {}
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # connections stay open between requests

    def log_message(self, *args: object) -> None:
        pass

    def answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server: Counting = self.server  # type: ignore[assignment]
        with server.lock:
            server.seen.append((self.command, self.path, self.client_address[1]))
        if self.path.startswith("/echo/"):
            self.answer(self.path.removeprefix("/echo/").encode())
        elif self.path == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "300")
            self.end_headers()
            try:
                for _ in range(300):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    server.trickled += 1
                    time.sleep(0.1)
            except OSError:
                pass
        else:
            if self.path.startswith("/gate/"):
                server.gate.wait(30)
            self.answer(server.bodies.get(self.path.removeprefix("/gate"), "[]").encode())

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()


@pytest.fixture
def server() -> Iterator[Counting]:
    httpd = Counting()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd
    backend.close_kept()
    httpd.shutdown()
    httpd.server_close()


def get(url: str, seconds: float = 10) -> bytes:
    return exchange("GET", url, seconds=seconds, max_bytes=1024 * 1024).content


def test_gets_reuse_one_connection_and_posts_never_do(server):
    for n in range(3):
        assert get(f"{server.url}/echo/{n}") == str(n).encode()
    for n in range(2):
        answer = exchange("POST", f"{server.url}/echo/p{n}", seconds=10, max_bytes=1024,
                          json={"prompt": "x"})
        assert answer.content == f"p{n}".encode()
    ports = [port for _method, _path, port in server.seen]
    gets, posts = ports[:3], ports[3:]
    assert len(set(gets)) == 1, server.seen  # one connection for the three GETs
    assert len(set(posts)) == 2 and not set(posts) & set(gets), server.seen


def test_kept_connections_serve_many_threads_each_its_own_answer(server):
    errors: list[str] = []

    def worker(t: int) -> None:
        for i in range(10):
            expected = f"{t}-{i}"
            answer = get(f"{server.url}/echo/{expected}")
            if answer != expected.encode():
                errors.append(f"{expected} got {answer!r}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(server.seen) == 80
    # Connections were reused: far fewer than one per request.
    assert len({port for *_x, port in server.seen}) <= 16


def test_a_kept_connection_is_still_cut_off_at_the_deadline(server):
    assert get(f"{server.url}/echo/first") == b"first"  # the connection is kept now
    with pytest.raises(backend.TooSlow):
        get(f"{server.url}/trickle", seconds=1)
    # Cut off while the server was still sending (the answer needs all 300 bytes: without
    # the deadline it would have waited for them), on the kept connection; the next call
    # opens a new one and works.
    assert 0 < server.trickled < 300
    assert server.seen[0][2] == server.seen[1][2]
    assert get(f"{server.url}/echo/after") == b"after"


def test_a_call_through_a_service_reuses_the_connection(server, make_settings):
    app = create_app(make_settings(url_overrides={"a1111": server.url}))
    service = app.extensions["webui"].folders.catalog().get("a1111")
    endpoint = service.definition.endpoints["getSamplers"]
    server.bodies[endpoint.path] = '[{"name": "Euler a", "aliases": [], "options": {}}]'
    for _ in range(2):
        assert backend.call(service, endpoint).json()[0]["name"] == "Euler a"
    assert len({port for *_x, port in server.seen}) == 1


def test_a_list_asked_for_by_several_selects_at_once_is_fetched_once(server, make_settings,
                                                                      monkeypatch):
    """The checkpoint and the refiner both list /sdapi/v1/sd-models: loading the page asks for
    both at the same moment; the backend is asked once."""
    waiting = []

    class Flight(choices._Flight):
        def __init__(self) -> None:
            super().__init__()
            wait = self.done.wait

            def counted(timeout: float | None = None) -> bool:
                waiting.append(1)
                return wait(timeout)

            self.done.wait = counted  # type: ignore[method-assign]

    monkeypatch.setattr(choices, "_Flight", Flight)
    app = create_app(make_settings(url_overrides={"a1111": f"{server.url}/gate"}))
    # What a real A1111 1.10.1 answers (tests/fixtures/a1111/responses).
    server.bodies["/sdapi/v1/sd-models"] = json.dumps(a1111_response("sd-models"))
    server.bodies["/sdapi/v1/options"] = json.dumps(a1111_response("options"))
    answers: dict[str, str] = {}

    def load(key: str) -> None:
        client = app.test_client()
        answers[key] = client.get(f"/services/a1111/txt2img/options/{key}").get_data(
            as_text=True)

    first = threading.Thread(target=load, args=("refiner_checkpoint",))
    first.start()
    wait_for(lambda: any(p == "/gate/sdapi/v1/sd-models" for _m, p, _c in server.seen),
             what="the first request at the backend")
    second = threading.Thread(target=load, args=("sd_model_checkpoint",))
    second.start()
    wait_for(lambda: waiting, what="the second select waiting for the same answer")
    server.gate.set()
    first.join(30)
    second.join(30)
    models = [p for _m, p, _c in server.seen if p.endswith("/sd-models")]
    assert models == ["/gate/sdapi/v1/sd-models"], server.seen
    for key in ("refiner_checkpoint", "sd_model_checkpoint"):
        assert '<option value="random-sd15.safetensors [1c2e8cbb84]"' in answers[key], (
            answers[key])


def test_cached_only_never_calls_the_backend(make_settings, monkeypatch):
    """What a page draws from the cache: a list not there is "not cached", never fetched."""
    app = create_app(make_settings(url_overrides={"a1111": "http://127.0.0.1:9"}))
    service = app.extensions["webui"].folders.catalog().get("a1111")
    cache = app.extensions["webui"].options
    calls = []
    real = choices.call

    def counting_call(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(choices, "call", counting_call)
    with pytest.raises(BackendError):
        cache.fetch(service, "getSamplers")
    assert calls == [1]
    with pytest.raises(choices.NotCached):
        cache.fetch(service, "getSamplers", cached_only=True)
    assert calls == [1]  # cached_only never calls the backend


def test_an_old_answer_is_drawn_but_not_fresh(server, make_settings):
    """cached_only hands out the last answer however old (the page draws it and asks again);
    an ordinary fetch of an old answer asks the backend."""
    app = create_app(make_settings(url_overrides={"a1111": server.url}, options_ttl=0.0))
    service = app.extensions["webui"].folders.catalog().get("a1111")
    cache = app.extensions["webui"].options
    path = service.definition.endpoints["getSamplers"].path
    server.bodies[path] = '[{"name": "Euler a"}]'
    assert not cache.fresh(service, {"getSamplers"})
    first = cache.fetch(service, "getSamplers")
    assert cache.fetch(service, "getSamplers", cached_only=True) is first
    assert not cache.fresh(service, {"getSamplers"})  # a TTL of 0: old at once
    assert len(server.seen) == 1
    server.bodies[path] = '[{"name": "DPM++ 2M"}]'
    assert cache.fetch(service, "getSamplers") == [{"name": "DPM++ 2M"}]
    assert len(server.seen) == 2

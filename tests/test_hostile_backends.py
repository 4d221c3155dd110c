"""Slow and hostile backends (tests/backends/hostile.py): every call to a backend has a
wall-clock deadline and a size cap, a service's status never ties up webui's threads, and
result URLs are fetched only from the service's own address or the hosts its definition
lists."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
import requests
from waitress.server import create_server

from webui import backend, create_app, pipeline, results
from webui.backend import BackendError, call, check_health, read_json
from webui.format import load_data, load_file
from webui.images import ImageStore
from webui.service import Service

from .backends.hostile import HostileBackend, definition
from .helpers import HX, submit, wait_for


@pytest.fixture
def hostile():
    with HostileBackend() as server:
        yield server


@pytest.fixture
def other():
    """Another server on another port: the "internal" address a result URL points at."""
    with HostileBackend() as server:
        yield server


@pytest.fixture
def store(tmp_path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def service_of(data: dict[str, Any]) -> Service:
    return Service(id=data["id"], name=data["name"], definition=load_data(data, "x"),
                   base_url=data["url"])


def within(seconds: float, fn: Callable[[], Any]) -> tuple[Any, float]:
    """(what FN returned or raised, how long it took); the test fails if FN takes longer than
    SECONDS (it is left running in a daemon thread rather than hanging the test run)."""
    out: dict[str, Any] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["value"] = exc
        out["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert "seconds" in out, f"still running after {seconds} s"
    return out["value"], out["seconds"]


# --- A wall-clock deadline on every call ----------------------------------------------------


def test_a_trickling_health_check_gives_up_at_its_deadline(hostile):
    """One byte every half second defeats a per-read timeout; the endpoint's timeout is a
    total now."""
    service = service_of(definition("slow", hostile.url,
                                    health={"path": "/trickle", "query": {"every": 0.5},
                                            "timeout": 2}))
    (state, message), seconds = within(10, lambda: check_health(service))
    assert state == "offline"
    assert "Hostile slow answered too slowly: gave up after 2 s" in message
    assert 1.9 < seconds < 3.5


def test_a_trickled_status_line_is_bounded_too(hostile):
    service = service_of(definition("slow", hostile.url,
                                    health={"path": "/trickle-head", "query": {"every": 0.5},
                                            "timeout": 2}))
    (state, message), seconds = within(10, lambda: check_health(service))
    assert state == "offline" and "did not answer within 2 s" in message
    assert seconds < 3.5


def test_a_trickling_generation_ends_at_its_timeout(make_settings, hostile):
    """A job with timeout: 2 ends after about 2 s (it ran without end before), and says so."""
    data = definition("slow", hostile.url)
    data["capabilities"][1]["endpoints"]["txt2img"].update(
        path="/trickle", query={"every": 0.5}, timeout=2)
    settings = make_settings()
    (settings.user_definitions).mkdir(parents=True)
    (settings.user_definitions / "slow.json").write_text(json.dumps(data))
    client = create_app(settings).test_client()
    start = time.monotonic()
    r = submit(client, "/services/slow/txt2img/generate", data={"prompt": "x"}, timeout=15)
    assert r.status_code == 502
    assert "answered too slowly: gave up after 2 s" in r.job.error
    assert "was not sent again" in r.job.error
    assert time.monotonic() - start < 8


def test_a_poll_step_is_bound_by_its_own_timeout(hostile, store):
    data = definition("slow", hostile.url)
    data["capabilities"][1]["endpoints"]["txt2img"] = {
        "steps": [{"name": "submit", "method": "POST", "path": "/submit"},
                  {"name": "watch", "path": "/trickle", "query": {"every": 0.5}, "timeout": 1,
                   "poll": {"until": "done", "every": 0.1, "timeout": 60}}],
        "result": {"images": "images"}}
    data["capabilities"][1]["parameters"]["txt2img"] = [
        {"key": "prompt", "type": "textarea", "target": "submit:prompt"}]
    service = service_of(data)
    mode = service.definition.modes["txt2img"]
    values = pipeline.prepare_values(mode, {"prompt": "x"})
    error, seconds = within(10, lambda: pipeline.generate(service, mode, values, store))
    assert isinstance(error, BackendError) and "gave up after 1 s" in error.message
    assert seconds < 3


# --- The status of a service: bounded, shared, briefly cached -------------------------------


@pytest.fixture
def served(make_settings):
    """webui under waitress with 16 threads, as `webui serve` runs it: (base URL, settings)."""
    settings = make_settings()
    settings.user_definitions.mkdir(parents=True)
    servers = []

    def start() -> str:
        app = create_app(settings)
        server = create_server(app, host="127.0.0.1", port=0, threads=16)
        threading.Thread(target=server.run, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.effective_port}"

    yield start, settings
    for server in servers:
        server.close()


def test_sixteen_slow_services_leave_webui_answering(served, hostile):
    """16 services whose health check trickles, each asked twice at once (two tabs): every
    status answers within a bounded time, a static file is served meanwhile, and each
    instance is checked once, not once per request."""
    start, settings = served
    for i in range(16):
        data = definition(f"slow{i}", hostile.url, health={
            "path": "/trickle", "query": {"every": 0.5}, "timeout": 3})
        (settings.user_definitions / f"slow{i}.json").write_text(json.dumps(data))
    url = start()
    answers: dict[tuple[int, int], tuple[float, int, str]] = {}

    def status(i: int, tab: int) -> None:
        began = time.monotonic()
        r = requests.get(f"{url}/services/slow{i}/status", timeout=60)
        answers[i, tab] = (time.monotonic() - began, r.status_code, r.text)

    threads = [threading.Thread(target=status, args=(i, tab), daemon=True)
               for i in range(16) for tab in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    began = time.monotonic()
    css = requests.get(f"{url}/static/style.css", timeout=60)
    # Each status request waits a second at most: the file waits no longer than that.
    assert css.status_code == 200 and time.monotonic() - began < 3
    for thread in threads:
        thread.join(30)
    assert len(answers) == 32
    assert max(seconds for seconds, _, _ in answers.values()) < 6  # ~2 s: two rounds of 1 s
    assert all(code == 200 for _, code, _ in answers.values())
    assert hostile.count("/trickle") == 16  # one check per instance, shared by both tabs
    # The checks end at their deadline, and the next status request shows how.
    def shown() -> str | None:
        text = requests.get(f"{url}/services/slow0/status", timeout=10).text
        return text if "answered too slowly" in text else None

    html = wait_for(shown, timeout=15, what="the result of the check")
    assert "gave up after 3 s" in html and "offline" in html


def test_a_status_is_cached_briefly(make_settings, hostile):
    settings = make_settings()
    settings.user_definitions.mkdir(parents=True)
    (settings.user_definitions / "quick.json").write_text(
        json.dumps(definition("quick", hostile.url)))
    client = create_app(settings).test_client()
    for _ in range(3):
        html = client.get("/services/quick/status", headers=HX).get_data(as_text=True)
        assert 'class="status online"' in html
    assert hostile.count("/health") == 1


def test_many_tabs_share_one_request_for_a_slow_list(hostile):
    """Eight selects (tabs) asking for one endpoint of a slow backend: one request, whose
    answer (here: its failure) they all get."""
    from webui.choices import OptionsCache

    service = service_of(definition("slow", hostile.url, getModels={
        "path": "/trickle", "query": {"every": 0.5}, "timeout": 1}))
    cache = OptionsCache()
    errors: list[str] = []

    def ask() -> None:
        try:
            cache.fetch(service, "getModels")
        except BackendError as exc:
            errors.append(exc.message)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(errors) == 8 and all("gave up after 1 s" in e for e in errors)
    assert hostile.count("/trickle") == 1


# --- A cap on the size of an answer ---------------------------------------------------------


def test_an_endless_body_is_cut_at_the_cap(hostile):
    service = service_of(definition("big", hostile.url, getModels={"path": "/endless"}))
    error, seconds = within(20, lambda: read_json(
        service, call(service, service.definition.endpoints["getModels"])))
    assert isinstance(error, BackendError), error
    assert error.message == ("Hostile big answered more than 20 MB (the limit of this endpoint: "
                             "maxResponseMB in its definition).")
    assert seconds < 5


def test_a_body_over_the_cap_is_refused(hostile):
    """A body that ends, but only after the cap (what the endless one did before, with 2.8 GB
    in memory)."""
    service = service_of(definition("big", hostile.url,
                                    getModels={"path": "/endless", "query": {"mb": 40}}))
    with pytest.raises(BackendError, match="answered more than 20 MB"):
        call(service, service.definition.endpoints["getModels"])


def test_the_cap_is_set_per_endpoint(hostile):
    service = service_of(definition("big", hostile.url, getModels={
        "path": "/endless", "query": {"mb": 3}, "maxResponseMB": 1}))
    with pytest.raises(BackendError, match="answered more than 1 MB"):
        call(service, service.definition.endpoints["getModels"])


def test_a_declared_length_over_the_cap_is_refused_at_once(hostile):
    service = service_of(definition("big", hostile.url, getModels={
        "path": "/declared", "query": {"mb": 500}}))
    error, seconds = within(10, lambda: call(service, service.definition.endpoints["getModels"]))
    assert isinstance(error, BackendError) and "answered more than 20 MB" in error.message
    assert seconds < 1


def test_generation_answers_may_be_larger(hostile, store):
    """Generation endpoints (and their steps) allow 200 MB by default: a 30 MB answer is read
    (and then found not to be JSON), not cut."""
    data = definition("big", hostile.url)
    data["capabilities"][1]["endpoints"]["txt2img"].update(path="/endless", query={"mb": 30})
    service = service_of(data)
    mode = service.definition.modes["txt2img"]
    with pytest.raises(BackendError) as info:
        pipeline.generate(service, mode, pipeline.prepare_values(mode, {"prompt": "x"}), store)
    assert "not JSON" in info.value.message and "more than" not in info.value.message


# --- Result URLs: only from the service's own address (or listed hosts) --------------------


def url_service(hostile, target: str, auth: dict | None = None, **result: Any) -> Service:
    """A service whose generation answers OpenAI-style with the image URL TARGET."""
    data = definition("urls", hostile.url)
    if auth:
        data["authentication"] = auth
    data["capabilities"][1]["endpoints"]["txt2img"].update(
        path="/result", query={"url": target})
    data["capabilities"][1]["endpoints"]["txt2img"]["result"].update(result)
    return service_of(data)


def generate(service: Service, store: ImageStore) -> Any:
    mode = service.definition.modes["txt2img"]
    return pipeline.generate(service, mode, pipeline.prepare_values(mode, {"prompt": "x"}),
                             store)


@pytest.mark.parametrize("target", [
    "{other}/internal/admin",                          # another port of the same host
    "//127.0.0.1:{other_port}/internal/admin",         # scheme-relative
    "{hostile}/redirect?to={other_quoted}",            # its own address, redirecting away
    "file:///etc/passwd",
    "ftp://127.0.0.1:{other_port}/x",
])
def test_a_result_url_elsewhere_is_refused(hostile, other, store, target):
    target = target.format(other=other.url, other_port=other.port, hostile=hostile.url,
                           other_quoted=quote(f"{other.url}/internal/admin", safe=""))
    with pytest.raises(BackendError) as info:
        generate(url_service(hostile, target), store)
    assert other.requests == []
    message = info.value.message
    assert "refused to fetch" in message and "(not the service's own address" in message
    assert "/internal/admin" in message or "passwd" in message or "ftp:" in message


def test_what_a_result_url_fetched_is_not_told(hostile, store):
    """An answer that is no image: the error says so without its size or its content."""
    with pytest.raises(BackendError) as info:
        generate(url_service(hostile, "/garbage"), store)
    message = info.value.message
    assert "is not an image" in message
    assert "bytes" not in message and "admin" not in message and "1234" not in message


def test_a_result_url_on_its_own_address_is_fetched(hostile, store):
    generation = generate(url_service(hostile, "/redirect?to=/image"), store)
    assert len(generation.images) == 1
    assert hostile.count("/image") == 1


def test_listed_hosts_may_serve_results_without_the_credentials(hostile, other, store,
                                                                  monkeypatch):
    monkeypatch.setenv("WEBUI_URLS_TOKEN", "tok-for-urls-only")
    service = url_service(hostile, f"{other.url}/image", fetchFrom=[other.url],
                          auth={"type": "bearer", "tokenEnv": "WEBUI_URLS_TOKEN"})
    generation = generate(service, store)
    assert len(generation.images) == 1 and other.count("/image") == 1
    assert hostile.saw("Bearer tok-for-urls-only") and not other.saw("tok-for-urls-only")


def test_too_many_redirects_end(hostile, store):
    with pytest.raises(BackendError, match="redirected too many times"):
        generate(url_service(hostile, "/loop"), store)


@pytest.mark.parametrize("url, allowed", [
    ("https://oaidalleapiprodscus.blob.core.windows.net/private/org-x/img-y.png?st=1&sig=z",
     True),
    ("http://oaidalleapiprodscus.blob.core.windows.net/private/x.png", False),
    ("https://oaidalleapiprodscus.blob.core.windows.net:8443/x.png", False),
    ("https://api.openai.com/v1/files/x", True),           # its own address
    ("https://evil.example/x.png", False),
    ("http://169.254.169.254/latest/meta-data/", False),
])
def test_openai_results_come_from_openai_only(url, allowed):
    from webui.catalog import BUNDLED_DIR

    definition_ = load_file(BUNDLED_DIR / "openai.yaml")
    service = Service(id="openai", name="OpenAI", definition=definition_,
                      base_url=definition_.model.url)
    result = definition_.modes["txt2img"].endpoint.result
    assert results.may_fetch(service, result, url) == allowed



# --- Names that take forever to look up ----------------------------------------------------
# getaddrinfo, the system's resolver, takes no timeout: a DNS server that does not answer, or
# an mDNS name (gpu-box.local) whose machine is off, holds it for tens of seconds. Stood in
# for by a resolver that holds the names below until the test lets go of them.


class Resolver:
    """socket.getaddrinfo, but a name ending in ".hung.test" waits until ``release`` (at most
    20 s) and then does not resolve, and a name in ``names`` resolves to its addresses in
    order. Counts the lookups of each name. (Each test uses names of its own: a lookup one
    leaves hanging would be shared by the next.)"""

    def __init__(self, real: Callable[..., Any]):
        self.real, self.release, self.asked = real, threading.Event(), {}
        self.names: dict[str, list[str]] = {}

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.asked[name] = self.asked.get(name, 0) + 1
        if name.endswith(".hung.test"):
            self.release.wait(20)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if name in self.names:
            return [info for address in self.names[name]
                    for info in self.real(address, port, *args, **kwargs)]
        return self.real(host, port, *args, **kwargs)


@pytest.fixture
def resolver(monkeypatch):
    fake = Resolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield fake
    fake.release.set()


def test_a_name_that_never_resolves_is_given_up_like_a_connection(resolver):
    service = service_of(definition("dns", "http://gpu-box.hung.test:7860",
                                    health={"path": "/health", "timeout": 2}))
    (state, message), seconds = within(10, lambda: check_health(service))
    assert state == "offline"
    assert message == ("Could not connect to Hostile dns at http://gpu-box.hung.test:7860: "
                       "looking up its name took over 2 s. Is it running?")
    assert 1.9 < seconds < 3


def test_a_job_on_a_name_that_never_resolves_fails_clearly_and_soon(make_settings, resolver):
    """Generate on a service at such a name: the job fails within its health check's bound,
    saying why, rather than waiting on the resolver; nothing was sent."""
    data = definition("dns", "http://job-box.hung.test:7860", health={"path": "/health",
                                                                      "timeout": 2})
    settings = make_settings()
    settings.user_definitions.mkdir(parents=True)
    (settings.user_definitions / "dns.json").write_text(json.dumps(data))
    client = create_app(settings).test_client()
    start = time.monotonic()
    r = submit(client, "/services/dns/txt2img/generate", data={"prompt": "x"}, timeout=15)
    assert r.status_code == 502
    assert "looking up its name took over 2 s" in r.job.error, r.job.error
    assert time.monotonic() - start < 6


def test_callers_waiting_on_one_name_share_its_lookup(resolver):
    """A hung resolver ties up one thread per name, not one per call: twelve status checks of
    one service at once ask the resolver once."""
    service = service_of(definition("dns", "http://tabs-box.hung.test:7860",
                                    health={"path": "/health", "timeout": 1}))
    answers: list[tuple[str, str]] = []
    checks = [threading.Thread(target=lambda: answers.append(check_health(service)))
              for _ in range(12)]
    for check in checks:
        check.start()
    for check in checks:
        check.join(5)
    assert [state for state, _ in answers] == ["offline"] * 12
    assert resolver.asked["tabs-box.hung.test"] == 1


def test_a_name_with_several_addresses_is_tried_at_each(hostile, resolver):
    """As urllib3 does: the first address refuses (127.0.0.2: nothing listens there), the
    next one answers. The server is still asked by the name, not the address."""
    resolver.names["gpu-box.test"] = ["127.0.0.2", "127.0.0.1"]
    service = service_of(definition("dns", f"http://gpu-box.test:{hostile.port}"))
    assert read_json(service, call(service, service.definition.endpoints["getModels"])) == {
        "ok": True}
    assert [r.headers.get("Host") for r in hostile.requests] == [f"gpu-box.test:{hostile.port}"]

# --- Redirects of the service's own calls ----------------------------------------------------


def test_a_get_is_not_redirected_to_another_address(hostile, other, monkeypatch):
    """Header authentication is not one requests strips on a redirect: a GET follows only
    redirects within the service's own address."""
    monkeypatch.setenv("WEBUI_HOPS_TOKEN", "key-for-hops-only")
    data = definition("hops", hostile.url, getModels={
        "path": "/redirect", "query": {"to": f"{other.url}/models"}})
    data["authentication"] = {"type": "header", "header": "x-api-key",
                              "tokenEnv": "WEBUI_HOPS_TOKEN"}
    service = service_of(data)
    with pytest.raises(BackendError, match="redirected to another address"):
        call(service, service.definition.endpoints["getModels"])
    assert other.requests == [] and hostile.saw("key-for-hops-only")


def test_a_get_follows_redirects_on_its_own_address(hostile):
    service = service_of(definition("hops", hostile.url, getModels={
        "path": "/redirect", "query": {"to": "/models"}}))
    assert read_json(service, call(service, service.definition.endpoints["getModels"])) == {
        "ok": True}


def test_no_other_module_calls_requests_itself():
    """Every request goes through backend.py (each other caller would need its own deadline,
    cap and redirect rule)."""
    from pathlib import Path

    package = Path(backend.__file__).parent
    callers = sorted(p.name for p in package.rglob("*.py") if p.name != "backend.py" and any(
        f"requests.{verb}(" in p.read_text() for verb in ("get", "post", "request", "Session")))
    assert callers == []

"""Shared fixtures: the real A1111 contract material, app factories and real HTTP servers."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from webui import create_app
from webui.catalog import ExtraService
from webui.config import Settings

from .backends.a1111_variants import create_forge_app, create_sdnext_app
from .backends.comfyui import create_comfyui_app
from .backends.openai_images import create_openai_app
from .backends.stability import create_stability_app

FIXTURES = Path(__file__).parent / "fixtures"
HX = {"HX-Request": "true"}  # what htmx sends with its requests
A1111 = FIXTURES / "a1111"


def a1111_response(name: str) -> Any:
    """A body a real A1111 1.10.1 returned (tests/fixtures/a1111/responses/NAME.json)."""
    return json.loads((A1111 / "responses" / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def openapi() -> dict[str, Any]:
    return json.loads((A1111 / "openapi.json").read_text())


class ServerThread:
    """A WSGI app on a real port of 127.0.0.1, in a thread."""

    def __init__(self, app: Any):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval: stopping the server then takes milliseconds, not 0.5 s.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def make_settings(tmp_path: Path):
    def make(**kwargs: Any) -> Settings:
        return Settings(data_dir=tmp_path / "data", **kwargs)

    return make


@pytest.fixture
def app(make_settings):
    """The app with the bundled definitions; the a1111 service points at nothing listening."""
    return create_app(make_settings(url_overrides={"a1111": "http://a1111.test:7860"}))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def demo_server() -> Iterator[ServerThread]:
    """The built-in demo backend on a real port, fast enough for tests."""
    from webui.demo import create_demo_app

    server = ServerThread(create_demo_app(step_delay=0.002))
    yield server
    server.stop()


# The test backend of every bundled service other than A1111 (which the demo stands in for).
FAKES = {
    "comfyui": lambda: create_comfyui_app(polls_before_done=1),
    "openai": create_openai_app,
    "stability": create_stability_app,
    "forge": create_forge_app,
    "sdnext": create_sdnext_app,
}


@pytest.fixture(scope="session")
def fakes():
    """Each fake backend on a real port, shared by the service and browser tests."""
    servers = {name: ServerThread(make()) for name, make in FAKES.items()}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def services_app(make_settings, fakes, monkeypatch):
    """The app with every bundled service pointed at its fake backend."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("STABILITY_API_KEY", "sk-stab")
    for server in fakes.values():
        server.server.app.config["REQUESTS"].clear()
    return create_app(make_settings(url_overrides={k: s.url for k, s in fakes.items()}))


def demo_extra(url: str) -> ExtraService:
    return ExtraService(id="demo", definition="a1111", name="A1111 demo", url=url,
                        note="demo backend", demo=True)


@pytest.fixture
def demo_app(make_settings, demo_server):
    """The app with the demo service, talking to the demo backend over HTTP."""
    return create_app(make_settings(extras=[demo_extra(demo_server.url)]))


@dataclass
class Finished:
    """What the result area shows once a generation job has ended (or the direct answer of a
    request that never became a job: bad input, a backend that could not be asked)."""

    status_code: int
    html: str
    job: Any = None

    def get_data(self, as_text: bool = False) -> Any:
        return self.html if as_text else self.html.encode()


def submit(client, url: str, timeout: float = 30, **kwargs: Any) -> Finished:
    """POST a generation form; if it became a job, wait for the job to end and return its
    final panel (200 when done or interrupted, 502 when failed)."""
    # As htmx sends it (a plain POST, without JavaScript, is answered with a redirect).
    kwargs.setdefault("headers", HX)
    response = client.post(url, **kwargs)
    html = response.get_data(as_text=True)
    if response.status_code != 202:
        return Finished(response.status_code, html)
    job_id = re.search(r'id="job-([0-9a-f]{32})"', html).group(1)
    job = client.application.extensions["webui"].jobs.get(job_id)
    assert job.done.wait(timeout), f"job still {job.status} after {timeout} s"
    panel = client.get(f"/jobs/{job_id}/panel").get_data(as_text=True)
    return Finished(200 if job.status in ("done", "interrupted") else 502, panel, job)

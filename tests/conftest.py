"""Shared fixtures: the real A1111 contract material, app factories and real HTTP servers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from webui import create_app
from webui.catalog import ExtraService
from webui.config import Settings

FIXTURES = Path(__file__).parent / "fixtures"
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
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
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


def demo_extra(url: str) -> ExtraService:
    return ExtraService(id="demo", definition="a1111", name="A1111 demo", url=url,
                        note="demo backend", demo=True)


@pytest.fixture
def demo_app(make_settings, demo_server):
    """The app with the demo service, talking to the demo backend over HTTP."""
    return create_app(make_settings(extras=[demo_extra(demo_server.url)]))

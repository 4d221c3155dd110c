"""Fixtures only: app factories, the fake backends and the demo on real HTTP servers, the real
A1111 contract material, Chromium for the browser tests. The helpers they are built from are in
helpers.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from webui import create_app
from webui.config import Settings

from .backends.a1111_variants import create_forge_app, create_sdnext_app
from .backends.comfyui import create_comfyui_app
from .backends.openai_images import create_openai_app
from .backends.stability import create_stability_app
from .helpers import BASE, ServerThread, demo_extra, fixture_json


@pytest.fixture(scope="session")
def openapi() -> dict[str, Any]:
    return fixture_json("a1111", "openapi.json")


@pytest.fixture
def make_settings(tmp_path: Path):
    def make(**kwargs: Any) -> Settings:
        return Settings(data_dir=tmp_path / "data", **kwargs)

    return make


@pytest.fixture
def app(make_settings):
    """The app with the bundled definitions; the a1111 service points at nothing listening."""
    return create_app(make_settings(url_overrides={"a1111": BASE}))


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
    "comfyui": lambda: create_comfyui_app(polls_before_done=1, previews=True),
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


@pytest.fixture
def demo_app(make_settings, demo_server):
    """The app with the demo service, talking to the demo backend over HTTP."""
    return create_app(make_settings(extras=[demo_extra(demo_server.url)]))


# Real-browser fixtures (the tests marked `browser`) ------------------------------------------

CHROMIUM = os.environ.get("WEBUI_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium "
                    "(or set WEBUI_TEST_CHROMIUM)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # This machine has no network but loopback: keep Chromium from calling home.
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield browser
        browser.close()


@pytest.fixture
def ui(make_settings, demo_server):
    # The real-A1111 entry points at port 9 (discard), where nothing listens.
    app = create_app(make_settings(extras=[demo_extra(demo_server.url)],
                                   url_overrides={"a1111": "http://127.0.0.1:9"}))
    server = ServerThread(app)
    yield server, app
    server.stop()


# What htmx logs when an answer could not be put on the page (a failed request is not one:
# tests stop servers, and some answers are errors on purpose), or when the page itself gave up
# a request it had sent (sendAbort: hx-sync "replace"; the page queues the last one instead).
HTMX_FAILURES = {"htmx:oobErrorNoTarget", "htmx:targetError", "htmx:swapError",
                 "htmx:onLoadError", "htmx:evalDisallowedError", "htmx:invalidPath",
                 "htmx:sendAbort"}


@contextmanager
def watched_page(browser, **options):
    """A page in a context of its own (``options``: viewport, color_scheme…). A script error,
    or an htmx error (a swap without its target, a response it could not use), fails the test
    that caused it: each is a part of the page that silently did not update."""
    context = browser.new_context(**options)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("console", lambda message: problems.append(message.text)
            if message.text.split(",")[0] in HTMX_FAILURES else None)
    try:
        yield page
    finally:
        context.close()
    assert not problems, problems


@pytest.fixture
def page(browser):
    """A desktop-sized page, failing on script and htmx errors (:func:`watched_page`)."""
    with watched_page(browser, viewport={"width": 1280, "height": 900}) as page:
        yield page

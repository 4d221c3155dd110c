"""Other websites and other hosts: cross-site posts refused also where browsers send no fetch
metadata (plain HTTP on a LAN), only the names webui serves answered (DNS rebinding), pages
never framed and without inline code, and the UI's own password."""

from __future__ import annotations

import base64

import pytest

from webui import create_app
from webui.cli import main as cli_main

from .helpers import HX

LAN = "http://192.168.1.20:7870"


def post(client, origin: dict[str, str], base_url: str = LAN):
    return client.post("/services/a1111/txt2img/generate", data={"prompt": "x"},
                       headers={**HX, **origin}, base_url=base_url)


@pytest.mark.parametrize(("headers", "refused"), [
    # Plain HTTP on a LAN: no Sec-Fetch-Site; Origin says who sent it.
    ({"Origin": "http://evil.test"}, True),
    ({"Origin": "null"}, True),                              # a sandboxed frame, a file
    ({"Referer": "http://evil.test/page.html"}, True),
    ({"Origin": LAN}, False),
    ({"Referer": LAN + "/services/a1111/txt2img"}, False),
    ({"Sec-Fetch-Site": "cross-site", "Origin": LAN}, True),  # fetch metadata wins
    ({"Sec-Fetch-Site": "same-origin"}, False),
    ({}, False),                                              # not a browser: curl, a script
])
def test_cross_site_posts_are_refused(client, headers, refused):
    r = post(client, headers)
    if refused:
        assert r.status_code == 403
        assert "came from another website" in r.get_data(as_text=True)
    else:
        assert r.status_code != 403


def test_deleting_from_another_site_is_refused(client):
    r = client.delete("/gallery/1", headers={"Origin": "http://evil.test"}, base_url=LAN)
    assert r.status_code == 403


@pytest.mark.parametrize(("host", "answered"), [
    ("localhost:7870", True), ("127.0.0.1:7870", True), ("[::1]:7870", True),
    ("192.168.1.20:7870", True), ("[fe80::1]:7870", True),
    ("rebind.test", False), ("rebind.test:7870", False), ("localhost.evil.test", False),
])
def test_only_the_names_webui_serves_are_answered(client, host, answered):
    r = client.get("/gallery", headers={"Host": host})
    assert (r.status_code != 421) is answered
    if not answered:
        assert "does not answer to the name" in r.get_data(as_text=True)


def test_names_given_with_allow_host_are_answered(make_settings):
    client = create_app(make_settings(allowed_hosts=["gpu-box.lan"])).test_client()
    assert client.get("/", headers={"Host": "gpu-box.lan:7870"}).status_code == 200
    assert client.get("/", headers={"Host": "other.lan"}).status_code == 421


@pytest.mark.parametrize("path", ["/", "/services/a1111/txt2img", "/gallery",
                                  "/static/app.js", "/definition.schema.json", "/nope"])
def test_every_answer_forbids_frames_and_inline_code(client, path):
    r = client.get(path)
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "same-origin"


def test_pages_carry_no_inline_script(client):
    html = client.get("/services/a1111/txt2img").get_data(as_text=True)
    assert "<script>" not in html and " onclick=" not in html and "[!document" not in html


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"me:{password}".encode()).decode()}


def test_the_ui_password_guards_every_route(make_settings):
    client = create_app(make_settings(password="s3cret-word")).test_client()
    for path in ("/", "/gallery", "/static/app.js", "/services/a1111/txt2img"):
        r = client.get(path)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/", headers=basic("wrong")).status_code == 401
    assert client.get("/", headers=basic("s3cret-word")).status_code == 200


def test_serving_other_machines_needs_a_password(capsys, monkeypatch):
    monkeypatch.delenv("WEBUI_PASSWORD", raising=False)
    with pytest.raises(SystemExit) as info:
        cli_main(["serve", "--host", "0.0.0.0", "--no-demo"])
    assert info.value.code == 2
    assert "set WEBUI_PASSWORD" in capsys.readouterr().err

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
                                  "/definition.schema.json", "/nope"])
def test_every_answer_forbids_frames_and_inline_code(client, path):
    r = client.get(path)
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/static/app.js", "/static/style.css"])
def test_scripts_and_styles_carry_nosniff_and_not_the_headers_of_a_document(client, path):
    """A script or a style sheet is never opened as a page: a document's policy means nothing
    on it (some 330 bytes each saved); used as a script or a style, it must be one."""
    r = client.get(path)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in r.headers and "X-Frame-Options" not in r.headers


def test_an_svg_or_an_unknown_type_is_treated_as_a_document():
    from webui.guard import _may_be_a_document
    assert _may_be_a_document("image/svg+xml") and _may_be_a_document(None)
    assert _may_be_a_document("text/plain") and _may_be_a_document("application/json")
    assert not _may_be_a_document("image/png") and not _may_be_a_document("text/css")


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

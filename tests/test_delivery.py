"""How answers travel (webui/delivery.py): text compressed for browsers that accept it (brotli,
else gzip), images and streams as they are, static files at addresses that name their content
and cached for a year there."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import brotli
import pytest
from flask import Response

from tests.helpers import image_bytes
from webui.delivery import IMMUTABLE, MIN_BYTES, StaticFiles

# What Chromium 156 sends (over plain HTTP to 127.0.0.1 too), and a browser without brotli.
BROWSER = {"Accept-Encoding": "gzip, deflate, br, zstd"}
GZIP = {"Accept-Encoding": "gzip, deflate"}
DECODE = {"br": brotli.decompress, "gzip": gzip.decompress}


def decoded(answer) -> bytes:
    encoding = answer.headers.get("Content-Encoding")
    return DECODE[encoding](answer.data) if encoding else answer.data


def static_urls(client) -> list[str]:
    html = client.get("/").get_data(as_text=True)
    return re.findall(r'(?:src|href)="(/static/[^"]+)"', html)


@pytest.mark.parametrize(("accept", "encoding"), [(BROWSER, "br"), (GZIP, "gzip")])
def test_a_page_is_compressed_for_a_browser_that_accepts_it(client, accept, encoding):
    plain = client.get("/services/a1111/txt2img")
    packed = client.get("/services/a1111/txt2img", headers=accept)
    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == encoding
    assert decoded(packed) == plain.data
    assert int(packed.headers["Content-Length"]) == len(packed.data) < len(plain.data) / 3
    # Caches keep one answer per encoding.
    for answer in (plain, packed):
        assert "Accept-Encoding" in answer.headers["Vary"]
    # The guard's headers are still there.
    assert packed.headers["Content-Security-Policy"].startswith("default-src 'self'")


def test_the_browsers_preference_decides(client):
    prefers_gzip = client.get("/", headers={"Accept-Encoding": "br;q=0.5, gzip"})
    assert prefers_gzip.headers["Content-Encoding"] == "gzip"
    tie = client.get("/", headers={"Accept-Encoding": "gzip, br"})
    assert tie.headers["Content-Encoding"] == "br"
    anything = client.get("/", headers={"Accept-Encoding": "*"})
    assert anything.headers["Content-Encoding"] == "br"
    none = client.get("/", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in none.headers


def test_json_is_gzipped_and_a_refusal_is_respected(client):
    schema = client.get("/definition.schema.json", headers=GZIP)
    assert schema.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(schema.data).startswith(b"{")
    refused = client.get("/definition.schema.json", headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers and refused.data.startswith(b"{")


def test_a_small_fragment_is_not_compressed(client):
    answer = client.get("/services/nope/status", headers={**BROWSER, "HX-Request": "true"})
    assert answer.status_code == 404 and len(answer.data) < MIN_BYTES
    assert "Content-Encoding" not in answer.headers
    assert b"nope" in answer.data


def test_images_are_never_compressed(app, client):
    name = "2026-01-01/picture.png"
    path = app.extensions["webui"].store.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    data = image_bytes((256, 256))
    path.write_bytes(data)
    answer = client.get(f"/images/{name}", headers=BROWSER)
    assert answer.status_code == 200 and answer.mimetype == "image/png"
    assert "Content-Encoding" not in answer.headers and answer.data == data


def test_image_and_streamed_answers_made_in_memory_are_left_alone(app):
    # Routes of the kind other pages add (a preview image, server-sent events): the hook must
    # not touch them.
    png = image_bytes((256, 256))

    @app.get("/test-preview")
    def preview():
        return Response(png, mimetype="image/png")

    @app.get("/test-events")
    def event_stream():
        def stream():
            for n in range(3):
                yield f"data: {'x' * 600} {n}\n\n"
        return Response(stream(), mimetype="text/event-stream")

    @app.get("/test-streamed-text")
    def streamed_text():
        return Response((f"{n:04d}" * 300 for n in range(3)), mimetype="text/plain")

    client = app.test_client()
    image = client.get("/test-preview", headers=BROWSER)
    assert "Content-Encoding" not in image.headers and image.data == png
    events = client.get("/test-events", headers=BROWSER)
    assert "Content-Encoding" not in events.headers
    assert events.data.startswith(b"data: xxx") and events.data.endswith(b" 2\n\n")
    text = client.get("/test-streamed-text", headers=BROWSER)
    assert "Content-Encoding" not in text.headers
    assert len(text.data) > MIN_BYTES and text.data.startswith(b"00000000")


def test_static_addresses_name_their_content_and_are_cached_for_a_year(client, app):
    urls = static_urls(client)
    names = {u.split("?")[0] for u in urls}
    assert {"/static/style.css", "/static/app.js"} <= names
    assert any(n.startswith("/static/vendor/htmx/") for n in names)
    folder = app.static_folder
    for url in urls:
        path, version = re.fullmatch(r"/static/([^?]+)\?v=(\w+)", url).groups()
        on_disk = Path(folder, path).read_bytes()
        for accept, encoding in ((BROWSER, "br"), (GZIP, "gzip")):
            answer = client.get(url, headers=accept)
            assert answer.status_code == 200, url
            assert answer.headers["Cache-Control"] == IMMUTABLE, url
            assert "Last-Modified" not in answer.headers and answer.headers["ETag"], url
            assert decoded(answer) == on_disk, url
            if len(on_disk) >= MIN_BYTES:
                assert answer.headers["Content-Encoding"] == encoding, url
            # Revalidated (a browser's reload), the answer is "not modified".
            again = client.get(url, headers={**accept, "If-None-Match": answer.headers["ETag"]})
            assert again.status_code == 304, url


def test_a_static_address_without_the_current_hash_is_revalidated(client):
    for url in ("/static/app.js", "/static/app.js?v=0123456789ab"):
        answer = client.get(url, headers=BROWSER)
        assert answer.status_code == 200
        assert answer.headers["Cache-Control"] == "no-cache"
        assert decoded(answer) == client.get(url).data


def test_a_range_of_a_static_file_is_of_the_file_itself(client):
    answer = client.get("/static/app.js", headers={**BROWSER, "Range": "bytes=0-99"})
    assert answer.status_code == 206 and len(answer.data) == 100
    assert "Content-Encoding" not in answer.headers


def test_a_changed_file_gets_another_address(tmp_path):
    files = StaticFiles(str(tmp_path))
    path = tmp_path / "app.js"
    path.write_text("console.log(1);\n" * 100)
    first = files.version("app.js")
    for encoding, decode in DECODE.items():
        assert decode(files.compressed("app.js", encoding)) == path.read_bytes()
    path.write_text("console.log(22);\n" * 100)
    second = files.version("app.js")
    assert first and second and first != second
    for encoding, decode in DECODE.items():
        assert decode(files.compressed("app.js", encoding)) == path.read_bytes()
    assert files.compressed("missing.js") is None
    assert files.version("missing.js") is None and files.version("../etc/passwd") is None


def test_a_starting_server_compresses_the_static_files_beforehand(app):
    from webui.delivery import warm

    warm(app).join(120)
    files = app.extensions["webui.static_files"]
    entry = files._files["vendor/htmx/htmx-2.0.11.min.js"]
    assert set(entry[3]) == {"br", "gzip"}
    # Too small to be worth it: never compressed.
    assert "favicon.svg" not in files._files or not {"br", "gzip"} & set(
        files._files["favicon.svg"][3])


def test_the_mask_editor_is_loaded_only_where_a_form_has_a_mask(client):
    """Every page loads app.js; the mask editor's script only a form with a mask (a page's
    first visit is lighter by it)."""
    txt2img = client.get("/services/a1111/txt2img").get_data(as_text=True)
    img2img = client.get("/services/a1111/img2img").get_data(as_text=True)
    assert "/static/app.js?v=" in txt2img and "/static/app.js?v=" in img2img
    assert "data-mask-editor" not in txt2img and "/static/mask.js" not in txt2img
    assert "data-mask-editor" in img2img
    # After app.js, whose functions it uses.
    assert img2img.index("/static/app.js?v=") < img2img.index("/static/mask.js?v=")

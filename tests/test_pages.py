"""Pages and htmx fragments through the Flask test client; A1111 answers via `responses`."""

from __future__ import annotations

import io
import re

import pytest
import requests
import responses
import yaml

from webui import pipeline

from .helpers import (
    API,
    HX,
    a1111_flags,
    a1111_response,
    field_errors,
    form,
    image_bytes,
    last_post,
    minimal,
    mock_lists,
    submit,
)


def test_index_lists_services_and_broken_files(client, app):
    folder = app.extensions["webui"].settings.user_definitions
    (folder / "broken.yaml").write_text("id: Bad Id\nname: x\n")
    html = client.get("/").get_data(as_text=True)
    assert "AUTOMATIC1111 WebUI" in html
    assert "/services/a1111/status" in html  # status is fetched by htmx after the page shows
    assert "broken.yaml" in html
    assert "id: String should match pattern" in html
    assert str(folder.resolve()) in html


def test_dropped_definition_appears_without_restart(client, app):
    folder = app.extensions["webui"].settings.user_definitions
    assert "Tiny" not in client.get("/").get_data(as_text=True)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(minimal(), sort_keys=False))
    html = client.get("/").get_data(as_text=True)
    assert ">Tiny</a>" in html
    page = client.get("/services/tiny/txt2img")
    assert page.status_code == 200
    assert 'name="prompt"' in page.get_data(as_text=True)
    # Editing the file is picked up too; a broken edit is reported, the others stay.
    (folder / "tiny.yaml").write_text("id: tiny\nname: [\n")
    html = client.get("/").get_data(as_text=True)
    assert "tiny.yaml" in html and "not valid YAML/JSON" in html
    assert "AUTOMATIC1111 WebUI" in html


@responses.activate
def test_offline_status_shows_setup_help(client):
    responses.get(f"{API}/cmd-flags", body=requests.exceptions.ConnectionError(
        "[Errno 111] Connection refused"))
    html = client.get("/services/a1111/status").get_data(as_text=True)
    assert "offline" in html
    assert "connection refused" in html
    assert "<code>--api</code> <strong>(required)</strong>" in html
    assert "WEBUI_A1111_URL" in html


@responses.activate
def test_online_status(client):
    responses.get(f"{API}/cmd-flags", json=a1111_flags())
    html = client.get("/services/a1111/status").get_data(as_text=True)
    assert 'class="status online"' in html and "setup" not in html


@responses.activate
def test_a_status_checked_moments_ago_is_drawn_into_the_page(client):
    """Online, checked less than 30 s ago (an online badge's own period), nothing running: the
    badge is in the page (no request for it) and checks again when that check is 30 s old;
    offline, or checked longer ago, the page asks."""
    responses.get(f"{API}/cmd-flags", body=requests.exceptions.ConnectionError(
        "[Errno 111] Connection refused"))
    assert "offline" in client.get("/services/a1111/status").get_data(as_text=True)
    html = client.get("/services/a1111/txt2img").get_data(as_text=True)
    # Offline: the page asks (and gets the setup help with the answer).
    assert 'hx-get="/services/a1111/status" hx-trigger="load"' in html

    checks = client.application.extensions["webui.status_checks"]
    responses.replace(responses.GET, f"{API}/cmd-flags", json=a1111_flags())
    checks._checks.clear()
    assert 'class="status online"' in client.get("/services/a1111/status").get_data(True)
    for check in checks._checks.values():
        check.at -= 20  # checked 20 s ago
    for page in ("/services/a1111/txt2img", "/"):
        html = client.get(page).get_data(as_text=True)
        badge = re.search(r'<span class="status online"[^>]*>online</span>', html)
        assert badge, page
        assert 'hx-trigger="load delay:10s, every 30s"' in badge.group(0), badge.group(0)
        assert 'hx-get="/services/a1111/status" hx-trigger="load"' not in html, page
    assert len([c for c in responses.calls if c.request.url.endswith("/cmd-flags")]) == 2

    for check in checks._checks.values():
        check.at -= 11  # 31 s ago
    html = client.get("/services/a1111/txt2img").get_data(as_text=True)
    assert 'hx-get="/services/a1111/status" hx-trigger="load"' in html


def test_service_page_renders_the_definition(client):
    html = client.get("/services/a1111/txt2img").get_data(as_text=True)
    for key in ("prompt", "negative_prompt", "steps", "cfg_scale", "width", "height", "seed",
                "batch_size", "n_iter", "enable_hr", "denoising_strength", "refiner_switch_at"):
        assert f'name="{key}"' in html, key
    assert 'min="1"' in html and 'max="150"' in html
    # Backend-fed selects load through htmx, with a refresh control each.
    for key in ("sampler_name", "scheduler", "sd_model_checkpoint", "hr_upscaler"):
        assert f'hx-get="/services/a1111/txt2img/options/{key}"' in html
    # The LoRAs and the styles are pickers: searched on the server as you type.
    assert 'hx-get="/services/a1111/txt2img/options/loras/search"' in html
    assert 'hx-get="/services/a1111/txt2img/styles/search"' in html
    assert html.count('class="small refresh"') == 7
    assert 'href="/services/a1111/img2img"' in html
    img = client.get("/services/a1111/img2img").get_data(as_text=True)
    assert 'type="file"' in img and 'name="init_image"' in img
    assert 'name="enable_hr"' not in img
    assert 'hx-encoding="multipart/form-data"' in img


@responses.activate
def test_options_fragment_fills_and_keeps_the_current_value(client):
    mock_lists()
    html = client.get("/services/a1111/txt2img/options/sampler_name?sampler_name=DPM%2B%2B+SDE"
                      ).get_data(as_text=True)
    assert '<option value="DPM++ SDE" selected>DPM++ SDE</option>' in html
    assert '<option value="Euler a" >Euler a</option>' in html


@responses.activate
def test_options_fragment_failure_has_retry(client):
    responses.get(f"{API}/samplers", status=500, json={"error": "RuntimeError", "detail": "",
                                                       "body": "", "errors": "boom"})
    response = client.get("/services/a1111/txt2img/options/sampler_name")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Could not load the choices: A1111" not in html  # service name is the definition's
    assert "Could not load the choices: AUTOMATIC1111 WebUI failed (HTTP 500: boom)" \
        in html
    assert ">Retry</button>" in html
    # The current value stays selectable so the rest of the form is usable.
    assert '<option value="Euler a" selected>Euler a</option>' in html


@responses.activate
def test_bad_input_gets_field_errors_and_nothing_is_sent(client):
    mock_lists()
    responses.post(f"{API}/txt2img", json=a1111_response("txt2img-200"))
    r = submit(client, "/services/a1111/txt2img/generate", data=form(
        prompt="  ", steps="500", cfg_scale="abc", width="513", sampler_name="Euler z"))
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    errors = field_errors(html)
    assert errors == {
        "prompt": "Prompt is required",
        "steps": "Steps must be at most 150",
        "cfg_scale": "CFG scale must be a number",
        "width": "Width must be a multiple of 8 from 64",
        "sampler_name": "Sampler &#39;Euler z&#39; is not one of the choices offered by the "
                        "backend now (↻ reloads the list)",
    }
    assert "Nothing was sent to AUTOMATIC1111 WebUI" in html
    assert not [c for c in responses.calls if c.request.method == "POST"]


@responses.activate
def test_generate_shows_saved_images_with_seed_and_info(client, app):
    mock_lists()
    responses.post(f"{API}/txt2img", json=a1111_response("txt2img-200"))
    r = submit(client, "/services/a1111/txt2img/generate", data=form(seed="1"))
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    src = re.search(r'<img src="(/images/[^"]+\.png)"', html).group(1)
    assert "Seed <code>1</code>" in html
    assert "Steps: 1, Sampler: Euler" in html
    image = client.get(src)
    assert image.status_code == 200 and image.data.startswith(b"\x89PNG")
    assert field_errors(html) == {}


@responses.activate
def test_prompt_is_escaped_everywhere(client):
    mock_lists()
    responses.post(f"{API}/txt2img", json=a1111_response("txt2img-200"))
    html = submit(client, "/services/a1111/txt2img/generate",
                       data=form(prompt='<script>alert("x")</script>')).get_data(as_text=True)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


@responses.activate
def test_backend_error_is_shown_in_the_result_area(client):
    mock_lists()
    responses.post(f"{API}/txt2img", json=a1111_response("txt2img-500-no-checkpoint"),
                   status=500)
    r = submit(client, "/services/a1111/txt2img/generate", data=form())
    html = r.get_data(as_text=True)
    assert r.status_code == 502
    assert "Generation failed." in html and "No checkpoints found" in html
    assert "Traceback" not in html


@responses.activate
def test_unreachable_backend_gives_one_message(client):
    responses.get(re.compile(f"{API}/.*"), body=requests.exceptions.ConnectionError(
        "[Errno 111] Connection refused"))
    r = submit(client, "/services/a1111/txt2img/generate", data=form())
    html = r.get_data(as_text=True)
    assert r.status_code == 502
    assert html.count("Could not connect to AUTOMATIC1111 WebUI") == 1


@responses.activate
def test_img2img_upload_checks(client):
    mock_lists()
    responses.post(f"{API}/img2img", json=a1111_response("txt2img-200"))
    data = form(denoising_strength="0.5", resize_mode="0")
    data.pop("hr_upscaler")
    missing = submit(client, "/services/a1111/img2img/generate", data=data)
    assert field_errors(missing.get_data(as_text=True))["init_image"] == \
        "Image is required: choose an image file"
    bad = submit(client, "/services/a1111/img2img/generate", data={
        **data, "init_image": (io.BytesIO(b"%PDF-1.4 not an image"), "notes.pdf")},
        content_type="multipart/form-data")
    assert field_errors(bad.get_data(as_text=True))["init_image"] == (
        "Image &#39;notes.pdf&#39; is not an image this server can read (PNG, JPEG, WEBP, …)")
    assert not [c for c in responses.calls if c.request.method == "POST"]
    good = submit(client, "/services/a1111/img2img/generate", data={
        **data, "init_image": (io.BytesIO(image_bytes()), "in.png")},
        content_type="multipart/form-data")
    assert good.status_code == 200
    sent = last_post()
    assert sent["init_images"][0].startswith("iVBOR") and sent["denoising_strength"] == 0.5


def test_too_large_upload_is_refused_politely(client, app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    r = submit(client, "/services/a1111/img2img/generate", data={
        "init_image": (io.BytesIO(b"x" * 5000), "big.png")}, content_type="multipart/form-data",
        headers={"HX-Request": "true"})
    assert r.status_code == 413
    assert "The upload is too large" in r.get_data(as_text=True)


def test_unknown_service_and_mode(client):
    r = client.get("/services/nope/txt2img")
    assert r.status_code == 404 and "There is no service &#39;nope&#39;" in r.get_data(True)
    assert "<html" in r.get_data(True)  # a full page for a browser…
    r = client.get("/services/a1111/inpaint-video", headers={"HX-Request": "true"})
    assert r.status_code == 404 and "<html" not in r.get_data(True)  # …a fragment for htmx


@responses.activate
def test_unexpected_error_is_a_sentence_not_a_traceback(client, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("internal detail")

    monkeypatch.setattr(pipeline, "build_request", explode)
    monkeypatch.setattr("webui.views.services.choices", lambda *a, **k: [])
    responses.get(f"{API}/cmd-flags", json=a1111_flags())
    r = submit(client, "/services/a1111/txt2img/generate", data=form(sampler_name=None,
                    scheduler=None, hr_upscaler=None))
    html = r.get_data(as_text=True)
    assert r.status_code == 502  # the job failed; webui itself stays up
    assert "Something went wrong inside webui" in html
    assert "internal detail" not in html and "Traceback" not in html


@pytest.mark.parametrize("path", ["/", "/services/a1111/txt2img", "/services/a1111/img2img",
                                  "/services/a1111/status"])
@responses.activate
def test_secrets_never_reach_the_browser(client, monkeypatch, path):
    monkeypatch.setenv("WEBUI_A1111_USERNAME", "alice-user")
    monkeypatch.setenv("WEBUI_A1111_PASSWORD", "hunter2-secret")
    responses.get(f"{API}/cmd-flags", json=a1111_response("401-wrong-credentials"), status=401)
    html = client.get(path).get_data(as_text=True)
    assert "hunter2-secret" not in html and "alice-user" not in html


def test_schema_is_published(client):
    r = client.get("/definition.schema.json")
    assert r.status_code == 200 and r.json["title"] == "webui service definition"


def test_unexpected_error_in_a_view_is_a_sentence(client, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("internal detail")

    monkeypatch.setattr("webui.views.generate.forms.validate", explode)
    r = client.post("/services/a1111/txt2img/generate", headers=HX, data=form())
    html = r.get_data(as_text=True)
    assert r.status_code == 500 and "Something went wrong inside webui" in html
    assert "internal detail" not in html and "Traceback" not in html
    assert client.get("/").status_code == 200  # and the server goes on


def test_other_websites_cannot_start_generations(client):
    r = client.post("/services/a1111/txt2img/generate", data=form(),
                    headers={**HX, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and "came from another website" in r.get_data(as_text=True)
    r = client.delete("/gallery/1", headers={"Sec-Fetch-Site": "same-site"})
    assert r.status_code == 403
    # Reading stays open, and the page's own requests pass.
    assert client.get("/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200
    r = client.post("/services/a1111/txt2img/generate", data=form(steps="0"),
                    headers={**HX, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code != 403

"""AUTOMATIC1111 as a real 1.10.1 server behaves (tests/fixtures/a1111/README.md, and the
source cited by each test), answered with `responses`: checkpoints whose titles change, the
server's own checkpoint, fields that only count while another is on, error bodies that repeat
themselves, credentials in the middle of words, progress left over from the previous job, and
servers of the same API that are not A1111."""

from __future__ import annotations

import json
import re

import pytest
import responses

from webui import create_app
from webui.jobs import _truthy

from .helpers import (
    API,
    a1111_flags,
    a1111_response,
    demo_extra,
    fixture_json,
    form,
    last_post,
    mock_lists,
    submit,
)

TITLED = "random-sd15.safetensors [8c8cc196b3]"


def models(loaded: bool) -> list[dict]:
    """/sd-models as A1111 lists one checkpoint: titled without a hash until its first load
    (modules/sd_models.py CheckpointInfo: title = name + f" [{shorthash}]" once hashed)."""
    return [{"title": TITLED if loaded else "random-sd15.safetensors",
             "model_name": "random-sd15", "hash": "8c8cc196" if loaded else None,
             "sha256": "8c8cc196b3" + "0" * 54 if loaded else None,
             "filename": "/opt/stable-diffusion-webui/models/Stable-diffusion/random-sd15"
                         ".safetensors", "config": None}]


def mock_server(loaded: bool = True, setting: str = TITLED) -> None:
    mock_lists()
    responses.replace(responses.GET, f"{API}/sd-models", json=models(loaded))
    responses.get(f"{API}/options", json={**a1111_response("options"),
                                          "sd_model_checkpoint": setting})


def options_html(client, key: str, **args) -> str:
    query = "&".join(f"{k}={v}" for k, v in args.items())
    return client.get(f"/services/a1111/txt2img/options/{key}?{query}").get_data(as_text=True)


@responses.activate
def test_a_remembered_checkpoint_title_without_hash_still_selects_it(client):
    mock_server(loaded=True)
    html = options_html(client, "sd_model_checkpoint",
                        sd_model_checkpoint="random-sd15.safetensors")
    # (also the server's own checkpoint here: marked as its current one)
    assert f'<option value="{TITLED}" selected data-current>' in html
    responses.post(f"{API}/txt2img", json=a1111_response("txt2img-200"))
    r = submit(client, "/services/a1111/txt2img/generate",
               data=form(sd_model_checkpoint="random-sd15.safetensors"))
    assert r.status_code == 200, r.html
    body = last_post()
    assert body["override_settings"]["sd_model_checkpoint"] == TITLED


@responses.activate
def test_a_title_with_a_hash_the_server_no_longer_shows_is_recognised(client):
    # Saved after a load; the server lists it unhashed (e.g. a fresh install, its hash cache
    # gone). Both are names of one checkpoint: the current one is sent.
    mock_server(loaded=False, setting="random-sd15.safetensors")
    html = options_html(client, "sd_model_checkpoint", sd_model_checkpoint=TITLED)
    assert '<option value="random-sd15.safetensors" selected data-current>' in html


@responses.activate
def test_a_checkpoint_the_server_lacks_is_never_dropped_silently(client):
    mock_server()
    html = options_html(client, "sd_model_checkpoint", sd_model_checkpoint="gone.safetensors")
    # Kept, selected and enabled (a disabled option would not be submitted at all)…
    assert ('<option value="gone.safetensors" selected>gone.safetensors (not offered by '
            'AUTOMATIC1111 WebUI now)</option>') in html
    # …so Generate refuses it, instead of running on another model.
    r = submit(client, "/services/a1111/txt2img/generate",
               data=form(sd_model_checkpoint="gone.safetensors"))
    assert r.status_code == 422
    assert "Checkpoint &#39;gone.safetensors&#39; is not one of the choices" in r.html
    assert not [c for c in responses.calls if c.request.method == "POST"]


@responses.activate
def test_the_servers_own_checkpoint_is_shown_selected(client):
    # Without an override A1111 runs on the checkpoint of its settings (modules/processing.py
    # process_images), not on "whatever is loaded": that is the one shown.
    mock_server(setting="random-sd15.safetensors")
    html = options_html(client, "sd_model_checkpoint", sd_model_checkpoint="")
    assert (f'<option value="{TITLED}" selected data-current>random-sd15 (current)'
            '</option>') in html
    # "—" would mean the same: it is not offered beside it.
    assert '<option value="">' not in html


@responses.activate
def test_the_servers_checkpoint_stays_marked_when_another_is_chosen(client):
    mock_server(setting="random-sd15.safetensors")
    responses.replace(responses.GET, f"{API}/sd-models", json=[
        *models(loaded=True), {"title": "other.safetensors", "model_name": "other"}])
    html = options_html(client, "sd_model_checkpoint", sd_model_checkpoint="other.safetensors")
    assert '<option value="other.safetensors" selected>other</option>' in html
    assert f'<option value="{TITLED}"  data-current>random-sd15 (current)</option>' in html


@responses.activate
def test_an_unreadable_current_value_leaves_the_choices_usable(client):
    mock_server()
    responses.replace(responses.GET, f"{API}/options", status=500, json={"detail": "boom"})
    html = options_html(client, "sd_model_checkpoint", sd_model_checkpoint="")
    assert f'<option value="{TITLED}" >random-sd15</option>' in html
    assert '<option value="">— (the service&#39;s setting)</option>' in html
    assert "Could not load" not in html


@responses.activate
def test_hires_fields_count_only_while_hires_fix_is_on(client):
    mock_server()
    responses.replace(responses.GET, f"{API}/latent-upscale-modes", status=404,
                      json={"detail": "Not Found"})
    responses.post(f"{API}/txt2img", json=a1111_response("txt2img-200"))
    # Off: the upscaler (whose list cannot even be loaded here) is neither checked nor sent.
    r = submit(client, "/services/a1111/txt2img/generate", data=form(hr_upscaler="Latent"))
    assert r.status_code == 200, r.html
    body = last_post()
    assert not {"hr_upscaler", "hr_scale", "hr_second_pass_steps", "denoising_strength"} & set(
        body)
    # On: checked (the list cannot be loaded: a clear message, nothing sent).
    posts = len([c for c in responses.calls if c.request.method == "POST"])
    r = submit(client, "/services/a1111/txt2img/generate",
               data=form(enable_hr="true", hr_upscaler="Latent"))
    assert r.status_code in (502, 503, 504)
    assert "latent-upscale-modes" in r.html
    assert len([c for c in responses.calls if c.request.method == "POST"]) == posts


def test_the_page_hides_fields_whose_condition_does_not_hold(client):
    page = client.get("/services/a1111/txt2img").get_data(as_text=True)
    hires = re.search(r'<fieldset class="when" data-when="([^"]*)" disabled hidden>\s*<div '
                      r'class="field field-select">\s*<label for="f-txt2img-hr_upscaler"', page)
    assert hires and json.loads(hires.group(1).replace("&#34;", '"')) == {"enable_hr": [True]}


@responses.activate
def test_an_error_is_said_once(client):
    mock_server()
    # modules/api/api.py api_middleware: the message under detail and again under errors.
    responses.post(f"{API}/txt2img", status=404, json={
        "error": "HTTPException", "detail": "Sampler not found", "body": "",
        "errors": "404: Sampler not found"})
    r = submit(client, "/services/a1111/txt2img/generate", data=form())
    assert r.status_code == 502
    text = re.sub(r"\s+", " ", r.html)
    assert text.count("Sampler not found") == 1
    assert "HTTPException" not in text


@responses.activate
def test_a_user_name_inside_a_word_is_left_alone(client, monkeypatch):
    monkeypatch.setenv("WEBUI_A1111_USERNAME", "user")
    monkeypatch.setenv("WEBUI_A1111_PASSWORD", "pass-word-123")
    mock_server()
    responses.post(f"{API}/txt2img", status=401, json={
        "error": "HTTPException", "detail": "Incorrect username or password", "body": "",
        "errors": ""})
    r = submit(client, "/services/a1111/txt2img/generate", data=form())
    assert "Incorrect username or password" in r.html
    assert "pass-word-123" not in r.html


def test_progress_left_over_from_the_previous_job_is_not_this_one(app):
    definition = app.extensions["webui"].folders.catalog().get("a1111").definition
    rule = definition.jobs.progress.when
    # Real bodies: idle after a job (sampling_steps of the last job still there), and during one.
    assert not _truthy(rule, a1111_response("progress-idle"))
    assert _truthy(rule, a1111_response("progress-during-job"))


@pytest.mark.parametrize(("server", "a1111", "forge", "sdnext"), [
    ("a1111", "online", "other", "other"),
    ("forge", "other", "online", "other"),
    ("sdnext", "other", "other", "online"),
])
@responses.activate
def test_each_fork_is_told_apart(make_settings, server, a1111, forge, sdnext):
    url = "http://fork.test:7860"
    app = create_app(make_settings(url_overrides={"a1111": url, "forge": url, "sdnext": url}))
    client = app.test_client()
    flags = fixture_json("identify", f"{server}-cmd-flags.json")
    responses.get(f"{url}/sdapi/v1/cmd-flags", json=flags)
    # Forge has /sdapi/v1/sd-modules, SD.Next /sdapi/v1/version; the others answer 404.
    responses.get(f"{url}/sdapi/v1/sd-modules", **(
        {"json": []} if server == "forge" else {"status": 404, "json": {"detail": "Not Found"}}))
    responses.get(f"{url}/sdapi/v1/version", **(
        {"json": {"app": "sd.next", "updated": "2026-07-23", "commit": "058a7f0cf"}}
        if server == "sdnext" else {"status": 404, "json": {"detail": "Not Found"}}))
    for service, expected in (("a1111", a1111), ("forge", forge), ("sdnext", sdnext)):
        html = client.get(f"/services/{service}/status").get_data(as_text=True)
        if expected == "online":
            assert 'class="status online"' in html, (service, html)
        else:
            name = app.extensions["webui"].folders.catalog().get(service).name
            assert f"online, but not {name}" in html, (service, html)
            assert "Something answers at http://fork.test:7860, but" in html
        # The flags list the server's credentials: they never reach the page.
        assert "api_auth" not in html


def test_unconfigured_services_are_listed_compactly(make_settings, demo_server, monkeypatch):
    for name in ("OPENAI_API_KEY", "STABILITY_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    app = create_app(make_settings(extras=[demo_extra(demo_server.url)],
                                   url_overrides={"comfyui": "http://gpu.test:8188"}))
    html = app.test_client().get("/").get_data(as_text=True)
    lead, _, rest = html.partition("Not connected")
    assert 'id="service-demo"' in lead and 'id="service-comfyui"' in lead
    for service in ("a1111", "forge", "sdnext", "openai", "stability"):
        assert f'id="service-{service}"' in rest
        assert f'<li class="card" id="service-{service}"' not in html


@responses.activate
def test_the_status_checks_again_by_itself(client, monkeypatch):
    # A status is cached a few seconds; the page asks again after 10 s. Not cached here.
    monkeypatch.setattr("webui.backend.STATUS_SECONDS", 0)
    responses.get(f"{API}/cmd-flags", status=503)
    html = client.get("/services/a1111/status").get_data(as_text=True)
    assert 'hx-trigger="every 10s" data-poll' in html
    responses.replace(responses.GET, f"{API}/cmd-flags", json=a1111_flags())
    html = client.get("/services/a1111/status").get_data(as_text=True)
    assert 'class="status online"' in html and 'every 30s' in html

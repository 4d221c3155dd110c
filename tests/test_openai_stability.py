"""The OpenAI-compatible and Stability definitions against their services' published contracts.

- OpenAI: request bodies are validated against the official request schemas
  (tests/fixtures/openai/images-openapi.json, cut from openai/openai-openapi openapi.json at
  commit f85dbe22, 2026-08-21: CreateImageRequest, CreateImageEditRequest), and the form offers
  per mode and per model what those schemas' descriptions accept.
- LocalAI (mudler/LocalAI at 82c191af, core/http/routes/openai.go): no /v1/images/edits.
- Stability (v2beta OpenAPI, tests/fixtures/stability/): a 403 ``content_moderation`` is the
  prompt being refused, not a credentials problem.
"""

from __future__ import annotations

import io
import re

import pytest
from werkzeug.datastructures import MultiDict

from webui import create_app

from .backends.openai_images import create_localai_app, schema_validator
from .helpers import HX, ServerThread, defaults, generate, image_bytes, sent, submit


def options_of(html: str) -> list[str]:
    return re.findall(r'<option value="([^"]*)"', html)


def offered(html: str, key: str) -> list[str]:
    """The static options of a select on the page that are offered now (not hidden)."""
    select = re.search(rf'<select id="f-\w+-{key}" name="{key}"[^>]*>(.*?)</select>', html, re.S)
    assert select, f"no select {key}"
    return [v for v, rest in re.findall(r'<option value="([^"]*)"([^>]*)>', select.group(1))
            if "hidden" not in rest]


def test_generation_bodies_follow_the_official_schema(services_app, fakes):
    validator = schema_validator("CreateImageRequest")
    cases = [
        {"model": "gpt-image-1", "size": "1536x1024", "quality": "high", "background":
         "transparent", "output_format": "webp", "output_compression": "80",
         "moderation": "low"},
        {"model": "dall-e-3", "size": "1792x1024", "quality": "hd", "style": "natural",
         "response_format": "b64_json"},
        {"model": "dall-e-2", "size": "256x256", "n": "2", "response_format": "url"},
    ]
    for fields in cases:
        data = {**defaults(services_app, "openai", "txt2img"), "prompt": "a kite", **fields}
        r, html = generate(services_app, "openai", "txt2img", data)
        assert r.status_code == 200, html
    bodies = [c["json"] for c in sent(fakes, "openai", "/v1/images/generations")]
    assert len(bodies) == 3
    for body in bodies:
        validator.validate(body)
    assert bodies[0]["output_compression"] == 80 and bodies[0]["background"] == "transparent"
    assert bodies[1]["style"] == "natural" and bodies[1]["quality"] == "hd"


def test_fields_a_model_does_not_take_are_neither_shown_nor_sent(services_app, fakes):
    # Left filled from a GPT image model, then dall-e-3 chosen: the GPT-only fields are off.
    data = {**defaults(services_app, "openai", "txt2img"), "prompt": "a kite",
            "model": "dall-e-3", "background": "transparent", "output_format": "png",
            "moderation": "low", "quality": "hd"}
    r, html = generate(services_app, "openai", "txt2img", data)
    assert r.status_code == 200, html
    [body] = [c["json"] for c in sent(fakes, "openai", "/v1/images/generations")]
    assert body == {"model": "dall-e-3", "prompt": "a kite", "n": 1, "size": "1024x1024",
                    "quality": "hd"}
    # A size of another model is refused before anything is sent.
    client = services_app.test_client()
    r = client.post("/services/openai/txt2img/generate", headers=HX, data={
        **defaults(services_app, "openai", "txt2img"), "prompt": "x", "model": "dall-e-2",
        "size": "1536x1024"})
    assert r.status_code == 422
    assert "Size &#39;1536x1024&#39; is not available with the other values chosen" in \
        r.get_data(as_text=True)


def test_the_form_offers_per_model_what_the_spec_accepts(services_app):
    client = services_app.test_client()
    page = client.get("/services/openai/txt2img").get_data(as_text=True)
    # The default model is a GPT image model: its sizes and qualities, not DALL·E's.
    assert offered(page, "size") == ["auto", "1024x1024", "1536x1024", "1024x1536"]
    assert offered(page, "quality") == ["", "auto", "high", "medium", "low"]
    assert re.search(r'<fieldset class="when" data-when="[^"]*dall-e-3[^"]*" disabled hidden>'
                     r'\s*<div class="field field-select">\s*<label for="f-txt2img-style"', page)
    edits = client.get("/services/openai/img2img").get_data(as_text=True)
    # /images/edits takes no 1792 sizes, no hd, no style, no moderation (multipart).
    assert "1792x1024" not in edits and '"hd"' not in edits
    assert 'name="style"' not in edits and 'name="moderation"' not in edits
    assert 'name="input_fidelity"' in edits


def test_only_image_models_are_offered(services_app):
    client = services_app.test_client()
    txt = options_of(client.get("/services/openai/txt2img/options/model").get_data(
        as_text=True))
    assert "gpt-image-1" in txt and "dall-e-3" in txt and "dall-e-2" in txt
    assert not [m for m in txt if m.startswith(("gpt-4", "gpt-5", "tts", "whisper",
                                                "text-embedding", "o4", "sora"))]
    assert "chatgpt-image-latest" not in txt  # edits only
    edit = options_of(client.get("/services/openai/img2img/options/model").get_data(
        as_text=True))
    assert "dall-e-3" not in edit and "chatgpt-image-latest" in edit


def test_edit_body_follows_the_official_schema(services_app, fakes):
    data = {**defaults(services_app, "openai", "img2img"), "prompt": "make it blue",
            "model": "gpt-image-1", "size": "1024x1536", "quality": "low",
            "input_fidelity": "high", "output_format": "jpeg", "output_compression": "60"}
    r, html = generate(services_app, "openai", "img2img", data, {"image": image_bytes((96, 96))})
    assert r.status_code == 200, html
    [call] = sent(fakes, "openai", "/v1/images/edits")
    schema = schema_validator("CreateImageEditRequest").schema
    properties = schema["components"]["schemas"]["CreateImageEditRequest"]["properties"]
    # Multipart fields are text: each is read as its schema's type, then validated.
    def typed(key: str, value: str):
        kind = properties[key].get("type")
        return int(value) if "integer" in (kind if isinstance(kind, list) else [kind]) else value

    body = {k: typed(k, v) for k, v in call["form"].items()}
    body["image"] = "image.png"
    schema_validator("CreateImageEditRequest").validate(body)
    assert body["input_fidelity"] == "high" and body["output_compression"] == 60


@pytest.fixture
def localai(make_settings, monkeypatch):
    server = ServerThread(create_localai_app())
    monkeypatch.setenv("OPENAI_API_KEY", "anything")
    yield create_app(make_settings(url_overrides={"openai": server.url})), server
    server.stop()


def test_localai_without_edits_is_told_on_the_page(localai):
    app, server = localai
    client = app.test_client()
    # LocalAI's model names say nothing about what they do: all of them are offered.
    models = options_of(client.get("/services/openai/txt2img/options/model").get_data(
        as_text=True))
    assert "stablediffusion" in models
    data = {"prompt": "make it blue", "model": "stablediffusion", "size": "512x512", "n": "1"}
    r = submit(client, "/services/openai/img2img/generate", content_type="multipart/form-data",
               data={**data, "image": (io.BytesIO(image_bytes()), "in.png")})
    assert r.status_code == 502
    assert "has no POST /v1/images/edits (HTTP 404" in r.html
    page = client.get("/services/openai/img2img").get_data(as_text=True)
    assert "does not seem to offer Image to image" in page
    # Text to image works there, and its page carries no such notice.
    r = submit(client, "/services/openai/txt2img/generate", data=MultiDict(
        {**data, "response_format": "b64_json"}))
    assert r.status_code == 200, r.html
    assert "does not seem to offer" not in client.get("/services/openai/txt2img").get_data(
        as_text=True)


def test_stability_moderation_is_the_prompt_not_the_key(services_app):
    r, html = generate(services_app, "stability", "txt2img",
                       {**defaults(services_app, "stability", "txt2img"),
                        "prompt": "CONTENT_POLICY"})
    assert r.status_code == 502
    assert "Stability AI (Stable Image) refused the request (HTTP 403" in html
    assert "Your request was flagged" in html
    assert "Check the credentials" not in html


def test_stability_wrong_key_is_still_a_credentials_problem(services_app, monkeypatch):
    monkeypatch.setenv("STABILITY_API_KEY", "sk-wrong-key-000")
    r, html = generate(services_app, "stability", "txt2img",
                       {**defaults(services_app, "stability", "txt2img"), "prompt": "a lake"})
    assert r.status_code == 502
    assert "Check the credentials of Stability AI (Stable Image)" in html

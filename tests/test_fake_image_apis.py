"""The fake OpenAI Images and Stability AI apps answer like the real APIs (shapes and errors).

The JMESPath expressions checked here are the ones a service definition should use.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import jmespath
import pytest
from flask.testing import FlaskClient
from PIL import Image

from tests.backends.openai_images import create_openai_app, mask_key
from tests.backends.stability import create_stability_app

OPENAI_AUTH = {"Authorization": "Bearer sk-test"}
STAB_AUTH = {"Authorization": "Bearer sk-stab"}


def png(width: int = 64, height: int = 64, mode: str = "RGBA") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (10, 20, 30, 255)[: len(mode)]).save(buffer, "PNG")
    return buffer.getvalue()


def decoded(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


@pytest.fixture
def openai_app():
    app = create_openai_app()
    app.config["SLOW_SECONDS"] = 0.05
    return app


@pytest.fixture
def oa(openai_app) -> FlaskClient:
    return openai_app.test_client()


@pytest.fixture
def stab_app():
    app = create_stability_app()
    app.config["SLOW_SECONDS"] = 0.05
    return app


@pytest.fixture
def st(stab_app) -> FlaskClient:
    return stab_app.test_client()


def generate(client: FlaskClient, **body: Any):
    return client.post("/v1/images/generations", json=body, headers=OPENAI_AUTH)


def edit(client: FlaskClient, data: dict[str, Any]):
    return client.post(
        "/v1/images/edits", data=data, headers=OPENAI_AUTH, content_type="multipart/form-data"
    )


def openai_error(response) -> dict[str, Any]:
    body = response.get_json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]


# --- OpenAI: auth and models -------------------------------------------------------------


def test_openai_rejects_a_missing_key(oa):
    response = oa.get("/v1/models")
    assert response.status_code == 401
    error = openai_error(response)
    assert error["message"].startswith("You didn't provide an API key.")
    assert error["type"] == "invalid_request_error"
    assert error["code"] is None


def test_openai_rejects_a_wrong_key_masking_it(oa):
    response = oa.get("/v1/models", headers={"Authorization": "Bearer sk-WRONGkeyTHATisLONG1234"})
    assert response.status_code == 401
    error = openai_error(response)
    assert error["code"] == "invalid_api_key"
    assert error["message"].startswith("Incorrect API key provided: sk-WRONG***")
    assert "1234." in error["message"] and "THATisLONG" not in error["message"]
    assert mask_key("short") == "short"


def test_openai_lists_models_including_a_chat_model(oa):
    body = oa.get("/v1/models", headers=OPENAI_AUTH).get_json()
    assert body["object"] == "list"
    ids = jmespath.search("data[*].id", body)
    assert {"gpt-image-1", "dall-e-3", "dall-e-2", "gpt-4o-mini"} <= set(ids)
    assert all(set(m) == {"id", "object", "created", "owned_by"} for m in body["data"])
    image_ids = jmespath.search(
        "data[?starts_with(id, 'dall-e') || starts_with(id, 'gpt-image')].id", body
    )
    assert "gpt-4o-mini" not in image_ids


def test_openai_unknown_url_is_the_real_404(oa):
    response = oa.get("/v1/images/generations", headers=OPENAI_AUTH)
    assert response.status_code == 404
    assert openai_error(response)["message"] == "Invalid URL (GET /v1/images/generations)"


# --- OpenAI: generations -----------------------------------------------------------------


def test_dalle2_url_result_is_served_without_auth(oa, openai_app):
    response = generate(oa, model="dall-e-2", prompt="a red fox", size="256x256", n=2)
    assert response.status_code == 200
    body = response.get_json()
    urls = jmespath.search("data[*].url", body)
    assert len(urls) == 2 and "usage" not in body
    image = oa.get(urls[0].replace("http://localhost", ""))  # no Authorization header
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert Image.open(io.BytesIO(image.data)).size == (256, 256)
    recorded = openai_app.config["REQUESTS"][0]
    assert recorded["json"]["prompt"] == "a red fox" and recorded["auth"] is True


def test_dalle3_b64_has_revised_prompt_and_real_size(oa):
    body = generate(
        oa, model="dall-e-3", prompt="a lighthouse", size="1792x1024",
        quality="hd", style="natural", response_format="b64_json",
    ).get_json()
    assert decoded(jmespath.search("data[0].b64_json", body)).size == (1792, 1024)
    assert "lighthouse" in jmespath.search("data[0].revised_prompt", body)


def test_gpt_image_answers_b64_with_usage(oa):
    response = generate(oa, model="gpt-image-1", prompt="a cat", size="1536x1024", quality="low")
    body = response.get_json()
    assert list(body["data"][0]) == ["b64_json"]
    assert decoded(body["data"][0]["b64_json"]).size == (1536, 1024)
    assert body["size"] == "1536x1024" and body["quality"] == "low"
    assert body["usage"]["output_tokens"] == 400
    assert set(body["usage"]["input_tokens_details"]) == {"text_tokens", "image_tokens"}


def test_gpt_image_output_format_jpeg(oa):
    body = generate(oa, model="gpt-image-1", prompt="x", output_format="jpeg").get_json()
    assert decoded(body["data"][0]["b64_json"]).format == "JPEG"
    assert body["output_format"] == "jpeg"


@pytest.mark.parametrize(
    ("body", "message", "param", "code"),
    [
        ({"model": "dall-e-2"}, "Missing required parameter: 'prompt'.", "prompt",
         "missing_required_parameter"),
        ({"model": "dall-e-2", "prompt": " "}, "Invalid 'prompt': empty string.", "prompt",
         "empty_string"),
        ({"model": "dall-e-3", "prompt": "x", "n": 2}, "You must provide n=1 for this model.",
         None, None),
        ({"model": "dall-e-2", "prompt": "x", "n": 11},
         "11 is greater than the maximum of 10 - 'n'", None, None),
        ({"model": "dall-e-2", "prompt": "x", "size": "1792x1024"},
         "'1792x1024' is not one of ['256x256', '512x512', '1024x1024'] - 'size'", None, None),
        ({"model": "gpt-image-1", "prompt": "x", "size": "512x512"},
         "Invalid value: '512x512'. Supported values are: '1024x1024', '1536x1024', "
         "'1024x1536', and 'auto'.", "size", "invalid_value"),
        ({"model": "gpt-image-1", "prompt": "x", "response_format": "b64_json"},
         "Unknown parameter: 'response_format'.", "response_format", "unknown_parameter"),
        ({"model": "dall-e-2", "prompt": "x", "bogus": 1}, "Unknown parameter: 'bogus'.",
         "bogus", "unknown_parameter"),
        ({"model": "dall-e-9", "prompt": "x"}, "Invalid value: 'dall-e-9'.", "model",
         "invalid_value"),
    ],
)
def test_openai_generation_validation(oa, body, message, param, code):
    response = generate(oa, **body)
    assert response.status_code == 400
    error = openai_error(response)
    assert error["message"].startswith(message)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert jmespath.search("error.message", response.get_json()) == error["message"]


def test_openai_non_json_body(oa):
    response = oa.post("/v1/images/generations", data="x", headers=OPENAI_AUTH)
    assert response.status_code == 400
    assert openai_error(response)["message"].startswith("We could not parse the JSON body")


@pytest.mark.parametrize(
    ("model", "code"),
    [("dall-e-3", "content_policy_violation"), ("gpt-image-1", "moderation_blocked")],
)
def test_openai_content_policy(oa, model, code):
    response = generate(oa, model=model, prompt="a CONTENT_POLICY thing")
    assert response.status_code == 400
    error = openai_error(response)
    assert (error["type"], error["code"], error["param"]) == (
        "image_generation_user_error", code, None
    )
    assert error["message"].startswith("Your request was rejected")


def test_openai_slow_prompt_waits(oa):
    start = time.perf_counter()
    assert generate(oa, model="dall-e-2", prompt="SLOW", size="256x256").status_code == 200
    assert time.perf_counter() - start >= 0.05


# --- OpenAI: edits -----------------------------------------------------------------------


def test_gpt_image_edit_with_mask_and_image_array(oa, openai_app):
    response = edit(
        oa,
        {
            "model": "gpt-image-1",
            "prompt": "make it blue",
            "image[]": [(io.BytesIO(png(96, 64)), "a.png"), (io.BytesIO(png(96, 64)), "b.png")],
            "mask": (io.BytesIO(png(96, 64)), "mask.png"),
        },
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert decoded(body["data"][0]["b64_json"]).size == (1536, 1024)  # auto follows landscape
    assert body["usage"]["input_tokens_details"]["image_tokens"] > 0
    recorded = openai_app.config["REQUESTS"][-1]
    assert recorded["files"] == {"image[]": ["a.png", "b.png"], "mask": ["mask.png"]}
    assert recorded["form"] == {"model": "gpt-image-1", "prompt": "make it blue"}


def test_dalle2_edit_tints_and_resizes(oa):
    response = edit(
        oa,
        {
            "model": "dall-e-2", "prompt": "p", "size": "256x256",
            "response_format": "b64_json", "image": (io.BytesIO(png()), "in.png"),
        },
    )
    assert response.status_code == 200
    result = decoded(response.get_json()["data"][0]["b64_json"]).convert("RGB")
    assert result.size == (256, 256) and result.getpixel((5, 5)) != (10, 20, 30)


@pytest.mark.parametrize(
    ("data", "message", "code"),
    [
        ({"model": "gpt-image-1", "prompt": "p", "image": (io.BytesIO(b"hi"), "a.txt")},
         "Invalid file 'image': unsupported mimetype ('text/plain'). Supported file formats are "
         "'image/png', 'image/jpeg', and 'image/webp'.", "unsupported_file_mimetype"),
        ({"model": "dall-e-2", "prompt": "p", "image": (io.BytesIO(png(64, 32)), "a.png")},
         "Invalid input image - expected an image with equal width and height, got 64x32 "
         "instead.", None),
        ({"model": "dall-e-2", "prompt": "p", "image": (io.BytesIO(png(mode="RGB")), "a.png")},
         "Invalid input image - format must be in ['RGBA', 'LA', 'L'], got RGB.", None),
        ({"model": "gpt-image-1", "prompt": "p"}, "Missing required parameter: 'image'.",
         "missing_required_parameter"),
        ({"model": "dall-e-3", "prompt": "p", "image": (io.BytesIO(png()), "a.png")},
         "Invalid value: 'dall-e-3'.", "invalid_value"),
    ],
)
def test_openai_edit_errors(oa, data, message, code):
    response = edit(oa, data)
    assert response.status_code == 400
    error = openai_error(response)
    assert error["message"].startswith(message) and error["code"] == code


def test_openai_edit_needs_multipart(oa):
    response = oa.post("/v1/images/edits", json={"prompt": "p"}, headers=OPENAI_AUTH)
    assert response.status_code == 400
    assert "expected multipart/form-data" in openai_error(response)["message"]


# --- Stability ---------------------------------------------------------------------------


def sd3(client: FlaskClient, accept: str | None = "image/*", path: str = "sd3", **fields: Any):
    headers = dict(STAB_AUTH)
    if accept is not None:
        headers["Accept"] = accept
    return client.post(
        f"/v2beta/stable-image/generate/{path}", data=fields, headers=headers,
        content_type="multipart/form-data",
    )


def stab_error(response) -> dict[str, Any]:
    body = response.get_json()
    assert set(body) == {"id", "name", "errors"} and body["errors"]
    return body


def test_stability_v2_auth(st):
    response = st.post("/v2beta/stable-image/generate/sd3", data={"prompt": "x"})
    assert response.status_code == 401
    body = stab_error(response)
    assert body["name"] == "unauthorized"
    assert jmespath.search("errors[0]", body) == "authorization: invalid or missing header value"


def test_stability_v1_auth_and_account(st):
    missing = st.get("/v1/user/account")
    assert missing.status_code == 401
    assert missing.get_json()["message"] == "missing authorization header"
    wrong = st.get("/v1/user/account", headers={"Authorization": "Bearer nope"})
    assert wrong.get_json()["message"].startswith("Incorrect API key provided: nope.")
    body = st.get("/v1/user/account", headers=STAB_AUTH).get_json()
    assert set(body) == {"id", "email", "profile_picture", "organizations"}
    assert jmespath.search("organizations[0].name", body) == "Test Organization"


def test_stability_sd3_image_bytes_with_headers(st, stab_app):
    response = sd3(st, prompt="a fox", aspect_ratio="16:9", seed="42", model="sd3.5-medium")
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.headers["seed"] == "42" and response.headers["finish-reason"] == "SUCCESS"
    assert Image.open(io.BytesIO(response.data)).size == (1344, 768)
    recorded = stab_app.config["REQUESTS"][-1]
    assert recorded["form"]["prompt"] == "a fox" and recorded["accept"] == "image/*"


def test_stability_sd3_json_and_jpeg(st):
    response = sd3(st, accept="application/json", prompt="a fox", output_format="jpeg")
    body = response.get_json()
    assert set(body) == {"image", "seed", "finish_reason"}
    assert jmespath.search("finish_reason", body) == "SUCCESS"
    assert 1 <= jmespath.search("seed", body) <= 4294967294
    image = decoded(jmespath.search("image", body))
    assert image.format == "JPEG" and image.size == (1024, 1024)


def test_stability_missing_accept_defaults_to_image(st):
    response = sd3(st, accept=None, prompt="x")
    assert response.status_code == 200 and response.mimetype == "image/png"


def test_stability_image_to_image(st):
    response = sd3(
        st, prompt="winter", mode="image-to-image", strength="0.5",
        image=(io.BytesIO(png(200, 100, "RGB")), "dog.png"),
    )
    assert response.status_code == 200
    width, height = Image.open(io.BytesIO(response.data)).size
    assert abs(width / height - 2) < 0.1 and 0.9e6 < width * height < 1.1e6  # ~1 MP, input's shape


def test_stability_core_with_style_preset(st):
    response = sd3(st, path="core", prompt="x", style_preset="anime", output_format="webp")
    assert response.status_code == 200 and response.mimetype == "image/webp"
    assert Image.open(io.BytesIO(response.data)).size == (1536, 1536)


@pytest.mark.parametrize(
    ("fields", "first_error"),
    [
        ({}, "prompt: is required"),
        ({"prompt": ""}, "prompt: cannot be empty"),
        ({"prompt": "x", "aspect_ratio": "7:3"}, "aspect_ratio: invalid enum value."),
        ({"prompt": "x", "model": "sd9"}, "model: invalid enum value."),
        ({"prompt": "x", "seed": "4294967295"}, "seed: must be an integer between"),
        ({"prompt": "x", "mode": "image-to-image", "strength": "0.5"}, "image: is required"),
        ({"prompt": "x", "mode": "image-to-image",
          "image": (io.BytesIO(png()), "a.png")}, "strength: is required"),
    ],
)
def test_stability_validation(st, fields, first_error):
    response = sd3(st, **fields)
    assert response.status_code == 400
    body = stab_error(response)
    assert body["name"] == "bad_request"
    assert jmespath.search("errors[0]", body).startswith(first_error)


def test_stability_rejects_json_body_and_bad_accept(st):
    response = st.post(
        "/v2beta/stable-image/generate/sd3", json={"prompt": "x"}, headers=STAB_AUTH
    )
    assert stab_error(response)["errors"] == ["content-type: must be multipart/form-data"]
    response = st.post("/v2beta/stable-image/generate/sd3", headers=STAB_AUTH)
    assert stab_error(response)["errors"] == ["content-type: required"]
    response = sd3(st, accept="text/html", prompt="x")
    assert response.status_code == 400 and stab_error(response)["name"] == "bad_request"


def test_stability_content_moderation(st):
    response = sd3(st, prompt="CONTENT_POLICY please")
    assert response.status_code == 403
    body = stab_error(response)
    assert body["name"] == "content_moderation"
    assert body["errors"][0].startswith("Your request was flagged by our content moderation")


def test_stability_slow_prompt_waits(st):
    start = time.perf_counter()
    assert sd3(st, prompt="SLOW").status_code == 200
    assert time.perf_counter() - start >= 0.05

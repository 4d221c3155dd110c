"""The fake OpenAI Images, LocalAI and Stability AI apps answer like the real APIs.

The JMESPath expressions checked here are the ones a service definition should use. Each test
names its source; the short names used below are:

* OPENAPI: github.com/openai/openai-openapi ``openapi.json`` @ f85dbe22 (2026-08-21), trimmed to
  ``tests/fixtures/openai/images-openapi.json``;
* LOCALAI: github.com/mudler/LocalAI @ 82c191af (2026-08-22);
* ECHO: github.com/labstack/echo v4.15.1 (the version LocalAI's go.mod pins);
* STABILITY: Stability's OpenAPI document as vendored by github.com/tryAGI/StabilityAI
  (``src/libs/StabilityAI/openapi.yaml`` @ 016c91ba), trimmed to
  ``tests/fixtures/stability/stable-image-errors.json``.
"""

from __future__ import annotations

import io
import json
import re
import time
from typing import Any

import jmespath
import pytest
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from PIL import Image

from .backends.openai_images import (
    IMAGE_MODELS,
    OTHER_MODELS,
    create_openai_app,
    load_spec,
    mask_key,
    schema_validator,
)
from .backends.stability import create_stability_app
from .helpers import b64, decoded, fixture_json, image_bytes

OPENAI_AUTH = {"Authorization": "Bearer sk-test"}
STAB_AUTH = {"Authorization": "Bearer sk-stab"}
# The filter a definition should apply to /v1/models to offer image models only.
IMAGE_MODEL_FILTER = "data[?starts_with(id, 'dall-e') || contains(id, 'image')].id"
# Images to edit, with an alpha channel (dall-e-2 wants a square RGBA PNG).
SQUARE = image_bytes(mode="RGBA")
LANDSCAPE = image_bytes((96, 64), mode="RGBA")


def conforms(schema: str, instance: Any) -> None:
    """INSTANCE is valid under the official schema of that name (OPENAPI)."""
    errors = [e.message for e in schema_validator(schema).iter_errors(instance)]
    assert not errors, errors


@pytest.fixture
def openai_app():
    app = create_openai_app()
    app.config["SLOW_SECONDS"] = 0.05
    return app


@pytest.fixture
def oa(openai_app) -> FlaskClient:
    return openai_app.test_client()


@pytest.fixture
def localai_app():
    return create_openai_app(flavor="localai")


@pytest.fixture
def la(localai_app) -> FlaskClient:
    return localai_app.test_client()


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
    conforms("ErrorResponse", body)  # OPENAPI: Error, ErrorResponse
    return body["error"]


def events(response) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events of a streamed answer, as (event, data) pairs."""
    found = []
    for block in response.get_data(as_text=True).split("\n\n"):
        if block.strip():
            name, data = block.split("\n")
            found.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return found


# --- OpenAI: the spec fixture ------------------------------------------------------------


def test_openai_fixture_is_the_trimmed_official_spec():
    # OPENAPI; tests/fixtures/openai/README.md.
    document = fixture_json("openai", "images-openapi.json")
    assert "f85dbe223d40e1a31cba812ab2d755c7e98a92a3" in document["$comment"]
    Draft202012Validator.check_schema(document)
    schemas = document["components"]["schemas"]
    assert {"CreateImageRequest", "CreateImageEditRequest", "ImagesResponse", "Model"} <= set(
        schemas
    )
    generation_models = schemas["CreateImageRequest"]["properties"]["model"]["anyOf"][1]["enum"]
    edit_models = schemas["CreateImageEditRequest"]["properties"]["model"]["anyOf"][1]["enum"]
    assert "dall-e-3" in generation_models and "dall-e-3" not in edit_models
    assert "chatgpt-image-latest" in edit_models and "chatgpt-image-latest" not in (
        generation_models
    )
    assert {m for m, s in IMAGE_MODELS.items() if s.generate} == set(generation_models)
    assert {m for m, s in IMAGE_MODELS.items() if s.edit} == set(edit_models)
    assert load_spec() == document


# --- OpenAI: auth and models -------------------------------------------------------------


def test_openai_rejects_a_missing_key(oa):
    # Captured bodies (module docstring of tests/backends/openai_images.py).
    response = oa.get("/v1/models")
    assert response.status_code == 401
    error = openai_error(response)
    assert error["message"].startswith("You didn't provide an API key.")
    assert error["type"] == "invalid_request_error"
    assert error["code"] is None


def test_openai_rejects_a_wrong_key_masking_it(oa):
    # Captured 401 bodies (docstring of tests/backends/openai_images.py).
    response = oa.get("/v1/models", headers={"Authorization": "Bearer sk-WRONGkeyTHATisLONG1234"})
    assert response.status_code == 401
    error = openai_error(response)
    assert error["code"] == "invalid_api_key"
    assert error["message"].startswith("Incorrect API key provided: sk-WRONG***")
    assert "1234." in error["message"] and "THATisLONG" not in error["message"]
    assert mask_key("short") == "short"


def test_openai_lists_every_model_of_the_account(oa):
    # OPENAPI: ListModelsResponse and Model ({id, object: "model", created, owned_by,
    # shutdown_date}); ids from the spec's model enums.
    body = oa.get("/v1/models", headers=OPENAI_AUTH).get_json()
    conforms("ListModelsResponse", body)
    assert body["object"] == "list"
    ids = jmespath.search("data[*].id", body)
    assert set(OTHER_MODELS) <= set(ids)
    assert {"gpt-4o-mini", "text-embedding-3-small", "tts-1", "whisper-1"} <= set(ids)
    assert all(
        set(m) == {"id", "object", "created", "owned_by", "shutdown_date"} for m in body["data"]
    )
    # The filter a definition should use keeps exactly the image models ...
    assert set(jmespath.search(IMAGE_MODEL_FILTER, body)) == set(IMAGE_MODELS)
    # ... which a prefix filter on gpt-image does not: chatgpt-image-latest is an image model.
    naive = jmespath.search(
        "data[?starts_with(id, 'dall-e') || starts_with(id, 'gpt-image')].id", body
    )
    assert "chatgpt-image-latest" not in naive


def test_openai_retrieves_one_model(oa):
    # OPENAPI: GET /models/{model} answers a Model; unknown ids: captured model_not_found.
    body = oa.get("/v1/models/gpt-image-1", headers=OPENAI_AUTH).get_json()
    conforms("Model", body)
    missing = oa.get("/v1/models/dall-e-9", headers=OPENAI_AUTH)
    assert missing.status_code == 404 and openai_error(missing)["code"] == "model_not_found"


def test_openai_unknown_url_is_the_real_404(oa):
    # Captured body: a wrong path or method is 404 "Invalid URL (...)".
    response = oa.get("/v1/images/generations", headers=OPENAI_AUTH)
    assert response.status_code == 404
    assert openai_error(response)["message"] == "Invalid URL (GET /v1/images/generations)"


# --- OpenAI: generations -----------------------------------------------------------------


def test_dalle2_url_result_is_served_without_auth(oa, openai_app):
    # OPENAPI: response_format defaults to url for DALL-E.
    response = generate(oa, model="dall-e-2", prompt="a red fox", size="256x256", n=2)
    assert response.status_code == 200
    body = response.get_json()
    conforms("ImagesResponse", body)
    urls = jmespath.search("data[*].url", body)
    assert len(urls) == 2 and "usage" not in body
    image = oa.get(urls[0].replace("http://localhost", ""))  # no Authorization header
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert Image.open(io.BytesIO(image.data)).size == (256, 256)
    recorded = openai_app.config["REQUESTS"][0]
    assert recorded["json"]["prompt"] == "a red fox" and recorded["auth"] is True


def test_openai_model_defaults_to_dalle2(oa):
    # OPENAPI CreateImageRequest.model: "Defaults to dall-e-2 unless a parameter specific to
    # the GPT image models is used."
    body = generate(oa, prompt="a red fox", size="256x256").get_json()
    assert "url" in body["data"][0] and "usage" not in body
    body = generate(oa, prompt="a red fox", output_format="webp").get_json()
    assert decoded(body["data"][0]["b64_json"]).format == "WEBP" and "usage" in body


def test_dalle3_b64_has_revised_prompt_and_real_size(oa):
    # OPENAPI: hd is a dall-e-3 quality, style is dall-e-3 only, revised_prompt dall-e-3 only.
    body = generate(
        oa, model="dall-e-3", prompt="a lighthouse", size="1792x1024",
        quality="hd", style="natural", response_format="b64_json",
    ).get_json()
    conforms("ImagesResponse", body)
    assert decoded(jmespath.search("data[0].b64_json", body)).size == (1792, 1024)
    assert "lighthouse" in jmespath.search("data[0].revised_prompt", body)


GPT_GENERATORS = [m for m, s in IMAGE_MODELS.items() if s.gpt_image and s.generate]


@pytest.mark.parametrize("model", GPT_GENERATORS)
def test_gpt_image_answers_b64_with_usage(oa, model):
    # OPENAPI: GPT image models always return b64_json; ImagesResponse carries background,
    # output_format, quality, size and usage (ImageGenUsage); token counts from the guide.
    response = generate(oa, model=model, prompt="a cat", size="1536x1024", quality="low")
    body = response.get_json()
    conforms("ImagesResponse", body)
    assert list(body["data"][0]) == ["b64_json"]
    assert decoded(body["data"][0]["b64_json"]).size == (1536, 1024)
    assert body["size"] == "1536x1024" and body["quality"] == "low"
    assert body["usage"]["output_tokens"] == 400
    assert set(body["usage"]["input_tokens_details"]) == {"text_tokens", "image_tokens"}


def test_gpt_image_output_format_jpeg(oa):
    # OPENAPI: output_format png | jpeg | webp for GPT image models, echoed in the response.
    body = generate(oa, model="gpt-image-1", prompt="x", output_format="jpeg").get_json()
    assert decoded(body["data"][0]["b64_json"]).format == "JPEG"
    assert body["output_format"] == "jpeg"


def test_gpt_image_2_takes_custom_sizes(oa):
    # OPENAPI CreateImageRequest.size: gpt-image-2 takes WxH with sides divisible by 16 and an
    # aspect ratio between 1:3 and 3:1 ("for example 1536x864"); other models do not.
    body = generate(oa, model="gpt-image-2", prompt="x", size="1536x864", quality="low").get_json()
    assert decoded(body["data"][0]["b64_json"]).size == (1536, 864)
    assert body["size"] == "1536x864"
    for size in ("1000x1000", "3072x768", "4096x2304"):
        refused = generate(oa, model="gpt-image-2", prompt="x", size=size)
        assert refused.status_code == 400 and openai_error(refused)["param"] == "size"
    refused = generate(oa, model="gpt-image-1", prompt="x", size="1536x864")
    assert openai_error(refused)["code"] == "invalid_value"


def test_openai_nullable_fields_accept_null(oa):
    # OPENAPI: n, quality, size... are "nullable": true.
    response = generate(oa, model="gpt-image-1", prompt="x", n=None, quality=None, size=None)
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    ("body", "message", "param", "code"),
    [
        # Legacy DALL-E wording (module docstring); limits from OPENAPI.
        ({"model": "dall-e-2"}, "Missing required parameter: 'prompt'.", "prompt",
         "missing_required_parameter"),
        ({"model": "dall-e-2", "prompt": " "}, "Invalid 'prompt': empty string.", "prompt",
         "empty_string"),
        ({"model": "dall-e-3", "prompt": "x", "n": 2}, "You must provide n=1 for this model.",
         None, None),
        ({"model": "dall-e-2", "prompt": "x", "n": 11},
         "11 is greater than the maximum of 10 - 'n'", None, None),
        ({"model": "dall-e-2", "prompt": "x", "n": "2"},
         "'2' is not of type 'integer' - 'n'", None, None),
        ({"model": "dall-e-2", "prompt": "x", "response_format": "png"},
         "'png' is not one of ['url', 'b64_json'] - 'response_format'", None, None),
        ({"model": "dall-e-2", "prompt": "x", "size": "1792x1024"},
         "'1792x1024' is not one of ['256x256', '512x512', '1024x1024'] - 'size'", None, None),
        ({"model": "dall-e-3", "prompt": "x", "size": "512x512"},
         "'512x512' is not one of ['1024x1024', '1792x1024', '1024x1792'] - 'size'", None, None),
        # quality: standard only for dall-e-2, hd/standard for dall-e-3 (OPENAPI).
        ({"model": "dall-e-2", "prompt": "x", "quality": "hd"},
         "Invalid value: 'hd'. Supported values are: 'standard' and 'auto'.", "quality",
         "invalid_value"),
        ({"model": "dall-e-3", "prompt": "x", "quality": "high"},
         "Invalid value: 'high'. Supported values are: 'standard', 'hd', and 'auto'.",
         "quality", "invalid_value"),
        ({"model": "dall-e-2", "prompt": "x" * 1001}, "Invalid 'prompt': string too long.",
         "prompt", "string_above_max_length"),
        # Parameters a model does not take (OPENAPI descriptions).
        ({"model": "dall-e-2", "prompt": "x", "style": "vivid"},
         "Unknown parameter: 'style'.", "style", "unknown_parameter"),
        ({"model": "dall-e-3", "prompt": "x", "background": "opaque"},
         "Unknown parameter: 'background'.", "background", "unknown_parameter"),
        ({"model": "dall-e-3", "prompt": "x", "stream": True},
         "Unknown parameter: 'stream'.", "stream", "unknown_parameter"),
        ({"model": "gpt-image-1", "prompt": "x", "response_format": "b64_json"},
         "Unknown parameter: 'response_format'.", "response_format", "unknown_parameter"),
        ({"model": "gpt-image-1", "prompt": "x", "style": "vivid"},
         "Unknown parameter: 'style'.", "style", "unknown_parameter"),
        ({"model": "dall-e-2", "prompt": "x", "bogus": 1}, "Unknown parameter: 'bogus'.",
         "bogus", "unknown_parameter"),
        # GPT image models: the newer wording.
        ({"model": "gpt-image-1", "prompt": "x", "size": "512x512"},
         "Invalid value: '512x512'. Supported values are: '1024x1024', '1536x1024', "
         "'1024x1536', and 'auto'.", "size", "invalid_value"),
        ({"model": "gpt-image-1", "prompt": "x", "quality": "hd"},
         "Invalid value: 'hd'. Supported values are: 'low', 'medium', 'high', and 'auto'.",
         "quality", "invalid_value"),
        ({"model": "gpt-image-1", "prompt": "x", "quality": "ultra"},
         "Invalid value: 'ultra'. Supported values are: 'standard', 'hd', 'low', 'medium', "
         "'high', and 'auto'.", "quality", "invalid_value"),
        ({"model": "gpt-image-1", "prompt": "x", "n": 11},
         "Invalid 'n': integer above maximum value. Expected a value <= 10, but got 11 instead.",
         "n", "integer_above_max_value"),
        ({"model": "gpt-image-1", "prompt": "x", "n": 0},
         "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
         "n", "integer_below_min_value"),
        ({"model": "gpt-image-1", "prompt": "x", "n": "2"},
         "Invalid type for 'n': expected an integer, but got a string instead.", "n",
         "invalid_type"),
        ({"model": "gpt-image-1", "prompt": "x", "partial_images": 4},
         "Invalid 'partial_images': integer above maximum value. Expected a value <= 3",
         "partial_images", "integer_above_max_value"),
        ({"model": "gpt-image-1", "prompt": "x", "moderation": "strict"},
         "Invalid value: 'strict'. Supported values are: 'low' and 'auto'.", "moderation",
         "invalid_value"),
        ({"model": "gpt-image-1", "prompt": "x", "output_compression": 101},
         "Invalid 'output_compression': integer above maximum value.", "output_compression",
         "integer_above_max_value"),
        ({"model": "gpt-image-1", "prompt": "x", "background": "clear"},
         "Invalid value: 'clear'. Supported values are: 'transparent', 'opaque', and 'auto'.",
         "background", "invalid_value"),
        # Models: chatgpt-image-latest is an edits model only (OPENAPI enums).
        ({"model": "dall-e-9", "prompt": "x"}, "Invalid value: 'dall-e-9'.", "model",
         "invalid_value"),
        ({"model": "chatgpt-image-latest", "prompt": "x"},
         "Invalid value: 'chatgpt-image-latest'.", "model", "invalid_value"),
    ],
)
def test_openai_generation_validation(oa, body, message, param, code):
    # Sources per case in the parameter list above.
    response = generate(oa, **body)
    assert response.status_code == 400
    error = openai_error(response)
    assert error["message"].startswith(message)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert jmespath.search("error.message", response.get_json()) == error["message"]


def test_openai_non_json_body(oa):
    # Captured body for an unparsable JSON request.
    response = oa.post("/v1/images/generations", data="x", headers=OPENAI_AUTH)
    assert response.status_code == 400
    assert openai_error(response)["message"].startswith("We could not parse the JSON body")


@pytest.mark.parametrize(
    ("model", "code"),
    [("dall-e-3", "content_policy_violation"), ("gpt-image-1", "moderation_blocked")],
)
def test_openai_content_policy(oa, model, code):
    # Captured bodies: content_policy_violation (DALL-E), moderation_blocked (GPT image).
    response = generate(oa, model=model, prompt="a CONTENT_POLICY thing")
    assert response.status_code == 400
    error = openai_error(response)
    assert (error["type"], error["code"], error["param"]) == (
        "image_generation_user_error", code, None
    )
    assert error["message"].startswith("Your request was rejected")


def test_openai_slow_prompt_waits(oa):
    # The fake's SLOW trigger (no real-API behaviour).
    start = time.perf_counter()
    assert generate(oa, model="dall-e-2", prompt="SLOW", size="256x256").status_code == 200
    assert time.perf_counter() - start >= 0.05


def test_gpt_image_streams_partial_images(oa):
    # OPENAPI: stream/partial_images (0-3); the "Streaming" example's wire format; events are
    # ImageGenPartialImageEvent and ImageGenCompletedEvent.
    response = generate(oa, model="gpt-image-1", prompt="x", stream=True, partial_images=2,
                        size="1024x1024", quality="low")
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    found = events(response)
    assert [name for name, _ in found] == [
        "image_generation.partial_image", "image_generation.partial_image",
        "image_generation.completed",
    ]
    for index, (_, partial) in enumerate(found[:2]):
        conforms("ImageGenPartialImageEvent", partial)
        assert partial["partial_image_index"] == index
    conforms("ImageGenCompletedEvent", found[2][1])
    assert decoded(found[2][1]["b64_json"]).size == (1024, 1024)


# --- OpenAI: edits -----------------------------------------------------------------------


def test_gpt_image_edit_with_mask_and_image_array(oa, openai_app):
    # OPENAPI CreateImageEditRequest: image[] up to 16 images, mask the size of the first.
    response = edit(
        oa,
        {
            "model": "gpt-image-1",
            "prompt": "make it blue",
            "size": "auto",
            "image[]": [(io.BytesIO(LANDSCAPE), "a.png"), (io.BytesIO(LANDSCAPE), "b.png")],
            "mask": (io.BytesIO(LANDSCAPE), "mask.png"),
        },
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    conforms("ImagesResponse", body)
    assert decoded(body["data"][0]["b64_json"]).size == (1536, 1024)  # auto follows landscape
    assert body["usage"]["input_tokens_details"]["image_tokens"] > 0
    recorded = openai_app.config["REQUESTS"][-1]
    assert recorded["files"] == {"image[]": ["a.png", "b.png"], "mask": ["mask.png"]}
    assert recorded["form"] == {"model": "gpt-image-1", "prompt": "make it blue", "size": "auto"}


def test_openai_edit_defaults(oa):
    # OPENAPI CreateImageEditRequest: model defaults to gpt-image-1.5, size to 1024x1024.
    response = edit(oa, {"prompt": "p", "image": (io.BytesIO(LANDSCAPE), "a.png")})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["size"] == "1024x1024" and "usage" in body
    assert decoded(body["data"][0]["b64_json"]).size == (1024, 1024)


def test_dalle2_edit_tints_and_resizes(oa):
    # OPENAPI: dall-e-2 edits take response_format and quality "standard".
    response = edit(
        oa,
        {
            "model": "dall-e-2", "prompt": "p", "size": "256x256", "quality": "standard",
            "response_format": "b64_json",
            "image": (io.BytesIO(image_bytes(colour=(10, 20, 30), mode="RGBA")), "in.png"),
        },
    )
    assert response.status_code == 200, response.get_json()
    result = decoded(response.get_json()["data"][0]["b64_json"]).convert("RGB")
    assert result.size == (256, 256) and result.getpixel((5, 5)) != (10, 20, 30)


def test_gpt_image_edit_input_fidelity(oa):
    # OPENAPI InputFidelity: "only supported for gpt-image-1 and gpt-image-1.5 and later
    # models, unsupported for gpt-image-1-mini".
    for model in ("gpt-image-1", "gpt-image-1.5", "gpt-image-2"):
        response = edit(oa, {"model": model, "prompt": "p", "input_fidelity": "high",
                             "image": (io.BytesIO(SQUARE), "a.png")})
        assert response.status_code == 200, (model, response.get_json())
    response = edit(oa, {"model": "gpt-image-1-mini", "prompt": "p", "input_fidelity": "high",
                         "image": (io.BytesIO(SQUARE), "a.png")})
    assert openai_error(response)["code"] == "unknown_parameter"


def test_gpt_image_streams_edits(oa):
    # OPENAPI: the edits "Streaming" example; ImageEditPartialImageEvent/CompletedEvent.
    response = edit(oa, {"model": "gpt-image-1", "prompt": "p", "stream": "true",
                         "partial_images": "1", "image": (io.BytesIO(SQUARE), "a.png")})
    found = events(response)
    assert [name for name, _ in found] == ["image_edit.partial_image", "image_edit.completed"]
    conforms("ImageEditPartialImageEvent", found[0][1])
    conforms("ImageEditCompletedEvent", found[1][1])


@pytest.mark.parametrize(
    ("data", "message", "code"),
    [
        ({"model": "gpt-image-1", "prompt": "p", "image": (io.BytesIO(b"hi"), "a.txt")},
         "Invalid file 'image': unsupported mimetype ('text/plain'). Supported file formats are "
         "'image/png', 'image/jpeg', and 'image/webp'.", "unsupported_file_mimetype"),
        ({"model": "dall-e-2", "prompt": "p",
          "image": (io.BytesIO(image_bytes((64, 32), mode="RGBA")), "a.png")},
         "Invalid input image - expected an image with equal width and height, got 64x32 "
         "instead.", None),
        ({"model": "dall-e-2", "prompt": "p", "image": (io.BytesIO(image_bytes()), "a.png")},
         "Invalid input image - format must be in ['RGBA', 'LA', 'L'], got RGB.", None),
        ({"model": "gpt-image-1", "prompt": "p"}, "Missing required parameter: 'image'.",
         "missing_required_parameter"),
        # OPENAPI: dall-e-3 is not an edits model.
        ({"model": "dall-e-3", "prompt": "p", "image": (io.BytesIO(SQUARE), "a.png")},
         "Invalid value: 'dall-e-3'.", "invalid_value"),
        # OPENAPI: "The mask ... Must be a valid PNG file".
        ({"model": "gpt-image-1", "prompt": "p", "image": (io.BytesIO(SQUARE), "a.png"),
          "mask": (io.BytesIO(b"x"), "m.jpg")},
         "Invalid file 'mask': unsupported mimetype ('image/jpeg').", "unsupported_file_mimetype"),
        # OPENAPI: moderation is not a field of the multipart CreateImageEditRequest.
        ({"model": "gpt-image-1", "prompt": "p", "moderation": "low",
          "image": (io.BytesIO(SQUARE), "a.png")}, "Unknown parameter: 'moderation'.",
         "unknown_parameter"),
        # OPENAPI: image is an array of at most 16.
        ({"model": "gpt-image-1", "prompt": "p",
          "image[]": [(io.BytesIO(SQUARE), f"{i}.png") for i in range(17)]},
         "Invalid 'image': array too long.", "array_above_max_length"),
        ({"model": "gpt-image-1", "prompt": "p", "n": "11",
          "image": (io.BytesIO(SQUARE), "a.png")},
         "Invalid 'n': integer above maximum value.", "integer_above_max_value"),
        ({"model": "dall-e-2", "prompt": "p", "output_format": "png",
          "image": (io.BytesIO(SQUARE), "a.png")}, "Unknown parameter: 'output_format'.",
         "unknown_parameter"),
    ],
)
def test_openai_edit_errors(oa, data, message, code):
    # Sources per case in the parameter list above (captured bodies, OPENAPI).
    response = edit(oa, data)
    assert response.status_code == 400
    error = openai_error(response)
    assert error["message"].startswith(message) and error["code"] == code


def test_openai_json_edit(oa):
    # OPENAPI: /images/edits also takes application/json (EditImageBodyJsonParam): images as
    # image_url (data URLs) or file_id references, GPT image models only, size default auto.
    data_url = "data:image/png;base64," + b64(LANDSCAPE)
    response = oa.post("/v1/images/edits", headers=OPENAI_AUTH,
                       json={"prompt": "p", "images": [{"image_url": data_url}]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["size"] == "1536x1024"
    dalle = oa.post("/v1/images/edits", headers=OPENAI_AUTH, json={
        "model": "dall-e-2", "prompt": "p", "images": [{"image_url": data_url}]})
    assert openai_error(dalle)["param"] == "model"
    empty = oa.post("/v1/images/edits", headers=OPENAI_AUTH, json={"prompt": "p", "images": []})
    assert openai_error(empty)["code"] == "array_below_min_length"


def test_openai_edit_needs_multipart_or_json(oa):
    # OPENAPI: edits take multipart/form-data or application/json; message approximated.
    response = oa.post("/v1/images/edits", data="x", headers={**OPENAI_AUTH,
                                                             "Content-Type": "text/plain"})
    assert response.status_code == 400
    assert "expected multipart/form-data" in openai_error(response)["message"]


# --- LocalAI -----------------------------------------------------------------------------


def test_localai_has_no_edits_route(la, oa):
    # LOCALAI core/http/routes/openai.go registers no /v1/images/edits; an unknown route is
    # render.go notFoundHandler's JSON (schema.APIError: code, message, type; param omitted).
    response = la.post("/v1/images/edits", data={"prompt": "p", "image": (io.BytesIO(SQUARE),
                       "a.png")}, content_type="multipart/form-data")
    assert response.status_code == 404
    assert response.get_json() == {
        "error": {"code": 404, "message": "Resource not found", "type": ""}
    }
    # OpenAI's own 404 for a route it lacks reads differently.
    assert openai_error(oa.post("/v1/images/variationz", headers=OPENAI_AUTH))[
        "message"].startswith("Invalid URL")
    # app.go: an HTML-accepting request gets the web UI (200) instead.
    html = la.post("/v1/images/edits", headers={"Accept": "text/html"})
    assert html.status_code == 200 and html.mimetype == "text/html"


def test_localai_wrong_method_is_echo_405(la):
    # ECHO: ErrMethodNotAllowed; LOCALAI app.go HTTPErrorHandler puts err.Error() in message.
    response = la.get("/v1/images/generations")
    assert response.status_code == 405
    assert response.get_json()["error"]["message"] == "code=405, message=Method Not Allowed"


def test_localai_lists_every_model(la):
    # LOCALAI endpoints/openai/list.go: every configured model and loose file, as {id, object}.
    body = la.get("/v1/models").get_json()
    assert body["object"] == "list"
    assert all(set(m) == {"id", "object"} for m in body["data"])
    ids = jmespath.search("data[*].id", body)
    assert {"gpt-4", "text-embedding-ada-002", "tts-1", "whisper-1", "stablediffusion"} <= set(
        ids)
    assert any(i.endswith(".gguf") for i in ids)
    # ?filter= is a regular expression on the name.
    assert jmespath.search("data[*].id", la.get("/v1/models?filter=^gpt").get_json()) == [
        "gpt-4", "gpt-4o"]
    # Names say nothing about capabilities: the OpenAI filter finds nothing here ...
    assert jmespath.search(IMAGE_MODEL_FILTER, body) == []
    # ... /v1/models/capabilities (list_capabilities.go) does; a loose file has null lists.
    capabilities = la.get("/v1/models/capabilities").get_json()
    assert jmespath.search(
        "data[?contains(capabilities || `[]`, 'image')].id", capabilities
    ) == ["stablediffusion"]
    assert jmespath.search("data[?id=='stablediffusion'] | [0]", capabilities) == {
        "id": "stablediffusion", "object": "model", "capabilities": ["image"],
        "input_modalities": ["text"], "output_modalities": ["image"],
    }


def test_localai_generation_answers_urls_by_default(la):
    # LOCALAI endpoints/openai/image.go: URLs under /generated-images unless b64_json;
    # items are schema.Item ({embedding: null, index: 0, url}); usage is all zeros.
    response = la.post("/v1/images/generations", json={"prompt": "a cat", "size": "256x256"})
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["created", "id", "data", "usage"]
    assert body["data"] == [{"embedding": None, "index": 0, "url": body["data"][0]["url"]}]
    assert re.fullmatch(r"http://localhost/generated-images/b64\d+\.png", body["data"][0]["url"])
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                             "input_tokens_details": {"text_tokens": 0, "image_tokens": 0}}
    image = la.get(jmespath.search("data[0].url", body).replace("http://localhost", ""))
    assert Image.open(io.BytesIO(image.data)).size == (256, 256)
    # The definition's result expression works on it.
    assert jmespath.search("data[].b64_json || data[].url", body) == [body["data"][0]["url"]]


def test_localai_generation_fields(la):
    # LOCALAI image.go: b64_json on request; prompt lists and n multiply; size without "x" is
    # 512x512; a non-numeric side is a 500.
    body = la.post("/v1/images/generations", json={
        "prompt": ["a", "b|ugly"], "n": 2, "response_format": "b64_json"}).get_json()
    assert len(body["data"]) == 4 and list(body["data"][0]) == ["embedding", "index", "b64_json"]
    assert decoded(body["data"][0]["b64_json"]).size == (512, 512)
    bad = la.post("/v1/images/generations", json={"prompt": "a", "size": "axb"})
    assert (bad.status_code, bad.get_json()["error"]["message"]) == (
        500, "invalid value for 'size'")
    ignored = la.post("/v1/images/generations", json={"prompt": "a", "quality": "hd",
                                                      "background": "transparent"})
    assert ignored.status_code == 200


def test_localai_generation_errors(la):
    # LOCALAI middleware/request.go: unknown models are 404; ECHO bind errors wrapped as
    # "failed parsing request body".
    missing = la.post("/v1/images/generations", json={"prompt": "a", "model": "dall-e-3"})
    assert missing.status_code == 404
    assert missing.get_json()["error"] == {
        "code": 404, "type": "invalid_request_error",
        "message": 'model "dall-e-3" not found. To see available models, call GET /v1/models',
    }
    typed = la.post("/v1/images/generations", json={"prompt": "a", "n": "2"})
    assert typed.status_code == 400
    message = typed.get_json()["error"]["message"]
    assert message.startswith("code=400, message=failed parsing request body: code=400, "
                              "message=Unmarshal type error: expected=int, got=string, field=n")
    assert message.endswith("internal=json: cannot unmarshal string into Go struct field "
                            "OpenAIRequest.n of type int")


def test_localai_inpainting_is_its_own_route(la):
    # LOCALAI endpoints/openai/inpainting.go: multipart image + mask required; the URL it
    # answers is outside the served directory (app.go), so it 404s.
    missing = la.post("/v1/images/inpainting", data={
        "model": "stablediffusion", "prompt": "p", "image": (io.BytesIO(SQUARE), "a.png")},
        content_type="multipart/form-data")
    assert missing.get_json()["error"]["message"] == "code=400, message=missing mask file"
    done = la.post("/v1/images/inpainting", data={
        "model": "stablediffusion", "prompt": "p", "image": (io.BytesIO(SQUARE), "a.png"),
        "mask": (io.BytesIO(SQUARE), "m.png")}, content_type="multipart/form-data")
    url = jmespath.search("data[0].url", done.get_json())
    assert la.get(url.replace("http://localhost", "")).status_code == 404


def test_localai_auth_when_keys_are_set():
    # LOCALAI core/http/auth/middleware.go: 401 body and WWW-Authenticate; the middleware wraps
    # unknown routes (401 before 404) and /generated-images; bearer, x-api-key accepted;
    # /healthz public.
    client = create_openai_app(flavor="localai", api_key="lk").test_client()
    refused = client.post("/v1/images/edits")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert refused.get_json() == {"error": {
        "code": 401, "message": "An authentication key is required",
        "type": "invalid_request_error"}}
    assert client.post("/v1/images/edits", headers={"Authorization": "Bearer lk"}).status_code == (
        404)
    assert client.get("/v1/models", headers={"x-api-key": "lk"}).status_code == 200
    assert client.get("/healthz").status_code == 200
    body = client.post("/v1/images/generations", json={"prompt": "a"},
                       headers={"Authorization": "Bearer lk"}).get_json()
    path = jmespath.search("data[0].url", body).replace("http://localhost", "")
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer lk"}).status_code == 200


def test_localai_takes_no_key_by_default(la):
    # LOCALAI auth/middleware.go: no auth DB and no API keys: everything passes.
    assert la.get("/v1/models").status_code == 200


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


def stability_document() -> dict[str, Any]:
    return fixture_json("stability", "stable-image-errors.json")


def stability_schema(pointer: str) -> Draft202012Validator:
    """A validator for a JSON pointer into the Stability fixture (STABILITY)."""
    return Draft202012Validator({**stability_document(), "$ref": pointer})


def classify(status: int, body: dict[str, Any]) -> str:
    """How a client should read a Stability error: by ``name`` (STABILITY: "useful for
    discriminating between errors with the same status code"), not by status alone."""
    name = body.get("name")
    if name == "content_moderation":
        return "moderation"
    if name in ("unauthorized", "permission_denied") or status == 401:
        return "credentials"
    if status == 429:
        return "rate_limit"
    return "request" if status < 500 else "server"


def test_stability_v2_auth(st):
    # Captured live (module docstring of tests/backends/stability.py); not in the spec.
    response = st.post("/v2beta/stable-image/generate/sd3", data={"prompt": "x"})
    assert response.status_code == 401
    body = stab_error(response)
    assert body["name"] == "unauthorized"
    assert jmespath.search("errors[0]", body) == "authorization: invalid or missing header value"
    assert classify(401, body) == "credentials"


def test_stability_v1_auth_and_account(st):
    # STABILITY components.responses.401 (Error {id, name, message}); wrong key captured live.
    missing = st.get("/v1/user/account")
    assert missing.status_code == 401
    assert missing.get_json()["message"] == "missing authorization header"
    assert not list(stability_schema("#/components/schemas/Error").iter_errors(
        missing.get_json()))
    wrong = st.get("/v1/user/account", headers={"Authorization": "Bearer nope"})
    assert wrong.get_json()["message"].startswith("Incorrect API key provided: nope.")
    body = st.get("/v1/user/account", headers=STAB_AUTH).get_json()
    assert set(body) == {"id", "email", "profile_picture", "organizations"}
    assert jmespath.search("organizations[0].name", body) == "Test Organization"


def test_stability_sd3_image_bytes_with_headers(st, stab_app):
    # STABILITY: accept image/* gives the bytes with seed and finish-reason headers.
    response = sd3(st, prompt="a fox", aspect_ratio="16:9", seed="42", model="sd3.5-medium")
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.headers["seed"] == "42" and response.headers["finish-reason"] == "SUCCESS"
    assert Image.open(io.BytesIO(response.data)).size == (1344, 768)
    recorded = stab_app.config["REQUESTS"][-1]
    assert recorded["form"]["prompt"] == "a fox" and recorded["accept"] == "image/*"


def test_stability_sd3_json_and_jpeg(st):
    # STABILITY: JSON answers are "application/json; type=image/<format>".
    response = sd3(st, accept="application/json", prompt="a fox", output_format="jpeg")
    assert response.headers["Content-Type"] == "application/json; type=image/jpeg"
    body = response.get_json()
    assert set(body) == {"image", "seed", "finish_reason"}
    assert jmespath.search("finish_reason", body) == "SUCCESS"
    assert 1 <= jmespath.search("seed", body) <= 4294967294
    image = decoded(jmespath.search("image", body))
    assert image.format == "JPEG" and image.size == (1024, 1024)


def test_stability_sd3_webp(st):
    # STABILITY: sd3 output_format is jpeg | png | webp (generated client @ 67b31be4).
    response = sd3(st, prompt="x", output_format="webp")
    assert response.status_code == 200 and response.mimetype == "image/webp"


def test_stability_missing_accept_defaults_to_image(st):
    # STABILITY: accept defaults to image/*.
    response = sd3(st, accept=None, prompt="x")
    assert response.status_code == 200 and response.mimetype == "image/png"


def test_stability_image_to_image(st):
    # STABILITY: mode image-to-image needs image and strength; output ~1 megapixel.
    response = sd3(
        st, prompt="winter", mode="image-to-image", strength="0.5",
        image=(io.BytesIO(image_bytes((200, 100))), "dog.png"),
    )
    assert response.status_code == 200
    width, height = Image.open(io.BytesIO(response.data)).size
    assert abs(width / height - 2) < 0.1 and 0.9e6 < width * height < 1.1e6  # ~1 MP, input's shape


def test_stability_core_with_style_preset(st):
    # STABILITY: core takes style_preset and webp; 1:1 at 1536x1536 was seen live.
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
        ({"prompt": "x", "output_format": "gif"}, "output_format: invalid enum value."),
        ({"prompt": "x", "seed": "4294967295"}, "seed: must be an integer between"),
        ({"prompt": "x", "mode": "image-to-image", "strength": "0.5"}, "image: is required"),
        ({"prompt": "x", "mode": "image-to-image",
          "image": (io.BytesIO(SQUARE), "a.png")}, "strength: is required"),
    ],
)
def test_stability_validation(st, fields, first_error):
    # STABILITY: 400 bad_request {id, name, errors}; wording follows "<field>: <problem>".
    response = sd3(st, **fields)
    assert response.status_code == 400
    body = stab_error(response)
    assert body["name"] == "bad_request"
    assert jmespath.search("errors[0]", body).startswith(first_error)
    assert not list(stability_schema(
        "#/paths/~1v2beta~1stable-image~1generate~1sd3/post/responses/400/content/"
        "application~1json/schema").iter_errors(body))


def test_stability_rejects_json_body_and_bad_accept(st):
    # STABILITY: multipart/form-data only; accept is image/* or application/json.
    response = st.post(
        "/v2beta/stable-image/generate/sd3", json={"prompt": "x"}, headers=STAB_AUTH
    )
    assert stab_error(response)["errors"] == ["content-type: must be multipart/form-data"]
    response = st.post("/v2beta/stable-image/generate/sd3", headers=STAB_AUTH)
    assert stab_error(response)["errors"] == ["content-type: required"]
    response = sd3(st, accept="text/html", prompt="x")
    assert response.status_code == 400 and stab_error(response)["name"] == "bad_request"


def test_stability_content_moderation(st):
    # STABILITY: 403 ContentModerationResponse, name "content_moderation", documented message.
    response = sd3(st, prompt="CONTENT_POLICY please")
    assert response.status_code == 403
    body = stab_error(response)
    assert body["name"] == "content_moderation"
    assert body["errors"] == [
        "Your request was flagged by our content moderation system, as a result your request "
        "was denied and you were not charged."
    ]
    assert not list(stability_schema(
        "#/components/schemas/ContentModerationResponse").iter_errors(body))
    assert classify(403, body) == "moderation"


def test_stability_moderation_and_credentials_are_told_apart_by_name(st):
    # STABILITY: a 403 is moderation (v2beta ContentModerationResponse) or permission_denied
    # (v1 components.responses.403); only ``name`` tells them apart.
    moderation = stab_error(sd3(st, prompt="CONTENT_POLICY"))
    denied = stability_document()["components"]["responses"]["403"]["content"][
        "application/json"]["example"]
    unauthorised = stab_error(st.post("/v2beta/stable-image/generate/sd3", data={"prompt": "x"}))
    assert [classify(403, moderation), classify(403, denied), classify(401, unauthorised)] == [
        "moderation", "credentials", "credentials"]
    validator = stability_schema("#/components/schemas/ContentModerationResponse")
    assert not validator.is_valid(unauthorised) and validator.is_valid(moderation)


def test_stability_payload_too_large(st):
    # STABILITY: 413 "Your request was larger than 10MiB." with the documented example body.
    big = io.BytesIO(b"\0" * (10 * 1024 * 1024 + 1))
    response = sd3(st, prompt="x", mode="image-to-image", strength="0.5", image=(big, "a.png"))
    assert response.status_code == 413
    body = stab_error(response)
    assert (body["name"], body["errors"]) == (
        "payload_too_large", ["body: payloads cannot be larger than 10MiB in size"])


def test_stability_slow_prompt_waits(st):
    # The fake's SLOW trigger (no real-API behaviour).
    start = time.perf_counter()
    assert sd3(st, prompt="SLOW").status_code == 200
    assert time.perf_counter() - start >= 0.05

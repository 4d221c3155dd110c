"""Request bodies built from the bundled A1111 definition, checked against the OpenAPI schema a
real A1111 1.10.1 served (tests/fixtures/a1111/openapi.json)."""

from __future__ import annotations

import base64
import io
from typing import Any

import jsonschema
import pytest
from werkzeug.datastructures import FileStorage

from webui.catalog import BUNDLED_DIR
from webui.format import Choice, load_file
from webui.forms import validate
from webui.images import UploadedImage
from webui.pipeline import build_body, prepare_values
from webui.service import Service

from .helpers import fixture_json, image_bytes

COMPONENT = {
    "txt2img": "StableDiffusionProcessingTxt2Img",
    "img2img": "StableDiffusionProcessingImg2Img",
    "upscale": "ExtrasSingleImageRequest",
}
PATH = {"txt2img": "/sdapi/v1/txt2img", "img2img": "/sdapi/v1/img2img",
        "upscale": "/sdapi/v1/extra-single-image"}


@pytest.fixture(scope="module")
def service() -> Service:
    d = load_file(BUNDLED_DIR / "a1111.yaml")
    return Service(id="a1111", name="A1111", definition=d, base_url="http://a1111.test")


def png_upload() -> UploadedImage:
    return UploadedImage(image_bytes((8, 8)), "image/png", "red.png", 8, 8)


def defaults(mode) -> dict[str, Any]:
    return {p.key: p.defaultValue for p in mode.parameters}


def service_path(mode_name: str) -> str:
    """Where the bundled definition sends this mode's request."""
    return load_file(BUNDLED_DIR / "a1111.yaml").modes[mode_name].endpoint.path


def check_against_schema(openapi: dict[str, Any], mode_name: str, body: dict[str, Any]) -> None:
    name = COMPONENT[mode_name]
    schema = dict(openapi["components"]["schemas"][name])
    schema["components"] = openapi["components"]
    jsonschema.validate(body, schema)
    # The schema allows extra keys, and A1111 silently ignores them: we must send none.
    unknown = set(body) - set(openapi["components"]["schemas"][name]["properties"])
    assert not unknown, f"keys A1111 does not know: {unknown}"
    path = PATH[mode_name]
    assert service_path(mode_name) == path
    ref = openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert ref["$ref"].endswith(name)


FULL_TXT2IMG = {
    "prompt": "a lighthouse, \"storm\" <b>",
    "negative_prompt": "blurry",
    "sd_model_checkpoint": "random-sd15.safetensors [1c2e8cbb84]",
    "loras": [{"value": "tiny-random-lora", "weight": 0.6}],
    "sampler_name": "DPM++ 2M",
    "scheduler": "karras",
    "steps": 30,
    "cfg_scale": 6.5,
    "width": 768,
    "height": 512,
    "batch_size": 2,
    "n_iter": 3,
    "seed": 1234,
    "enable_hr": True,
    "hr_upscaler": "Latent (bicubic)",
    "hr_scale": 1.5,
    "hr_second_pass_steps": 10,
    "denoising_strength": 0.55,
    "refiner_checkpoint": "random-sd15.safetensors [1c2e8cbb84]",
    "refiner_switch_at": 0.7,
    "clip_skip": 2,
    "tiling": False,
    "live_preview_every": 5,
}


def test_full_txt2img_body_matches_the_real_schema(service, openapi):
    mode = service.definition.modes["txt2img"]
    body = build_body(mode, prepare_values(mode, FULL_TXT2IMG))
    check_against_schema(openapi, "txt2img", body)
    # The checkpoint goes where A1111 reads it; a top-level key would be silently ignored.
    assert "sd_model_checkpoint" not in body
    assert body["override_settings"] == {
        "sd_model_checkpoint": "random-sd15.safetensors [1c2e8cbb84]",
        "CLIP_stop_at_last_layers": 2,
        "show_progress_every_n_steps": 5,
    }
    assert body["prompt"] == 'a lighthouse, "storm" <b> <lora:tiny-random-lora:0.6>'
    assert "loras" not in body and "lora_weight" not in body
    assert body["enable_hr"] is True and body["denoising_strength"] == 0.55
    assert body["hr_upscaler"] == "Latent (bicubic)"
    assert (body["batch_size"], body["n_iter"], body["seed"]) == (2, 3, 1234)
    assert body["do_not_save_grid"] is True  # so a batch returns only its images


def test_default_bodies_match_the_real_schema(service, openapi):
    for name in ("txt2img", "img2img"):
        mode = service.definition.modes[name]
        values = defaults(mode)
        values["prompt"] = "a cat"
        if name == "img2img":
            values["init_image"] = png_upload()
        body = build_body(mode, prepare_values(mode, values))
        check_against_schema(openapi, name, body)
        # Empty optional selects are not sent, so the server keeps its own choice; the live
        # preview is switched on for this request only.
        assert body["override_settings"] == {"show_progress_every_n_steps": 5}
        assert "refiner_checkpoint" not in body
        assert body["seed"] == -1


def test_img2img_body_carries_the_init_image_as_base64(service, openapi):
    mode = service.definition.modes["img2img"]
    upload = png_upload()
    values = {**defaults(mode), "prompt": "a red square", "init_image": upload,
              "denoising_strength": 0.3, "resize_mode": 1}
    body = build_body(mode, prepare_values(mode, values))
    check_against_schema(openapi, "img2img", body)
    assert base64.b64decode(body["init_images"][0]) == upload.data
    assert body["denoising_strength"] == 0.3 and body["resize_mode"] == 1
    for hires in ("enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps"):
        assert hires not in body


def test_no_lora_means_prompt_unchanged(service):
    mode = service.definition.modes["txt2img"]
    body = build_body(mode, prepare_values(mode, {**defaults(mode), "prompt": "plain"}))
    assert body["prompt"] == "plain"


# -- upscale (Extras: POST /sdapi/v1/extra-single-image) ---------------------------------------

# The upscalers of the real A1111 1.10.1 that served the schema: its request model lists them
# ("it has to be one of this list: None , Lanczos , …").
DESCRIPTION = fixture_json("a1111", "openapi.json")["components"]["schemas"][
    "ExtrasSingleImageRequest"]["properties"]["upscaler_1"]["description"]
UPSCALERS = [Choice(name, name) for name in DESCRIPTION.split(": ", 1)[1].split(" , ")]


def posted(mode, **form: str) -> dict[str, Any]:
    """The values of the upscale form as posted (hidden fields neither checked nor sent),
    its upscalers those of a real A1111 1.10.1, the image an upload."""
    fields = {k: str(v) for k, v in defaults(mode).items() if v is not None}
    fields.update(form)
    files = {"image": FileStorage(io.BytesIO(png_upload().data), "red.png", "image",
                                  "image/png")}
    assert {"None", "Lanczos", "R-ESRGAN 4x+", "SwinIR 4x"} <= {c.value for c in UPSCALERS}
    values, errors = validate(mode, fields, files, lambda p: UPSCALERS)
    assert not errors, errors
    return values


def test_default_upscale_body_matches_the_real_schema(service, openapi):
    mode = service.definition.modes["upscale"]
    body = build_body(mode, prepare_values(mode, posted(mode)))
    check_against_schema(openapi, "upscale", body)
    assert base64.b64decode(body["image"]) == png_upload().data
    # Scale by 2 with Lanczos (always there); upscaler 2 named but invisible.
    assert body == {"image": body["image"], "resize_mode": 0, "upscaling_resize": 2,
                    "upscaler_1": "Lanczos", "upscaler_2": "None",
                    "extras_upscaler_2_visibility": 0}


def test_upscale_to_a_size_with_a_second_upscaler_matches_the_real_schema(service, openapi):
    mode = service.definition.modes["upscale"]
    values = posted(mode, resize_mode="1", upscaling_resize="3", upscaling_resize_w="1536",
                    upscaling_resize_h="1024", upscaling_crop="false",
                    upscaler_1="R-ESRGAN 4x+", upscaler_2="SwinIR 4x",
                    extras_upscaler_2_visibility="0.35")
    body = build_body(mode, prepare_values(mode, values))
    check_against_schema(openapi, "upscale", body)
    # "Scale to" sends the size (and crop), not the factor, which only counts for "Scale by".
    assert "upscaling_resize" not in body
    assert (body["resize_mode"], body["upscaling_resize_w"], body["upscaling_resize_h"],
            body["upscaling_crop"]) == (1, 1536, 1024, False)
    assert (body["upscaler_1"], body["upscaler_2"], body["extras_upscaler_2_visibility"]) == (
        "R-ESRGAN 4x+", "SwinIR 4x", 0.35)


def test_the_schema_refuses_what_the_upscale_form_refuses(service, openapi):
    """The form's limits are within the schema's: a factor of 0 and a resize mode 2 are
    refused by both (the schema as the real server's 422 would)."""
    mode = service.definition.modes["upscale"]
    assert mode.parameter("upscaling_resize").range[0] > 0
    assert {o.value for o in mode.parameter("resize_mode").options} == {0, 1}
    schema = dict(openapi["components"]["schemas"]["ExtrasSingleImageRequest"])
    for bad in ({"upscaling_resize": 0}, {"resize_mode": 2},
                {"extras_upscaler_2_visibility": 1.5}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"image": "x", **bad}, schema)

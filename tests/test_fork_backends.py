"""Tests of the Forge and SD.Next fakes (tests/backends/a1111_variants.py).

Each test names the source behaviour it reproduces:
- Forge: lllyasviel/stable-diffusion-webui-forge @ dfdcbab685e57677014f05a3309b48cc87383167.
- SD.Next: vladmandic/sdnext @ 058a7f0cf326f39c0135c6257d7b7e61073e51fd.
The extracted request fields and lists are in tests/fixtures/forge and tests/fixtures/sdnext.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .backends.a1111_variants import create_forge_app, create_sdnext_app
from .helpers import SDAPI, b64, decoded, fixture_json, image_bytes

SMALL = {"prompt": "hills", "seed": 5, "steps": 2, "width": 64, "height": 64}


def post(client, path: str, body: Any) -> tuple[int, Any]:
    response = client.post(f"{SDAPI}/{path}", json=body)
    return response.status_code, response.get_json()


def generate(client, path: str = "txt2img", **body: Any) -> dict[str, Any]:
    status, data = post(client, path, {**SMALL, **body})
    assert status == 200, data
    return data


def infotext(data: dict[str, Any]) -> str:
    return json.loads(data["info"])["infotexts"][0]


@pytest.fixture
def forge():
    return create_forge_app(step_delay=0).test_client()


@pytest.fixture
def sdnext():
    return create_sdnext_app(step_delay=0).test_client()


# --------------------------------------------------------------------------------------------
# Forge


def test_forge_fields_are_a1111_plus_four(openapi):
    """modules/api/models.py PydanticModelGenerator over the processing dataclasses: A1111
    1.10.1's fields (the real OpenAPI schema) in the same order, plus Forge's own ones."""
    for mode, schema in (
        ("txt2img", "StableDiffusionProcessingTxt2Img"),
        ("img2img", "StableDiffusionProcessingImg2Img"),
    ):
        forge = {f["name"]: f for f in fixture_json("forge", f"{mode}-fields.json")}
        a1111 = openapi["components"]["schemas"][schema]["properties"]
        assert [n for n in forge if n in a1111] == list(a1111)
        for name, prop in a1111.items():
            assert forge[name]["default"] == prop.get("default"), name
        added = {n: forge[n]["default"] for n in forge if n not in a1111}
        expected = {"distilled_cfg_scale": 3.5, "hr_distilled_cfg": 3.5}
        if mode == "txt2img":
            expected |= {"hr_additional_modules": None, "hr_cfg": 1.0}
        assert added == expected


def test_forge_hires_without_additional_modules_is_a_type_error(forge):
    """processing.py StableDiffusionProcessingTxt2Img.sample: ``'Use same choices' not in
    self.hr_additional_modules`` with None (issue #2680); api.py handle_exception shape."""
    status, body = post(forge, "txt2img", {**SMALL, "enable_hr": True, "hr_scale": 1.5})
    assert status == 500
    assert body == {
        "error": "TypeError",
        "detail": "",
        "body": "",
        "errors": "argument of type 'NoneType' is not iterable",
    }
    data = generate(forge, enable_hr=True, hr_scale=1.5, hr_additional_modules=["Use same choices"])
    assert decoded(data["images"][0]).size == (96, 96)
    text = infotext(data)
    assert "Hires Module 1: Use same choices" in text and "Hires CFG Scale: 1.0" in text
    data = generate(forge, enable_hr=True, hr_scale=1.5, hr_additional_modules=[], hr_cfg=7)
    assert "Hires Module 1: Built-in" in infotext(data) and "Hires CFG Scale: 7" in infotext(data)


def test_forge_ignores_fields_it_does_not_have(forge):
    """No extra="forbid" in the generated model: unknown keys are dropped (issue #2680's
    "hires_fix": true gave an image at the first-pass size)."""
    data = generate(forge, hires_fix=True, hr_scale=2, no_such_field={"x": 1})
    assert decoded(data["images"][0]).size == (64, 64)
    assert "hires_fix" not in data["parameters"]


def test_forge_validation_errors_are_pydantic_2_8(forge):
    """fastapi 0.104.1 + pydantic 2.8.2: errors() with "url"; no str coercion of numbers."""
    status, body = post(forge, "txt2img", {"steps": "abc", "prompt": 5, "enable_hr": "maybe"})
    assert status == 422
    assert body == {
        "detail": [
            {
                "type": "string_type",
                "loc": ["body", "prompt"],
                "msg": "Input should be a valid string",
                "input": 5,
                "url": "https://errors.pydantic.dev/2.8/v/string_type",
            },
            {
                "type": "int_parsing",
                "loc": ["body", "steps"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": "abc",
                "url": "https://errors.pydantic.dev/2.8/v/int_parsing",
            },
            {
                "type": "bool_parsing",
                "loc": ["body", "enable_hr"],
                "msg": "Input should be a valid boolean, unable to interpret input",
                "input": "maybe",
                "url": "https://errors.pydantic.dev/2.8/v/bool_parsing",
            },
        ]
    }
    status, body = post(forge, "txt2img", {**SMALL, "steps": 2.5})
    assert body["detail"][0]["type"] == "int_from_float"
    # "20" and 20.0 are still fine (lax mode).
    generate(forge, steps="2", width=64.0)


def test_forge_lists(forge):
    """Api.get_sd_vaes_and_text_encoders at /sd-modules; /sd-vae was replaced (#1463)."""
    modules = forge.get(f"{SDAPI}/sd-modules").get_json()
    assert modules and all(set(m) == {"model_name", "filename"} for m in modules)
    assert modules[0] == {"model_name": "ae.safetensors",
                          "filename": "/opt/forge/models/VAE/ae.safetensors"}
    response = forge.get(f"{SDAPI}/sd-vae")
    assert response.status_code == 404 and response.get_json() == {"detail": "Not Found"}
    assert forge.get(f"{SDAPI}/samplers").get_json() == fixture_json("forge", "samplers.json")
    assert forge.get(f"{SDAPI}/schedulers").get_json() == fixture_json("forge", "schedulers.json")
    names = [s["name"] for s in fixture_json("forge", "samplers.json")]
    assert names[-1] == "DDPM" and "HeunPP2" in names


def test_forge_additional_modules_override(forge):
    """sysinfo.set_config -> main_entry.modules_change: names or paths, unknown ones dropped,
    stored as paths; processing.create_infotext adds "Module N"."""
    body = {"override_settings": {"forge_additional_modules": [
        "ae.safetensors", "/elsewhere/clip_l.safetensors", "unknown.bin"]}}
    text = infotext(generate(forge, **body))
    assert text.endswith("Version: demo, Module 1: ae, Module 2: clip_l")
    # Restored after the job (override_settings_restore_afterwards).
    assert forge.get(f"{SDAPI}/options").get_json()["forge_additional_modules"] == []
    assert forge.post(f"{SDAPI}/options", json={"forge_additional_modules": ["ae.safetensors"]}
                      ).status_code == 200
    options = forge.get(f"{SDAPI}/options").get_json()
    assert options["forge_additional_modules"] == ["/opt/forge/models/VAE/ae.safetensors"]


def test_forge_stores_the_checkpoint_option_as_given(forge):
    """main_entry.checkpoint_change stores the name as given; forge_model_reload does not
    write the title back (A1111's load_model_weights does)."""
    assert forge.post(f"{SDAPI}/options", json={"sd_model_checkpoint": "demo-pastel"}
                      ).status_code == 200
    assert forge.get(f"{SDAPI}/options").get_json()["sd_model_checkpoint"] == "demo-pastel"
    info = json.loads(generate(forge)["info"])
    assert info["sd_model_name"] == "demo-pastel" and info["sd_model_hash"] == "d3m0000002"
    # Loading it still hashed it: the listed title gained the hash.
    titles = [m["title"] for m in forge.get(f"{SDAPI}/sd-models").get_json()]
    assert titles[1] == "demo-pastel.safetensors [d3m0000002]"


# --------------------------------------------------------------------------------------------
# SD.Next


def test_sdnext_has_no_latent_upscale_modes_and_a_broken_schedulers_route(sdnext):
    """modules/api/api.py registers no /latent-upscale-modes (FastAPI's 404). /schedulers was
    added in 6fc0830d (2026-07-01): endpoints.get_schedulers answers list_samplers(), whose
    "Default" and divider rows have no class: ItemScheduler.cls (str) fails -> 500."""
    response = sdnext.get(f"{SDAPI}/latent-upscale-modes")
    assert response.status_code == 404 and response.get_json() == {"detail": "Not Found"}
    response = sdnext.get(f"{SDAPI}/schedulers")
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"] == "ResponseValidationError" and body["code"] == 500
    assert body["errors"].startswith("23 validation errors:")
    older = create_sdnext_app(step_delay=0, schedulers_route=False).test_client()
    response = older.get(f"{SDAPI}/schedulers")
    assert response.status_code == 404 and response.get_json() == {"detail": "Not Found"}


def test_sdnext_upscaler_names(sdnext):
    """upscaler_simple.py UpscalerLatent: "Latent Nearest", ...; no plain "Latent"."""
    names = [u["name"] for u in sdnext.get(f"{SDAPI}/upscalers").get_json()]
    assert names[:2] == ["None", "Resize Nearest"]
    assert [n for n in names if n.startswith("Latent")] == [
        "Latent Nearest", "Latent Nearest exact", "Latent Area", "Latent Bilinear",
        "Latent Bicubic", "Latent Bilinear antialias", "Latent Bicubic antialias"]
    assert "Latent" not in names


def test_sdnext_samplers_list_lacks_default_but_default_is_the_default(sdnext):
    """endpoints.get_samplers skips 'All', 'Default', 'Res4Lyf' (d9a2a21c, 2026-02-04); the
    request model's sampler_name defaults to "Default" (models.py ReqTxt2Img)."""
    listed = sdnext.get(f"{SDAPI}/samplers").get_json()
    assert listed == fixture_json("sdnext", "samplers.json")
    assert "Default" not in [s["name"] for s in listed]
    assert all(set(s) == {"name", "options"} for s in listed)
    data = generate(sdnext)
    info = json.loads(data["info"])
    assert data["parameters"]["sampler_name"] == "Default"
    assert info["sampler_name"] == "Default"
    # create_infotext leaves "Sampler" out for Default.
    assert "Sampler:" not in infotext(data)
    data = generate(sdnext, sampler_name="euler a")
    assert json.loads(data["info"])["sampler_name"] == "Euler a"
    assert "Sampler: Euler a," in infotext(data)


def test_sdnext_unknown_sampler_is_404_with_the_message_repeated(sdnext):
    """helpers.validate_sampler_name -> HTTPException(404); middleware.handle_exception adds
    "code"; starlette >= 0.28 HTTPException.__str__ gives "404: Sampler not found"."""
    expected = {"error": "HTTPException", "code": 404, "detail": "Sampler not found",
                "body": "", "errors": "404: Sampler not found"}
    for name in ("DPM++ 2M Karras", "── Euler ──"):
        assert post(sdnext, "txt2img", {**SMALL, "sampler_name": name}) == (404, expected)
    # "" falls back to sampler_index 0, which is no sampler name.
    assert post(sdnext, "txt2img", {**SMALL, "sampler_name": ""}) == (404, expected)


def test_sdnext_defaults_and_dropped_fields(sdnext):
    """processing_class.StableDiffusionProcessing.__init__ defaults; no scheduler,
    refiner_checkpoint or refiner_switch_at fields (dropped silently)."""
    status, data = post(sdnext, "txt2img", {"prompt": "x", "scheduler": "karras",
                                            "refiner_checkpoint": "demo-pastel",
                                            "refiner_switch_at": 0.5, "width": 64,
                                            "height": 64, "steps": 2})
    assert status == 200
    params = data["parameters"]
    assert params["cfg_scale"] == 6.0 and params["clip_skip"] == 1
    for dropped in ("scheduler", "refiner_checkpoint", "refiner_switch_at"):
        assert dropped not in params
    assert "Refiner" not in infotext(data)
    echo = generate(sdnext, width=None, height=None, steps=None)["parameters"]
    assert (echo["width"], echo["height"], echo["steps"]) == (None, None, None)
    fields = {f["name"]: f["default"] for f in fixture_json("sdnext", "txt2img-fields.json")}
    assert (fields["steps"], fields["width"], fields["height"]) == (20, 1024, 1024)
    img2img = {f["name"]: f["default"] for f in fixture_json("sdnext", "img2img-fields.json")}
    assert img2img["denoising_strength"] == 0.5 and fields["denoising_strength"] == 0.3


def test_sdnext_refiner_needs_its_own_fields(sdnext):
    """processing_helpers.is_refiner_enabled: enable_hr and refiner_steps > 0 and
    0 < refiner_start < 1 and a refiner from override_settings.sd_model_refiner."""
    refiner = {"override_settings": {"sd_model_refiner": "demo-pastel"}, "enable_hr": True}
    assert "Refiner" not in infotext(generate(sdnext, **refiner))  # refiner_start defaults to 0
    text = infotext(generate(sdnext, **refiner, refiner_start=0.8))
    assert "Refine: True, Refiner: demo-pastel, Refiner steps: 5, Refiner start: 0.8" in text
    assert "Operations: txt2img; refine" in text
    # An unknown refiner override is dropped (process_images: checkpoint_aliases.get).
    body = {**refiner, "override_settings": {"sd_model_refiner": "nope"}, "refiner_start": 0.8}
    assert "Refiner" not in infotext(generate(sdnext, **body))


def test_sdnext_clip_skip_is_top_level(sdnext):
    """StableDiffusionProcessing.clip_skip feeds the pipeline and create_infotext
    ("CLiP-skip" when > 1); CLIP_stop_at_last_layers is a LegacyOption nothing reads."""
    data = generate(sdnext, clip_skip=2)
    assert "CLiP-skip: 2" in infotext(data) and json.loads(data["info"])["clip_skip"] == 2
    data = generate(sdnext, override_settings={"CLIP_stop_at_last_layers": 2})
    assert "CLiP-skip" not in infotext(data) and json.loads(data["info"])["clip_skip"] == 1
    status, body = post(sdnext, "txt2img", {**SMALL, "clip_skip": 1.5})
    assert status == 422 and body["detail"][0]["type"] == "int_from_float"
    assert "url" not in body["detail"][0]  # fastapi 0.124: errors(include_url=False)


@pytest.mark.parametrize(
    ("mode", "size", "label"),
    [(0, (64, 48), None), (1, (128, 128), "Fixed"), (2, (128, 128), "Crop"),
     (3, (128, 128), "Fill")],
)
def test_sdnext_resize_modes(sdnext, mode, size, label):
    """shared.resize_modes = None, Fixed, Crop, Fill, Outpaint, Context aware
    (image/resize.py resize_image); mode 0 keeps the init image's size."""
    assert fixture_json("sdnext", "resize-modes.json") == [
        "None", "Fixed", "Crop", "Fill", "Outpaint", "Context aware"]
    data = generate(sdnext, "img2img", init_images=[b64(image_bytes((64, 48)))], resize_mode=mode,
                    width=128, height=128)
    assert decoded(data["images"][0]).size == size
    text = infotext(data)
    assert "Init image size: 64x48" in text
    if label is None:
        assert "Resize mode" not in text and "Size: 128x128" in text
    else:
        assert f"Resize mode: {label}" in text and "Size: 128x128" in text


def test_sdnext_hires_needs_a_resize_mode_and_its_own_upscaler_names(sdnext):
    """processing_diffusers.process_hires: upscale only when hr_resize_mode > 0; a latent
    upscaler SD.Next does not list ("Latent") leaves the latent at its size."""
    a1111_style = {"enable_hr": True, "hr_scale": 2, "hr_upscaler": "Latent"}
    assert decoded(generate(sdnext, **a1111_style)["images"][0]).size == (64, 64)
    assert decoded(generate(sdnext, **a1111_style, hr_resize_mode=1)["images"][0]).size == (64, 64)
    data = generate(sdnext, **{**a1111_style, "hr_upscaler": "Latent Bilinear"}, hr_resize_mode=1)
    assert decoded(data["images"][0]).size == (128, 128)
    expected = "Hires upscaler: Latent Bilinear, Hires scale: 2.0, Hires size: 128x128"
    assert expected in infotext(data)


def test_sdnext_checkpoints(sdnext):
    """sd_checkpoint.CheckpointInfo: name without extension, "type" in /sd-models; a top-level
    sd_model_checkpoint switches for good; one that matches nothing aborts (no images)."""
    models = sdnext.get(f"{SDAPI}/sd-models").get_json()
    assert models[0]["title"] == "demo-procedural [d3m0000001]"
    assert models[1] == {"title": "demo-pastel", "model_name": "demo-pastel",
                         "filename": "models/Stable-diffusion/demo-pastel.safetensors",
                         "type": "safetensors", "sha256": None, "hash": None, "config": None}
    # An A1111 title is no SD.Next alias: the override is dropped.
    data = generate(sdnext, override_settings={"sd_model_checkpoint": "demo-pastel.safetensors"})
    assert "Model: demo-procedural" in infotext(data)
    status, data = post(sdnext, "txt2img", {**SMALL, "sd_model_checkpoint": "nope"})
    assert status == 200 and data["images"] == [] and data["info"] == ""
    assert "Model: demo-pastel" in infotext(generate(sdnext, sd_model_checkpoint="demo-pastel"))
    options = sdnext.get(f"{SDAPI}/options").get_json()
    assert options["sd_model_checkpoint"] == "demo-pastel [d3m0000002]"
    assert "Model: demo-pastel" in infotext(generate(sdnext))


def test_sdnext_other_answers(sdnext):
    """server.post_interrupt/post_skip: 204; generate.post_img2img: 400 without images;
    an unknown override key is accepted (Options.__setattr__ makes it an attribute)."""
    for action in ("interrupt", "skip"):
        response = sdnext.post(f"{SDAPI}/{action}")
        assert response.status_code == 204 and response.get_data() == b""
    assert post(sdnext, "img2img", {"prompt": "x"}) == (400, {"error": "Init image is none"})
    generate(sdnext, override_settings={"no_such_option": 1})
    status, body = post(sdnext, "txt2img", None)
    assert status == 422
    assert body == {"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required",
                                "input": None}]}

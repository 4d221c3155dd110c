"""Forge and SD.Next through their bundled definitions, against fakes of the real servers
(tests/backends/a1111_variants.py) and the request fields of their processing classes
(tests/fixtures/forge/, tests/fixtures/sdnext/: field lists read from
lllyasviel/stable-diffusion-webui-forge dfdcbab6 modules/processing.py and vladmandic/sdnext
058a7f0c modules/api/models.py + modules/processing_class.py; each README names the lines)."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from .helpers import defaults, fixture_json, generate, image_bytes, sent, submit


def fields(service: str, mode: str) -> set[str]:
    return {f["name"] for f in fixture_json(service, f"{mode}-fields.json")}


def small(app, service: str, mode: str = "txt2img", **extra) -> dict:
    return {**defaults(app, service, mode), "prompt": "a quiet harbour", "width": "64",
            "height": "64", "steps": "2", **extra}


@pytest.mark.parametrize("mode", ["txt2img", "img2img"])
def test_forge_bodies_use_only_forge_fields(services_app, fakes, mode):
    files = {"init_image": image_bytes()} if mode == "img2img" else None
    r, html = generate(services_app, "forge", mode, small(services_app, "forge", mode), files)
    assert r.status_code == 200, html
    [call] = sent(fakes, "forge", f"/sdapi/v1/{mode}")
    assert set(call["json"]) <= fields("forge", mode), set(call["json"]) - fields("forge", mode)


def test_forge_hires_fix_works_and_keeps_the_negative_prompt(services_app, fakes):
    # Without hr_additional_modules Forge fails after the first pass (issue #2680 there); at
    # its API default hr_cfg of 1.0 the hires pass would drop the negative prompt.
    data = small(services_app, "forge", enable_hr="true", hr_upscaler="Latent",
                 negative_prompt="blurry")
    r, html = generate(services_app, "forge", "txt2img", data)
    assert r.status_code == 200, html
    [call] = sent(fakes, "forge", "/sdapi/v1/txt2img")
    body = call["json"]
    assert body["hr_additional_modules"] == ["Use same choices"]
    assert body["hr_cfg"] == 7 and body["hr_distilled_cfg"] == 3.5
    assert set(body) <= fields("forge", "txt2img")


@pytest.mark.parametrize("mode", ["txt2img", "img2img"])
def test_sdnext_default_forms_generate(services_app, fakes, mode):
    # Every field at its default, as a newcomer presses Generate: nothing may block it (SD.Next
    # has no /latent-upscale-modes, its /samplers leaves out the default "Default").
    files = {"init_image": image_bytes()} if mode == "img2img" else None
    r, html = generate(services_app, "sdnext", mode, small(services_app, "sdnext", mode),
                       files)
    assert r.status_code == 200, html
    [call] = sent(fakes, "sdnext", f"/sdapi/v1/{mode}")
    body = call["json"]
    assert set(body) <= fields("sdnext", mode), set(body) - fields("sdnext", mode)
    assert body["sampler_name"] == "Default"
    assert not [k for k in body if k.startswith("hr_")]
    assert "CLIP_stop_at_last_layers" not in body.get("override_settings", {})


def test_sdnext_hires_upscalers_are_its_own(services_app):
    client = services_app.test_client()
    html = client.get("/services/sdnext/txt2img/options/hr_upscaler").get_data(as_text=True)
    assert '<option value="Latent Bilinear" selected>' in html
    assert '<option value="Latent">' not in html


def test_sdnext_refiner_and_clip_skip_are_what_it_reads(services_app, fakes):
    models = services_app.test_client().get(
        "/services/sdnext/txt2img/options/sd_model_refiner").get_data(as_text=True)
    title = models.split('<option value="')[2].split('"')[0]  # the first listed checkpoint
    data = small(services_app, "sdnext", enable_hr="true", sd_model_refiner=title,
                 refiner_start="0.6", refiner_steps="3", clip_skip="2")
    r, html = generate(services_app, "sdnext", "txt2img", data)
    assert r.status_code == 200, html
    [call] = sent(fakes, "sdnext", "/sdapi/v1/txt2img")
    body = call["json"]
    assert body["override_settings"]["sd_model_refiner"] == title
    assert body["refiner_start"] == 0.6 and body["refiner_steps"] == 3
    assert body["clip_skip"] == 2 and body["hr_resize_mode"] == 1
    assert set(body) <= fields("sdnext", "txt2img")
    # The server says what it applied (its infotext), so a dropped value would show.
    assert "CLiP-skip: 2" in html and "Refiner" in html


def test_sdnext_resize_modes_are_its_own(services_app):
    page = services_app.test_client().get("/services/sdnext/img2img").get_data(as_text=True)
    real = fixture_json("sdnext", "resize-modes.json")
    for number, name in enumerate(real):
        assert f'<option value="{number}"' in page and name.split()[0] in page


def test_sdnext_sampler_list_offers_default(services_app):
    html = services_app.test_client().get(
        "/services/sdnext/txt2img/options/sampler_name").get_data(as_text=True)
    assert '<option value="Default" selected>Default</option>' in html


def test_forge_modules_only_where_forge_has_them(services_app, fakes):
    data = MultiDict([*small(services_app, "forge").items(),
                      ("modules", "/opt/forge/models/VAE/ae.safetensors")])
    r = submit(services_app.test_client(), "/services/forge/txt2img/generate", data=data)
    assert r.status_code == 200, r.html

"""End to end without a browser: the app drives the demo backend over real HTTP through the
bundled a1111 definition, exactly as it would a real A1111."""

from __future__ import annotations

import io

from PIL import Image

from .helpers import field_errors, form, image_bytes, images_in, submit


def test_batch_with_checkpoint_and_lora(demo_app):
    client = demo_app.test_client()
    store = demo_app.extensions["webui"].store
    r = submit(client, "/services/demo/txt2img/generate", data=form(
        prompt="a harbour", width="128", height="96", batch_size="2", n_iter="2", seed="100",
        steps="3", sd_model_checkpoint="demo-pastel.safetensors [d3m0000002]",
        loras="demo-cool", lora_weight="0.5"))
    html = r.get_data(as_text=True)
    assert r.status_code == 200, html
    paths = images_in(html)
    assert len(paths) == 4
    for path in paths:
        with Image.open(store.path(path)) as im:
            assert im.size == (128, 96)
            # The backend's infotext travels inside the saved PNG.
            assert "Model: demo-pastel" in im.info["parameters"]
    for seed in (100, 101, 102, 103):
        assert f"Seed <code>{seed}</code>" in html
    assert "a harbour &lt;lora:demo-cool:0.5&gt;" in html


def test_values_the_backend_does_not_list_are_refused(demo_app):
    client = demo_app.test_client()
    r = submit(client, "/services/demo/txt2img/generate", data=form(
        sampler_name="Euler b", sd_model_checkpoint="random-sd15"))
    errors = field_errors(r.get_data(as_text=True))
    assert r.status_code == 422
    assert set(errors) == {"sampler_name", "sd_model_checkpoint"}


def test_img2img_keeps_the_init_image_at_denoising_zero(demo_app):
    client = demo_app.test_client()
    store = demo_app.extensions["webui"].store
    data = form(width="64", height="64", denoising_strength="0", resize_mode="0")
    data.pop("hr_upscaler")
    r = submit(client, "/services/demo/img2img/generate", data={
        **data, "init_image": (io.BytesIO(image_bytes((50, 50), (20, 200, 40))), "green.png")},
        content_type="multipart/form-data")
    html = r.get_data(as_text=True)
    assert r.status_code == 200, html
    [path] = images_in(html)
    with Image.open(store.path(path)) as im:
        r_, g, b = im.convert("RGB").getpixel((32, 32))
    assert g > 150 and r_ < 80 and b < 80

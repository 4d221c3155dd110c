"""Upscaling (A1111's Extras): the upscale mode of the A1111 family's definitions and of
ComfyUI's, its request bodies checked against the services' published schemas, the demo's
POST /sdapi/v1/extra-single-image (as webui/demo/extras.py cites), and an upscale run as a
job from an image of the gallery, end to end."""

from __future__ import annotations

import io
import re
from html import unescape

import pytest
import requests
from PIL import Image, PngImagePlugin

from webui import create_app
from webui.demo import create_demo_app

from .helpers import (
    HX,
    ServerThread,
    b64,
    decoded,
    defaults,
    demo_extra,
    field_errors,
    image_bytes,
    images_in,
    job_in,
    sent,
    submit,
    wait_for,
)


def _text(html: str) -> str:
    """The visible text of some HTML, on one line."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def _txt2img(app, size=(96, 64)) -> None:
    """A txt2img job on the demo (one image of SIZE in the gallery)."""
    data = {**defaults(app, "demo", "txt2img"), "prompt": "a red fox",
            "width": str(size[0]), "height": str(size[1]), "steps": "2", "seed": "7"}
    r = submit(app.test_client(), "/services/demo/txt2img/generate", data=data)
    assert r.status_code == 200, r.html


def test_an_image_of_the_gallery_is_upscaled_as_a_job(demo_app):
    client = demo_app.test_client()
    st = demo_app.extensions["webui"]
    _txt2img(demo_app)
    [item] = st.history.page().items
    page = client.get(f"/gallery/{item.image.id}").get_data(as_text=True)
    link = unescape(re.search(r'href="([^"]+)">Upscale</a>', page).group(1))
    assert link == f"/services/demo/upscale?init={item.image.id}"
    form_page = client.get(link).get_data(as_text=True)
    assert f'name="image__from" value="{item.image.id}"' in form_page
    assert "The image is from the gallery." in form_page  # and nothing else of its job
    data = {**defaults(demo_app, "demo", "upscale"), "image__from": str(item.image.id),
            "upscaler_1": "R-ESRGAN 4x+", "upscaling_resize": "2.5"}
    r = submit(client, "/services/demo/upscale/generate", data=data)
    assert r.status_code == 200, r.html
    [path] = images_in(r.html)
    with Image.open(st.store.path(path)) as im:
        # 96 x 2.5 = 240, 64 x 2.5 = 160 (multiples of 8, as A1111's Upscaler.upscale makes)
        assert im.size == (240, 160)
        # A1111 keeps the text of the image sent and adds what the upscale did.
        assert "a red fox" in im.info["parameters"]
        assert im.info["postprocessing"] == ("Postprocess upscale by: 2.5, "
                                             "Postprocess upscaler: R-ESRGAN 4x+")
    # A job like any other: in the history and the gallery, newest first.
    newest = st.history.page().items[0]
    assert (newest.mode, newest.image.width, newest.image.height) == ("upscale", 240, 160)
    assert st.history.get_job(newest.image.job_id).parameters["upscaler_1"] == "R-ESRGAN 4x+"
    # Its page lists what it was asked with, under the form's labels.
    page = _text(client.get(f"/gallery/{newest.image.id}").get_data(as_text=True))
    assert "A1111 demo · Upscale · done" in page
    assert "Upscaler R-ESRGAN 4x+" in page and "Scale by 2.5" in page
    # Captioned and found by the prompt of the picture it came from (its text, kept).
    assert newest.prompt == "a red fox"
    assert [i.mode for i in st.history.page(query="fox").items] == ["upscale", "txt2img"]
    # The gallery's mode filter offers upscales and keeps only them.
    gallery = client.get("/gallery?mode=upscale").get_data(as_text=True)
    assert '<option value="upscale" selected>Upscale</option>' in gallery
    assert gallery.count('class="tile"') == 1 and newest.image.path in gallery


def test_comfyui_upscales_with_a_model_then_scales_by(services_app, fakes):
    """LoadImage → UpscaleModelLoader + ImageUpscaleWithModel → ImageScaleBy → SaveImage on
    the shared fake ComfyUI: a 4x model, then 0.75, makes 96 x 64 into 288 x 192."""
    st = services_app.extensions["webui"]
    client = services_app.test_client()
    models = client.get("/services/comfyui/upscale/options/model_name").get_data(as_text=True)
    assert "4x-UltraSharp.pth" in models and "RealESRGAN_x2plus.pth" in models
    data = {**defaults(services_app, "comfyui", "upscale"), "model_name": "4x-UltraSharp.pth",
            "scale_by": "0.75",
            "image": (io.BytesIO(image_bytes((96, 64), (200, 30, 30))), "red.png")}
    r = submit(client, "/services/comfyui/upscale/generate", data=data,
               content_type="multipart/form-data")
    assert r.status_code == 200, r.html
    assert len(sent(fakes, "comfyui", "/upload/image")) == 1
    graph = sent(fakes, "comfyui", "/prompt")[-1]["json"]["prompt"]
    # LoadImage reads the picture sent, under the name ComfyUI stored it as.
    state = fakes["comfyui"].server.app.config["COMFYUI"]
    with Image.open(io.BytesIO(state.files[("input", "", graph["1"]["inputs"]["image"])])) as im:
        assert im.size == (96, 64)
    assert graph["2"]["inputs"] == {"model_name": "4x-UltraSharp.pth"}
    assert graph["4"]["inputs"]["scale_by"] == 0.75
    assert graph["4"]["inputs"]["upscale_method"] == "lanczos"
    [path] = images_in(r.html)
    with Image.open(st.store.path(path)) as im:
        assert im.size == (288, 192)
        assert im.convert("RGB").getpixel((144, 96))[0] > 150  # still the red picture
    assert st.history.page().items[0].mode == "upscale"



# -- the demo's extra-single-image (webui/demo/extras.py cites A1111's code) -----------------


def _extras(body: dict, size=(100, 60), info: str | None = "a red fox\nSteps: 2"):
    """POST extra-single-image to a fresh demo with a picture of SIZE carrying INFO."""
    picture = Image.new("RGB", size, (200, 30, 30))
    buffer = io.BytesIO()
    chunks = PngImagePlugin.PngInfo()
    if info is not None:
        chunks.add_text("parameters", info)
    picture.save(buffer, "PNG", pnginfo=chunks)
    client = create_demo_app(step_delay=0).test_client()
    return client.post("/sdapi/v1/extra-single-image",
                       json={"image": b64(buffer.getvalue()), **body})


def test_the_demo_upscales_by_a_factor_to_a_multiple_of_8():
    r = _extras({"upscaler_1": "Lanczos", "upscaling_resize": 1.3})
    assert r.status_code == 200, r.get_json()
    answer = r.get_json()
    assert set(answer) == {"html_info", "image"}
    image = decoded(answer["image"])
    # Upscaler.upscale: int(100 * 1.3 // 8 * 8) x int(60 * 1.3 // 8 * 8)
    assert image.size == (128, 72)
    assert answer["html_info"] == ("<p>Postprocess upscale by: 1.3, "
                                   "Postprocess upscaler: Lanczos</p>")
    assert image.info["parameters"] == "a red fox\nSteps: 2"
    assert image.info["postprocessing"] == ("Postprocess upscale by: 1.3, "
                                            "Postprocess upscaler: Lanczos")


def test_the_demo_upscales_to_a_size_cropped_or_not():
    cropped = _extras({"upscaler_1": "ESRGAN_4x", "resize_mode": 1, "upscaling_resize_w": 300,
                       "upscaling_resize_h": 120})
    assert decoded(cropped.get_json()["image"]).size == (300, 120)
    assert "Postprocess crop to: 300x120" in cropped.get_json()["html_info"]
    # Without crop: the factor that covers both sides, max(300/100, 120/60) = 3.
    whole = _extras({"upscaler_1": "Nearest", "resize_mode": 1, "upscaling_resize_w": 300,
                     "upscaling_resize_h": 120, "upscaling_crop": False})
    assert decoded(whole.get_json()["image"]).size == (296, 176)


def test_the_demo_blends_a_second_upscaler_and_none_leaves_the_image():
    both = _extras({"upscaler_1": "Lanczos", "upscaler_2": "SwinIR 4x",
                    "extras_upscaler_2_visibility": 0.5})
    assert decoded(both.get_json()["image"]).size == (200, 120)
    assert both.get_json()["html_info"].endswith(", Postprocess upscaler 2: SwinIR 4x</p>")
    none = _extras({"upscaler_1": "None"}, info=None)
    assert decoded(none.get_json()["image"]).size == (100, 60)
    assert none.get_json()["html_info"] == "<p></p>"


def test_the_demo_refuses_what_a1111_refuses():
    unknown = _extras({"upscaler_1": "4x-Imaginary"})
    assert (unknown.status_code, unknown.get_json()) == (500, {
        "error": "AssertionError", "detail": "", "body": "",
        "errors": "could not find upscaler named 4x-Imaginary"})
    bad = _extras({"resize_mode": 2, "upscaling_resize": 0, "upscaler_1": None})
    assert bad.status_code == 422
    assert [(e["loc"][1], e["type"]) for e in bad.get_json()["detail"]] == [
        ("resize_mode", "value_error.const"), ("upscaling_resize", "value_error.number.not_gt"),
        ("upscaler_1", "type_error.none.not_allowed")]
    garbage = _extras({"image": "not an image"})
    assert (garbage.status_code, garbage.get_json()["detail"]) == (500, "Invalid encoded image")


@pytest.mark.parametrize("service_id", ["forge", "sdnext"])
def test_the_forks_upscale_through_the_definition_they_extend(services_app, fakes, service_id):
    mode = services_app.extensions["webui"].folders.catalog().get(service_id).definition.modes[
        "upscale"]
    # SD.Next's request model takes factors of 1 to 8 (modules/api/models.py ReqProcess).
    assert mode.parameter("upscaling_resize").range == ((1, 8) if service_id == "sdnext"
                                                        else (0.05, 8))
    data = {**defaults(services_app, service_id, "upscale"), "upscaling_resize": "1.5",
            "image": (io.BytesIO(image_bytes((64, 48))), "red.png")}
    r = submit(services_app.test_client(), f"/services/{service_id}/upscale/generate",
               data=data, content_type="multipart/form-data")
    assert r.status_code == 200, r.html
    [call] = sent(fakes, service_id, "/sdapi/v1/extra-single-image")
    # Each fork's own name for a plain Lanczos resize.
    assert (call["json"]["upscaler_1"], call["json"]["upscaling_resize"]) == (
        "Resize Lanczos" if service_id == "sdnext" else "Lanczos", 1.5)
    [path] = images_in(r.html)
    with Image.open(services_app.extensions["webui"].store.path(path)) as im:
        assert im.size == (96, 72)


def test_an_upscale_can_be_interrupted_but_has_nothing_to_skip(make_settings):
    """A1111's upscaler passes stop at an interrupt and the image is still brought to the
    target size and answered (1.10.1 modules/upscaler.py). Skip, which moves on to a batch's
    next image, is not offered: an upscale has no batch (and A1111's extras answer a 500)."""
    demo = ServerThread(create_demo_app(step_delay=0.1))  # each model pass: 2 s
    try:
        app = create_app(make_settings(extras=[demo_extra(demo.url)]))
        client = app.test_client()
        data = {**defaults(app, "demo", "upscale"), "upscaler_1": "ESRGAN_4x",
                "upscaling_resize": "8",
                "image": (io.BytesIO(image_bytes((32, 16))), "small.png")}
        r = client.post("/services/demo/upscale/generate", headers=HX, data=data,
                        content_type="multipart/form-data")
        assert r.status_code == 202, r.get_data(as_text=True)
        job = job_in(client, r.get_data(as_text=True))
        wait_for(lambda: requests.get(f"{demo.url}/sdapi/v1/progress", timeout=5)
                 .json()["state"]["job"] == "extras", what="the demo to be upscaling")
        panel = client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)
        assert job.offers == ["interrupt"]
        assert ">Interrupt</button>" in panel and ">Skip</button>" not in panel
        client.post(f"/jobs/{job.id}/skip", headers=HX)  # a stale button: nothing happens
        client.post(f"/jobs/{job.id}/interrupt", headers=HX)
        assert job.done.wait(10) and job.status == "interrupted"
        # However far the passes got, the answer is the image at the target: 32 x 16 by 8.
        [image] = job.images
        assert (image.width, image.height) == (256, 128)
    finally:
        demo.stop()


def test_an_upscale_without_an_image_or_with_a_bad_factor_is_refused_at_the_fields(demo_app):
    client = demo_app.test_client()
    data = {**defaults(demo_app, "demo", "upscale"), "upscaling_resize": "0"}
    r = submit(client, "/services/demo/upscale/generate", data=data)
    assert r.status_code == 422
    errors = field_errors(r.html)
    assert set(errors) == {"image", "upscaling_resize"}
    assert "Image is required" in errors["image"]
    # Nothing reached the backend: no job was made.
    assert demo_app.extensions["webui"].history.page().items == []


def test_an_x_y_grid_compares_upscalers_and_factors(demo_app):
    """The grids work on the upscale form too: each cell an upscale of the same input image."""
    client = demo_app.test_client()
    data = {**defaults(demo_app, "demo", "upscale"),
            "image": (io.BytesIO(image_bytes((40, 24))), "small.png"),
            "grid-x-param": "upscaler_1", "grid-x-pick": ["Lanczos", "SwinIR 4x"],
            "grid-y-param": "upscaling_resize", "grid-y-values": "2, 3"}
    r = client.post("/services/demo/upscale/grid", headers=HX, data=data,
                    content_type="multipart/form-data")
    assert r.status_code == 202, r.get_data(as_text=True)
    grid_id = re.search(r'id="grid-([0-9a-f]{32})"', r.get_data(as_text=True)).group(1)
    grid = demo_app.extensions["webui"].grids.get(grid_id)
    wait_for(lambda: not grid.active, what="the grid of upscales")
    assert grid.status == "done", [(j.status, j.error) for j in grid.jobs]
    sizes = [(j.sent["upscaler_1"], j.sent["upscaling_resize"],
              (j.images[0].width, j.images[0].height)) for j in grid.jobs]
    assert sorted(sizes) == [("Lanczos", 2, (80, 48)), ("Lanczos", 3, (120, 72)),
                             ("SwinIR 4x", 2, (80, 48)), ("SwinIR 4x", 3, (120, 72))]
    assert len(grid.pictures) == 1

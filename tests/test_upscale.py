"""Upscaling (A1111's Extras): the upscale mode of the A1111 family's definitions and of
ComfyUI's, its request bodies checked against the services' published schemas, the demo's
POST /sdapi/v1/extra-single-image (as webui/demo/extras.py cites), and an upscale run as a
job from an image of the gallery, end to end."""

from __future__ import annotations

import io
import re
from html import unescape

from PIL import Image

from .helpers import defaults, image_bytes, images_in, sent, submit


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


"""Upscaling (A1111's Extras): the upscale mode of the A1111 family's definitions and of
ComfyUI's, its request bodies checked against the services' published schemas, the demo's
POST /sdapi/v1/extra-single-image (as webui/demo/extras.py cites), and an upscale run as a
job from an image of the gallery, end to end."""

from __future__ import annotations

import re
from html import unescape

from PIL import Image

from .helpers import defaults, images_in, submit


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

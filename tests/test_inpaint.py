"""Inpainting without a browser: the mask parameter's format checks, the bodies sent to each
service (A1111's against its 1.10.1 schema; Forge and SD.Next against their request fields;
OpenAI's edits; ComfyUI's inpaint graph), and the job's image and mask kept for Reuse
parameters."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest
from PIL import Image

from webui.catalog import BUNDLED_DIR
from webui.format import DefinitionError, load_file
from webui.images import UploadedImage
from webui.pipeline import build_body, prepare_values

from .helpers import defaults, fixture_json, form, generate, image_bytes, images_in, sent, submit
from .test_a1111_requests import check_against_schema


def painted(size: tuple[int, int], box: tuple[int, int, int, int]) -> bytes:
    """A mask as the editor exports it: transparent, the painted BOX opaque (in a colour that
    is only for show)."""
    mask = Image.new("RGBA", size, (0, 0, 0, 0))
    mask.paste((255, 40, 120, 255), box)
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    return buf.getvalue()


def upload(data: bytes, name: str) -> UploadedImage:
    with Image.open(io.BytesIO(data)) as img:
        return UploadedImage(data, "image/png", name, *img.size)


def mode_of(service: str, mode: str = "img2img"):
    return load_file(BUNDLED_DIR / f"{service}.yaml").modes[mode]


def plain(mode) -> dict[str, Any]:
    return {p.key: p.defaultValue for p in mode.parameters}


# --- the format ---------------------------------------------------------------------------------


def write(tmp_path, params: str) -> Any:
    path = tmp_path / "x.yaml"
    path.write_text(f"""
id: x
name: X
url: http://x.test
capabilities:
  - capability: image_generation
    endpoints:
      img2img: {{method: POST, path: /img2img, result: {{images: images}}}}
    parameters:
      img2img:
{params}
""")
    return load_file(path)


@pytest.mark.parametrize(("params", "message"), [
    ("        - {key: image, type: image}\n        - {key: mask, type: text, role: mask}",
     "a mask is an image parameter"),
    ("        - {key: image, type: image, maskTransparent: true}",
     "maskTransparent: goes with role: mask"),
    ("        - {key: mask, type: image, role: mask}",
     "the mode needs an image parameter with the role init_image"),
    ("        - {key: image, type: image}\n"
     "        - {key: n, type: integer, maskTransparent: true}",
     "an integer parameter has no maskTransparent"),
])
def test_a_mask_is_an_image_painted_over_the_modes_input_image(tmp_path, params, message):
    with pytest.raises(DefinitionError) as caught:
        write(tmp_path, params)
    assert message in str(caught.value)


def test_a_mask_loads(tmp_path):
    d = write(tmp_path, "        - {key: image, type: image}\n"
                        "        - {key: mask, type: image, role: mask, maskTransparent: true}")
    mode = d.modes["img2img"]
    assert mode.by_role("mask").maskTransparent and mode.by_role("init_image").key == "image"


# --- A1111, Forge, SD.Next ---------------------------------------------------------------------


def test_a1111_inpaint_body_matches_the_real_schema(openapi):
    mode = mode_of("a1111")
    image = upload(image_bytes((64, 48)), "photo.png")
    # Painted on a canvas of the image's size (a smaller one is scaled to it).
    mask = upload(painted((32, 24), (0, 0, 16, 24)), "mask.png")
    values = {**plain(mode), "prompt": "a red door", "init_image": image, "mask": mask,
              "inpaint_full_res": True, "inpaint_full_res_padding": 48,
              "inpainting_mask_invert": 1, "inpainting_fill": 2, "mask_blur": 8}
    body = build_body(mode, prepare_values(mode, values))
    check_against_schema(openapi, "img2img", body)
    assert (body["mask_blur"], body["inpainting_fill"], body["inpaint_full_res"],
            body["inpaint_full_res_padding"], body["inpainting_mask_invert"]) == (8, 2, True, 48, 1)
    # modules/api/api.py decodes the mask with decode_base64_to_image: a plain base64 PNG,
    # white where to repaint (create_binary_mask reads an opaque mask by brightness).
    with Image.open(io.BytesIO(base64.b64decode(body["mask"]))) as sent_mask:
        assert sent_mask.format == "PNG" and sent_mask.mode == "L"
        assert sent_mask.size == (64, 48)
        assert sent_mask.getpixel((10, 20)) == 255 and sent_mask.getpixel((50, 20)) == 0


def test_a1111_without_a_mask_sends_none(openapi):
    mode = mode_of("a1111")
    values = {**plain(mode), "prompt": "x", "init_image": upload(image_bytes(), "a.png")}
    body = build_body(mode, prepare_values(mode, values))
    check_against_schema(openapi, "img2img", body)
    assert "mask" not in body
    # A1111's UI defaults, not its API's (inpainting_fill 0, inpaint_full_res true).
    assert (body["mask_blur"], body["inpainting_fill"], body["inpaint_full_res"]) == (4, 1, False)


@pytest.mark.parametrize("fork", ["forge", "sdnext"])
def test_forge_and_sdnext_take_the_same_fields(app, fork):
    mode = app.extensions["webui"].folders.catalog().get(fork).definition.modes["img2img"]
    fields = {f["name"] for f in fixture_json(fork, "img2img-fields.json")}
    values = {**plain(mode), "prompt": "x", "init_image": upload(image_bytes(), "a.png"),
              "mask": upload(painted((64, 64), (0, 0, 8, 8)), "m.png"),
              "inpaint_full_res": True}
    body = build_body(mode, prepare_values(mode, values))
    inpaint = {"mask", "mask_blur", "inpainting_fill", "inpaint_full_res",
               "inpaint_full_res_padding", "inpainting_mask_invert"}
    assert inpaint <= set(body) and inpaint <= fields


def test_the_demo_repaints_only_under_the_mask(demo_app):
    """Through webui to the demo backend (A1111's API): the mask limits the change."""
    png = image_bytes((64, 64), (40, 90, 200))
    data = {**form(width="64", height="64", steps="2", seed="3", denoising_strength="0.9",
                   mask_blur="0")}
    files = {"init_image": (io.BytesIO(png), "blue.png"),
             "mask": (io.BytesIO(painted((64, 64), (0, 0, 32, 64))), "mask.png")}
    r = submit(demo_app.test_client(), "/services/demo/img2img/generate",
               data={**data, **files}, content_type="multipart/form-data")
    assert r.status_code == 200, r.html
    store = demo_app.extensions["webui"].store
    with Image.open(store.path(images_in(r.html)[0])) as out:
        out = out.convert("RGB")
        assert out.getpixel((60, 30)) == (40, 90, 200)  # not painted: kept
        assert out.getpixel((10, 30)) != (40, 90, 200)  # painted: repainted
    # A1111's infotext: no "Mask blur" at 0; "Whole picture" is not written.
    info = r.job.images[0].infotext
    assert "Mask blur" not in info and "Inpaint area" not in info and "Mask mode" not in info


# --- OpenAI ------------------------------------------------------------------------------------


def test_openai_mask_is_transparent_where_painted():
    mode = mode_of("openai")
    image = upload(image_bytes((96, 64)), "photo.png")
    values = {**plain(mode), "prompt": "x", "image": image,
              "mask": upload(painted((96, 64), (0, 0, 48, 64)), "m.png")}
    sent_mask = prepare_values(mode, values)["mask"]
    # openai-openapi CreateImageEditRequest.mask: a PNG, the image's size, fully transparent
    # (alpha 0) where the image is to be edited.
    with Image.open(io.BytesIO(sent_mask.data)) as m:
        assert m.format == "PNG" and m.mode == "RGBA" and m.size == (96, 64)
        assert m.getpixel((10, 10))[3] == 0 and m.getpixel((80, 10))[3] == 255


def test_openai_edit_with_a_mask_reaches_the_fake(services_app, fakes):
    data = {**defaults(services_app, "openai", "img2img"), "prompt": "a window",
            "model": "gpt-image-1", "size": "1024x1024"}
    r, html = generate(services_app, "openai", "img2img", data,
                       {"image": image_bytes((96, 96), (40, 90, 200)),
                        "mask": painted((96, 96), (0, 0, 48, 96))})
    assert r.status_code == 200, html
    [call] = sent(fakes, "openai", "/v1/images/edits")
    assert call["files"] == {"image": ["image.png"], "mask": ["mask.png"]}
    store = services_app.extensions["webui"].store
    with Image.open(store.path(images_in(html)[0])) as out:
        out = out.convert("RGB")
        # The fake edits (tints) only where the mask is transparent.
        assert out.getpixel((1000, 500)) == (40, 90, 200)
        assert out.getpixel((20, 500)) != (40, 90, 200)


# --- ComfyUI -----------------------------------------------------------------------------------


def test_comfyui_inpaint_uploads_the_image_and_the_mask(services_app, fakes):
    data = {**defaults(services_app, "comfyui", "inpaint"), "prompt": "a window",
            "ckpt_name": "sd15-demo.safetensors", "denoise": "1", "seed": "5"}
    r, html = generate(services_app, "comfyui", "inpaint", data,
                       {"image": image_bytes((80, 64), (40, 90, 200)),
                        "mask": painted((80, 64), (0, 0, 40, 64))})
    assert r.status_code == 200, html
    uploads = sent(fakes, "comfyui", "/upload/image")
    assert [u["files"] for u in uploads] == [{"image": "image.png"}, {"image": "mask.png"}]
    graph = sent(fakes, "comfyui", "/prompt")[0]["json"]["prompt"]
    assert re.fullmatch(r"image( \(\d+\))?\.png", graph["12"]["inputs"]["image"])
    assert graph["14"]["class_type"] == "LoadImageMask"
    assert graph["14"]["inputs"]["channel"] == "red"
    # The mask ComfyUI stored: white where painted, black elsewhere, the image's size.
    comfy = fakes["comfyui"].server.app.config["COMFYUI"]
    stored = comfy.files[("input", "", graph["14"]["inputs"]["image"])]
    with Image.open(io.BytesIO(stored)) as m:
        assert m.size == (80, 64) and m.mode == "L"
        assert m.getpixel((5, 5)) == 255 and m.getpixel((70, 5)) == 0
    store = services_app.extensions["webui"].store
    with Image.open(store.path(images_in(html)[0])) as out:
        out = out.convert("RGB")
        assert out.getpixel((75, 30)) == (40, 90, 200)
        assert out.getpixel((5, 30)) != (40, 90, 200)


def test_comfyui_inpaint_needs_a_mask(services_app):
    data = {**defaults(services_app, "comfyui", "inpaint"), "prompt": "a window",
            "ckpt_name": "sd15-demo.safetensors"}
    r, html = generate(services_app, "comfyui", "inpaint", data, {"image": image_bytes()})
    assert r.status_code == 422
    assert "Mask is required: paint the area to change" in html


def test_services_without_inpainting_show_no_editor(services_app):
    client = services_app.test_client()
    for service in ("stability", "comfyui"):
        html = client.get(f"/services/{service}/img2img").get_data(as_text=True)
        assert "data-mask-editor" not in html
    assert "data-mask-editor" in client.get("/services/comfyui/inpaint").get_data(as_text=True)
    assert "data-mask-editor" in client.get("/services/openai/img2img").get_data(as_text=True)
    assert "data-mask-editor" not in client.get("/services/forge/txt2img").get_data(as_text=True)


# --- history and Reuse parameters --------------------------------------------------------------


def test_the_job_keeps_its_image_and_mask_and_reuse_brings_them_back(demo_app):
    client = demo_app.test_client()
    png = image_bytes((64, 64), (40, 90, 200))
    mask = painted((64, 64), (0, 0, 32, 64))
    data = {**form(width="64", height="64", steps="2", seed="3"),
            "init_image": (io.BytesIO(png), "blue.png"), "mask": (io.BytesIO(mask), "mask.png")}
    r = submit(client, "/services/demo/img2img/generate", data=data,
               content_type="multipart/form-data")
    assert r.status_code == 200, r.html
    st = demo_app.extensions["webui"]
    record = st.history.get_job(r.job.id)
    kept = {k: record.parameters[k]["kept"] for k in ("init_image", "mask")}
    assert all(re.fullmatch(r"k-[0-9a-f]{32}\.png", name) for name in kept.values())
    assert (st.settings.inputs_dir / kept["init_image"]).read_bytes() == png
    assert (st.settings.inputs_dir / kept["mask"]).read_bytes() == mask  # as painted
    assert not list(st.settings.uploads_dir.iterdir())  # the job's uploads are gone

    image_id = st.history.get_job(r.job.id).images[0].id
    page = client.get(f"/services/demo/img2img?from={image_id}").get_data(as_text=True)
    assert f'name="init_image__from" value="{kept["init_image"]}"' in page
    assert f'name="mask__from" value="{kept["mask"]}"' in page
    assert client.get(f"/input-images/{kept['mask']}").data == mask
    # The image page shows the job's image and mask.
    shown = client.get(f"/gallery/{image_id}").get_data(as_text=True)
    for key, label in (("init_image", "Image: blue.png"), ("mask", "Mask: mask.png")):
        assert f'<img src="/input-images/{kept[key]}" alt="{label}"' in shown

    # Generate again from the reused form: the same image and mask are sent.
    again = submit(client, "/services/demo/img2img/generate",
                   data={**form(width="64", height="64", steps="2", seed="3"),
                         "init_image__from": kept["init_image"], "mask__from": kept["mask"]})
    assert again.status_code == 200, again.html
    assert st.history.get_job(again.job.id).parameters["mask"]["kept"] == kept["mask"]


def test_a_plain_img2img_job_keeps_no_inputs(demo_app):
    client = demo_app.test_client()
    data = {**form(width="64", height="64", steps="2"),
            "init_image": (io.BytesIO(image_bytes()), "red.png")}
    r = submit(client, "/services/demo/img2img/generate", data=data,
               content_type="multipart/form-data")
    assert r.status_code == 200, r.html
    st = demo_app.extensions["webui"]
    assert "kept" not in st.history.get_job(r.job.id).parameters["init_image"]
    assert not list(st.settings.inputs_dir.iterdir())


@pytest.mark.parametrize(("fields", "written", "absent"), [
    ({"mask_blur": 4, "inpaint_full_res": True, "inpaint_full_res_padding": 32},
     ["Mask blur: 4", "Inpaint area: Only masked", "Masked area padding: 32"], ["Mask mode"]),
    ({"mask_blur": 0, "inpaint_full_res": False, "inpainting_mask_invert": 1},
     ["Mask mode: Inpaint not masked"], ["Mask blur", "Inpaint area"]),
    # The API's defaults: blur 4 (x and y), inpaint_full_res true, padding 0.
    ({}, ["Mask blur: 4", "Inpaint area: Only masked", "Masked area padding: 0"], []),
])
def test_the_demo_writes_a1111s_inpainting_infotext(fields, written, absent):
    from webui.demo import create_demo_app

    client = create_demo_app(step_delay=0).test_client()
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    r = client.post("/sdapi/v1/img2img", json={
        "prompt": "x", "steps": 2, "width": 64, "height": 64,
        "init_images": [base64.b64encode(image_bytes()).decode()],
        "mask": base64.b64encode(buf.getvalue()).decode(), **fields})
    assert r.status_code == 200, r.get_json()
    info = r.get_json()["info"]
    for text in written:
        assert text in info
    for text in absent:
        assert text not in info

"""PNG Info: an image of A1111, of ComfyUI or of webui itself read into labelled values, sent to
the right service's form (the prefill of "Reuse parameters"), and hostile files answered with a
sentence. Images are made as those programs make them: A1111 1.10.1's own PNG (its API answer,
tests/fixtures), ComfyUI 0.3.64's SaveImage chunks (helpers.comfyui_png), webui's through a
real job on the demo backend."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import zlib

from PIL import Image

from webui import create_app
from webui.format import DefinitionError, load_data
from webui.images import KeptImages
from webui.infotext import png_text

from .helpers import (
    COMFYUI_GRAPH,
    a1111_response,
    comfyui_png,
    demo_extra,
    form,
    image_bytes,
    minimal,
    submit,
)

MULTIPART = "multipart/form-data"


def a1111_png() -> bytes:
    """A PNG exactly as A1111 1.10.1 answered it (txt2img; its infotext: "a cat", Steps: 1…)."""
    return base64.b64decode(a1111_response("txt2img-200")["images"][0])


def read(client, data: bytes, name: str = "image.png", htmx: bool = True):
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post("/png-info", data={"image": (io.BytesIO(data), name)},
                       content_type=MULTIPART, headers=headers)


def text_of(html: str) -> str:
    """What a reader sees: the text, tags gone, spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def send_links(html: str) -> dict[str, str]:
    """Each "Send to" link by its accessible name ("Send to X: Text to image")."""
    return {text_of(m[1]): m[0].replace("&amp;", "&") for m in re.findall(
        r'<a class="button" href="([^"]+)"><span class="visually-hidden">(.*?)</a>', html)}


def field_value(html: str, mode: str, key: str) -> str | None:
    """The value a rendered form field starts with."""
    m = re.search(rf'id="f-{mode}-{key}"[^>]*?value="([^"]*)"', html, re.S) or re.search(
        rf'<textarea id="f-{mode}-{key}"[^>]*>([^<]*)</textarea>', html)
    return m.group(1) if m else None


def test_the_page_is_in_the_navigation(client):
    html = client.get("/").get_data(as_text=True)
    assert '<a href="/png-info">PNG Info</a>' in html
    page = client.get("/png-info").get_data(as_text=True)
    assert '<label for="png-info-file">' in page and 'accept="image/*"' in page


def test_an_a1111_png_is_labelled_and_sent_to_the_a1111_family(app):
    client = app.test_client()
    r = read(client, a1111_png(), "cat.png")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    shown = text_of(html)
    assert "A1111 parameters text" in shown
    for pair in ("Prompt a cat", "Steps 1", "Sampler Euler", "CFG scale 7.0", "Seed 1",
                 "Size 64x64", "Model random-sd15"):
        assert pair in shown
    links = send_links(html)
    # The services whose definitions write A1111's text, the one set up first; every other
    # service under "Another service".
    meant = [name for name in links if name.endswith("Text to image")]
    assert meant[:3] == ["Send to AUTOMATIC1111 WebUI: Text to image",
                         "Send to SD WebUI Forge: Text to image",
                         "Send to SD.Next: Text to image"]
    assert html.index("SD.Next") < html.index("Another service") < html.index("ComfyUI")
    assert r.headers["HX-Push-Url"].startswith("/png-info/")

    form_page = client.get(links["Send to AUTOMATIC1111 WebUI: Text to image"])
    page = form_page.get_data(as_text=True)
    assert "The form is filled from the image read by PNG Info." in page
    assert "data-prefilled" in page
    assert field_value(page, "txt2img", "prompt") == "a cat"
    assert field_value(page, "txt2img", "steps") == "1"
    assert field_value(page, "txt2img", "cfg_scale") == "7.0"
    assert '<option value="random-sd15" selected>' in page  # "Model" is the checkpoint

    # The address names the image: reloading it shows the same result.
    again = client.get(r.headers["HX-Push-Url"]).get_data(as_text=True)
    assert "Size 64x64" in text_of(again)


def test_a_comfyui_png_reads_its_graph_and_goes_to_comfyui(app):
    client = app.test_client()
    html = read(client, comfyui_png(), "fox.png").get_data(as_text=True)
    shown = text_of(html)
    assert "ComfyUI “prompt” text (7 nodes)" in shown
    # The sampler's positive input, not the first text node of the graph (the negative one).
    for pair in ("Prompt a red fox in the snow, golden hour", "Negative prompt blurry, watermark",
                 "Seed 987654321", "Steps 28", "CFG scale 6.5", "Sampler dpmpp_2m",
                 "Scheduler karras", "Checkpoint sdxl-demo.safetensors", "Width 832",
                 "Height 1216"):
        assert pair in shown, pair
    assert "workflow" in shown  # the editor's graph is listed among the file's texts
    links = send_links(html)
    meant = html[:html.index("Another service")]
    assert "Send to ComfyUI: Text to image" in text_of(meant)
    assert "AUTOMATIC1111" not in text_of(meant[meant.index("Send to"):])

    page = client.get(links["Send to ComfyUI: Text to image"]).get_data(as_text=True)
    assert field_value(page, "txt2img", "prompt") == "a red fox in the snow, golden hour"
    assert field_value(page, "txt2img", "negative_prompt") == "blurry, watermark"
    assert field_value(page, "txt2img", "seed") == "987654321"
    assert field_value(page, "txt2img", "width") == "832"
    assert field_value(page, "txt2img", "cfg") == "6.5"
    assert '<option value="sdxl-demo.safetensors" selected>' in page

    # Sent to a service of another kind: what carries by role and plain fields of one name.
    page = client.get(links["Send to AUTOMATIC1111 WebUI: Text to image"]).get_data(True)
    assert field_value(page, "txt2img", "prompt") == "a red fox in the snow, golden hour"
    assert field_value(page, "txt2img", "seed") == "987654321"
    assert field_value(page, "txt2img", "steps") == "28"
    assert field_value(page, "txt2img", "cfg_scale") == "7"  # cfg is not cfg_scale: default
    assert "dpmpp_2m" not in page  # a sampler belongs to its service


def test_webuis_own_png_goes_back_to_its_service_with_its_seed(make_settings, demo_server):
    app = create_app(make_settings(extras=[demo_extra(demo_server.url)]))
    client = app.test_client()
    r = submit(client, "/services/demo/txt2img/generate",
               data=form(prompt="a quiet harbour", steps="3", seed="-1", width="64",
                         height="64", lora_weight="0.8"))
    assert r.status_code == 200, r.html
    saved = app.extensions["webui"].store.path(r.job.images[0].path).read_bytes()
    note = json.loads(png_text(saved, "webui"))
    assert note["service"] == "demo" and note["mode"] == "txt2img"
    assert note["values"]["seed"] == -1 and note["seed"] == r.job.images[0].seed >= 0

    html = read(client, saved).get_data(as_text=True)
    assert "Made by webui with A1111 demo · Text to image" in text_of(html)
    meant = text_of(html[:html.index("Another service")])
    assert "Send to A1111 demo: Text to image" in meant and "AUTOMATIC1111" not in meant
    page = client.get(send_links(html)["Send to A1111 demo: Text to image"]).get_data(True)
    assert field_value(page, "txt2img", "prompt") == "a quiet harbour"
    assert field_value(page, "txt2img", "steps") == "3"
    assert field_value(page, "txt2img", "seed") == str(r.job.images[0].seed)


def test_send_to_img2img_brings_the_image_as_input(make_settings, demo_server):
    app = create_app(make_settings(extras=[demo_extra(demo_server.url)]))
    client = app.test_client()
    html = read(client, image_bytes((64, 64), (10, 200, 30))).get_data(True)
    assert "carries no generation parameters" in text_of(html)
    comfy = read(client, comfyui_png(size=(64, 64))).get_data(as_text=True)
    url = send_links(comfy)["Send to A1111 demo: Image to image"]
    token = url.split("from=png-")[1].split("&")[0]
    page = client.get(url).get_data(as_text=True)
    assert f'name="init_image__from" value="png-{token}"' in page
    assert f'src="/png-info/{token}/image"' in page and "From PNG Info." in page
    assert client.get(f"/png-info/{token}/image").status_code == 200
    data = form(width="64", height="64", steps="2", denoising_strength="0", resize_mode="0")
    data.pop("hr_upscaler")
    done = submit(client, "/services/demo/img2img/generate",
                  data={**data, "prompt": "x", "init_image__from": f"png-{token}"})
    assert done.status_code == 200, done.html
    out = app.extensions["webui"].store.path(done.job.images[0].path)
    with Image.open(out) as result:  # denoising 0 keeps the input: ComfyUI's blue image
        assert result.convert("RGB").getpixel((32, 32)) == (30, 90, 160)
    gone = submit(client, "/services/demo/img2img/generate",
                  data={**data, "prompt": "x", "init_image__from": "png-" + "0" * 32})
    assert "no longer keeps" in gone.html


def png_with_text(keyword: bytes, body: bytes, kind: bytes = b"tEXt") -> bytes:
    data = image_bytes((8, 8))
    payload = keyword + b"\0" + body
    chunk = (struct.pack(">I", len(payload)) + kind + payload
             + struct.pack(">I", zlib.crc32(kind + payload)))
    return data[:33] + chunk + data[33:]


def test_hostile_files_get_a_sentence(client):
    r = read(client, b"%PDF-1.7 not an image at all", "notes.pdf")
    assert r.status_code == 422
    assert "This file is not an image" in r.get_data(as_text=True)
    assert 'role="alert"' in r.get_data(as_text=True)

    # A decompression bomb: a header claiming 100,000 × 100,000 pixels; never decoded.
    bomb = bytearray(image_bytes((8, 8)))
    bomb[16:24] = struct.pack(">II", 100_000, 100_000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    r = read(client, bytes(bomb), "bomb.png")
    assert r.status_code == 422 and "This file is too large (more than 64,000,000 pixels" \
        in r.get_data(as_text=True)
    # One just over webui's own limit (and within Pillow's): its size is said.
    big = bytearray(image_bytes((8, 8)))
    big[16:24] = struct.pack(">II", 10_000, 8_000)
    big[29:33] = struct.pack(">I", zlib.crc32(bytes(big[12:29])))
    assert "is too large (10000×8000 pixels)" in read(client, bytes(big)).get_data(True)

    # 100 KB of "parameters": the image is shown, its text is refused with the reason.
    r = read(client, png_with_text(b"parameters", b"x" * 100_000))
    assert r.status_code == 200 and "longer than" not in r.get_data(True)
    assert "too long (more than 64 KB)" in r.get_data(as_text=True)
    # A 2 MB graph: more than any graph webui reads.
    r = read(client, png_with_text(b"prompt", b"{" + b" " * (2 * 1024 * 1024) + b"}"))
    assert r.status_code == 200 and "too long (more than 1024 KB)" in r.get_data(True)
    # 2 MB compressed into a few KB: refused by the image check before anything reads it.
    bomb_text = b"\0" + zlib.compress(b"{" + b" " * (2 * 1024 * 1024) + b"}", 9)
    r = read(client, png_with_text(b"prompt", bomb_text, b"zTXt"))
    assert r.status_code == 422
    assert "This file carries a compressed text that inflates beyond" in r.get_data(True)

    r = client.post("/png-info", data={}, content_type=MULTIPART, headers={"HX-Request": "1"})
    assert r.status_code == 422 and "choose, drop or paste an image" in r.get_data(True)
    r = read(client, b"\0" * (31 * 1024 * 1024), "big.png")
    assert r.status_code == 422 and "This file is larger than 30 MB" in r.get_data(True)
    r = client.post("/png-info", data={"image": (io.BytesIO(b"\0" * (33 * 1024 * 1024)),
                                                 "bigger.png")}, content_type=MULTIPART)
    assert r.status_code == 413 and "limit is 30 MB" in r.get_data(as_text=True)
    # Without JavaScript the answer is the whole page, with the same sentence; a file that
    # is read leads to its result's own address (a reload does not post it again).
    r = read(client, b"GIF89a broken", htmx=False)
    assert "<h1>PNG Info</h1>" in r.get_data(True) and "not an image" in r.get_data(True)
    r = read(client, image_bytes(), htmx=False)
    assert r.status_code == 303 and r.headers["Location"].startswith("/png-info/")
    assert "carries no generation parameters" in client.get(r.headers["Location"]).get_data(True)


def test_what_is_shown_of_a_file_is_bounded(client):
    labels = ", ".join(f"Label{i}: {i}" for i in range(3000))
    r = read(client, png_with_text(b"parameters", f"a cat\n{labels}".encode()))
    table = r.get_data(as_text=True).split('<table class="params">')[1].split("</table>")[0]
    rows = re.findall(r'<th scope="row">([^<]*)</th>', table)
    assert len(rows) == 200 and rows[0] == "Prompt" and rows[-1] == "Label198"
    note = {"service": "a1111", "mode": "txt2img", "values": {"prompt": "x" * 100_000}}
    r = read(client, png_with_text(b"webui", json.dumps(note).encode()))
    html = r.get_data(as_text=True)
    assert "… (100000 characters)" in html and "x" * 5001 not in html


def test_kept_images_are_bounded_and_a_gone_one_says_so(tmp_path, client):
    kept = KeptImages(tmp_path / "kept", keep=3)
    tokens = [kept.add(image_bytes((8, 8), (i, 0, 0)), "png") for i in range(5)]
    assert kept.add(image_bytes((8, 8), (4, 0, 0)), "png") == tokens[4]  # same bytes, same name
    assert [kept.find(t) is not None for t in tokens] == [False, False, True, True, True]
    assert kept.find("../../etc/passwd") is None
    r = client.get("/png-info/" + "a" * 32)
    assert r.status_code == 404 and "no longer kept" in r.get_data(as_text=True)
    page = client.get("/services/a1111/txt2img?from=png-" + "a" * 32).get_data(True)
    assert field_value(page, "txt2img", "steps") == "20"  # the defaults, nothing prefilled


def test_a_jpeg_with_exif_infotext_is_read(client):
    exif = Image.Exif()
    text = "a lake\nNegative prompt: fog\nSteps: 12, Sampler: DPM++ 2M, Seed: 5, Size: 64x64"
    # A1111 writes the text as a UNICODE (UTF-16 big-endian) UserComment (piexif.helper).
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + text.encode("utf-16-be")
    jpeg = image_bytes((64, 64), format="JPEG", exif=exif.tobytes())
    html = read(client, jpeg, "lake.jpg").get_data(as_text=True)
    shown = text_of(html)
    assert "Prompt a lake" in shown and "Negative prompt fog" in shown
    assert "Sampler DPM++ 2M" in shown and "JPG · 64×64" in shown


def test_the_images_field_of_definitions_is_checked():
    good = minimal()
    good["images"] = {"parameters": "infotext",
                      "graph": {"prompt": "nodes[0].text", "steps": "get(@, 'steps')"}}
    load_data(good, "tiny.yaml")
    for images, message in (
        ({"graph": {"nonsense": "a"}}, "images.graph.nonsense: no mode has a parameter"),
        ({"graph": {"prompt": "a[["}}, "images.graph.prompt: invalid JMESPath"),
        ({"graph": {"prompt": "nope(@)"}}, "unknown function nope()"),
        ({"webui": "infotext"}, "images.webui: 'webui' is webui's own note"),
        ({"x" * 80: "infotext"}, "1 to 79 Latin-1 characters"),
        ({"parameters": "json"}, "images.parameters"),
    ):
        bad = minimal()
        bad["images"] = images
        try:
            load_data(bad, "tiny.yaml")
        except DefinitionError as exc:
            assert message in str(exc), (message, str(exc))
        else:
            raise AssertionError(f"{images} loaded")


def test_a_graph_of_the_bundled_workflow_reads_the_same(app):
    # webui's own ComfyUI workflow has other node ids than the editor's: both read alike.
    from webui.catalog import BUNDLED_DIR

    graph = json.loads((BUNDLED_DIR / "comfyui" / "txt2img.json").read_text())
    graph["6"]["inputs"]["text"] = "bundled prompt"
    html = read(app.test_client(), comfyui_png(graph)).get_data(as_text=True)
    shown = text_of(html)
    assert "Prompt bundled prompt" in shown and "Negative prompt text, watermark" in shown
    assert "LoRAs example.safetensors: 1.0" in shown
    assert COMFYUI_GRAPH["40"]["inputs"]["seed"] != graph["3"]["inputs"]["seed"]
    assert f"Seed {graph['3']['inputs']['seed']}" in shown


def test_get_follows_a_computed_key():
    from webui import expr

    graph = {"3": {"inputs": {"positive": ["6", 0]}}, "6": {"inputs": {"text": "hi"}}}
    assert expr.search("{g: @, s: get(@, '3')} | get(g, s.inputs.positive[0]).inputs.text",
                       graph) == "hi"
    assert expr.search("get(@, `6`).inputs.text", graph) == "hi"  # an id given as a number
    assert expr.search("get(@, 'nope')", graph) is None
    assert expr.search("get(missing, 'x')", graph) is None
    assert expr.check("get(@, 'x')") is None

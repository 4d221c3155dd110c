"""Inpainting in a real browser: a mask painted with the mouse over the input image reaches
the backend as the image its definition says (A1111: white where painted, on black, base64
PNG; ComfyUI: an uploaded PNG read by LoadImageMask's red channel; OpenAI: transparent where
painted), and comes back with Reuse parameters."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from webui import create_app
from webui.demo import create_demo_app

from .backends import record_request
from .helpers import ServerThread, demo_extra, image_bytes, natural_size
from .test_browser_extras import FAILING_IMPACTS, axe_violations, readable

pytestmark = pytest.mark.browser

SHOTS = Path("/work/shots-inpaint")
# Waits that include storing the mask on the server: a busy machine can take a few seconds.
STORED = 15_000


def shot(page, name: str, full_page: bool = True) -> None:
    """A screenshot of what was built, to be looked at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


@pytest.fixture
def recorded_demo(make_settings):
    """webui with the demo service on a demo backend that keeps each request's body."""
    backend_app = create_demo_app(step_delay=0.001)
    backend_app.config["REQUESTS"] = []
    backend_app.before_request(lambda: record_request(backend_app) and None)
    backend = ServerThread(backend_app)
    app = create_app(make_settings(extras=[demo_extra(backend.url)],
                                   url_overrides={"a1111": "http://127.0.0.1:9"}))
    server = ServerThread(app)
    yield server, app, backend_app.config["REQUESTS"]
    server.stop()
    backend.stop()


def choose_image(page, field_id: str, size=(200, 96), colour=(40, 90, 200)) -> None:
    page.set_input_files(field_id, files=[{"name": "blue.png", "mimeType": "image/png",
                                           "buffer": image_bytes(size, colour)}])


def paint(page, canvas_selector: str, frm: tuple[float, float], to: tuple[float, float]) -> None:
    """Drag the mouse across the canvas between two points given as fractions of its size
    (the canvas first brought to the top of the screen, away from the Generate bar that stays
    at its bottom)."""
    page.locator(canvas_selector).evaluate(
        "c => c.closest('.field').scrollIntoView({block: 'start'})")
    box = page.locator(canvas_selector).bounding_box()
    x0, y0 = box["x"] + box["width"] * frm[0], box["y"] + box["height"] * frm[1]
    x1, y1 = box["x"] + box["width"] * to[0], box["y"] + box["height"] * to[1]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()


def decode(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text.split(",")[-1])))


def test_a_mask_painted_with_the_mouse_reaches_a1111_as_white_on_black(page, recorded_demo):
    server, app, requests = recorded_demo
    page.goto(server.url + "/services/demo/img2img")
    editor = page.locator("[data-mask-editor]")
    expect(editor.locator("[data-mask-empty]")).to_be_visible()
    choose_image(page, "#f-img2img-init_image")
    canvas = page.locator("#f-img2img-mask")
    expect(canvas).to_be_visible()
    expect(canvas).to_have_js_property("width", 200)
    expect(canvas).to_have_js_property("height", 96)

    # Paint a thick stroke across the left quarter, top to bottom; erase nothing.
    page.fill("[data-mask-size]", "30")
    paint(page, "#f-img2img-mask", (0.12, 0.05), (0.12, 0.95))
    expect(editor.locator("[data-mask-status]")).to_contain_text("Painted areas are redrawn",
                                                                  timeout=STORED)
    ref = editor.locator("[data-mask-ref]")
    expect(ref).not_to_have_value("", timeout=STORED)
    shot(page, "a1111-painted-desktop-light")

    page.fill("#f-img2img-prompt", "a red door")
    page.fill("#f-img2img-steps", "2")
    page.fill("#f-img2img-seed", "7")
    page.fill("#f-img2img-width", "200")
    page.fill("#f-img2img-height", "96")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result figure img")).to_have_count(1, timeout=15_000)

    sent = [r["json"] for r in requests if r["path"] == "/sdapi/v1/img2img"]
    assert len(sent) == 1
    body = sent[0]
    mask = decode(body["mask"])
    assert mask.mode == "L" and mask.size == (200, 96)
    # White where the stroke went (the left quarter's middle column), black far from it.
    assert mask.getpixel((24, 50)) == 255 and mask.getpixel((24, 10)) == 255
    assert mask.getpixel((150, 48)) == 0 and mask.getpixel((100, 20)) == 0
    white = sum(mask.histogram()[128:])  # pixels above mid-grey
    assert 0.03 < white / (200 * 96) < 0.3
    # The inpainting fields, with the UI's defaults.
    assert (body["mask_blur"], body["inpainting_fill"], body["inpaint_full_res"],
            body["inpainting_mask_invert"]) == (4, 1, False, 0)
    assert "inpaint_full_res_padding" not in body  # only with "only masked"

    # The demo repaints only under the mask: the right of the picture is the input's blue.
    result = page.locator("#result figure img").first
    assert natural_size(result) == [200, 96]
    saved = app.extensions["webui"].store.path(result.get_attribute("src").removeprefix("/images/"))
    with Image.open(saved) as picture:
        assert picture.convert("RGB").getpixel((180, 50)) == (40, 90, 200)
        assert picture.convert("RGB").getpixel((24, 50)) != (40, 90, 200)

    # The image page shows the mask with the job's parameters.
    page.goto(server.url + page.locator("#result").get_by_role("link", name="Open").first
              .get_attribute("href"))
    mask_shown = page.get_by_role("img", name=re.compile(r"^Mask: "))
    assert natural_size(mask_shown) == [200, 96]
    shot(page, "a1111-image-page-desktop-light")
    page.go_back()

    # Reuse parameters: the image and the mask come back, the mask painted where it was.
    page.locator("#result").get_by_role("link", name="Reuse parameters").first.click()
    expect(page.locator("#f-img2img-prompt")).to_have_value("a red door")
    canvas = page.locator("#f-img2img-mask")
    expect(canvas).to_have_js_property("width", 200)
    alpha_at = """([x, y]) => document.getElementById('f-img2img-mask').getContext('2d')
        .getImageData(x, y, 1, 1).data[3]"""
    page.wait_for_function(f"() => ({alpha_at})([24, 50]) === 255")
    assert page.evaluate(alpha_at, [150, 48]) == 0
    # Kept with the job (k-…), not a draft that may be gone.
    expect(editor.locator("[data-mask-ref]")).to_have_value(re.compile(r"k-[0-9a-f]{32}\.png"))
    expect(page.locator("[name=init_image__from]")).to_have_value(
        re.compile(r"k-[0-9a-f]{32}\.png"))
    shot(page, "a1111-reused-desktop-light")
    # Generate again as it is: the same mask is sent.
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("() => document.querySelectorAll('#result figure img').length === 1"
                           " && location.search.includes('job=')", timeout=15_000)
    again = [r["json"] for r in requests if r["path"] == "/sdapi/v1/img2img"]
    assert len(again) == 2 and again[1]["mask"] == body["mask"]


def test_undo_invert_and_clear(page, recorded_demo):
    server, _app, _requests = recorded_demo
    page.goto(server.url + "/services/demo/img2img")
    editor = page.locator("[data-mask-editor]")
    choose_image(page, "#f-img2img-init_image", size=(100, 100))
    canvas = page.locator("#f-img2img-mask")
    expect(canvas).to_have_js_property("width", 100)
    ref = editor.locator("[data-mask-ref]")
    undo = editor.get_by_role("button", name="Undo")
    expect(undo).to_be_disabled()

    def painted() -> float:
        return canvas.evaluate("""c => { const d = c.getContext('2d').getImageData(0, 0, c.width,
            c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 127) n++;
            return n / (c.width * c.height); }""")

    paint(page, "#f-img2img-mask", (0.1, 0.5), (0.9, 0.5))
    expect(ref).not_to_have_value("", timeout=STORED)
    one = painted()
    assert 0.05 < one < 0.6
    editor.get_by_role("button", name="Invert").click()
    assert abs(painted() - (1 - one)) < 0.02
    canvas.focus()
    page.keyboard.press("Control+z")  # the same as Undo
    assert abs(painted() - one) < 0.001
    page.keyboard.press("]")
    expect(editor.locator("[data-mask-size-out]")).to_have_text("42")
    editor.get_by_role("button", name="Erase").click()
    expect(editor.get_by_role("button", name="Erase")).to_have_attribute("aria-pressed", "true")
    page.fill("[data-mask-size]", "160")
    paint(page, "#f-img2img-mask", (0.0, 0.5), (1.0, 0.5))
    assert painted() < one / 4
    editor.get_by_role("button", name="Paint").click()
    paint(page, "#f-img2img-mask", (0.5, 0.0), (0.5, 1.0))
    expect(editor.locator("[data-mask-status]")).to_contain_text("Painted areas", timeout=STORED)
    kept = painted()
    # A reload keeps the image and the mask (remembered with the form, stored as drafts).
    page.reload()
    expect(canvas).to_have_js_property("width", 100)
    page.wait_for_function("""() => { const c = document.getElementById('f-img2img-mask');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; }""")
    assert abs(painted() - kept) < 0.01
    editor.get_by_role("button", name="Clear").click()
    assert painted() == 0
    expect(ref).to_have_value("")
    expect(editor.locator("[data-mask-status]")).to_contain_text("Cleared")

    # Reset to defaults forgets the mask, also after a reload.
    paint(page, "#f-img2img-mask", (0.5, 0.0), (0.5, 1.0))
    expect(ref).not_to_have_value("", timeout=STORED)
    page.get_by_role("button", name="Reset to defaults").click()
    expect(ref).to_have_value("")
    page.reload()
    expect(page.locator("[data-mask-empty]")).to_be_visible()
    assert painted() == 0 and ref.input_value() == ""


@pytest.mark.parametrize(("device", "scheme"), [("desktop", "light"), ("desktop", "dark"),
                                                ("phone", "light"), ("phone", "dark")])
def test_the_editor_on_desktop_and_phone_light_and_dark(browser, recorded_demo, device, scheme):
    """Screenshots to look at; the canvas lies exactly over the picture at every size, and a
    stroke lands where the pointer went (touch too, on the phone)."""
    from .backends import draw_image

    server, _app, _requests = recorded_demo
    viewport = ({"width": 1280, "height": 900} if device == "desktop"
                else {"width": 390, "height": 844})
    context = browser.new_context(viewport=viewport, color_scheme=scheme,
                                  has_touch=device == "phone", is_mobile=device == "phone")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(server.url + "/services/demo/img2img")
        picture = io.BytesIO()
        draw_image(512, 384, "a picture").save(picture, "PNG")
        page.set_input_files("#f-img2img-init_image", files=[
            {"name": "picture.png", "mimeType": "image/png", "buffer": picture.getvalue()}])
        canvas = page.locator("#f-img2img-mask")
        expect(canvas).to_have_js_property("width", 512)
        # At the top of the screen: not under the Generate bar that stays at its bottom.
        page.locator("label[for=f-img2img-mask]").evaluate(
            "e => e.scrollIntoView({block: 'start'})")
        base = page.locator("[data-mask-base]").bounding_box()
        box = canvas.bounding_box()
        assert abs(box["width"] - base["width"]) < 1 and abs(box["height"] - base["height"]) < 1
        assert abs(box["width"] / box["height"] - 512 / 384) < 0.02
        if device == "phone":
            # A finger: touch events become pointer events of type touch.
            x, y = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
            cdp = context.new_cdp_session(page)
            cdp.send("Input.dispatchTouchEvent",
                     {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
            for i in range(1, 11):
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                    {"x": x + i * box["width"] * 0.03, "y": y}]})
            cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        else:
            paint(page, "#f-img2img-mask", (0.3, 0.3), (0.7, 0.6))
        expect(page.locator("[data-mask-ref]")).not_to_have_value("", timeout=STORED)
        centre = canvas.evaluate("""c => c.getContext('2d').getImageData(
            Math.round(c.width * 0.55), Math.round(c.height * 0.5), 1, 1).data[3]""")
        assert centre == 255
        shot(page, f"editor-{device}-{scheme}", full_page=False)
        # The editor, shown and painted, passes the project's accessibility audit.
        bad = [v for v in axe_violations(page) if v["impact"] in FAILING_IMPACTS]
        assert not bad, readable({"img2img with a mask": bad})
    finally:
        context.close()
    assert not errors, errors


def test_a_mask_painted_for_comfyui_is_uploaded_for_loadimagemask(page, services_app, fakes):
    """ComfyUI's inpaint mode: the mask is required, uploaded like the image, and read by
    LoadImageMask's red channel (white where painted)."""
    server = ServerThread(services_app)
    try:
        page.goto(server.url + "/services/comfyui/inpaint")
        page.fill("#f-inpaint-prompt", "a window")
        page.get_by_role("button", name="Generate").click()
        # Nothing painted: said at the field, nothing sent.
        expect(page.locator("#err-inpaint-mask")).to_have_text(
            "Mask is required: paint the area to change")
        choose_image(page, "#f-inpaint-image", size=(160, 96))
        expect(page.locator("#f-inpaint-mask")).to_have_js_property("width", 160)
        paint(page, "#f-inpaint-mask", (0.8, 0.1), (0.8, 0.9))
        expect(page.locator("[data-mask-ref]")).not_to_have_value("", timeout=STORED)
        page.locator("#f-inpaint-ckpt_name").select_option("sd15-demo.safetensors")
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#result figure img")).to_have_count(1, timeout=15_000)
        page.evaluate("() => window.scrollTo(0, 0)")
        shot(page, "comfyui-inpaint-desktop-light", full_page=False)
    finally:
        server.stop()
    requests = fakes["comfyui"].server.app.config["REQUESTS"]
    graph = [r for r in requests if r["path"] == "/prompt"][-1]["json"]["prompt"]
    stored = fakes["comfyui"].server.app.config["COMFYUI"].files[
        ("input", "", graph["14"]["inputs"]["image"])]
    with Image.open(io.BytesIO(stored)) as mask:
        assert mask.size == (160, 96) and mask.mode == "L"
        assert mask.getpixel((128, 48)) == 255 and mask.getpixel((20, 48)) == 0


def test_a_pen_paints_wider_the_harder_it_presses(page, recorded_demo):
    server, _app, _requests = recorded_demo
    page.goto(server.url + "/services/demo/img2img")
    choose_image(page, "#f-img2img-init_image", size=(200, 96))
    canvas = page.locator("#f-img2img-mask")
    expect(canvas).to_have_js_property("width", 200)
    canvas.evaluate("c => c.closest('.field').scrollIntoView({block: 'start'})")
    box = canvas.bounding_box()
    cdp = page.context.new_cdp_session(page)

    def pen_stroke(y: float, force: float) -> None:
        x0, x1 = box["x"] + box["width"] * 0.2, box["x"] + box["width"] * 0.8
        at = box["y"] + box["height"] * y
        common = {"pointerType": "pen", "button": "left", "clickCount": 1}
        cdp.send("Input.dispatchMouseEvent", {"type": "mousePressed", "x": x0, "y": at,
                                              "force": force, **common})
        for i in range(1, 9):
            cdp.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x0 + (x1 - x0) * i / 8,
                                                  "y": at, "force": force, "buttons": 1,
                                                  "pointerType": "pen"})
        cdp.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": x1, "y": at,
                                              "force": force, **common})

    def thickness(row_fraction: float) -> int:
        """How many pixels of the canvas's column at x = 50% are painted around a row."""
        return canvas.evaluate("""(c, f) => { const d = c.getContext('2d').getImageData(
            Math.round(c.width / 2), 0, 1, c.height).data; const mid = Math.round(c.height * f);
            let n = 0; for (let y = Math.max(0, mid - 30); y < Math.min(c.height, mid + 30); y++)
            if (d[y * 4 + 3] > 127) n++; return n; }""", row_fraction)

    pen_stroke(0.25, 0.1)
    pen_stroke(0.75, 1.0)
    light, hard = thickness(0.25), thickness(0.75)
    assert 0 < light < hard


def test_a_second_finger_does_not_paint(browser, recorded_demo):
    """A pinch or a resting palm: only the first finger on the canvas paints."""
    server, _app, _requests = recorded_demo
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True,
                                  is_mobile=True)
    page = context.new_page()
    try:
        page.goto(server.url + "/services/demo/img2img")
        choose_image(page, "#f-img2img-init_image", size=(200, 200))
        canvas = page.locator("#f-img2img-mask")
        expect(canvas).to_have_js_property("width", 200)
        canvas.evaluate("c => c.closest('.field').scrollIntoView({block: 'start'})")
        box = canvas.bounding_box()

        def at(fx: float, fy: float) -> dict[str, float]:
            return {"x": box["x"] + box["width"] * fx, "y": box["y"] + box["height"] * fy}

        cdp = context.new_cdp_session(page)
        touch = "Input.dispatchTouchEvent"
        one, two = {**at(0.2, 0.2), "id": 1}, {**at(0.8, 0.8), "id": 2}
        cdp.send(touch, {"type": "touchStart", "touchPoints": [one]})
        cdp.send(touch, {"type": "touchStart", "touchPoints": [one, two]})
        for i in range(1, 6):
            one = {**at(0.2 + i * 0.04, 0.2), "id": 1}
            two = {**at(0.8, 0.8 - i * 0.04), "id": 2}
            cdp.send(touch, {"type": "touchMove", "touchPoints": [one, two]})
        cdp.send(touch, {"type": "touchEnd", "touchPoints": []})
        expect(page.locator("[data-mask-ref]")).not_to_have_value("", timeout=STORED)

        def alpha(fx: float, fy: float) -> int:
            return canvas.evaluate("""(c, [fx, fy]) => c.getContext('2d').getImageData(
                Math.round(c.width * fx), Math.round(c.height * fy), 1, 1).data[3]""", [fx, fy])

        assert alpha(0.3, 0.2) == 255  # the first finger's stroke
        assert alpha(0.8, 0.7) == 0 and alpha(0.5, 0.5) == 0  # nothing from the second
    finally:
        context.close()

"""The LoRA picker and prompt styles in a real browser (Chromium): a demo backend listing 5,000
LoRAs, searched as you type; several chosen with weights and one removed; what the backend
received; a name A1111's tag syntax cannot carry refused at the field; styles made on the
Styles page and A1111's own, merged into the prompt; ComfyUI's chain of LoRA nodes; desktop
and phone, light and dark."""

from __future__ import annotations

import io
import json

import pytest
from playwright.sync_api import expect

from webui import create_app
from webui.demo import DemoBackend, create_demo_app

from .backends.comfyui import create_comfyui_app
from .helpers import SHOTS, ServerThread, demo_extra, lora_collection, sent, shot

pytestmark = pytest.mark.browser

ODD = "odd:name"  # a LoRA file name A1111's <lora:name:weight> cannot carry
VIEWS = {  # name: (viewport, colour scheme)
    "desktop-light": ({"width": 1280, "height": 900}, "light"),
    "desktop-dark": ({"width": 1280, "height": 900}, "dark"),
    "phone-light": ({"width": 390, "height": 844}, "light"),
    "phone-dark": ({"width": 390, "height": 844}, "dark"),
}


class Recording:
    """A WSGI app that keeps the JSON body of every generation request it passes on."""

    def __init__(self, app):
        self.app = app
        self.bodies: list[dict] = []

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith("2img"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            self.bodies.append(json.loads(body))
            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def big_demo():
    """The demo backend with a collection of 5,000 LoRAs (and one with a ':' in its name)."""
    backend = DemoBackend(0.002)
    backend.lists["loras"] = lora_collection(5000, extra=((ODD, ODD),))
    recording = Recording(create_demo_app(backend=backend))
    server = ServerThread(recording)
    yield server, recording
    server.stop()


@pytest.fixture
def ui(make_settings, big_demo):
    server, recording = big_demo
    recording.bodies.clear()
    app = create_app(make_settings(extras=[demo_extra(server.url)]))
    ui = ServerThread(app)
    yield ui, recording
    ui.stop()


def search(page, field: str, text: str):
    """Type TEXT into a picker's search box; the options the server answered."""
    box = page.locator(field)
    box.click()
    box.fill("")
    box.press_sequentially(text)
    listbox = page.locator(f"#{box.get_attribute('aria-controls')}")
    # The answer for what was typed (not the list shown when the box was clicked).
    expect(page.locator(f"#{box.get_attribute('aria-describedby')}")).to_contain_text(
        f"“{text}”")
    expect(listbox).to_be_visible()
    return listbox.get_by_role("option")


def chip(page, label: str):
    return page.locator("#pk-txt2img-loras .chip", has=page.locator(".chip-label",
                                                                       has_text=label))


def test_the_lora_picker_at_5000_loras(page, ui):
    server, recording = ui
    page.goto(server.url + "/services/demo/txt2img")
    page.fill("#f-txt2img-prompt", "a lighthouse")
    # Focusing the box (tabbing through the form) fetches the first matches without opening
    # them; ↓ opens them.
    page.locator("#f-txt2img-loras").focus()
    expect(page.locator("#pk-txt2img-loras-count")).to_contain_text("50 of 5,001 LoRAs shown")
    results = page.locator("#pk-txt2img-loras-results")
    expect(results).to_be_hidden()
    page.keyboard.press("ArrowDown")
    expect(results).to_be_visible()
    page.keyboard.press("Escape")
    expect(results).to_be_hidden()
    # "miku" is in the middle of names and in aliases: found by substring, server side.
    options = search(page, "#f-txt2img-loras", "miku")
    expect(options).to_have_count(3)
    expect(page.locator("#pk-txt2img-loras-count")).to_have_text("3 LoRAs match “miku”.")
    expect(options.first).to_contain_text("Miku outfits")  # the alias starts with it
    options.filter(has_text="Hatsune Miku (v2)").click()
    expect(chip(page, "Hatsune Miku (v2)")).to_have_count(1)
    # Keyboard: ↓ ↓ ↑ Enter picks the first match; focus stays in the box for the next one.
    search(page, "#f-txt2img-loras", "miku")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#f-txt2img-loras")).to_have_attribute(
        "aria-activedescendant", "pk-txt2img-loras-o2")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    expect(page.locator("#pk-txt2img-loras .chip")).to_have_count(2)
    expect(page.locator("#f-txt2img-loras")).to_be_focused()
    expect(page.locator("#result .job")).to_have_count(0)  # Enter chose; it did not generate
    search(page, "#f-txt2img-loras", "nendo")
    page.keyboard.press("Enter")  # the only match
    expect(page.locator("#pk-txt2img-loras .chip")).to_have_count(3)
    # A name with no "miku" in it: far down the list, found by its words.
    options = search(page, "#f-txt2img-loras", "castle 0")
    expect(page.locator("#pk-txt2img-loras-count")).to_contain_text("of")
    assert options.count() == 50  # the first 50, with how many more there are
    page.keyboard.press("Escape")
    expect(page.locator("#pk-txt2img-loras-results")).to_be_hidden()

    # Weights, each labelled for screen readers with its LoRA.
    page.get_by_label("Weight of Hatsune Miku (v2)").fill("0.65")
    page.get_by_label("Weight of vocaloid_miku_nendo").fill("1.2")
    # Remove one with the keyboard: focus moves to the next chip's button.
    page.get_by_role("button", name="Remove Miku outfits").focus()
    page.keyboard.press("Enter")
    expect(chip(page, "Miku outfits")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove vocaloid_miku_nendo")).to_be_focused()
    expect(page.locator("#pk-txt2img-loras-count")).to_have_text(
        "Removed Miku outfits. 2 chosen.")
    shot(page, "loras-chosen")

    page.fill("#f-txt2img-steps", "2")
    page.fill("#f-txt2img-width", "64")
    page.fill("#f-txt2img-height", "64")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result figure img")).to_have_count(1, timeout=15_000)
    [body] = recording.bodies
    assert body["prompt"] == ("a lighthouse <lora:hatsune_miku_v2:0.65> "
                              "<lora:vocaloid_miku_nendo:1.2>")
    # The demo applied both (A1111 names each applied LoRA in "Lora hashes").
    expect(page.locator("#result")).to_contain_text("hatsune_miku_v2: ")
    expect(page.locator("#result")).to_contain_text("vocaloid_miku_nendo: ")

    # A reload brings the chosen LoRAs and weights back (remembered form).
    page.reload()
    expect(page.get_by_label("Weight of Hatsune Miku (v2)")).to_have_value("0.65")
    expect(page.get_by_label("Weight of vocaloid_miku_nendo")).to_have_value("1.2")
    expect(page.locator("#pk-txt2img-loras .chip")).to_have_count(2)
    # Reset to defaults clears them.
    page.get_by_role("button", name="Reset to defaults").click()
    expect(page.locator("#pk-txt2img-loras .chip")).to_have_count(0)

    # Reuse parameters from the gallery: the same LoRAs and weights.
    page.goto(server.url + "/gallery")
    page.goto(server.url + page.locator(".tile").first.get_attribute("href"))
    expect(page.locator(".image-meta")).to_contain_text(
        "hatsune_miku_v2: 0.65, vocaloid_miku_nendo: 1.2")  # the LoRAs row
    shot(page, "loras-image-page")
    page.get_by_role("link", name="Reuse parameters").click()
    expect(page.get_by_label("Weight of hatsune_miku_v2")).to_have_value("0.65")
    expect(page.get_by_label("Weight of vocaloid_miku_nendo")).to_have_value("1.2")


@pytest.mark.parametrize("view", list(VIEWS))
def test_the_picker_looks_right(browser, ui, view):
    """Screenshots of the picker open on its matches with chips chosen, in each view."""
    server, _recording = ui
    viewport, scheme = VIEWS[view]
    context = browser.new_context(viewport=viewport, color_scheme=scheme)
    page = context.new_page()
    try:
        page.goto(server.url + "/services/demo/txt2img")
        for label in ("Hatsune Miku (v2)", "vocaloid_miku_nendo"):
            search(page, "#f-txt2img-loras", "miku").filter(has_text=label).click()
        search(page, "#f-txt2img-loras", ODD.split(":")[0]).first.click()
        search(page, "#f-txt2img-loras", "miku")
        # Nothing wider than the screen (a phone's 390 px).
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        picker = page.locator("#pk-txt2img-loras").locator("xpath=..")
        picker.screenshot(path=str(SHOTS / f"loras-picker-{view}.png"))
        shot(page, f"loras-page-{view}")
    finally:
        context.close()


def test_a_name_the_tag_syntax_cannot_carry_is_refused_at_the_field(page, ui):
    server, recording = ui
    page.goto(server.url + "/services/demo/txt2img")
    page.fill("#f-txt2img-prompt", "a lighthouse")
    options = search(page, "#f-txt2img-loras", "odd")
    expect(options).to_have_count(1)
    expect(options).to_contain_text("cannot be used here")
    options.click()
    # Said at the field as soon as it is chosen…
    error = page.locator("#err-txt2img-loras")
    expect(error).to_contain_text(f"“{ODD}” cannot be used: A1111 reads <lora:name:weight>")
    expect(chip(page, ODD)).to_have_class("chip refused")
    # …and Generate refuses it there, sending nothing.
    page.get_by_role("button", name="Generate").click()
    expect(error).to_have_text(
        f"LoRAs '{ODD}' is refused: A1111 reads <lora:name:weight> up to the first \">\" "
        "and splits it at \":\" and \"=\", so this name would make a broken tag. Rename the "
        "LoRA's file to use it.")
    expect(page.locator("#errors-txt2img")).to_contain_text("Nothing was sent")
    shot(page, "loras-refused")
    assert recording.bodies == []
    # Removing it clears the message, and the job goes.
    page.get_by_role("button", name=f"Remove {ODD}").click()
    expect(error).to_have_text("")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result figure img")).to_have_count(1, timeout=15_000)
    assert recording.bodies[0]["prompt"] == "a lighthouse"


def test_styles_made_on_the_styles_page_and_the_services_own(page, ui):
    server, recording = ui
    page.goto(server.url + "/styles")
    page.get_by_label("Name").fill("Noir")
    page.get_by_label("Prompt", exact=True).fill("{prompt}, film noir, high contrast")
    page.get_by_label("Negative prompt").fill("colour")
    page.get_by_role("button", name="Add style").click()
    expect(page.locator("#styles")).to_contain_text("Added the style “Noir”.")
    expect(page.locator(".style h3")).to_have_text(["Noir"])
    # A second name that differs only in case is refused at its field.
    page.get_by_label("Name").fill("noir")
    page.get_by_role("button", name="Add style").click()
    expect(page.locator("#style-name-error")).to_contain_text("exists already")
    page.get_by_label("Name").fill("Draft")
    page.get_by_role("button", name="Add style").click()
    expect(page.locator(".style h3")).to_have_text(["Draft", "Noir"])
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Draft").click()
    expect(page.locator(".style h3")).to_have_text(["Noir"])
    for view, (viewport, scheme) in VIEWS.items():
        page.set_viewport_size(viewport)
        page.emulate_media(color_scheme=scheme)
        shot(page, f"styles-page-{view}")
    page.set_viewport_size(VIEWS["desktop-light"][0])
    page.emulate_media(color_scheme="light")

    page.goto(server.url + "/services/demo/txt2img")
    page.fill("#f-txt2img-prompt", "a lighthouse")
    page.fill("#f-txt2img-negative_prompt", "blurry")
    search(page, "#f-txt2img-webui-styles", "noir").first.click()
    # A1111's own styles are offered too (GET /sdapi/v1/prompt-styles).
    options = search(page, "#f-txt2img-webui-styles", "sharp")
    expect(options).to_contain_text("A1111 demo")
    options.first.click()
    expect(page.locator("#pk-txt2img-webui-styles .chip-label")).to_have_text(
        ["Noir", "Sharp details"])
    page.fill("#f-txt2img-steps", "2")
    page.fill("#f-txt2img-width", "64")
    page.fill("#f-txt2img-height", "64")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result figure img")).to_have_count(1, timeout=15_000)
    [body] = recording.bodies
    # In order, as A1111 merges them: {prompt} replaced, else added after ", ".
    assert body["prompt"] == "a lighthouse, film noir, high contrast, highly detailed, sharp focus"
    assert body["negative_prompt"] == "blurry, colour"
    shot(page, "styles-applied")

    # The history has the final prompt (the gallery finds it by the style's words) and the
    # styles' names; Reuse parameters picks them again.
    page.goto(server.url + "/gallery?q=noir")
    expect(page.locator(".tile")).to_have_count(1)
    page.goto(server.url + page.locator(".tile").first.get_attribute("href"))
    expect(page.locator(".job-prompt")).to_have_text(body["prompt"])
    expect(page.locator(".image-meta")).to_contain_text("Styles: Noir, Sharp details")
    shot(page, "styles-image-page")
    page.get_by_role("link", name="Reuse parameters").click()
    expect(page.locator("#f-txt2img-prompt")).to_have_value("a lighthouse")
    expect(page.locator("#pk-txt2img-webui-styles .chip-label")).to_have_text(
        ["Noir", "Sharp details"])


def test_a_select_of_several_values_is_a_picker_on_every_service(page, make_settings, fakes):
    """Forge's VAE / text encoders (a select with several values, no weights) are chosen in
    the same picker, and sent as the list Forge reads."""
    app = create_app(make_settings(url_overrides={"forge": fakes["forge"].url}))
    server = ServerThread(app)
    try:
        page.goto(server.url + "/services/forge/txt2img")
        search(page, "#f-txt2img-modules", "ae").filter(has_text="ae.safetensors").click()
        expect(page.locator("#pk-txt2img-modules .chip-label")).to_have_text(["ae.safetensors"])
        expect(page.locator("#pk-txt2img-modules .chip-weight")).to_have_count(0)
        page.fill("#f-txt2img-prompt", "a paper boat")
        for name, value in {"width": "64", "height": "64", "steps": "2"}.items():
            page.fill(f"#f-txt2img-{name}", value)
        fakes["forge"].server.app.config["REQUESTS"].clear()
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#result figure img")).to_have_count(1, timeout=15_000)
        [request] = sent(fakes, "forge", "/sdapi/v1/txt2img")
        # Its value is the file (optionsValueKey: filename), its label the model name.
        assert request["json"]["override_settings"]["forge_additional_modules"] == [
            "/opt/forge/models/VAE/ae.safetensors"]
    finally:
        server.stop()


def test_comfyui_gets_a_chain_of_lora_nodes(page, make_settings):
    fake = ServerThread(create_comfyui_app(polls_before_done=1, loras=(
        "detail.safetensors", "miku_v3.safetensors", "hatsune_miku_style.safetensors")))
    app = create_app(make_settings(url_overrides={"comfyui": fake.url}))
    server = ServerThread(app)
    try:
        page.goto(server.url + "/services/comfyui/txt2img")
        expect(page.locator("#f-txt2img-ckpt_name option",
                            has_text="sd15-demo.safetensors")).to_have_count(1)
        page.fill("#f-txt2img-prompt", "a fox")
        page.fill("#f-txt2img-width", "64")
        page.fill("#f-txt2img-height", "64")
        options = search(page, "#f-txt2img-loras", "miku")
        expect(options).to_have_count(2)
        options.filter(has_text="miku_v3").click()
        search(page, "#f-txt2img-loras", "miku").filter(has_text="hatsune").click()
        page.get_by_label("Strength of miku_v3.safetensors").fill("0.5")
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#result figure img")).to_have_count(1, timeout=15_000)
        graph = sent({"comfyui": fake}, "comfyui", "/prompt")[0]["json"]["prompt"]
        # Checkpoint → first LoRA → second LoRA ("10", which the sampler reads) → sampler.
        assert graph["10-1"]["inputs"] == {
            "lora_name": "miku_v3.safetensors", "strength_model": 0.5, "strength_clip": 0.5,
            "model": ["4", 0], "clip": ["4", 1]}
        assert graph["10"]["inputs"] == {
            "lora_name": "hatsune_miku_style.safetensors", "strength_model": 1.0,
            "strength_clip": 1.0, "model": ["10-1", 0], "clip": ["10-1", 1]}
        assert graph["3"]["inputs"]["model"] == ["10", 0]
        shot(page, "loras-comfyui")
    finally:
        server.stop()
        fake.stop()

"""ComfyUI workflows imported as services, generating in Chromium (issue 15): each workflow is
imported (dropped into the definitions folder, or with ``webui import-workflow``), its form is
filled and Generate pressed, and the graph the fake ComfyUI received carries the values."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from webui import create_app
from webui.cli import main

from .backends.comfyui import create_comfyui_app
from .helpers import ServerThread, image_bytes, natural_size, sent, shot
from .test_browser_extras import shots

pytestmark = pytest.mark.browser

FIXTURES = Path(__file__).parent / "fixtures" / "comfyui"
BUNDLED = Path(__file__).parent.parent / "webui" / "services" / "comfyui"


@pytest.fixture(scope="module")
def comfy():
    server = ServerThread(create_comfyui_app(
        polls_before_done=1, loras=("detail.safetensors", "style.safetensors")))
    yield server
    server.stop()


@pytest.fixture
def webui(make_settings, comfy):
    """webui on a real port, ComfyUI at the fake; yields (its URL, its definitions folder)."""
    comfy.server.app.config["REQUESTS"].clear()
    app = create_app(make_settings(url_overrides={"comfyui": comfy.url}))
    folder = app.extensions["webui"].settings.user_definitions
    folder.mkdir(parents=True, exist_ok=True)
    server = ServerThread(app)
    yield server.url, folder
    server.stop()


def drop(folder: Path, fixture: Path, name: str) -> None:
    shutil.copy(fixture, folder / name)


def imported(comfy, fixture: Path, folder: Path, name: str) -> None:
    """``webui import-workflow`` into the data folder that holds FOLDER."""
    assert main(["import-workflow", str(fixture), "--name", name,
                 "--data-dir", str(folder.parent), "--url", comfy.url]) == 0


def home_link(page, url: str, name: str, mode: str = "txt2img") -> None:
    """The service is on the home page under the workflow's name; it opens on its form."""
    page.goto(url + "/")
    page.get_by_role("link", name=name, exact=True).click()
    page.wait_for_url(f"**/{mode}")


def choose(page, select: str, value: str) -> None:
    """Pick VALUE once the select has its choices from ComfyUI (they fill in after load)."""
    expect(page.locator(f"{select} option[value='{value}']")).to_have_count(1)
    page.select_option(select, value)


def generated_graph(page, comfy, count: int = 1) -> dict:
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result figure img")).to_have_count(count, timeout=15_000)
    return sent({"comfyui": comfy}, "comfyui", "/prompt")[-1]["json"]["prompt"]


def test_bundled_txt2img_workflow(page, webui, comfy):
    url, folder = webui
    imported(comfy, BUNDLED / "txt2img.json", folder, "Harbor")
    home_link(page, url, "Harbor")
    expect(page.locator("#f-txt2img-ckpt_name option",
                        has_text="sd15-demo.safetensors")).to_have_count(1)
    page.fill("#f-txt2img-prompt", "a quiet harbor")
    choose(page, "#f-txt2img-ckpt_name", "sd15-demo.safetensors")
    choose(page, "#f-txt2img-lora_name", "style.safetensors")
    page.fill("#f-txt2img-strength_model", "0.5")
    page.fill("#f-txt2img-steps", "9")
    page.fill("#f-txt2img-width", "64")
    page.fill("#f-txt2img-height", "48")
    graph = generated_graph(page, comfy)
    assert graph["6"]["inputs"]["text"] == "a quiet harbor"
    assert graph["4"]["inputs"]["ckpt_name"] == "sd15-demo.safetensors"
    assert graph["10"]["inputs"]["lora_name"] == "style.safetensors"
    assert graph["10"]["inputs"]["strength_model"] == 0.5
    assert graph["3"]["inputs"]["steps"] == 9
    assert graph["5"]["inputs"] == {"width": 64, "height": 48, "batch_size": 1}
    # The seed webui picked is the one shown with the image.
    seed = graph["3"]["inputs"]["seed"]
    expect(page.locator("#result")).to_contain_text(str(seed))
    assert natural_size(page.locator("#result figure img")) == [64, 48]
    shot(page, "workflow-bundled-txt2img")


def test_bundled_img2img_workflow_dropped(page, webui, comfy, tmp_path):
    url, folder = webui
    drop(folder, BUNDLED / "img2img.json", "Repaint.json")
    home_link(page, url, "Repaint", "img2img")
    init = tmp_path / "init.png"
    init.write_bytes(image_bytes((72, 64), (20, 20, 220)))
    page.set_input_files("#f-img2img-image", str(init))
    page.fill("#f-img2img-prompt", "in blue")
    choose(page, "#f-img2img-ckpt_name", "sdxl-demo.safetensors")
    choose(page, "#f-img2img-lora_name", "detail.safetensors")
    page.fill("#f-img2img-denoise", "0.4")
    graph = generated_graph(page, comfy)
    [upload] = sent({"comfyui": comfy}, "comfyui", "/upload/image")
    assert upload["files"]["image"]
    # The LoadImage node reads the file ComfyUI stored.
    assert graph["12"]["inputs"]["image"].endswith(".png")
    assert graph["3"]["inputs"]["denoise"] == 0.4
    assert graph["6"]["inputs"]["text"] == "in blue"
    assert natural_size(page.locator("#result figure img")) == [72, 64]


def test_save_format_with_a_primitive_and_a_reroute(page, webui, comfy):
    url, folder = webui
    drop(folder, FIXTURES / "fox-primitive-reroute.json", "Fox.json")
    home_link(page, url, "Fox")
    # The primitive's value is the width's default; the seed is the workflow's ("fixed").
    expect(page.locator("#f-txt2img-width")).to_have_value("96")
    expect(page.locator("#f-txt2img-seed")).to_have_value("42")
    page.fill("#f-txt2img-prompt", "a fox at night")
    page.fill("#f-txt2img-negative_prompt", "")
    graph = generated_graph(page, comfy)
    assert graph["7"]["inputs"]["text"] == ""  # cleared: not the workflow's own text
    # The bypassed LoRA, the reroute, the primitive, the muted preview and the note are gone.
    assert sorted(graph, key=int) == ["3", "4", "5", "6", "7", "8", "9"]
    assert graph["3"]["inputs"]["model"] == ["4", 0]
    assert graph["8"]["inputs"]["vae"] == ["4", 2]
    assert graph["3"]["inputs"]["seed"] == 42
    assert graph["3"]["inputs"]["sampler_name"] == "dpmpp_2m"
    assert graph["6"]["inputs"]["text"] == "a fox at night"
    assert natural_size(page.locator("#result figure img")) == [96, 64]
    shot(page, "workflow-save-format")


def test_app_mode_workflow_shows_only_the_chosen_inputs(page, webui, comfy):
    url, folder = webui
    drop(folder, FIXTURES / "fox-app-mode.json", "Fox app.json")
    home_link(page, url, "Fox app")
    # The workflow's fields (webui's own for every form aside: styles, the X/Y/Z grid).
    fields = page.locator("#form-txt2img :is(input, textarea, select)[name]"
                          ":not([type=hidden]):not([name^=webui-]):not([name^=grid-])")
    expect(fields).to_have_count(3)
    assert [f.get_attribute("name") for f in fields.all()] == ["prompt", "steps", "width"]
    expect(page.get_by_text("More steps, more detail")).to_be_visible()
    page.fill("#f-txt2img-prompt", "a fox in app mode")
    page.fill("#f-txt2img-steps", "5")
    page.fill("#f-txt2img-width", "80")
    graph = generated_graph(page, comfy)
    assert graph["3"]["inputs"]["steps"] == 5
    assert graph["5"]["inputs"]["width"] == 80
    assert graph["6"]["inputs"]["text"] == "a fox in app mode"
    assert graph["3"]["inputs"]["seed"] == 42  # not on the form: the workflow's own
    shot(page, "workflow-app-mode")


def test_lora_stack_workflow(page, webui, comfy):
    url, folder = webui
    imported(comfy, FIXTURES / "lora-stack-api.json", folder, "Lighthouse")
    home_link(page, url, "Lighthouse")
    page.fill("#f-txt2img-prompt", "a lighthouse")
    choose(page, "#f-txt2img-lora_name", "detail.safetensors")
    choose(page, "#f-txt2img-lora_name_11", "style.safetensors")
    page.fill("#f-txt2img-strength_model_11", "0.25")
    graph = generated_graph(page, comfy)
    assert graph["10"]["inputs"] == {
        "lora_name": "detail.safetensors", "strength_model": 0.7, "strength_clip": 0.6,
        "model": ["4", 0], "clip": ["4", 1]}
    assert graph["11"]["inputs"] == {
        "lora_name": "style.safetensors", "strength_model": 0.25, "strength_clip": 1.0,
        "model": ["10", 0], "clip": ["10", 1]}


def test_upscale_workflow_gives_every_output_image(page, webui, comfy):
    url, folder = webui
    drop(folder, FIXTURES / "upscale-api.json", "Castle upscale.json")
    home_link(page, url, "Castle upscale")
    expect(page.locator("#f-txt2img-upscale_model option",
                        has_text="2x-demo.pth")).to_have_count(1)
    page.fill("#f-txt2img-prompt", "a castle")
    graph = generated_graph(page, comfy, count=2)
    assert graph["20"]["inputs"]["model_name"] == "2x-demo.pth"
    sizes = sorted(natural_size(img) for img in page.locator("#result figure img").all())
    assert sizes == [[64, 64], [128, 128]]  # the preview, and the upscaled image


def test_unknown_node_type_is_refused_on_the_home_page(page, webui):
    url, folder = webui
    drop(folder, FIXTURES / "unknown-node-api.json", "Castle ultimate.json")
    page.goto(url + "/")
    expect(page.locator(".failures")).to_contain_text(
        "node 21 ('Ultimate SD Upscale') is a 'UltimateSDUpscale' from the custom-node package "
        "'ComfyUI_UltimateSDUpscale'")
    expect(page.get_by_role("link", name="Castle ultimate")).to_have_count(0)


def test_a_workflow_uploaded_on_the_home_page(browser, page, webui, comfy, tmp_path):
    url, folder = webui
    page.goto(url + "/")
    wrong = tmp_path / "notes.json"
    wrong.write_text('{"id": "x", "name": "not a workflow"}')
    page.set_input_files("#workflow-file", str(wrong))
    page.get_by_role("button", name="Import workflow").click()
    expect(page.get_by_role("alert")).to_have_text(
        "This file is not a ComfyUI workflow (neither \"Export (API)\" nor the editor's "
        "\"Save\" format).")
    # A workflow this ComfyUI cannot run: the reason, by the form; the file is not kept.
    page.set_input_files("#workflow-file", str(FIXTURES / "unknown-node-api.json"))
    page.get_by_role("button", name="Import workflow").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "this ComfyUI workflow was not imported: this ComfyUI does not have the node type the "
        "workflow needs: node 21 ('Ultimate SD Upscale') is a 'UltimateSDUpscale'")
    assert not list(folder.glob("unknown-node-api*"))
    page.set_input_files("#workflow-file", str(FIXTURES / "upscale-api.json"))
    page.get_by_role("button", name="Import workflow").click()
    # Straight to the new service's form, named after the file.
    expect(page.locator("h1")).to_contain_text("upscale-api")
    page.fill("#f-txt2img-prompt", "an uploaded castle")
    graph = generated_graph(page, comfy, count=2)
    assert graph["6"]["inputs"]["text"] == "an uploaded castle"
    assert (folder / "upscale-api.yaml").is_file()
    shot(page, "workflow-uploaded")
    # The home page's upload form and a derived form fit a phone, light and dark.
    shots(browser, url + "/", "home-workflow-upload")
    shots(browser, url + "/services/comfyui-upscale-api/txt2img", "workflow-form")

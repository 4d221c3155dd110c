"""Real-browser tests of PNG Info, Compare and the accessibility audit: Chromium against webui
with the demo backend and every bundled service's fake, over real HTTP.

The audit runs axe-core 4.14.1 (tests/vendor/axe-core, from the npm package with its MPL-2.0
licence) in each page of ``A11Y_PAGES`` and fails on any serious or critical violation. Add your
page to that list."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from webui import create_app

from .helpers import HX, ServerThread, a1111_response, comfyui_png, demo_extra, form, wait_for

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe-4.14.1.min.js"
SHOTS = Path(os.environ.get("WEBUI_SHOTS", Path(__file__).parent.parent / "test-artifacts"))

# Every page the audit opens, light and dark. Placeholders are filled from a finished demo
# job: {job} its id, {image} its image's id, {png} the PNG Info result of an A1111 PNG,
# {cell} a job of a comparison started from it.
A11Y_PAGES = [
    "/",
    "/services/demo/txt2img",
    "/services/demo/img2img",
    "/services/demo/upscale",
    "/services/comfyui/upscale",
    "/services/a1111/txt2img",
    "/services/forge/txt2img",
    "/services/sdnext/txt2img",
    "/services/comfyui/txt2img",
    "/services/comfyui/img2img",
    "/services/openai/txt2img",
    "/services/stability/txt2img",
    "/services/demo/txt2img?job={job}",
    "/gallery",
    "/gallery/{image}",
    "/jobs/{job}",
    "/queue",
    "/no-such-page",
    "/png-info",
    "/png-info/{png}",
    "/compare/new?job={job}",
    "/compare?jobs={job},{cell}",
    "/styles",
    # X/Y/Z grids: a finished grid on its form's page, its own page and its picture's.
    "/services/demo/txt2img?grid={grid}",
    "/grids/{grid}",
    "/gallery/{grid_image}",
]
FAILING_IMPACTS = ("serious", "critical")

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def everything(make_settings, demo_server, fakes, monkeypatch) -> Iterator[tuple[str, Any]]:
    """webui with the demo and every bundled service on its fake (A1111 itself at a port
    where nothing listens), on a real port."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("STABILITY_API_KEY", "sk-stab")
    overrides = {k: s.url for k, s in fakes.items()}
    app = create_app(make_settings(extras=[demo_extra(demo_server.url)],
                                   url_overrides={**overrides, "a1111": "http://127.0.0.1:9"}))
    server = ServerThread(app)
    yield server.url, app
    server.stop()


def generate_on_demo(page: Page, url: str, prompt: str = "a lighthouse at dawn") -> str:
    """Generate one small image on the demo through its form; the job's id."""
    page.goto(url + "/services/demo/txt2img")
    expect(page.locator("#f-txt2img-sd_model_checkpoint option", has_text="demo-pastel")) \
        .to_have_count(1)
    page.fill("#f-txt2img-prompt", prompt)
    for key, value in (("width", "128"), ("height", "128"), ("steps", "4"), ("seed", "77")):
        page.fill(f"#f-txt2img-{key}", value)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result figure img")).to_have_count(1, timeout=20_000)
    return page.locator("#result .job").get_attribute("id").removeprefix("job-")


def settle(page: Page) -> None:
    """Wait until the page has filled itself: every part loaded by htmx on load (statuses,
    choices, checkpoints) swapped in, no request of htmx in flight."""
    page.wait_for_function("""() => document.readyState === "complete" && window.htmx
        && !document.querySelector('[hx-trigger="load"], .htmx-request')""")


def shots(browser, url: str, name: str) -> None:
    """Screenshots of a page on a desktop and a phone, light and dark; each must fit its width
    (nothing wider than the phone's screen)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        for scheme in ("light", "dark"):
            context = browser.new_context(viewport=viewport, color_scheme=scheme)
            page = context.new_page()
            page.goto(url)
            settle(page)
            page.screenshot(path=str(SHOTS / f"{name}-{size}-{scheme}.png"), full_page=True)
            width = page.evaluate("document.documentElement.scrollWidth")
            context.close()
            assert width <= viewport["width"], f"{name} is {width} px wide on a {size}"


def drop(page: Page, selector: str, data: bytes, name: str, event: str = "drop") -> None:
    """Drop a file on an element, or (event="paste") paste it into the page, as a user does."""
    page.evaluate(
        """([selector, bytes, name, event]) => {
          const file = new File([new Uint8Array(bytes)], name, {type: "image/png"});
          const data = new DataTransfer();
          data.items.add(file);
          if (event === "paste") {
            document.dispatchEvent(
              new ClipboardEvent("paste", {clipboardData: data, bubbles: true}));
          } else {
            document.querySelector(selector).dispatchEvent(
              new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
          }
        }""", [selector, list(data), name, event])


def test_png_info_sends_each_kind_of_image_to_its_service(browser, page, everything, tmp_path):
    url, app = everything
    # A1111's own PNG (its API's answer), chosen with the file control.
    a1111 = tmp_path / "a1111.png"
    a1111.write_bytes(base64.b64decode(a1111_response("txt2img-200")["images"][0]))
    page.goto(url + "/")
    page.get_by_role("link", name="PNG Info").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("PNG Info")
    page.set_input_files("#png-info-file", str(a1111))
    result = page.locator("#png-info-result")
    expect(result).to_contain_text("A1111 parameters text")
    expect(result.locator("tr", has_text="Sampler")).to_contain_text("Euler")
    # The A1111 family, the demo (set up) first; other services further down.
    send = result.get_by_role("list", name="Services these parameters are for")
    expect(send.get_by_role("link").first).to_have_accessible_name(
        "Send to A1111 demo: Text to image")
    expect(send).not_to_contain_text("ComfyUI")
    png_url = page.url
    send.get_by_role("link", name="Send to A1111 demo: Text to image").click()
    expect(page).to_have_url(f"{url}/services/demo/txt2img?from=png-{png_url.rsplit('/', 1)[1]}")
    expect(page.locator("#form-note")).to_have_text(
        "The form is filled from the image read by PNG Info.")
    expect(page.locator("#f-txt2img-prompt")).to_have_value("a cat")
    expect(page.locator("#f-txt2img-steps")).to_have_value("1")
    expect(page.locator("#f-txt2img-width")).to_have_value("64")

    # ComfyUI's PNG (prompt and workflow chunks), pasted.
    page.goto(url + "/png-info")
    drop(page, "", comfyui_png(), "ComfyUI_00001_.png", event="paste")
    expect(result).to_contain_text("ComfyUI “prompt” text (7 nodes)")
    expect(result.locator("tr", has_text="Negative prompt")).to_contain_text("blurry, watermark")
    send.get_by_role("link", name="Send to ComfyUI: Text to image").click()
    expect(page.locator("#f-txt2img-prompt")).to_have_value("a red fox in the snow, golden hour")
    expect(page.locator("#f-txt2img-negative_prompt")).to_have_value("blurry, watermark")
    expect(page.locator("#f-txt2img-seed")).to_have_value("987654321")
    expect(page.locator("#f-txt2img-height")).to_have_value("1216")
    expect(page.locator("#f-txt2img-sampler_name")).to_have_value("dpmpp_2m")

    # webui's own PNG, dropped: back to the demo, with the seed of that very image.
    generate_on_demo(page, url, "a harbour in the fog")
    src = page.locator("#result figure img").first.get_attribute("src")
    saved = app.extensions["webui"].store.path(src.removeprefix("/images/")).read_bytes()
    page.goto(url + "/png-info")
    drop(page, "#png-info-form", saved, "webui.png")
    expect(result).to_contain_text("Made by webui with A1111 demo · Text to image")
    # The demo's three modes, no other service; Upscale takes the image as its input.
    expect(send.get_by_role("link")).to_have_count(3)
    expect(send.get_by_role("link", name="Send to A1111 demo: Upscale")).to_have_attribute(
        "href", re.compile(r"/services/demo/upscale\?.*init=png-"))
    send.get_by_role("link", name="Send to A1111 demo: Text to image").click()
    expect(page.locator("#f-txt2img-prompt")).to_have_value("a harbour in the fog")
    expect(page.locator("#f-txt2img-seed")).to_have_value("77")
    expect(page.locator("#f-txt2img-width")).to_have_value("128")

    # A file that is not an image: a sentence where the result would be.
    page.goto(url + "/png-info")
    drop(page, "#png-info-form", b"%PDF-1.7 nope", "notes.pdf")
    expect(result.get_by_role("alert")).to_contain_text("This file is not an image")

    shots(browser, png_url, "png-info-a1111")
    page.goto(url + "/png-info")
    drop(page, "#png-info-form", comfyui_png(size=(512, 768)), "fox.png")
    expect(result).to_contain_text("ComfyUI")
    shots(browser, page.url, "png-info-comfyui")
    shots(browser, url + "/png-info", "png-info-empty")


def test_a_file_chosen_while_png_info_loads_is_read(page, everything, tmp_path):
    """A file chosen before htmx has set the form up (its script held back here, as on a slow
    link) is read once it has: its change event went unheard."""
    url, _app = everything
    a1111 = tmp_path / "a1111.png"
    a1111.write_bytes(base64.b64decode(a1111_response("txt2img-200")["images"][0]))
    held = []

    def hold(route):
        held.append(route)
    page.route(re.compile(r"/static/vendor/htmx/"), hold)
    page.goto(url + "/png-info", wait_until="commit")
    page.wait_for_selector("#png-info-file", state="attached")
    wait_for(lambda: held, what="htmx to be asked for")
    page.set_input_files("#png-info-file", str(a1111))
    held[0].continue_()
    expect(page.locator("#png-info-result")).to_contain_text("A1111 parameters text")


def test_compare_two_services_from_a_result(browser, page, everything, fakes):
    url, app = everything
    job_id = generate_on_demo(page, url)
    page.locator("#result").get_by_role("link", name="Compare").click()
    expect(page).to_have_url(f"{url}/compare/new?job={job_id}")
    comfy = page.get_by_role("group", name="ComfyUI")
    comfy.get_by_role("checkbox", name="sdxl-demo.safetensors").check()
    demo = page.get_by_role("group", name="A1111 demo")
    demo.get_by_role("checkbox", name="demo-pastel").check()
    expect(demo.get_by_role("checkbox", name="demo-procedural (this job's)")).not_to_be_checked()
    shots_url = page.url
    page.get_by_role("button", name="Run the comparison").click()
    expect(page).to_have_url(re.compile(rf"/compare\?jobs={job_id},[0-9a-f]{{32}},[0-9a-f]{{32}}$"))
    cells = page.locator(".compare-cell")
    expect(cells).to_have_count(3)
    # A1111 adds a hash to a checkpoint's title once it has loaded it (so does the demo).
    expect(cells.locator("h2")).to_have_text([
        "A1111 demo · demo-procedural.safetensors [d3m0000001]",
        re.compile(r"^A1111 demo · demo-pastel\.safetensors( \[\w+\])?$"),
        "ComfyUI · sdxl-demo.safetensors"])
    # The cells fill in by themselves as their jobs end.
    for i in range(3):
        expect(cells.nth(i).locator("figure img")).to_have_count(1, timeout=30_000)
    expect(cells.nth(2)).to_contain_text("Seed 77")
    graph = [r for r in fakes["comfyui"].server.app.config["REQUESTS"]
             if r["path"] == "/prompt"][-1]["json"]["prompt"]
    assert graph["6"]["inputs"]["text"] == "a lighthouse at dawn"
    assert (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"]) == (128, 128)
    shots(browser, shots_url, "compare-setup")
    shots(browser, page.url, "compare")


def axe_violations(page: Page) -> list[dict[str, Any]]:
    page.evaluate(AXE.read_text())  # evaluated, not a <script>: the page's CSP stays on
    return page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations.map((v) => ({
          id: v.id, impact: v.impact, help: v.help, url: v.helpUrl,
          nodes: v.nodes.map((n) => ({target: n.target.join(" "), html: n.html,
                                      summary: n.failureSummary}))}));
    }""")


def readable(found: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for where, violations in found.items():
        for v in violations:
            lines.append(f"{where}: {v['impact']} {v['id']}: {v['help']} ({v['url']})")
            for node in v["nodes"][:8]:
                lines.append(f"    {node['target']}  {node['html'][:160]}")
                lines += [f"      {s}" for s in node["summary"].splitlines()[:4]]
    return "\n".join(lines)


def test_axe_finds_no_serious_violation_on_any_page(browser, page, everything, tmp_path):
    url, app = everything
    job_id = generate_on_demo(page, url)
    image_id = app.extensions["webui"].history.get_job(job_id).images[0].id
    a1111 = tmp_path / "a1111.png"
    a1111.write_bytes(base64.b64decode(a1111_response("txt2img-200")["images"][0]))
    page.goto(url + "/png-info")
    page.set_input_files("#png-info-file", str(a1111))
    expect(page.locator("#png-info-result")).to_contain_text("A1111 parameters text")
    png = page.url.rsplit("/", 1)[1]
    page.goto(f"{url}/compare/new?job={job_id}")
    page.get_by_role("group", name="A1111 demo").get_by_role(
        "checkbox", name="demo-pastel").check()
    page.get_by_role("button", name="Run the comparison").click()
    cell = page.url.rsplit(",", 1)[1]
    expect(page.locator(".compare-cell figure img")).to_have_count(2, timeout=30_000)
    answer = app.test_client().post("/services/demo/txt2img/grid", headers=HX, data=form(
        width="64", height="64", steps="3", **{"grid-x-param": "cfg_scale",
                                               "grid-x-values": "5, 9"}))
    grid = app.extensions["webui"].grids.get(
        re.search(r'id="grid-([0-9a-f]{32})"', answer.get_data(as_text=True))[1])
    wait_for(lambda: grid.status == "done", timeout=30, what="the grid")

    found: dict[str, list[dict[str, Any]]] = {}
    checked = 0
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport=DESKTOP, color_scheme=scheme)
        tab = context.new_page()
        for path in A11Y_PAGES:
            path = path.format(job=job_id, image=image_id, png=png, cell=cell, grid=grid.id,
                               grid_image=grid.pictures[0].id)
            tab.goto(url + path)
            settle(tab)
            bad = [v for v in axe_violations(tab) if v["impact"] in FAILING_IMPACTS]
            checked += 1
            if bad:
                found[f"{path} ({scheme})"] = bad
        # The viewer, a dialog over the page that opened it (the result's image).
        tab.goto(f"{url}/services/demo/txt2img?job={job_id}")
        settle(tab)
        tab.locator("#result figure a.result-link").first.click()
        expect(tab.locator("dialog.viewer")).to_be_visible()
        bad = [v for v in axe_violations(tab) if v["impact"] in FAILING_IMPACTS]
        checked += 1
        if bad:
            found[f"the viewer ({scheme})"] = bad
        context.close()
    assert checked == 2 * (len(A11Y_PAGES) + 1)
    assert not found, "axe-core found serious or critical violations:\n" + readable(found)


def test_axe_reports_what_it_finds(browser, everything):
    # The audit is only worth its green if it fails on a page that is wrong: an unlabelled
    # field and grey-on-grey text, written into a real page.
    url, _app = everything
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    tab.goto(url + "/png-info")
    tab.evaluate("""() => {
        document.querySelector("main").insertAdjacentHTML("beforeend",
          '<input type="text" id="nameless"><p id="faint">faint</p>');
        document.getElementById("faint").style.color = "#eeeeee";
    }""")
    ids = {v["id"]: v["impact"] for v in axe_violations(tab)}
    context.close()
    assert ids.get("label") == "critical" and ids.get("color-contrast") == "serious"

"""The form and the job panel in a real browser (Chromium): errors that open their group and
take the focus, Enter and Ctrl+Enter, reset after reuse, the image field as a drop/paste zone
kept across a reload, width/height tools and sliders, the focus staying on Interrupt while a
job runs, and the phone layout."""

from __future__ import annotations

import base64
import io
import re

import pytest
import requests
from PIL import Image
from playwright.sync_api import Page, expect

from webui import create_app
from webui.demo import create_demo_app

from .helpers import ServerThread, a1111_response, demo_extra, image_bytes, shot

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def fill_small(page: Page, mode: str = "txt2img", prompt: str = "a small lighthouse") -> None:
    """A quick valid form: small images, few steps."""
    page.fill(f"#f-{mode}-prompt", prompt)
    page.fill(f"#f-{mode}-width", "64")
    page.fill(f"#f-{mode}-height", "64")
    page.fill(f"#f-{mode}-steps", "3")


def with_file(page: Page, data: bytes, name: str):
    """A DataTransfer holding one PNG file (what a drop or a paste carries)."""
    return page.evaluate_handle(
        """([data, name]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "image/png"}));
            return dt;
        }""", [base64.b64encode(data).decode(), name])


# --- Errors --------------------------------------------------------------------------------


def test_an_error_in_a_folded_group_opens_it_focuses_it_and_keeps_the_result(page, ui):
    server, _app = ui
    page.goto(server.url + "/services/demo/txt2img")
    fill_small(page)
    page.get_by_role("button", name="Generate").click()
    result = page.locator("#result .job figure img")
    expect(result).to_have_count(1, timeout=15_000)

    # Clip skip lives in "Other", folded away: set it wrong, fold the group again.
    other = page.locator("details.group", has=page.locator("summary", has_text="Other"))
    other.locator("summary").click()
    page.fill("#f-txt2img-clip_skip", "50")
    other.locator("summary").click()
    expect(other).not_to_have_attribute("open", "")
    page.get_by_role("button", name="Generate").click()

    clip = page.locator("#f-txt2img-clip_skip")
    expect(clip).to_be_focused()
    expect(other).to_have_attribute("open", "")
    expect(clip).to_have_attribute("aria-invalid", "true")
    summary = page.locator("#errors-txt2img")
    expect(summary.get_by_role("link", name="Clip skip must be at most 12")).to_be_visible()
    # The last result is still there, untouched.
    expect(result).to_have_count(1)
    shot(page, "form-error-in-folded-group")

    # A link of the summary takes the focus to its field, wherever it is.
    page.locator("#f-txt2img-prompt").focus()
    summary.get_by_role("link").first.click()
    expect(clip).to_be_focused()

    # Fixed: the job starts, the summary and the marks go.
    page.fill("#f-txt2img-clip_skip", "2")
    page.get_by_role("button", name="Generate").click()
    expect(summary).to_be_empty()
    expect(clip).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#result .job")).to_have_attribute("data-status", "done",
                                                            timeout=15_000)


# --- Enter and Ctrl+Enter ----------------------------------------------------------------------


def test_enter_in_steps_does_not_generate_but_ctrl_enter_does(page, ui):
    server, _app = ui
    page.goto(server.url + "/services/demo/txt2img")
    fill_small(page)
    # Every submission of the form, counted as it happens (Enter's implicit submission and
    # requestSubmit both fire "submit" synchronously, before the key press returns).
    page.evaluate("""() => { window.submits = 0;
        document.querySelector("form.gen-form").addEventListener("submit",
            () => { window.submits += 1; }, true); }""")
    steps = page.locator("#f-txt2img-steps")
    steps.press("Enter")
    page.locator("#f-txt2img-width").press("Enter")
    assert page.evaluate("window.submits") == 0
    expect(page.locator("#result")).to_contain_text("Results appear here")
    steps.press("Control+Enter")
    assert page.evaluate("window.submits") == 1
    expect(page.locator("#result .job")).to_have_attribute("data-status", "done",
                                                            timeout=15_000)


# --- Reset after reuse ----------------------------------------------------------------------


def test_reset_after_reuse_parameters_gives_the_definitions_defaults(page, ui):
    server, _app = ui
    page.goto(server.url + "/services/demo/txt2img")
    fill_small(page, prompt="a fixed seed")
    page.fill("#f-txt2img-seed", "321")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result .job")).to_have_attribute("data-status", "done",
                                                            timeout=15_000)
    page.goto(server.url + "/gallery")
    page.locator(".tile").first.click()
    page.get_by_role("link", name="Reuse parameters").click()
    # Loaded: the page's script is what Reset runs (clicked before it, Reset does nothing).
    page.wait_for_url(re.compile(r"from="), wait_until="load")
    expect(page.locator("#f-txt2img-seed")).to_have_value("321")
    expect(page.locator("#f-txt2img-steps")).to_have_value("3")

    page.get_by_role("button", name="Reset to defaults").click()
    expect(page.locator("#f-txt2img-seed")).to_have_value("-1")
    expect(page.locator("#f-txt2img-steps")).to_have_value("20")
    expect(page.locator("#f-txt2img-width")).to_have_value("512")
    expect(page.locator("#f-txt2img-prompt")).to_have_value("")
    # The checkpoint goes back to the server's current one; the sliders follow the numbers.
    expect(page.locator("#f-txt2img-sd_model_checkpoint option:checked")).to_contain_text(
        "(current)")
    expect(page.locator("[data-slider-for='f-txt2img-steps']")).to_have_value("20")
    # The address no longer reuses the image: a reload shows the defaults too.
    assert "from=" not in page.url
    page.reload()
    expect(page.locator("#f-txt2img-seed")).to_have_value("-1")
    expect(page.locator("#f-txt2img-prompt")).to_have_value("")


# --- The image field ---------------------------------------------------------------------------


def pixel(page: Page, selector: str) -> tuple[int, int, int]:
    """The colour at the middle of an image on the page, as the server sends it."""
    src = page.locator(selector).get_attribute("src")
    data = page.request.get(page.url.split("/services")[0] + src).body()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return image.getpixel((image.width // 2, image.height // 2))


def test_img2img_takes_a_dropped_or_pasted_image_and_keeps_it_over_a_reload(page, ui, tmp_path):
    server, _app = ui
    # A file chooser that opens is answered with this file (listening from the start: the
    # chooser is only caught once Playwright intercepts it).
    red = tmp_path / "red.png"
    red.write_bytes(image_bytes((64, 64), (220, 30, 30)))
    page.on("filechooser", lambda chooser: chooser.set_files(str(red)))
    page.goto(server.url + "/services/demo/img2img")
    zone = page.locator("[data-drop-zone]")
    preview = page.locator("#pv-f-img2img-init_image")
    ref = page.locator("[data-image-ref]")
    expect(preview).to_be_hidden()
    expect(zone.get_by_role("button", name="Remove image")).to_be_hidden()

    # A real A1111 PNG, carrying its parameters: dropped on the image field it is the input
    # image, its parameters are not read into the form.
    a1111_png = base64.b64decode(a1111_response("txt2img-200")["images"][0])
    zone.dispatch_event("drop", {"dataTransfer": with_file(page, a1111_png, "cat.png")})
    expect(ref).to_have_value(re.compile(r"^d-[0-9a-f]{32}\.png$"), timeout=15_000)
    expect(preview).to_be_visible()
    expect(zone).to_contain_text("cat.png")
    expect(page.locator("#f-img2img-prompt")).to_have_value("")
    dropped = ref.input_value()

    # Reloaded: the same image, from the server (the form remembers its name only).
    page.reload()
    expect(ref).to_have_value(dropped)
    expect(preview).to_be_visible()
    page.wait_for_function("document.querySelector('#pv-f-img2img-init_image').naturalWidth > 0")
    assert len(page.evaluate("localStorage.getItem('webui:demo:img2img')")) < 2000

    # Pasted (Ctrl+V with an image on the clipboard): it replaces the dropped one.
    blue = image_bytes((64, 64), (20, 40, 230))
    page.locator("body").click(position={"x": 2, "y": 2})
    page.evaluate("""(dt) => document.dispatchEvent(new ClipboardEvent("paste",
        {clipboardData: dt, bubbles: true, cancelable: true}))""",
                  with_file(page, blue, "image.png"))
    expect(ref).not_to_have_value(dropped)
    # Stored: the preview now comes from the server, with the image's size.
    expect(zone.locator("[data-image-name]")).to_have_text("Pasted image · 64×64",
                                                           timeout=15_000)
    assert pixel(page, "#pv-f-img2img-init_image")[2] > 200

    # Generated from it (denoising 0 keeps the input: the result is blue).
    fill_small(page, "img2img", "a blue square")
    page.fill("#f-img2img-denoising_strength", "0")
    page.get_by_role("button", name="Generate").click()
    result = page.locator("#result .job figure img")
    expect(result).to_have_count(1, timeout=15_000)
    r, g, b = pixel(page, "#result .job figure img")
    assert b > 180 and r < 90
    shot(page, "img2img-pasted")

    # Keyboard: the field takes the focus and Enter opens the file chooser.
    page.locator("#f-img2img-init_image").focus()
    page.keyboard.press("Enter")
    expect(zone.locator("[data-image-name]")).to_have_text("red.png · 64×64", timeout=15_000)
    # Removed: nothing is kept, and a reload keeps nothing.
    zone.get_by_role("button", name="Remove image").click()
    expect(preview).to_be_hidden()
    page.reload()
    expect(ref).to_have_value("")


def test_a_file_that_is_not_an_image_is_said_on_the_field(page, ui):
    server, _app = ui
    page.goto(server.url + "/services/demo/img2img")
    zone = page.locator("[data-drop-zone]")
    zone.dispatch_event("drop", {"dataTransfer": with_file(page, b"%PDF-1.4", "notes.png")})
    expect(page.locator("#err-img2img-init_image")).to_contain_text(
        "'notes.png' is not an image this server can read")
    expect(page.locator("#f-img2img-init_image")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("[data-image-ref]")).to_have_value("")


# --- Width/height and sliders -------------------------------------------------------------------


def test_swap_and_aspect_presets_stay_within_the_fields_range_and_step(page, ui):
    server, _app = ui
    page.goto(server.url + "/services/demo/txt2img")
    width, height = page.locator("#f-txt2img-width"), page.locator("#f-txt2img-height")
    tools = page.locator("[data-size-pair]")
    page.fill("#f-txt2img-width", "512")
    page.fill("#f-txt2img-height", "768")
    expect(tools.get_by_role("button", name="2:3")).to_have_attribute("aria-pressed", "true")
    tools.get_by_role("button", name="Swap Width and Height").click()
    expect(width).to_have_value("768")
    expect(height).to_have_value("512")
    expect(tools.get_by_role("button", name="3:2")).to_have_attribute("aria-pressed", "true")

    for label, ratio in (("16:9", 16 / 9), ("9:16", 9 / 16), ("1:1", 1.0), ("4:3", 4 / 3)):
        tools.get_by_role("button", name=label).click()
        w, h = int(width.input_value()), int(height.input_value())
        # On the fields' grid (A1111: multiples of 8 from 64, at most 2048), about the same
        # number of pixels, the asked shape.
        assert w % 8 == 0 and h % 8 == 0 and min(w, h) >= 64 and max(w, h) <= 2048
        assert abs(w / h / ratio - 1) < 0.02, (label, w, h)
        assert abs(w * h / (512 * 768) - 1) < 0.05, (label, w, h)
        expect(tools.get_by_role("button", name=label)).to_have_attribute("aria-pressed", "true")
        expect(page.locator("[data-slider-for='f-txt2img-width']")).to_have_value(str(w))

    # At the top of the range the shape still fits: 16:9 of 2048×2048 stays within 2048.
    page.fill("#f-txt2img-width", "2048")
    page.fill("#f-txt2img-height", "2048")
    tools.get_by_role("button", name="16:9").click()
    w, h = int(width.input_value()), int(height.input_value())
    assert w == 2048 and abs(w / h / (16 / 9) - 1) < 0.02 and h % 8 == 0

    # A slider sets its number, and the number its slider.
    slider = page.locator("[data-slider-for='f-txt2img-steps']")
    slider.evaluate("""(s) => { s.value = 42;
        s.dispatchEvent(new Event("input", {bubbles: true})); }""")
    expect(page.locator("#f-txt2img-steps")).to_have_value("42")
    page.fill("#f-txt2img-steps", "7")
    expect(slider).to_have_value("7")
    shot(page, "form-size-tools")


# --- While a job runs ---------------------------------------------------------------------------


@pytest.fixture
def slow_ui(make_settings):
    """webui on a demo backend slow enough to watch a job run (30 ms a step)."""
    demo = ServerThread(create_demo_app(step_delay=0.03))
    server = ServerThread(create_app(make_settings(extras=[demo_extra(demo.url)])))
    yield server
    server.stop()
    demo.stop()


def test_the_focus_stays_on_interrupt_while_the_job_runs(page, slow_ui):
    page.goto(slow_ui.url + "/services/demo/txt2img")
    # What the page's live region says, in order.
    page.evaluate("""() => { window.said = [];
        new MutationObserver(() => window.said.push(document.getElementById("announcer")
            .textContent.trim())).observe(document.getElementById("announcer"),
            {childList: true, subtree: true, characterData: true}); }""")
    fill_small(page, prompt="a slow comet")
    page.fill("#f-txt2img-steps", "150")
    page.fill("#f-txt2img-n_iter", "3")
    page.get_by_role("button", name="Generate").click()
    job = page.locator("#result .job")
    expect(job).to_have_attribute("data-status", "running", timeout=10_000)
    interrupt = job.get_by_role("button", name="Interrupt")
    interrupt.focus()
    interrupt.evaluate("b => { b.dataset.same = 'yes'; }")  # gone if it were re-rendered
    step = job.locator(".job-step")
    expect(step).to_contain_text("step")
    # Several polls later (the step moved on twice), the very same button has the focus.
    for _ in range(2):
        before = step.inner_text()
        page.wait_for_function("(t) => document.querySelector('.job-step')?.textContent"
                               ".trim() !== t", arg=before.strip())
    assert page.evaluate("document.activeElement.dataset.same") == "yes"
    assert page.evaluate("document.activeElement.textContent.trim()") == "Interrupt"
    shot(page, "job-running-focus")

    # Enter on it interrupts; the focus stays on it while it says so (unless the job's end,
    # pushed, came before Interrupt's answer, which is then turned away), then moves to the
    # panel.
    page.keyboard.press("Enter")
    page.wait_for_function("""() => document.activeElement?.textContent.trim() === "Interrupting…"
        || document.querySelector("#result .job")?.dataset.status === "interrupted" """)
    expect(job).to_have_attribute("data-status", "interrupted", timeout=15_000)
    expect(page.locator("#result .job")).to_be_focused()
    # Said once per change of state, never a step.
    said = page.evaluate("window.said")
    assert said[0] in ("Queued.", "Queued, position 1.", "Running.")
    # The last word is the job's end, never a late "Interrupting." after it.
    assert said[-1].startswith("Interrupted"), said
    assert len(said) <= 5 and not any("step" in s for s in said)



def test_an_answer_late_after_the_pushed_end_changes_nothing(page, slow_ui):
    """Interrupt's answer can come after the job's end was pushed (the backend ended the job
    while webui was still asking it to stop), while that end is still settling. The focus
    that was on Interrupt still lands on the final panel, and the page's last word stays the
    job's end, not a late "Interrupting."."""
    page.goto(slow_ui.url + "/services/demo/txt2img")
    fill_small(page, prompt="a late answer")
    page.fill("#f-txt2img-steps", "150")
    page.get_by_role("button", name="Generate").click()
    job = page.locator("#result .job")
    expect(job.locator(".job-step")).to_contain_text("step", timeout=10_000)
    job_id = job.get_attribute("id").removeprefix("job-")
    # The end's settling takes a while here (20 ms by default), so the late answer surely
    # lands inside it; Interrupt's request is held until the job has ended.
    page.evaluate("htmx.config.defaultSettleDelay = 1500")
    held = []
    page.route("**/interrupt", lambda route: held.append(route))
    page.evaluate("""() => { window.said = []; new MutationObserver(() => window.said.push(
        document.getElementById("announcer").textContent.trim())).observe(
        document.getElementById("announcer"), {childList: true, subtree: true,
        characterData: true}); }""")
    interrupt = job.get_by_role("button", name="Interrupt")
    interrupt.focus()
    with page.expect_request("**/interrupt"):
        page.keyboard.press("Enter")
    # The job ends meanwhile (as if the backend had stopped it): its end is pushed.
    requests.post(f"{slow_ui.url}/jobs/{job_id}/interrupt", timeout=10).raise_for_status()
    expect(job).to_have_attribute("data-status", "interrupted", timeout=15_000)
    assert len(held) == 1
    with page.expect_response("**/interrupt"):
        held[0].continue_()
    expect(page.locator("#result .job")).to_be_focused()
    said = page.evaluate("window.said")
    assert said and said[-1].startswith("Interrupted"), said

# --- On a phone ----------------------------------------------------------------------------------


def test_on_a_phone_generate_stays_reachable_and_shows_the_job(browser, ui):
    server, _app = ui
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        page.goto(server.url + "/")
        expect(page.locator("#service-demo .status")).to_have_text("online")
        assert page.evaluate("document.documentElement.scrollWidth") == PHONE["width"]

        page.goto(server.url + "/services/demo/txt2img")
        generate = page.get_by_role("button", name="Generate")
        # At the top of a long form, Generate is on the screen (fixed at its bottom).
        box = generate.bounding_box()
        assert box["y"] + box["height"] <= PHONE["height"] and box["y"] > PHONE["height"] - 120
        assert page.evaluate("document.documentElement.scrollHeight") > 2 * PHONE["height"]
        fill_small(page)
        page.evaluate("window.scrollTo(0, 0)")
        generate.click()
        job = page.locator("#result .job")
        expect(job).to_have_attribute("data-status", "done", timeout=15_000)
        # The page came down to the job panel…
        page.wait_for_function("""() => { const r = document.querySelector('#result .job')
            .getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight / 2; }""")
        # …and Generate is still at hand.
        box = generate.bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"]
        shot(page, "phone-job-in-view")
    finally:
        context.close()

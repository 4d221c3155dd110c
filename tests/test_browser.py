"""Real-browser tests: Debian's Chromium driven by Playwright, against webui and the demo
backend, both served over real HTTP."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from playwright.sync_api import expect

from webui import create_app
from webui.demo import create_demo_app

from .helpers import ServerThread, a1111_response, demo_extra, image_bytes, natural_size, shot

# Slower than the rest: `pytest -m "not browser"` is the fast loop, CI runs everything.
pytestmark = pytest.mark.browser


def test_index_shows_demo_online_and_a1111_offline_with_help(page, ui):
    server, _app = ui
    page.goto(server.url + "/")
    demo = page.locator("#service-demo")
    expect(demo.locator(".status")).to_have_text("online")
    real = page.locator("#service-a1111")
    expect(real.locator(".status")).to_have_text("offline")
    expect(real.locator(".setup")).to_contain_text("--api")
    shot(page, "index")


def test_generate_txt2img_on_the_demo(page, ui):
    server, app = ui
    page.goto(server.url + "/services/demo/txt2img")
    sampler = page.locator("#f-txt2img-sampler_name")
    # The dropdown fills itself from the backend through htmx.
    expect(sampler.locator("option[value='DPM++ 2M']")).to_have_count(1)
    expect(sampler).to_have_value("Euler a")
    expect(page.locator("#f-txt2img-sd_model_checkpoint option",
                        has_text="demo-procedural")).to_have_count(1)
    shot(page, "txt2img-form")

    page.fill("#f-txt2img-prompt", "a lighthouse at dawn")
    page.fill("#f-txt2img-width", "256")
    page.fill("#f-txt2img-height", "192")
    page.fill("#f-txt2img-batch_size", "2")
    page.fill("#f-txt2img-seed", "42")
    page.locator("#f-txt2img-prompt").press("Control+Enter")

    images = page.locator("#result figure img")
    expect(images).to_have_count(2, timeout=15_000)
    expect(page.locator("#result")).to_contain_text("Seed 42")
    expect(page.locator("#result")).to_contain_text("Seed 43")
    first = images.first
    assert natural_size(first) == [256, 192]
    shot(page, "txt2img-result")
    page.locator("#result figure").nth(1).get_by_role("link", name="Use seed").click()
    expect(page.locator("#f-txt2img-seed")).to_have_value("43")

    # Each image shown is a file on disk.
    src = first.get_attribute("src")
    saved = app.extensions["webui"].store.path(src.removeprefix("/images/"))
    assert saved.is_file() and Image.open(saved).size == (256, 192)


def test_field_errors_show_beside_the_fields(page, ui):
    server, _app = ui
    page.goto(server.url + "/services/demo/txt2img")
    page.fill("#f-txt2img-steps", "0")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#err-txt2img-prompt")).to_have_text("Prompt is required")
    expect(page.locator("#err-txt2img-steps")).to_have_text("Steps must be at least 1")
    expect(page.locator("#errors-txt2img")).to_contain_text("Nothing was sent")
    shot(page, "txt2img-errors")
    # Fixing them clears the messages.
    page.fill("#f-txt2img-prompt", "ok")
    page.fill("#f-txt2img-steps", "4")
    page.fill("#f-txt2img-width", "64")
    page.fill("#f-txt2img-height", "64")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result figure img")).to_have_count(1)
    expect(page.locator("#err-txt2img-prompt")).to_have_text("")


def test_back_after_generate_shows_the_earlier_job_from_the_server(page, ui):
    server, _app = ui
    page.goto(server.url + "/services/demo/txt2img")
    page.fill("#f-txt2img-prompt", "a lighthouse")
    for name, value in (("steps", "2"), ("width", "64"), ("height", "64")):
        page.fill(f"#f-txt2img-{name}", value)
    jobs = []
    for _ in range(2):
        page.get_by_role("button", name="Generate").click()
        if jobs:  # the new job's panel took the place of the last one
            expect(page.locator(f"#job-{jobs[-1]}")).to_have_count(0)
        done = page.locator("#result .job[data-status=done]")
        expect(done).to_have_count(1)
        job_id = done.get_attribute("id").removeprefix("job-")
        expect(page).to_have_url(f"{server.url}/services/demo/txt2img?job={job_id}")
        jobs.append(job_id)
    # No copy of the page in htmx's history cache (it cost every Generate a copy of the whole
    # page): Back loads the first job's address again, its panel as the server has it.
    assert page.evaluate("sessionStorage.getItem('htmx-history-cache')") is None
    page.go_back()
    expect(page).to_have_url(f"{server.url}/services/demo/txt2img?job={jobs[0]}")
    expect(page.locator(f"#job-{jobs[0]}[data-status=done] figure img")).to_have_count(1)
    # A form its scripts set up: the prompt typed before is remembered, Generate works.
    expect(page.locator("#f-txt2img-prompt")).to_have_value("a lighthouse")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result .job[data-status=done]")).to_have_count(1)
    expect(page.locator(f"#job-{jobs[0]}")).to_have_count(0)


def test_img2img_with_an_upload(page, ui, tmp_path):
    server, _app = ui
    init = tmp_path / "init.png"
    init.write_bytes(image_bytes((96, 96), (220, 40, 40)))
    page.goto(server.url + "/services/demo/img2img")
    page.set_input_files("#f-img2img-init_image", str(init))
    expect(page.locator("#pv-f-img2img-init_image")).to_be_visible()  # preview of the upload
    page.fill("#f-img2img-prompt", "a red square")
    page.fill("#f-img2img-width", "128")
    page.fill("#f-img2img-height", "128")
    page.fill("#f-img2img-denoising_strength", "0")
    page.get_by_role("button", name="Generate").click()
    image = page.locator("#result figure img")
    expect(image).to_have_count(1, timeout=15_000)
    shot(page, "img2img-result")
    # Denoising 0 keeps the init image: the result is red.
    data = page.request.get(server.url + image.get_attribute("src")).body()
    r, g, b = Image.open(io.BytesIO(data)).convert("RGB").getpixel((64, 64))
    assert r > 180 and g < 90 and b < 90


def test_backend_down_shows_a_message_in_the_result_area(page, ui):
    server, _app = ui
    page.goto(server.url + "/services/a1111/txt2img")
    expect(page.locator("#rs-txt2img-sampler_name .inline-error")).to_contain_text(
        "Could not load the choices")
    page.fill("#f-txt2img-prompt", "anything")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result .notice.error")).to_contain_text("Could not connect to")
    shot(page, "backend-down")


# Every bundled service, in the browser, against its test backend --------------------------

SERVICE_CASES = {
    # service: (select that fills from the backend, expected option, extra fields)
    "comfyui": ("ckpt_name", "sdxl-demo.safetensors", {"width": "64", "height": "64"}),
    "openai": ("model", "dall-e-2", {"size": "1024x1024"}),
    "stability": (None, None, {}),
    "forge": ("sampler_name", "DPM++ 2M SDE Heun", {"width": "64", "height": "64",
                                                     "steps": "2"}),
    "sdnext": ("sampler_name", "Default", {"width": "64", "height": "64", "steps": "2"}),
}


@pytest.mark.parametrize("service", SERVICE_CASES)
def test_each_service_generates_in_the_browser(page, make_settings, fakes, monkeypatch,
                                               service):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("STABILITY_API_KEY", "sk-stab")
    app = create_app(make_settings(url_overrides={k: s.url for k, s in fakes.items()}))
    server = ServerThread(app)
    try:
        key, option, extra = SERVICE_CASES[service]
        page.goto(f"{server.url}/services/{service}/txt2img")
        expect(page.locator(".service-head .status")).to_have_text("online")
        if key:
            expect(page.locator(f"#f-txt2img-{key} option", has_text=option)).to_have_count(1)
        page.fill("#f-txt2img-prompt", "a paper boat")
        for name, value in extra.items():
            selector = f"#f-txt2img-{name}"
            if page.locator(selector).evaluate("e => e.tagName") == "SELECT":
                page.select_option(selector, value)
            else:
                page.fill(selector, value)
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#result figure img").first).to_be_visible(timeout=15_000)
        assert natural_size(page.locator("#result figure img").first)[0] > 0
        shot(page, f"service-{service}")
    finally:
        server.stop()


def test_comfyui_img2img_in_the_browser(page, make_settings, fakes, tmp_path):
    app = create_app(make_settings(url_overrides={"comfyui": fakes["comfyui"].url}))
    server = ServerThread(app)
    try:
        init = tmp_path / "init.png"
        init.write_bytes(image_bytes((72, 64), (20, 20, 220)))
        page.goto(f"{server.url}/services/comfyui/img2img")
        expect(page.locator("#f-img2img-ckpt_name option",
                            has_text="sd15-demo.safetensors")).to_have_count(1)
        page.set_input_files("#f-img2img-image", str(init))
        page.fill("#f-img2img-prompt", "blue")
        page.get_by_role("button", name="Generate").click()
        image = page.locator("#result figure img")
        expect(image).to_have_count(1, timeout=15_000)
        assert natural_size(image) == [72, 64]
        shot(page, "service-comfyui-img2img")
    finally:
        server.stop()


def test_job_progress_interrupt_and_reload(page, make_settings):
    demo = ServerThread(create_demo_app(step_delay=0.03))
    app = create_app(make_settings(extras=[demo_extra(demo.url)]))
    server = ServerThread(app)
    try:
        page.goto(server.url + "/services/demo/txt2img")
        page.fill("#f-txt2img-prompt", "a slow comet")
        page.fill("#f-txt2img-steps", "150")
        page.fill("#f-txt2img-n_iter", "3")
        page.fill("#f-txt2img-width", "128")
        page.fill("#f-txt2img-height", "128")
        page.get_by_role("button", name="Generate").click()
        job = page.locator("#result .job")
        expect(job).to_have_attribute("data-status", "running")
        expect(job.locator("progress")).to_be_visible()
        expect(job.locator("img.live-preview")).to_be_visible(timeout=10_000)
        expect(job).to_contain_text("step")
        shot(page, "job-running")
        # The address names the job: a reload shows the same job.
        assert "?job=" in page.url
        page.reload()
        expect(page.locator("#result .job")).to_have_attribute("data-status", "running")
        page.locator("#result .job").get_by_role("button", name="Interrupt").click()
        expect(page.locator("#result .job")).to_have_attribute("data-status", "interrupted",
                                                                timeout=10_000)
        expect(page.locator("#result .job figure img").first).to_be_visible()
        shot(page, "job-interrupted")
        job_link = page.locator("#result .job a", has_text="Job page").get_attribute("href")
        page.goto(server.url + job_link)
        expect(page.locator(".job")).to_have_attribute("data-status", "interrupted")
    finally:
        server.stop()
        demo.stop()


def test_gallery_reuse_parameters_and_remembered_form(page, ui):
    server, _app = ui
    page.goto(server.url + "/services/demo/txt2img")
    page.fill("#f-txt2img-prompt", "a harbour full of paper lanterns")
    page.fill("#f-txt2img-steps", "9")
    page.fill("#f-txt2img-width", "128")
    page.fill("#f-txt2img-height", "96")
    page.fill("#f-txt2img-seed", "321")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result .job")).to_have_attribute("data-status", "done",
                                                            timeout=15_000)

    # Remembered: a fresh visit of the form brings the last values back…
    page.goto(server.url + "/services/demo/txt2img")
    expect(page.locator("#f-txt2img-prompt")).to_have_value("a harbour full of paper lanterns")
    expect(page.locator("#f-txt2img-steps")).to_have_value("9")
    # …and "Reset to defaults" forgets them.
    page.get_by_role("button", name="Reset to defaults").click()
    expect(page.locator("#f-txt2img-steps")).to_have_value("20")
    page.reload()
    expect(page.locator("#f-txt2img-prompt")).to_have_value("")

    page.get_by_role("link", name="Gallery").click()
    tile = page.locator(".tile").first
    expect(tile).to_contain_text("a harbour full of paper lanterns")
    shot(page, "gallery")
    tile.click()  # the viewer, whose Open leads to the image's page
    page.locator("dialog.viewer").get_by_role("link", name="Open").click()
    expect(page.locator(".image-meta")).to_contain_text("seed 321")
    shot(page, "image-page")
    page.get_by_role("link", name="Reuse parameters").click()
    expect(page.locator("#f-txt2img-prompt")).to_have_value("a harbour full of paper lanterns")
    expect(page.locator("#f-txt2img-steps")).to_have_value("9")
    expect(page.locator("#f-txt2img-width")).to_have_value("128")
    expect(page.locator("#f-txt2img-seed")).to_have_value("321")
    expect(page.locator("#f-txt2img-sampler_name")).to_have_value("Euler a")
    expect(page.locator("#form-note")).to_contain_text("filled from an image of the gallery")
    shot(page, "reused-form")


def test_dropping_a_png_fills_the_form(page, ui):
    server, _app = ui
    page.goto(server.url + "/services/demo/txt2img")
    expect(page.locator("#f-txt2img-sampler_name option[value='Euler']")).to_have_count(1)
    png = a1111_response("txt2img-200")["images"][0]  # a real A1111 PNG with its infotext
    transfer = page.evaluate_handle(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], "from-a1111.png", {type: "image/png"}));
            return dt;
        }""", png)
    page.dispatch_event("form.gen-form", "drop", {"dataTransfer": transfer})
    expect(page.locator("#f-txt2img-prompt")).to_have_value("a cat")
    expect(page.locator("#f-txt2img-steps")).to_have_value("1")
    expect(page.locator("#f-txt2img-sampler_name")).to_have_value("Euler")
    expect(page.locator("#form-note")).to_contain_text("from from-a1111.png")


def test_hires_fields_appear_with_hires_fix(page, ui):
    server, app = ui
    page.goto(server.url + "/services/demo/txt2img")
    page.locator("summary", has_text="Hires fix").click()
    upscaler = page.locator("#f-txt2img-hr_upscaler")
    expect(upscaler).to_be_hidden()
    page.locator("#f-txt2img-enable_hr").check()
    expect(upscaler).to_be_visible()
    expect(upscaler.locator("option[value='Latent']")).to_have_count(1)
    page.locator("#f-txt2img-enable_hr").uncheck()
    expect(upscaler).to_be_hidden()
    # Off, the hires fields are not sent at all.
    page.locator("#f-txt2img-prompt").fill("a lighthouse")
    page.locator("#f-txt2img-steps").fill("2")
    page.locator("#f-txt2img-width").fill("64")
    page.locator("#f-txt2img-height").fill("64")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result .images img")).to_have_count(1, timeout=20000)
    job = next(iter(app.extensions["webui"].jobs._jobs.values()))
    assert job.values["hr_upscaler"] is None and job.values["enable_hr"] is False


def test_openai_offers_each_models_own_sizes(page, make_settings, fakes, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    app = create_app(make_settings(url_overrides={"openai": fakes["openai"].url}))
    server = ServerThread(app)
    try:
        page.goto(server.url + "/services/openai/txt2img")
        model = page.locator("#f-txt2img-model")
        expect(model.locator("option[value='dall-e-3']")).to_have_count(1)
        size = page.locator("#f-txt2img-size")
        expect(size.locator("option[value='1536x1024']")).to_be_enabled()
        expect(size.locator("option[value='1792x1024']")).to_be_disabled()
        expect(page.locator("#f-txt2img-background")).to_be_attached()
        model.select_option("dall-e-3")
        expect(size.locator("option[value='1792x1024']")).to_be_enabled()
        expect(size.locator("option[value='1536x1024']")).to_be_disabled()
        expect(page.locator("#f-txt2img-style")).to_be_enabled()
        expect(page.locator("#f-txt2img-background")).to_be_disabled()
    finally:
        server.stop()


def test_skip_through_the_page_skips_one_image_of_a_batch(page, make_settings):
    demo = ServerThread(create_demo_app(step_delay=0.02))
    app = create_app(make_settings(extras=[demo_extra(demo.url)]))
    server = ServerThread(app)
    try:
        page.goto(server.url + "/services/demo/txt2img")
        page.fill("#f-txt2img-prompt", "three lanterns")
        page.fill("#f-txt2img-steps", "60")
        page.fill("#f-txt2img-n_iter", "3")
        page.fill("#f-txt2img-width", "64")
        page.fill("#f-txt2img-height", "64")
        page.get_by_role("button", name="Generate").click()
        job = page.locator("#result .job")
        expect(job).to_contain_text("step", timeout=10_000)
        with page.expect_response("**/jobs/*/skip") as answer:
            job.get_by_role("button", name="Skip").click()
        assert answer.value.status == 200
        # The batch goes on after the skipped image and ends as done, with all three images
        # (A1111 returns the skipped one as far as it got).
        expect(job).to_have_attribute("data-status", "done", timeout=20_000)
        expect(job.locator("figure img")).to_have_count(3)
    finally:
        server.stop()
        demo.stop()


def test_pages_run_under_the_content_security_policy(page, ui):
    server, _app = ui
    violations = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text or "Refused to" in m.text else None)
    page.goto(server.url + "/services/demo/txt2img")
    page.fill("#f-txt2img-prompt", "a lighthouse")
    page.fill("#f-txt2img-width", "64")
    page.fill("#f-txt2img-height", "64")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result .images img")).to_have_count(1, timeout=20_000)
    page.goto(server.url + "/gallery")
    expect(page.locator(".tile img").first).to_be_visible()
    assert violations == []

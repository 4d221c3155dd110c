"""Results you can act on, in Chromium: the viewer (opened by a click, ← → through the batch and
on through the gallery, zoom, Esc and the focus back, a swipe on a phone, plain links without
JavaScript), the actions under a fresh result (Use seed, Send to img2img), and the queue page
with a running and a queued job."""

from __future__ import annotations

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from webui import create_app
from webui.demo import create_demo_app

from .helpers import ServerThread, demo_extra, shot

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def generate(page: Page, url: str, prompt: str, **fields: object) -> None:
    """Fill the demo's txt2img form and generate; wait until the job is done."""
    page.goto(url + "/services/demo/txt2img")
    page.fill("#f-txt2img-prompt", prompt)
    values = {"width": 128, "height": 96, "batch_size": 1, "n_iter": 1, "steps": 3, "seed": -1}
    for name, value in {**values, **fields}.items():
        page.fill(f"#f-txt2img-{name}", str(value))
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result .job")).to_have_attribute("data-status", "done",
                                                            timeout=20_000)


def test_the_viewer_steps_through_the_batch_and_on_through_the_gallery(browser, ui):
    server, _app = ui
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      color_scheme=scheme)
        page = context.new_page()
        generate(page, server.url, f"an older harbour ({scheme})", seed=7)
        generate(page, server.url, f"three kites ({scheme})", batch_size=3, seed=100)
        figures = page.locator("#result figure")
        expect(figures).to_have_count(3)
        for i in range(3):
            expect(figures.nth(i).locator("figcaption")).to_contain_text(
                f"Image {i + 1} of 3 Seed {100 + i}")
        # Larger than the old 260 px tiles: the batch fills the result column.
        assert figures.first.locator("img").bounding_box()["width"] > 320
        shot(page, f"result-batch-{scheme}")

        opener = figures.nth(1).locator("a.result-link")
        opener.click()
        # A dialog named by the image it shows.
        expect(page.get_by_role("dialog", name="Image 2 of 3 · seed 101")).to_be_visible()
        dialog = page.locator("dialog.viewer")
        shot(page, f"viewer-{scheme}", full_page=False)
        page.keyboard.press("ArrowRight")
        expect(page.locator("#viewer-title")).to_have_text("Image 3 of 3 · seed 102")
        page.keyboard.press("ArrowRight")  # past the batch: the gallery's next image
        expect(page.locator("#viewer-title")).to_have_text("Image 1 of 1 · seed 7")
        expect(dialog.locator(".viewer-prompt")).to_have_text(f"an older harbour ({scheme})")
        page.keyboard.press("ArrowLeft")
        expect(page.locator("#viewer-title")).to_have_text("Image 3 of 3 · seed 102")
        dialog.get_by_role("link", name="Previous image").click()
        expect(page.locator("#viewer-title")).to_have_text("Image 2 of 3 · seed 101")

        # Fit (the picture fills the screen) or its own pixels.
        picture = dialog.locator(".viewer-stage img")
        assert picture.bounding_box()["width"] > 600
        zoom = dialog.get_by_role("button", name="Actual size")
        zoom.click()
        expect(zoom).to_have_attribute("aria-pressed", "true")
        expect(picture).to_have_js_property("clientWidth", 128)
        zoom.click()
        expect(zoom).to_have_attribute("aria-pressed", "false")

        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        # The focus is back on the picture the viewer was opened from.
        assert page.evaluate("document.activeElement === document.querySelectorAll("
                             "'#result a.result-link')[1]")

        # The image's own page: ← → go to its neighbours as well.
        figures.nth(2).get_by_role("link", name="Open").click()
        expect(page.locator("h1")).to_contain_text("Image 3 of 3")
        page.wait_for_load_state("domcontentloaded")  # app.js has run
        page.keyboard.press("ArrowRight")
        expect(page.locator("h1")).to_contain_text("Image 1 of 1")
        page.wait_for_load_state("domcontentloaded")
        page.keyboard.press("ArrowLeft")
        expect(page.locator("h1")).to_contain_text("Image 3 of 3")
        context.close()


def test_the_viewer_on_a_phone_swipes_and_closes(browser, ui):
    server, _app = ui
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport=PHONE, color_scheme=scheme, has_touch=True,
                                      is_mobile=True, device_scale_factor=2)
        page = context.new_page()
        generate(page, server.url, f"two gulls ({scheme})", batch_size=2, seed=30)
        page.goto(server.url + "/gallery")
        tiles = page.locator(".tile")
        # Two columns on a 390 px phone, each thumbnail with the picture's own shape.
        first, second = tiles.nth(0).bounding_box(), tiles.nth(1).bounding_box()
        assert first["y"] == second["y"] and second["x"] > first["x"] + first["width"] - 1
        thumb = tiles.first.locator("img")
        assert thumb.evaluate("i => getComputedStyle(i).objectFit") == "contain"
        shot(page, f"gallery-phone-{scheme}")
        tiles.first.tap()
        title = page.locator("#viewer-title")
        expect(title).to_have_text("Image 1 of 2 · seed 30")
        shot(page, f"viewer-phone-{scheme}", full_page=False)
        swipe(page, -120)  # to the left: the next image
        expect(title).to_have_text("Image 2 of 2 · seed 31")
        swipe(page, 120)
        expect(title).to_have_text("Image 1 of 2 · seed 30")
        page.get_by_role("link", name="Next image").tap()
        expect(title).to_have_text("Image 2 of 2 · seed 31")
        page.get_by_role("button", name="Close the viewer").tap()
        expect(page.locator("dialog.viewer")).to_be_hidden()
        context.close()


def swipe(page: Page, dx: float) -> None:
    """A one-finger horizontal swipe across the viewer's picture."""
    page.evaluate("""(dx) => {
        const stage = document.querySelector("dialog.viewer .viewer-stage");
        const point = (x) => new Touch({identifier: 1, target: stage, clientX: x, clientY: 400});
        stage.dispatchEvent(new TouchEvent("touchstart", {touches: [point(200)], bubbles: true}));
        stage.dispatchEvent(new TouchEvent("touchend", {changedTouches: [point(200 + dx)],
                                                          bubbles: true}));
    }""", dx)


def test_without_javascript_the_pictures_are_plain_links(browser, ui):
    server, _app = ui
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    generate(page, server.url, "a plain link", batch_size=2, seed=60)
    page.close()
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(server.url + "/gallery")
    page.locator(".tile").first.click()
    expect(page.locator("h1")).to_contain_text("Image 1 of 2")
    page.get_by_role("link", name="Next →").click()
    expect(page.locator("h1")).to_contain_text("Image 2 of 2")
    expect(page.locator(".image-meta")).to_contain_text("seed 61")
    context.close()


def test_use_seed_and_send_to_img2img_under_a_fresh_result(page, ui):
    server, app = ui
    generate(page, server.url, "a pair of herons", batch_size=2, width=96, height=64)
    figures = page.locator("#result figure")
    seeds = [int(figures.nth(i).locator(".seed code").inner_text()) for i in range(2)]
    assert seeds[1] == seeds[0] + 1
    expect(page.locator("#f-txt2img-seed")).to_have_value("-1")
    before = page.url
    figures.nth(1).get_by_role("link", name="Use seed").click()
    # The image's actual seed, in the form on this very page.
    expect(page.locator("#f-txt2img-seed")).to_have_value(str(seeds[1]))
    assert page.url == before
    expect(page.locator("#form-note")).to_have_text(f"Seed {seeds[1]} is in the form.")
    shot(page, "result-use-seed")

    # Download is the file itself; Open is the image's page.
    download = figures.first.get_by_role("link", name="Download")
    expect(download).to_have_attribute("download", "")
    first_path = figures.first.locator("img").get_attribute("src").removeprefix("/images/")
    assert download.get_attribute("href") == f"/images/{first_path}"
    first_id = _id_of(app, first_path)
    expect(figures.first.get_by_role("link", name="Open")).to_have_attribute(
        "href", f"/gallery/{first_id}")

    figures.first.get_by_role("link", name="Send to img2img").click()
    expect(page).to_have_url(f"{server.url}/services/demo/img2img?init={first_id}&from={first_id}")
    preview = page.locator("#pv-f-img2img-init_image")
    expect(preview).to_have_attribute("src", f"/images/{first_path}")
    expect(page.locator("#f-img2img-prompt")).to_have_value("a pair of herons")
    expect(page.locator("#f-img2img-seed")).to_have_value(str(seeds[0]))
    shot(page, "sent-to-img2img")
    page.fill("#f-img2img-denoising_strength", "0")
    page.fill("#f-img2img-batch_size", "1")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result .job")).to_have_attribute("data-status", "done",
                                                            timeout=20_000)
    # The input image was that result: denoising 0 gives it back.
    made = page.locator("#result figure img").first.get_attribute("src").removeprefix("/images/")
    store = app.extensions["webui"].store
    with Image.open(store.path(first_path)) as sent, Image.open(store.path(made)) as got:
        assert got.size == sent.size == (96, 64)
        assert got.convert("RGB").getpixel((40, 30)) == sent.convert("RGB").getpixel((40, 30))


def _id_of(app, path: str) -> int:
    return next(i.image.id for i in app.extensions["webui"].history.page().items
                if i.image.path == path)


def test_use_seed_from_a_job_page_opens_the_form_with_it(page, ui):
    server, _app = ui
    generate(page, server.url, "a lone heron", seed=4321, steps=7)
    page.locator("#result .job a", has_text="Job page").click()
    page.get_by_role("link", name="Use seed").click()
    expect(page.locator("#f-txt2img-seed")).to_have_value("4321")
    # The rest of the form is as it was left (remembered), not the image's parameters.
    expect(page.locator("#f-txt2img-steps")).to_have_value("7")
    expect(page.locator("#form-note")).to_have_text("Seed 4321 is in the form.")


def test_the_queue_page_follows_and_cancels_jobs(browser, make_settings):
    demo = ServerThread(create_demo_app(step_delay=0.03))
    app = create_app(make_settings(extras=[demo_extra(demo.url)]))
    server = ServerThread(app)
    try:
        for scheme, viewport in (("light", {"width": 1280, "height": 900}), ("dark", PHONE)):
            context = browser.new_context(viewport=viewport, color_scheme=scheme)
            page = context.new_page()
            for prompt in (f"a slow comet ({scheme})", f"a waiting lantern ({scheme})"):
                page.goto(server.url + "/services/demo/txt2img")
                page.fill("#f-txt2img-prompt", prompt)
                for name, value in (("steps", 150), ("n_iter", 3), ("width", 64),
                                    ("height", 64), ("batch_size", 1)):
                    page.fill(f"#f-txt2img-{name}", str(value))
                page.get_by_role("button", name="Generate").click()
                expect(page.locator("#result .job")).to_be_visible()

            # The home page's count leads to the queue.
            page.goto(server.url + "/")
            page.locator("#service-demo").get_by_role("link", name="1 queued").click()
            expect(page).to_have_url(server.url + "/queue#queue-demo")
            rows = page.locator(".queue-job")
            expect(rows).to_have_count(2)
            running, queued = rows.nth(0), rows.nth(1)
            expect(running).to_have_attribute("data-status", "running")
            expect(queued).to_have_attribute("data-status", "queued")
            expect(queued).to_contain_text("position 1 in the queue")
            expect(running.get_by_role("button", name="Skip")).to_be_visible()
            # It follows the running job while it is open…
            expect(running.locator(".queue-state")).to_contain_text("step", timeout=10_000)
            step = running.locator(".queue-state").inner_text()
            expect(running.locator(".queue-state")).not_to_have_text(step)
            # …and the focus stays on a button across its refreshes.
            interrupt = running.get_by_role("button", name="Interrupt")
            interrupt.focus()
            # (The list is pushed to the page: two new lists come over its stream.)
            page.evaluate("""() => new Promise((resolve) => {
              let lists = 0;
              document.addEventListener("htmx:sseMessage", (event) => {
                if (event.detail.type === "queue" && ++lists === 2) resolve();
              });
            })""")
            expect(running.get_by_role("button", name="Interrupt")).to_be_focused()
            shot(page, f"queue-{scheme}")

            queued.get_by_role("button", name="Cancel").click()
            expect(rows).to_have_count(1)
            expect(page.locator(".queue-service h2")).to_contain_text("1 running · 0 queued")
            job = next(j for j in app.extensions["webui"].jobs._jobs.values()
                       if j.prompt == f"a waiting lantern ({scheme})")
            assert job.status == "cancelled"
            rows.first.get_by_role("button", name="Interrupt").click()
            expect(page.locator("#queue-jobs")).to_contain_text("No job is running or waiting",
                                                                timeout=15_000)
            context.close()
    finally:
        server.stop()
        demo.stop()

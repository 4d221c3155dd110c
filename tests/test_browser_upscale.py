"""Upscaling in Chromium: an image of the gallery, opened in the viewer, goes to the upscale
form with its Upscale action (the image is the form's input), runs as a job and lands in the
gallery at the size asked for; the form on a phone and in the dark."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import watched_page
from .helpers import SHOTS, natural_size, shot

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# Where this slice's screenshots are also kept, to be looked at.
SHOTS_COPY = Path("/work/shots-upscale")


def _shot(page: Page, name: str, full_page: bool = True) -> None:
    shot(page, name, full_page)
    if SHOTS_COPY.parent.is_dir():
        SHOTS_COPY.mkdir(exist_ok=True)
        shutil.copy(SHOTS / f"{name}.png", SHOTS_COPY / f"{name}.png")


def _page(browser, viewport: dict, scheme: str):
    """A page of its own size and colour scheme, failing on script and htmx errors."""
    return watched_page(browser, viewport=viewport, color_scheme=scheme)


def _txt2img(page: Page, url: str) -> None:
    page.goto(url + "/services/demo/txt2img")
    page.fill("#f-txt2img-prompt", "a lighthouse at dusk, orange sky")
    for name, value in {"width": 128, "height": 96, "steps": 3, "seed": 11}.items():
        page.fill(f"#f-txt2img-{name}", str(value))
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result .job")).to_have_attribute("data-status", "done",
                                                            timeout=20_000)


def test_a_gallery_image_is_upscaled_from_the_viewer(browser, ui):
    server, app = ui
    url = server.url
    for scheme, viewport, tag in (("light", DESKTOP, "desktop"), ("dark", PHONE, "phone")):
        with _page(browser, viewport, scheme) as page:
            _upscale_from_the_viewer(page, url, app, scheme, tag)


def _upscale_from_the_viewer(page: Page, url: str, app, scheme: str, tag: str) -> None:
    """txt2img, then its image from the gallery's viewer to Upscale, and the result."""
    _txt2img(page, url)
    page.goto(url + "/gallery")
    page.locator("a.tile").first.click()
    dialog = page.locator("dialog.viewer")
    expect(dialog).to_be_visible()
    dialog.get_by_role("link", name="Upscale").click()

    # The upscale form, the gallery image as its input, its parameters not taken over.
    source = app.extensions["webui"].history.page().items[0].image
    expect(page).to_have_url(f"{url}/services/demo/upscale?init={source.id}")
    expect(page.locator("nav.tabs [aria-current=page]")).to_have_text("Upscale")
    expect(page.locator("#pv-f-upscale-image")).to_have_attribute(
        "src", f"/images/{source.path}")
    # The service's upscalers fill the list; "Scale to" fields only show for it.
    expect(page.locator('#f-upscale-upscaler_1 option[value="R-ESRGAN 4x+"]')).to_have_count(
        1)
    page.select_option("#f-upscale-upscaler_1", "R-ESRGAN 4x+")
    expect(page.locator("#f-upscale-upscaling_resize_w")).to_be_hidden()
    page.fill("#f-upscale-upscaling_resize", "2.5")
    _shot(page, f"upscale-form-{tag}-{scheme}")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result .job")).to_have_attribute("data-status", "done",
                                                            timeout=20_000)
    # 128 x 96 by 2.5: 320 x 240.
    assert natural_size(page.locator("#result figure img")) == [320, 240]
    _shot(page, f"upscale-result-{tag}-{scheme}")

    # In the gallery, newest first, at its size.
    page.goto(url + "/gallery")
    tile = page.locator("a.tile").first
    expect(tile).to_contain_text("upscale")
    tile.click()
    expect(page.locator("dialog.viewer .viewer-size")).to_have_text("320×240")
    assert natural_size(page.locator("dialog.viewer .viewer-stage img")) == [320, 240]
    _shot(page, f"upscale-viewer-{tag}-{scheme}", full_page=False)


def test_the_upscale_form_in_the_other_schemes(browser, ui):
    """The form with an image sent to it, desktop in the dark and phone in the light (the
    test above takes the other two), 'Scale to' chosen: its size fields show."""
    server, app = ui
    url = server.url
    with _page(browser, DESKTOP, "light") as page:
        _txt2img(page, url)
    source = app.extensions["webui"].history.page().items[0].image
    for scheme, viewport, tag in (("dark", DESKTOP, "desktop"), ("light", PHONE, "phone")):
        with _page(browser, viewport, scheme) as page:
            page.goto(f"{url}/services/demo/upscale?init={source.id}")
            page.select_option("#f-upscale-resize_mode", "1")
            expect(page.locator("#f-upscale-upscaling_resize_w")).to_be_visible()
            expect(page.locator("#f-upscale-upscaling_resize")).to_be_hidden()
            _shot(page, f"upscale-form-{tag}-{scheme}")

"""X/Y/Z grids in Chromium: axes chosen on the demo's form (a range for Steps, samplers
ticked), the cost said before starting, a bad value refused at the top of the form with nothing
queued, a 3 x 3 grid run over a pool of two demo backends filling in cell by cell, its composed
picture (with its labels drawn) in the gallery; cancel stops a whole grid."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from webui import create_app
from webui.demo import create_demo_app

from .conftest import watched_page
from .helpers import SHOTS, ServerThread, demo_extra, natural_size, shot

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# The values field of a number axis (its placeholder): it shows once the axis has loaded.
NUMBERS_HINT = "e.g. 20-40 (+10) or 1, 2, 5"
LOOKED_AT = Path("/work/shots-grids")  # where the screenshots were looked at, if it exists


@pytest.fixture
def pool(make_settings):
    """webui on a pool of two demo backends (as ``webui --demo-instances 2``)."""
    backends = [ServerThread(create_demo_app(step_delay=0.02)) for _ in range(2)]
    app = create_app(make_settings(extras=[demo_extra(",".join(b.url for b in backends))]))
    server = ServerThread(app)
    yield server, app, backends
    server.stop()
    for backend in backends:
        backend.stop()


def fill_form(page: Page, url: str) -> None:
    page.goto(url + "/services/demo/txt2img")
    page.fill("#f-txt2img-prompt", "a lighthouse at dusk")
    for name, value in {"width": 64, "height": 64, "steps": 4, "seed": -1}.items():
        page.fill(f"#f-txt2img-{name}", str(value))
    page.locator("#grid-txt2img > summary").click()


def choose_axes(page: Page, steps: str) -> None:
    page.select_option("#f-txt2img-grid-x-param", "steps")
    expect(page.locator("#f-txt2img-grid-x")).to_have_attribute("placeholder", NUMBERS_HINT)
    page.fill("#f-txt2img-grid-x", steps)
    page.select_option("#f-txt2img-grid-y-param", "sampler_name")
    picks = page.locator("#f-txt2img-grid-y")
    for sampler in ("Euler a", "DPM++ 2M", "DDIM"):
        picks.get_by_label(sampler, exact=True).check()


def dark_pixels(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    return sum(1 for v in image.crop(box).convert("L").get_flattened_data() if v < 100)


def keep(name: str) -> None:
    """A screenshot copied where it was looked at."""
    if LOOKED_AT.is_dir():
        shutil.copy(SHOTS / f"{name}.png", LOOKED_AT / f"{name}.png")


def test_a_3x3_grid_over_two_instances_fills_in_and_lands_in_the_gallery(browser, page, pool):
    server, app, backends = pool
    jobs = app.extensions["webui"].jobs
    fill_form(page, server.url)
    choose_axes(page, "2-6 (+2), 900")
    cost = page.locator("#grid-txt2img-cost")
    expect(cost).to_have_text("4 × 3: 12 jobs, 12 images.")

    # A bad value: said at the top of the form, linked to the axis; nothing is queued.
    page.get_by_role("button", name="Make grid").click()
    summary = page.locator("#errors-txt2img")
    expect(summary).to_contain_text("X = 900: Steps must be at most 150")
    expect(page.locator("#f-txt2img-grid-x")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-txt2img-grid-x")).to_be_focused()
    assert jobs.active() == [] and not jobs._jobs

    page.fill("#f-txt2img-grid-x", "2-6 (+2)")
    expect(cost).to_have_text("3 × 3: 9 jobs, 9 images.")
    shot(page, "grid-form-desktop-light")
    page.get_by_role("button", name="Make grid").click()
    panel = page.locator("#result .grid-panel")
    expect(panel).to_be_visible()
    expect(summary).to_be_empty()
    # The axes labelled around the cells, which fill in as their jobs end.
    expect(panel.locator("thead th")).to_have_text(["Steps: 2", "Steps: 4", "Steps: 6"])
    # The samplers in the order the service lists them (and the form shows them).
    expect(panel.locator("tbody th")).to_have_text(["DPM++ 2M", "Euler a", "DDIM"])
    expect(panel).to_have_attribute("data-status", "done", timeout=60_000)
    expect(panel.locator(".grid-cell.cell-done img")).to_have_count(9)
    assert "grid=" in page.url

    grid_id = panel.get_attribute("id").removeprefix("grid-")
    grid = app.extensions["webui"].grids.get(grid_id)
    assert {j.instance for j in grid.jobs} == {b.url for b in backends}  # in parallel on both

    picture = panel.locator(".grid-pictures img")
    width, height = natural_size(picture)
    assert width > 3 * 64 and height > 3 * 64
    shot(page, "grid-done-desktop-light")

    # The grid in the gallery, an image of its own (newest first), beside its cells.
    page.goto(server.url + "/gallery")
    tiles = page.locator("#gallery-grid a.tile")
    expect(tiles).to_have_count(10)
    first = tiles.first.locator("img")
    assert natural_size(first)[0] > natural_size(tiles.nth(1).locator("img"))[0]  # not a cell
    page.goto(server.url + tiles.first.get_attribute("href"))
    expect(page.locator(".image-full img")).to_be_visible()
    src = page.locator(".image-full img").get_attribute("src")
    data = page.request.get(server.url + src).body()
    composed = Image.open(io.BytesIO(data))
    assert composed.size == (width, height)
    left, top = width - 3 * 64, height - 3 * 64
    for column in range(3):  # a label drawn above each column, and beside each row
        assert dark_pixels(composed, (left + 64 * column, 0, left + 64 * (column + 1), top)) > 10
    for row in range(3):
        assert dark_pixels(composed, (0, top + 64 * row, left, top + 64 * (row + 1))) > 10

    # Its page names its axes and leads to the grid's own page, with its cells.
    expect(page.locator(".image-meta")).to_contain_text(
        "An X/Y/Z grid of 9 cells (X: Steps, Y: Sampler)")
    page.get_by_role("link", name="its cells").click()
    expect(page.locator(".grid-panel .grid-cell img")).to_have_count(9)
    natural_size(page.locator(".grid-pictures img"))
    shot(page, "grid-page-desktop-light")

    # Screenshots: the form's axes and the finished grid, phone and dark too.
    for name, viewport, scheme in (("desktop-dark", DESKTOP, "dark"),
                                   ("phone-light", PHONE, "light"),
                                   ("phone-dark", PHONE, "dark")):
        with watched_page(browser, viewport=viewport, color_scheme=scheme) as view:
            fill_form(view, server.url)
            choose_axes(view, "2-6 (+2)")
            expect(view.locator("#grid-txt2img-cost")).to_have_text("3 × 3: 9 jobs, 9 images.")
            view.locator("#grid-txt2img").scroll_into_view_if_needed()
            shot(view, f"grid-form-{name}")
            view.goto(f"{server.url}/services/demo/txt2img?grid={grid_id}")
            expect(view.locator("#result .grid-panel .grid-cell img")).to_have_count(9)
            natural_size(view.locator("#result .grid-pictures img"))
            if viewport is PHONE:  # nothing wider than the screen
                assert view.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            shot(view, f"grid-done-{name}")
    keep("grid-page-desktop-light")
    for name in ("form", "done"):
        for view in ("desktop-light", "desktop-dark", "phone-light", "phone-dark"):
            keep(f"grid-{name}-{view}")


def test_the_cost_is_asked_for_only_while_the_grid_is_open(page, pool):
    server, _app, _backends = pool
    costs = []
    page.on("request", lambda r: costs.append(r) if "/grid/cost" in r.url else None)
    page.goto(server.url + "/services/demo/txt2img")
    page.fill("#f-txt2img-prompt", "a lighthouse at dusk")
    for name, value in {"width": 64, "height": 64, "steps": 3}.items():
        page.fill(f"#f-txt2img-{name}", str(value))
    # Long enough for the cost's 400 ms wait after typing: a whole job.
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#result .job[data-status=done] figure img")).to_have_count(1)
    assert costs == []  # the grid is closed: typing sent the form nowhere
    with page.expect_request("**/grid/cost"):
        page.locator("#grid-txt2img > summary").click()
    expect(page.locator("#grid-txt2img-cost")).to_have_text("Choose a field for X to make a grid.")
    page.select_option("#f-txt2img-grid-x-param", "steps")
    expect(page.locator("#f-txt2img-grid-x")).to_have_attribute("placeholder", NUMBERS_HINT)
    page.fill("#f-txt2img-grid-x", "2-6 (+2)")
    expect(page.locator("#grid-txt2img-cost")).to_have_text("3 × 1: 3 jobs, 3 images.")


def test_cancel_stops_the_whole_grid(page, make_settings):
    slow = ServerThread(create_demo_app(step_delay=0.3))
    app = create_app(make_settings(extras=[demo_extra(slow.url)]))
    server = ServerThread(app)
    try:
        fill_form(page, server.url)
        page.fill("#f-txt2img-steps", "20")
        page.select_option("#f-txt2img-grid-x-param", "cfg_scale")
        expect(page.locator("#f-txt2img-grid-x")).to_have_attribute("placeholder", NUMBERS_HINT)
        page.fill("#f-txt2img-grid-x", "3-7")
        expect(page.locator("#grid-txt2img-cost")).to_have_text("5 × 1: 5 jobs, 5 images.")
        page.get_by_role("button", name="Make grid").click()
        panel = page.locator("#result .grid-panel")
        # Sampling (its progress shown): a cell stopped before its request went is cancelled.
        expect(panel.locator(".grid-cell.cell-running progress")).to_have_count(1)
        shot(page, "grid-running-desktop-light")
        keep("grid-running-desktop-light")
        page.get_by_role("button", name="Cancel grid").click()
        expect(panel).to_have_attribute("data-status", "cancelled", timeout=20_000)
        expect(panel).to_be_focused()  # not lost with the button
        expect(panel).to_contain_text("no grid picture was made")
        expect(panel.locator(".grid-cell.cell-cancelled")).to_have_count(4)
        expect(panel.locator(".grid-cell.cell-interrupted")).to_have_count(1)
        assert app.extensions["webui"].jobs.active() == []
        # On a phone, the cell that has a picture keeps a size one can see beside the empty
        # ones (it was squeezed to a few pixels, its label broken a letter a line); the table
        # scrolls sideways instead.
        page.set_viewport_size({"width": 390, "height": 844})
        picture = panel.locator(".grid-cell.cell-interrupted img")
        expect(picture).to_be_visible()
        assert picture.bounding_box()["width"] >= 48
        label = panel.locator("thead th").first
        assert label.bounding_box()["height"] < 3 * 20  # two lines at most: "CFG / scale: 3"
        label.scroll_into_view_if_needed()
        shot(page, "grid-cancelled-phone-light", full_page=False)
    finally:
        server.stop()
        slow.stop()

"""The gallery scrolled far in a real browser: a history of 1,500 real images, page after page
loaded by infinite scroll, while the page keeps a bounded number of tiles (pages far out of view
are emptied into spacers of their height) and brings the earlier ones back when scrolled back;
a page holding the keyboard's focus stays."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from webui import create_app
from webui.views.gallery import PAGE_SIZE

from .helpers import ServerThread, fill_gallery, gallery_jobs, image_bytes, natural_size, shot

pytestmark = pytest.mark.browser

PAGES = 25
COLOURS = [(200, 60, 40), (40, 140, 200), (60, 170, 80), (220, 180, 40)]


@pytest.fixture
def big_gallery(make_settings, tmp_path: Path) -> Iterator[tuple[ServerThread, list[int]]]:
    """webui over HTTP with PAGES pages of images in its gallery (real PNG files and their
    thumbnails), and the image ids newest first."""
    app = create_app(make_settings())
    settings = app.extensions["webui"].settings
    pictures = []
    for n, colour in enumerate(COLOURS):
        pictures.append(tmp_path / f"p{n}.png")
        pictures[-1].write_bytes(image_bytes((512, 512), colour))
    history = app.extensions["webui"].history
    fill_gallery(history, gallery_jobs(PAGES * PAGE_SIZE, random.Random(5)), pictures,
                 settings.images_dir, settings.thumbs_dir)
    ids = [item.image.id for item in history.page(limit=PAGE_SIZE * 2).items]
    server = ServerThread(app)
    yield server, ids
    server.stop()


def loaded(tile: Locator) -> None:
    """The tile's picture is there: the small thumbnail, on a screen of one pixel per pixel."""
    image = tile.locator("img")
    natural_size(image)
    assert image.evaluate("i => i.currentSrc").endswith(".256.webp")


def counts(page: Page) -> dict[str, int]:
    return page.evaluate("""() => ({
        pages: document.querySelectorAll(".gallery-page").length,
        tiles: document.querySelectorAll(".tile").length,
        elements: document.getElementsByTagName("*").length,
        images: document.querySelectorAll(".tile img").length,
    })""")


def scroll_to_page(page: Page, pages: int) -> None:
    """Scroll down as a reader does until ``pages`` pages have come."""
    while counts(page)["pages"] < pages:
        loaded = counts(page)["pages"]
        page.mouse.wheel(0, 4000)
        page.wait_for_function(
            "n => document.querySelectorAll('.gallery-page').length > n"
            " || scrollY + innerHeight < document.documentElement.scrollHeight - 50", arg=loaded)


def settled(page: Page) -> None:
    """Wait until no page far out of view keeps its tiles (the observers have run), but the
    one holding the focus."""
    page.wait_for_function("""() => [...document.querySelectorAll(".gallery-page:not(.dropped)")]
        .every(p => { const r = p.getBoundingClientRect();
                      if (p.contains(document.activeElement)) return true;
                      return r.bottom > -3.2 * innerHeight && r.top < 4.2 * innerHeight; })""")


# A full page of 60 tiles (5 elements each) is ~300 elements; the window and three screens
# either side hold at most four such pages at 1280×900 (a page is ten rows).
MAX_TILES = 5 * PAGE_SIZE
MAX_ELEMENTS = 2_000


def test_scrolling_far_keeps_the_page_bounded_and_back_shows_the_tiles(page: Page, big_gallery):
    server, ids = big_gallery
    page.goto(server.url + "/gallery")
    first = page.locator(f'.tile[data-image="{ids[0]}"]')
    loaded(first)

    scroll_to_page(page, PAGES)
    expect(page.locator(".gallery-grid a.more")).to_have_count(0)  # the last page came
    settled(page)
    now = counts(page)
    assert now["pages"] == PAGES
    assert now["tiles"] <= MAX_TILES and now["elements"] <= MAX_ELEMENTS, now
    assert page.locator(".gallery-page.dropped").count() >= PAGES - 5
    assert first.count() == 0
    shot(page, "gallery-scrolled-far", full_page=False)

    # Back to the top: the first tiles again, their pictures loaded; the far end emptied.
    page.evaluate("scrollTo(0, 0)")
    expect(first).to_be_visible()
    loaded(first)
    settled(page)
    back = counts(page)
    assert back["tiles"] <= MAX_TILES and back["elements"] <= MAX_ELEMENTS, back
    assert page.evaluate("scrollY") == 0
    # The tiles came back in place: the first page's, in order, at the top of the grid.
    shown = page.locator(".gallery-page").first.locator(".tile").evaluate_all(
        "ts => ts.map(t => Number(t.dataset.image))")
    assert shown == ids[:PAGE_SIZE]
    shot(page, "gallery-scrolled-back", full_page=False)

    # The next page comes back as it nears the window.
    tile = page.locator(f'.tile[data-image="{ids[PAGE_SIZE + 5]}"]')
    page.mouse.wheel(0, 1500)
    expect(tile).to_have_count(1)
    tile.scroll_into_view_if_needed()
    loaded(tile)

    # An emptied page keeps its height: a tile stays where it is in the document while the
    # page above it is emptied.
    where = tile.evaluate("t => t.getBoundingClientRect().top + scrollY")
    page.mouse.wheel(0, 4000)
    expect(page.locator(".gallery-page").first).to_have_class("gallery-page dropped")
    assert tile.evaluate("t => t.getBoundingClientRect().top + scrollY") == where


def test_the_page_with_the_focus_stays_while_scrolled_away(page: Page, big_gallery):
    server, ids = big_gallery
    page.goto(server.url + "/gallery")
    # A keyboard user on the second tile; the mouse wheel then scrolls far away.
    page.locator(f'.tile[data-image="{ids[0]}"]').focus()
    page.keyboard.press("Tab")
    focused = page.locator(f'.tile[data-image="{ids[1]}"]')
    expect(focused).to_be_focused()
    scroll_to_page(page, 8)
    settled(page)
    first_page = page.locator(".gallery-page").first
    expect(first_page).not_to_have_class("gallery-page dropped")
    expect(page.locator(".gallery-page.dropped")).not_to_have_count(0)
    # Tab goes on from there, to the next tile.
    page.keyboard.press("Tab")
    expect(page.locator(f'.tile[data-image="{ids[2]}"]')).to_be_focused()
    # Once the focus leaves that page (far out of view), it is emptied too.
    for _ in range(4):
        page.mouse.wheel(0, 3000)
    page.wait_for_function("() => scrollY > 10000")
    in_view = page.wait_for_function("""() => [...document.querySelectorAll(".tile")].find(t => {
        const r = t.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; })""")
    in_view.as_element().focus()
    expect(first_page).to_have_class("gallery-page dropped")


def test_back_after_a_search_finds_the_gallery_as_it_was(page: Page, big_gallery):
    server, ids = big_gallery
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Security Policy" in m.text else None)
    # The page's height when htmx keeps its copy for Back (the search is about to replace
    # it): measured before gallery.js readies the copy (this listener comes first). Measured
    # earlier, a page still being loaded at the bottom made it differ.
    page.add_init_script("""document.addEventListener("htmx:beforeHistorySave", () => {
        window.heightKept = document.documentElement.scrollHeight; });""")
    page.goto(server.url + "/gallery")
    scroll_to_page(page, 8)
    settled(page)
    # The search box is at the top: the reader goes back up to it.
    search = page.get_by_label("Search prompts")
    search.focus()
    settled(page)
    assert page.locator(".gallery-page.dropped").count() >= 5
    search.fill("lighthouse")
    expect(page).to_have_url(server.url + "/gallery?q=lighthouse")
    expect(page.locator(".gallery-page")).to_have_count(1)
    height = page.evaluate("window.heightKept")
    assert height > 5 * 900  # the copy: eight pages and more, most of them emptied
    page.go_back()
    # htmx puts back its copy of the page: the first tiles, the emptied pages with their
    # heights (the CSP refusing none of it); further down, the tiles come back as they near.
    expect(page.locator(f'.tile[data-image="{ids[0]}"]')).to_be_in_viewport()
    # (Pages near the window may be coming back meanwhile: the height is waited for.)
    try:
        page.wait_for_function("h => document.documentElement.scrollHeight === h", arg=height,
                               timeout=10_000)
    except PlaywrightTimeout:
        now = page.evaluate("""() => [document.documentElement.scrollHeight,
            [...document.querySelectorAll('.gallery-page')].map(p =>
                `${p.className} ${p.getBoundingClientRect().height}`)]""")
        raise AssertionError(f"height {height} before, {now[0]} after Back: {now[1]}") from None
    page.locator(".gallery-page").nth(6).scroll_into_view_if_needed()
    expect(page.locator(".gallery-page").nth(6).locator(".tile")).to_have_count(PAGE_SIZE)
    assert not refused, refused


def test_closing_the_viewer_focuses_the_tile_of_the_image_shown_last(page: Page, big_gallery):
    server, ids = big_gallery
    page.goto(server.url + "/gallery")
    page.locator(f'.tile[data-image="{ids[0]}"]').click()
    dialog = page.locator("dialog.viewer")
    expect(dialog.locator(".viewer-body")).to_have_attribute("data-image", str(ids[0]))
    for shown in ids[1:4]:
        page.keyboard.press("ArrowRight")
        expect(dialog.locator(".viewer-body")).to_have_attribute("data-image", str(shown))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator(f'.tile[data-image="{ids[3]}"]')).to_be_focused()


def test_shift_tab_from_a_page_reaches_the_page_before_it_again(page: Page, big_gallery):
    server, _ids = big_gallery
    page.goto(server.url + "/gallery")
    scroll_to_page(page, 10)
    settled(page)
    # Back up to the fourth page (emptied on the way down), then the keyboard goes back from
    # its first tile: into the third page, its tiles back as the window neared it.
    fourth = page.locator(".gallery-page").nth(3)
    fourth.scroll_into_view_if_needed()
    expect(fourth.locator(".tile")).to_have_count(PAGE_SIZE)
    fourth.locator(".tile").first.focus()
    page.keyboard.press("Shift+Tab")
    third = page.locator(".gallery-page").nth(2)
    expect(third.locator(".tile").last).to_be_focused()

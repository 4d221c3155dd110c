"""A light page in a real browser: the choices webui already has are in the page itself (no
request for them), static files come from the browser's cache on the next page, and what the
user left in the form still comes back."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from webui import create_app

from .helpers import ServerThread, demo_extra, shot, wait_for

pytestmark = pytest.mark.browser

ANY = re.compile(".*")  # an attribute with any value
SELECTS = ("sd_model_checkpoint", "sampler_name", "scheduler", "hr_upscaler",
           "refiner_checkpoint")


def watch(app) -> list[str]:
    """The paths the server is asked for from now on (what the browser's cache answered is
    never asked)."""
    from flask import request

    asked: list[str] = []
    app.before_request_funcs.setdefault(None, []).insert(
        0, lambda: asked.append(request.full_path) and None)
    return asked


def options_requests(urls: list[str]) -> list[str]:
    return [u for u in urls if "/options/" in u]


def test_choices_webui_has_are_drawn_into_the_page(page, ui):
    server, app = ui
    url = server.url + "/services/demo/txt2img"
    first = watch(app)
    page.goto(url)
    sampler = page.locator("#f-txt2img-sampler_name")
    expect(sampler.locator("option[value='DPM++ 2M']")).to_have_count(1)
    for key in SELECTS:
        expect(page.locator(f"#rs-txt2img-{key} p.loading")).to_have_count(0)
    # The first page of a fresh webui asks for its lists (as before): one request each.
    assert sorted(u.split("/options/")[1].split("?")[0] for u in options_requests(first)) == \
        sorted(SELECTS)

    # The next page (the same tab reloaded, another tab): drawn with them, nothing asked.
    second = page.context.new_page()  # another tab: the same HTTP cache
    first.clear()
    asked = first
    second.goto(url)
    expect(second.locator("#f-txt2img-sampler_name")).to_have_value("Euler a")
    expect(second.locator("#f-txt2img-sampler_name option[value='DPM++ 2M']")).to_have_count(1)
    checkpoint = second.locator("#f-txt2img-sd_model_checkpoint")
    expect(checkpoint.locator("option[data-current]")).to_contain_text("(current)")
    expect(checkpoint.locator("option:checked")).to_contain_text("(current)")
    second.wait_for_load_state("load")
    for key in SELECTS:
        expect(second.locator(f"#rs-txt2img-{key}")).not_to_have_attribute("hx-get", ANY)
        assert second.locator(f"#f-txt2img-{key}").get_attribute("aria-busy") is None
    assert options_requests(asked) == []
    # Its static files are the browser's own copies now (immutable at their hashed address).
    assert [u for u in asked if u.startswith("/static/")] == [], asked
    shot(second, "light-choices-in-page")

    # A refresh still asks the backend (the ↻ button).
    # (Waited for: the option it shows was already there before the click.)
    with second.expect_response(lambda response: "refresh=1" in response.url):
        second.locator("#rs-txt2img-sampler_name button.refresh").click()
    expect(second.locator("#f-txt2img-sampler_name option[value='DPM++ 2M']")).to_have_count(1)
    assert len(options_requests(asked)) == 1 and "refresh=1" in options_requests(asked)[0]


def every_list_fetched(page) -> None:
    """Each select's list came (the cache was empty: each asked for it), so webui has it."""
    for key in SELECTS:
        expect(page.locator(f"#rs-txt2img-{key}")).not_to_have_attribute("hx-get", ANY)
    expect(page.locator("#f-txt2img-sampler_name option[value='DPM++ 2M']")).to_have_count(1)


def test_remembered_values_come_back_in_a_page_with_its_choices(page, ui):
    server, app = ui
    url = server.url + "/services/demo/txt2img"
    asked = watch(app)
    page.goto(url)  # fills webui's cache of the demo's lists
    every_list_fetched(page)
    remembered = {"sampler_name": "DPM++ 2M", "scheduler": "gone-scheduler",
                  "sd_model_checkpoint": ""}
    page.evaluate("v => localStorage.setItem('webui:demo:txt2img', v)", json.dumps(remembered))

    asked.clear()
    page.reload()
    expect(page.locator("#f-txt2img-sampler_name")).to_have_value("DPM++ 2M")
    # A value the list no longer has is kept, selected and marked, as the server marks it.
    scheduler = page.locator("#f-txt2img-scheduler")
    expect(scheduler).to_have_value("gone-scheduler")
    expect(scheduler.locator("option:checked")).to_have_text(
        "gone-scheduler (not offered by A1111 demo now)")
    # "—" (the service's setting) is the checkpoint the service has loaded.
    checkpoint = page.locator("#f-txt2img-sd_model_checkpoint")
    expect(checkpoint.locator("option:checked")).to_contain_text("(current)")
    assert options_requests(asked) == []


def test_lists_older_than_the_cache_are_drawn_and_asked_for_again(page, make_settings,
                                                                  demo_server):
    """A list webui fetched longer ago than its cache keeps answers (options_ttl; 0 here: any
    age) is still drawn into the page, the form usable at once, and asked for again: the
    select then shows the fresh list with the value the user had."""
    app = create_app(make_settings(extras=[demo_extra(demo_server.url)], options_ttl=0.0))
    asked = watch(app)
    with ServerThread(app) as server:
        url = server.url + "/services/demo/txt2img"
        page.goto(url)
        every_list_fetched(page)
        page.select_option("#f-txt2img-sampler_name", "DPM++ 2M")  # remembered
        asked.clear()
        html = page.context.request.get(url).text()
        # Drawn with its choices, not loading, and asking again.
        assert 'aria-busy="true"' not in html and "loading choices" not in html
        assert "<option value=\"DPM++ 2M\"" in html
        assert html.count('hx-trigger="load" hx-include="#f-txt2img-') == len(SELECTS)
        asked.clear()
        page.goto(url)
        wait_for(lambda: len(options_requests(asked)) == len(SELECTS),
                 what="each list asked for again")
        for key in SELECTS:  # swapped for the fresh list
            expect(page.locator(f"#rs-txt2img-{key}")).not_to_have_attribute("hx-get", ANY)
        expect(page.locator("#f-txt2img-sampler_name")).to_have_value("DPM++ 2M")
        expect(page.locator("#f-txt2img-sampler_name option[value='Euler a']")).to_have_count(1)

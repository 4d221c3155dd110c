"""Prompt styles: kept in webui's database (a migration adds them), made, edited and deleted
on the Styles page, offered on every service's form with the service's own (A1111's
/sdapi/v1/prompt-styles, where the definition lists them), merged into the prompts as A1111
does when the job is made, and recorded: the final prompt and the styles' names."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import jsonschema
import pytest
import requests
from werkzeug.datastructures import MultiDict

from webui import create_app
from webui.history import HistoryStore, JobRecord, StyleRecord
from webui.history.migrations import MIGRATIONS, SCHEMA_VERSION
from webui.pipeline import STYLES_KEY, apply_styles, prepare_values

from .helpers import HX, demo_extra, field_errors, form, submit

# --- Merging, as A1111's modules/styles.py merge_prompts ----------------------------------


@pytest.mark.parametrize("prompt, styles, merged", [
    ("a cat", ["{prompt}, oil painting"], "a cat, oil painting"),
    ("a cat", ["masterpiece, {prompt}, {prompt}"], "masterpiece, a cat, a cat"),
    ("a cat ", [" highly detailed "], "a cat, highly detailed"),
    ("", ["highly detailed"], "highly detailed"),
    ("a cat", [""], "a cat"),
    ("a cat", ["{prompt}, noir", "sharp"], "a cat, noir, sharp"),
    ("a cat", ["sharp", "photo of {prompt}"], "photo of a cat, sharp"),
])
def test_styles_merge_as_a1111_merges_them(prompt, styles, merged):
    assert apply_styles(prompt, styles) == merged


# --- The database ----------------------------------------------------------------------------


def test_styles_are_kept_with_unique_names(tmp_path: Path):
    store = HistoryStore(tmp_path / "h.sqlite3")
    b = store.save_style(StyleRecord("b-side", "{prompt}, b"))
    store.save_style(StyleRecord("Alpha", "alpha", "ugly"))
    assert [s.name for s in store.styles()] == ["Alpha", "b-side"]
    with pytest.raises(ValueError, match="a style named 'ALPHA' exists already"):
        store.save_style(StyleRecord("ALPHA"))
    b.prompt = "{prompt}, bee"
    store.save_style(b)
    assert store.get_style(b.id).prompt == "{prompt}, bee"
    assert store.delete_style(b.id) and not store.delete_style(b.id)
    with pytest.raises(ValueError, match="no longer exists"):
        store.save_style(b)
    assert [s.name for s in store.styles()] == ["Alpha"]


def test_a_version_3_database_gets_styles_and_keeps_its_jobs(tmp_path: Path):
    path = tmp_path / "h.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:3]:
        migration(db)
    db.execute("INSERT INTO jobs (id, service_id, service_name, mode, status, prompt, created) "
               "VALUES ('j1', 'a1111', 'A1111', 'txt2img', 'done', 'an old lighthouse', 1.0)")
    db.execute("PRAGMA user_version = 3")
    db.close()
    store = HistoryStore(path)
    assert store.get_job("j1").prompt == "an old lighthouse"
    store.save_style(StyleRecord("Noir", "{prompt}, noir"))
    assert [s.name for s in store.styles()] == ["Noir"]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# --- The Styles page -------------------------------------------------------------------------


def test_the_styles_page_adds_edits_and_deletes(client):
    page = client.get("/styles").get_data(as_text=True)
    assert "No styles yet" in page
    r = client.post("/styles", headers=HX, data={"name": " Noir ", "prompt": "{prompt}, noir",
                                                 "negative_prompt": "colour"})
    assert r.status_code == 200
    section = r.get_data(as_text=True)
    assert section.startswith('\n<div id="styles"') or '<div id="styles"' in section[:200]
    assert "Added the style “Noir”." in section and "<h3>Noir</h3>" in section
    # The same name in another case: refused at the field, what was typed kept.
    r = client.post("/styles", headers=HX, data={"name": "NOIR", "prompt": "x"})
    assert r.status_code == 422
    section = r.get_data(as_text=True)
    assert "Not saved: a style named &#39;NOIR&#39; exists already." in section
    assert 'value="NOIR"' in section and 'aria-invalid="true"' in section
    r = client.post("/styles", headers=HX, data={"name": "", "prompt": "x"})
    assert "Name is required." in r.get_data(as_text=True)
    style_id = re.search(r'id="style-(\d+)"', client.get("/styles").get_data(as_text=True))[1]
    edit = client.get(f"/styles?edit={style_id}").get_data(as_text=True)
    assert "Edit “Noir”" in edit and "{prompt}, noir</textarea>" in edit
    r = client.post(f"/styles/{style_id}", headers=HX,
                    data={"name": "Noir", "prompt": "{prompt}, film noir"})
    assert "Saved the style “Noir”." in r.get_data(as_text=True)
    # Without JavaScript a plain form post goes back to the page.
    r = client.post("/styles", data={"name": "Plain", "prompt": "p"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/styles")
    r = client.post(f"/styles/{style_id}/delete", headers=HX)
    assert "Deleted the style “Noir”." in r.get_data(as_text=True)
    assert "<h3>Noir</h3>" not in client.get("/styles").get_data(as_text=True)
    assert client.post(f"/styles/{style_id}", headers=HX, data={"name": "x"}).status_code == 404


# --- On the forms ----------------------------------------------------------------------------


def picked(page: str) -> list[tuple[str, str]]:
    return re.findall(r'role="option"[^>]*data-value="([^"]*)" data-label="([^"]*)"', page)


def test_the_styles_picker_offers_webuis_and_the_services_own(demo_app):
    client = demo_app.test_client()
    client.post("/styles", headers=HX, data={"name": "Noir", "prompt": "{prompt}, noir"})
    url = "/services/demo/txt2img/styles/search"
    page = client.get(f"{url}?{STYLES_KEY}__q=").get_data(as_text=True)
    assert picked(page) == [("webui:Noir", "Noir"), ("service:Cinematic", "Cinematic"),
                            ("service:Watercolour", "Watercolour"),
                            ("service:Sharp details", "Sharp details")]
    assert "A1111 demo · watercolour painting of {prompt}, soft edges" in page
    # Words are looked for in the names and the texts.
    page = client.get(f"{url}?{STYLES_KEY}__q=GRAIN").get_data(as_text=True)
    assert picked(page) == [("service:Cinematic", "Cinematic")]
    form_page = client.get("/services/demo/txt2img").get_data(as_text=True)
    assert 'hx-get="/services/demo/txt2img/styles/search"' in form_page
    assert "Search your styles and A1111 demo&#39;s" in form_page


def test_a_service_without_styles_of_its_own_offers_webuis(services_app):
    client = services_app.test_client()
    client.post("/styles", headers=HX, data={"name": "Noir", "prompt": "{prompt}, noir"})
    page = client.get(f"/services/openai/txt2img/styles/search?{STYLES_KEY}__q=")
    assert picked(page.get_data(as_text=True)) == [("webui:Noir", "Noir")]
    # OpenAI has no negative prompt: its form says the styles' negative parts are not used.
    assert "has no negative prompt: the styles&#39; negative parts are not used." in (
        client.get("/services/openai/txt2img").get_data(as_text=True))


def test_sdnext_lists_its_styles_in_its_own_shape(services_app):
    page = services_app.test_client().get(
        f"/services/sdnext/txt2img/styles/search?{STYLES_KEY}__q=water").get_data(as_text=True)
    assert picked(page) == [("service:Watercolour", "Watercolour")]


def test_the_demo_serves_prompt_styles_as_a1111(demo_server, openapi):
    styles = requests.get(f"{demo_server.url}/sdapi/v1/prompt-styles", timeout=10).json()
    schema = openapi["paths"]["/sdapi/v1/prompt-styles"]["get"]["responses"]["200"][
        "content"]["application/json"]["schema"]
    jsonschema.validate(styles, {**schema, "components": openapi["components"]})
    assert [s["name"] for s in styles] == ["Cinematic", "Watercolour", "Sharp details"]


def styled_form(*styles: str, **fields: str) -> MultiDict:
    data = MultiDict(form(prompt="a lighthouse", negative_prompt="blurry", width="64",
                          height="64", steps="2", **fields))
    for style in styles:
        data.add(STYLES_KEY, style)
    return data


def test_styles_are_merged_when_the_job_is_made_and_recorded(demo_app):
    client = demo_app.test_client()
    client.post("/styles", headers=HX, data={"name": "Noir", "negative_prompt": "colour",
                                             "prompt": "{prompt}, film noir"})
    r = submit(client, "/services/demo/txt2img/generate",
               data=styled_form("webui:Noir", "service:Sharp details"))
    assert r.status_code == 200, r.html
    assert r.job.sent["prompt"] == "a lighthouse, film noir, highly detailed, sharp focus"
    assert r.job.sent["negative_prompt"] == "blurry, colour"
    record = demo_app.extensions["webui"].history.get_job(r.job.id)
    assert record.prompt == "a lighthouse, film noir, highly detailed, sharp focus"
    assert record.negative_prompt == "blurry, colour"
    # What was asked, with each style as it was: Reuse parameters and a restart use it.
    assert record.parameters["prompt"] == "a lighthouse"
    assert [s["name"] for s in record.parameters[STYLES_KEY]] == ["Noir", "Sharp details"]
    assert record.parameters[STYLES_KEY][1]["source"] == "A1111 demo"
    image = record.images[0].id
    page = client.get(f"/gallery/{image}").get_data(as_text=True)
    assert "Styles: Noir, Sharp details" in page
    reuse = client.get(f"/services/demo/txt2img?from={image}").get_data(as_text=True)
    chips = re.findall(r'<li class="chip" data-value="([^"]+)">', reuse)
    assert chips == ["webui:Noir", "service:Sharp details"]


def test_a_style_that_is_gone_is_said_at_the_field(demo_app):
    client = demo_app.test_client()
    for style in ("webui:Nothing", "service:Nothing"):
        r = submit(client, "/services/demo/txt2img/generate", data=styled_form(style))
        assert r.status_code == 422
        assert field_errors(r.html) == {}  # no parameter of the definition is wrong
        slot = re.search(rf'id="err-txt2img-{STYLES_KEY}" hx-swap-oob="true">([^<]*)</p>',
                         r.html)
        assert slot[1] == "Styles: “Nothing” no longer exists (remove it, or pick another)"


def test_a_job_waiting_at_a_restart_keeps_its_styles(make_settings, demo_server):
    settings = make_settings(extras=[demo_extra(demo_server.url)])
    history = HistoryStore(settings.history_file)
    style = {"name": "Noir", "prompt": "{prompt}, noir", "negative": "", "source": "webui"}
    history.record_job(JobRecord(
        id="waiting", service_id="demo", service_name="A1111 demo", mode="txt2img",
        status="queued", parameters={"prompt": "a lighthouse", "steps": 2, "width": 64,
                                     "height": 64, "seed": 5, STYLES_KEY: [style]}))
    history.close()
    app = create_app(settings)
    job = app.extensions["webui"].jobs.get("waiting")
    assert job.done.wait(20) and job.status == "done", job.error
    assert job.sent["prompt"] == "a lighthouse, noir"


def test_a_styles_negative_part_goes_in_without_a_negative_typed(demo_app):
    mode = demo_app.extensions["webui"].folders.catalog().get("demo").definition.modes["txt2img"]
    values = {"prompt": "x", STYLES_KEY: [{"name": "a", "prompt": "{prompt} y",
                                           "negative": "n"}]}
    sent = prepare_values(mode, values)
    assert (sent["prompt"], sent["negative_prompt"]) == ("x y", "n")

"""The form and the job panel through the Flask test client: errors at the top of the form,
what changed in a running job's panel, input images kept as drafts, reset to the definition's
defaults, the width/height tools and sliders, and the small things (icon, headings, help)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import urllib.parse

import pytest
import responses

from webui import create_app
from webui.demo import create_demo_app
from webui.images import DraftStore
from webui.views.jobs import changed_parts, job_mark

from .helpers import (
    API,
    HX,
    ServerThread,
    a1111_response,
    b64,
    demo_extra,
    field_errors,
    form,
    image_bytes,
    job_in,
    last_post,
    mock_lists,
    submit,
    wait_for,
)

# --- Errors at the top of the form --------------------------------------------------------


@responses.activate
def test_field_errors_are_listed_at_the_top_of_the_form_and_the_result_is_left(client):
    mock_lists()
    r = client.post("/services/a1111/txt2img/generate", headers=HX,
                    data=form(prompt="", clip_skip="50", steps="0"))
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    # The answer replaces the form's error summary, not the result area.
    assert r.headers["HX-Retarget"] == "#errors-txt2img"
    assert r.headers["HX-Reswap"] == "outerHTML"
    assert "Results appear here" not in html and 'class="job' not in html
    # One link per field, in the order of the form: Prompt, Steps, then Clip skip (folded
    # away under "Other").
    links = re.findall(r'<a href="#(f-txt2img-\w+)" data-field="\1">([^<]*)</a>', html)
    assert links == [("f-txt2img-prompt", "Prompt is required"),
                     ("f-txt2img-steps", "Steps must be at least 1"),
                     ("f-txt2img-clip_skip", "Clip skip must be at most 12")]
    assert "fix these 3 fields first" in html
    # Each field's own message too, out of band (the others cleared).
    assert field_errors(html) == {"prompt": "Prompt is required",
                                  "steps": "Steps must be at least 1",
                                  "clip_skip": "Clip skip must be at most 12"}


@responses.activate
def test_a_job_clears_the_errors_of_the_form(client):
    mock_lists()
    responses.post(f"{API}/txt2img", json=a1111_response("txt2img-200"))
    r = client.post("/services/a1111/txt2img/generate", headers=HX, data=form())
    html = r.get_data(as_text=True)
    assert r.status_code == 202
    summary = re.search(r'<div id="errors-txt2img" class="form-errors" hx-swap-oob="true">'
                        r'(.*?)</div>', html, re.S)
    assert summary and summary.group(1).strip() == ""
    # The fields' own messages go with the summary (app.js): none is swapped on its own.
    assert 'err-txt2img-prompt' not in html


def test_controls_are_described_by_their_error_and_help(client):
    html = client.get("/services/a1111/txt2img").get_data(as_text=True)
    assert re.search(r'<input type="number" id="f-txt2img-steps" name="steps"[^>]*'
                     r'aria-describedby="err-txt2img-steps"', html)
    assert re.search(r'id="f-txt2img-seed"[^>]*aria-describedby="err-txt2img-seed '
                     r'desc-f-txt2img-seed"', html)
    assert '<p class="desc" id="desc-f-txt2img-seed">' in html
    # The summary's place, empty, at the top of the form.
    assert re.search(r'<form id="form-txt2img"[^>]*>\s*<div id="errors-txt2img" '
                     r'class="form-errors">\s*</div>', html)


# --- Reset to defaults --------------------------------------------------------------------


def test_the_form_carries_the_definitions_defaults_for_reset(client):
    # A page opened with values (reuse parameters) renders them as the inputs' own values,
    # which is what form.reset() brings back: "Reset to defaults" uses these instead.
    html = client.get("/services/a1111/txt2img").get_data(as_text=True)
    defaults = json.loads(re.search(r"data-defaults='([^']*)'", html).group(1))
    assert defaults["seed"] == -1 and defaults["steps"] == 20
    assert defaults["sampler_name"] == "Euler a" and defaults["sd_model_checkpoint"] is None
    assert "init_image" not in client.get("/services/a1111/img2img").get_data(as_text=True) \
        .split("data-defaults='")[1].split("'")[0]


# --- The job panel while the job runs ------------------------------------------------------


def test_changed_parts_compare_what_the_panel_shows():
    class Progress:
        preview_version = 3

    class Job:
        status, remote, stop_requested, progress, images = "running", None, False, Progress, [1]

    seen = job_mark(Job)
    assert seen == "running..0.3.1"
    assert changed_parts(Job, seen) == set()
    assert changed_parts(Job, "queued..0.0.0") == {"announce", "buttons", "preview", "images"}
    assert changed_parts(Job, "running..1.3.1") == {"buttons"}  # an interrupt was asked
    assert changed_parts(Job, "running.waiting.0.3.1") == {"announce", "buttons"}
    assert changed_parts(Job, "running..0.2.1") == {"preview"}
    assert changed_parts(Job, "nonsense") == {"announce", "buttons", "preview", "images"}


@pytest.fixture
def slow_app(make_settings):
    demo = ServerThread(create_demo_app(step_delay=0.03))
    yield create_app(make_settings(extras=[demo_extra(demo.url)]))
    demo.stop()


def test_a_running_panel_gets_only_what_changed_and_its_final_form_once(slow_app):
    client = slow_app.test_client()
    r = client.post("/services/demo/txt2img/generate", headers=HX,
                    data=form(steps="150", n_iter="3", width="64", height="64"))
    html = r.get_data(as_text=True)
    job = job_in(client, html)
    # The generate answer says the job's state in the page's live region.
    assert re.search(r'<div id="announcer" hx-swap-oob="innerHTML">(Queued|Running)', html)
    wait_for(lambda: job.progress.step, what="a step")

    seen = job_mark(job)
    update = client.get(f"/jobs/{job.id}/update?seen={seen}")
    part = update.get_data(as_text=True)
    assert update.status_code == 200 and "HX-Retarget" not in update.headers
    # The state line and the progress bar, out of band; a poller that knows what is shown.
    assert f'id="job-{job.id}-state" data-status="running" hx-swap-oob="true"' in part
    assert re.search(r"step \d+/150", part)
    assert f'id="job-{job.id}-progress" hx-swap-oob="true"' in part and "<progress" in part
    assert f'id="job-{job.id}-poll" hidden data-poll hx-swap="none" hx-swap-oob="true"' in part
    # Not the buttons (a focused Interrupt stays), not the panel, no announcement.
    assert f'id="job-{job.id}-buttons"' not in part and 'class="job ' not in part
    assert "announcer" not in part

    # A panel that still shows the job queued gets its buttons, and the state is said.
    part = client.get(f"/jobs/{job.id}/update?seen=queued..0.0.0").get_data(as_text=True)
    assert f'id="job-{job.id}-buttons" hx-swap-oob="true"' in part
    assert f'id="job-{job.id}-interrupt"' in part
    assert '<div id="announcer" hx-swap-oob="innerHTML">Running.</div>' in part

    # Interrupt: the button stays (same id, focusable) and says it is stopping.
    answer = client.post(f"/jobs/{job.id}/interrupt", headers=HX).get_data(as_text=True)
    assert re.search(rf'<button type="button" class="small" id="job-{job.id}-interrupt" '
                     r'aria-disabled="true">Interrupting…</button>', answer)
    assert '<div id="announcer" hx-swap-oob="innerHTML">Interrupting.</div>' in answer
    assert job.done.wait(20)

    final = client.get(f"/jobs/{job.id}/update?seen={job_mark(job)}")
    html = final.get_data(as_text=True)
    # Ended: the whole panel, once, in place of the old one.
    # Out of band, found by its id: the button that asked may have been replaced meanwhile.
    assert "HX-Retarget" not in final.headers
    assert re.search(rf'<div class="job job-interrupted" id="job-{job.id}" '
                     r'data-status="interrupted" tabindex="-1"\s+hx-swap-oob="true"', html)
    assert "hx-get" not in html  # no poller any more
    assert re.search(r'<div id="announcer" hx-swap-oob="innerHTML">Interrupted', html)

    # Interrupt's answer drawn once the job has ended (the backend stopped it while webui was
    # asking it to): the final panel, and the page hears the end, not "Interrupting.".
    late = client.post(f"/jobs/{job.id}/interrupt", headers=HX).get_data(as_text=True)
    assert 'data-status="interrupted"' in late and "Interrupting" not in late
    assert re.search(r'<div id="announcer" hx-swap-oob="innerHTML">Interrupted', late)


def test_the_panel_names_its_link(slow_app):
    client = slow_app.test_client()
    r = client.post("/services/demo/txt2img/generate", headers=HX,
                    data=form(steps="4", width="64", height="64"))
    job = job_in(client, r.get_data(as_text=True))
    assert job.done.wait(20)
    panel = client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)
    assert f'href="/jobs/{job.id}">Job page</a>' in panel
    assert ">link<" not in panel


# --- Input images kept as drafts -------------------------------------------------------------


def test_an_input_image_is_kept_as_a_draft_the_form_names(client, app):
    png = image_bytes((80, 48), (10, 200, 40))
    r = client.post("/input-images", data={"image": (io.BytesIO(png), "green.png")},
                    content_type="multipart/form-data")
    assert r.status_code == 201
    answer = r.get_json()
    assert re.fullmatch(r"d-[0-9a-f]{32}\.png", answer["ref"])
    assert (answer["width"], answer["height"]) == (80, 48)
    shown = client.get(answer["url"])
    assert shown.status_code == 200 and shown.data == png and shown.mimetype == "image/png"
    # The same image chosen again is the same draft.
    again = client.post("/input-images", data={"image": (io.BytesIO(png), "again.png")},
                        content_type="multipart/form-data").get_json()
    assert again["ref"] == answer["ref"]
    assert len(list(app.extensions["webui"].settings.drafts_dir.iterdir())) == 1


def test_a_file_that_is_not_an_image_is_refused_with_a_sentence(client):
    r = client.post("/input-images", data={"image": (io.BytesIO(b"%PDF-1.4"), "notes.pdf")},
                    content_type="multipart/form-data")
    assert r.status_code == 422
    assert r.get_json() == {"error": "'notes.pdf' is not an image this server can read "
                                     "(PNG, JPEG, WEBP, …)"}
    empty = client.post("/input-images", data={"image": (io.BytesIO(b""), "empty.png")},
                        content_type="multipart/form-data")
    assert empty.get_json() == {"error": "'empty.png' is an empty file"}


@pytest.mark.parametrize("ref", ["d-nothere", "d-" + "0" * 32 + ".png", "..%2Fsecrets.yaml",
                                 "12345"])
def test_unknown_input_images_are_404(client, ref):
    assert client.get(f"/input-images/{ref}").status_code == 404


@responses.activate
def test_generate_sends_the_draft_the_form_names(client):
    mock_lists()
    responses.post(f"{API}/img2img", json=a1111_response("txt2img-200"))
    png = image_bytes((64, 64), (200, 30, 30))
    ref = client.post("/input-images", data={"image": (io.BytesIO(png), "red.png")},
                      content_type="multipart/form-data").get_json()["ref"]
    data = {**form(denoising_strength="0.5", resize_mode="0"), "init_image__from": ref}
    data.pop("hr_upscaler")
    r = submit(client, "/services/a1111/img2img/generate", data=data)
    assert r.status_code == 200, r.html
    sent = last_post()
    assert sent["init_images"][0] == b64(png)
    # A draft that is gone is said so on the field; nothing is sent.
    posts = len([c for c in responses.calls if c.request.method == "POST"])
    gone = submit(client, "/services/a1111/img2img/generate",
                  data={**data, "init_image__from": "d-" + "f" * 32 + ".png"})
    assert gone.status_code == 422
    assert field_errors(gone.html)["init_image"] == (
        "Image is no longer kept on the server: choose the image again")
    assert len([c for c in responses.calls if c.request.method == "POST"]) == posts


def test_drafts_are_pruned_beyond_their_count(tmp_path):
    store = DraftStore(tmp_path)
    store.DRAFT_COUNT = 3
    names = [store.save(image_bytes((64, 64), (i, 0, 0)))[0] for i in range(5)]
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert len(kept) == 3
    assert store.path(names[-1]) is not None
    assert store.path("../" + names[-1]) is None and store.path("x.png") is None


def test_the_image_field_is_a_drop_zone(client):
    html = client.get("/services/a1111/img2img").get_data(as_text=True)
    zone = re.search(r'<div class="drop-zone" data-drop-zone\s+data-store="/input-images">'
                     r'(.*?)</div>', html, re.S).group(1)
    assert 'type="file" id="f-img2img-init_image" name="init_image" accept="image/*"' in zone
    assert 'name="init_image__from" value="" data-image-ref data-remember' in zone
    assert "paste one (Ctrl+V)" in zone


# --- Width/height and sliders ----------------------------------------------------------------


@pytest.mark.parametrize(("service", "present"), [("a1111", True), ("comfyui", True),
                                                  ("openai", False), ("stability", False)])
def test_swap_and_aspect_presets_come_with_a_width_height_pair(services_app, service, present):
    html = services_app.test_client().get(f"/services/{service}/txt2img").get_data(as_text=True)
    tools = re.search(r'<div class="size-tools" data-size-pair data-width="f-txt2img-width" '
                      r'data-height="f-txt2img-height">', html)
    assert bool(tools) == present
    if present:
        assert re.findall(r'data-aspect="(\d+:\d+)"', html) == [
            "1:1", "4:3", "3:2", "16:9", "3:4", "2:3", "9:16"]
        assert 'aria-label="Swap Width and Height"' in html


def test_a_range_is_a_slider_beside_its_number(client):
    html = client.get("/services/a1111/txt2img").get_data(as_text=True)
    def slider(key: str) -> dict[str, str]:
        tag = re.search(rf'<input type="range" [^>]*data-slider-for="f-txt2img-{key}"[^>]*>',
                        html)
        return dict(re.findall(r'([\w-]+)="([^"]*)"', tag.group(0))) if tag else {}

    steps = slider("steps")
    assert (float(steps["min"]), float(steps["max"]), float(steps["step"])) == (1, 150, 1)
    assert steps["value"] == "20"
    # Keyboard and screen-reader users have the number itself: one tab stop, one name.
    assert steps["tabindex"] == "-1" and steps["aria-hidden"] == "true"
    cfg = slider("cfg_scale")
    assert (float(cfg["min"]), float(cfg["max"]), float(cfg["step"])) == (1, 30, 0.5)
    assert slider("seed") == {}  # a seed is no slider


# --- Small things ----------------------------------------------------------------------------


def test_the_icon_is_linked_and_served(client):
    html = client.get("/").get_data(as_text=True)
    # Written into the page (a request fewer), the file as it is.
    href = re.search(r'<link rel="icon" href="(data:image/svg\+xml,[^"]+)" '
                     r'type="image/svg\+xml">', html)
    assert href, html[:2000]
    svg = client.get("/static/favicon.svg").data.decode()
    assert urllib.parse.unquote(href[1].removeprefix("data:image/svg+xml,")) == svg
    # An image opened alone: the browser asks /favicon.ico. The address names the file's
    # content (?v=<hash>): see test_delivery.py.
    icon = client.get(client.get("/favicon.ico").headers["Location"])
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    assert icon.data.decode() == svg and icon.request.args["v"]


def test_refresh_buttons_have_a_name(client):
    html = client.get("/services/a1111/txt2img/options/sampler_name").get_data(as_text=True)
    assert 'aria-label="Reload the choices of Sampler"' in html


def test_problem_pages_have_a_heading(client):
    html = client.get("/services/nope/txt2img").get_data(as_text=True)
    assert "<h1>Not found</h1>" in html


def test_webui_help_is_plain_text():
    out = subprocess.run([sys.executable, "-m", "webui", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "``" not in out and "`" not in out
    assert "One browser page for image generation" in out

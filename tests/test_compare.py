"""Compare: a finished job's prompt run on other services and checkpoints. Each cell is an
ordinary job (checked like a form, queued in its service's queue); values carry over by key
within a family of definitions and by role across them; nothing is queued unless every cell
checks out. The demo backend (A1111's API) and the fake ComfyUI 0.3.64 answer over HTTP."""

from __future__ import annotations

import re

import pytest

from webui import create_app

from .helpers import demo_extra, form, image_bytes, sent, submit, wait_for


@pytest.fixture
def compare_app(make_settings, demo_server, fakes):
    fakes["comfyui"].server.app.config["REQUESTS"].clear()
    return create_app(make_settings(extras=[demo_extra(demo_server.url)],
                                    url_overrides={"comfyui": fakes["comfyui"].url}))


def demo_job(app, **fields):
    r = submit(app.test_client(), "/services/demo/txt2img/generate",
               data=form(**{"prompt": "a lighthouse at dawn", "steps": "3", "width": "64",
                            "height": "64", "seed": "42", **fields}))
    assert r.status_code == 200, r.html
    return r.job


def started(client, job_id: str, *cells: str):
    r = client.post("/compare", data={"job": job_id, "cell": list(cells)})
    return r, r.headers.get("Location", "")


def test_compare_runs_the_prompt_on_other_services_and_checkpoints(compare_app, fakes):
    app, client = compare_app, compare_app.test_client()
    base = demo_job(app, negative_prompt="fog", cfg_scale="5",
                    sd_model_checkpoint="demo-procedural.safetensors [d3m0000001]")
    # One click from the result.
    panel = client.get(f"/jobs/{base.id}/panel").get_data(as_text=True)
    assert f'href="/compare/new?job={base.id}"' in panel

    setup = client.get(f"/compare/new?job={base.id}").get_data(as_text=True)
    assert "a lighthouse at dawn" in setup and "<legend>ComfyUI" in setup
    models = client.get(f"/compare/models/demo?job={base.id}").get_data(as_text=True)
    assert 'value="demo|demo-pastel.safetensors"' in models
    assert re.search(r"demo-procedural\s*<span class=\"meta\">\(this job's\)", models)
    comfy = client.get(f"/compare/models/comfyui?job={base.id}").get_data(as_text=True)
    ckpts = re.findall(r'value="comfyui\|([^"]+)"', comfy)
    assert ckpts and 'value="comfyui"' not in comfy  # its checkpoint is required: no "own"

    r, location = started(client, base.id, "demo|demo-pastel.safetensors", f"comfyui|{ckpts[0]}")
    assert r.status_code == 303 and location.startswith("/compare?jobs=")
    ids = location.split("=", 1)[1].split(",")
    assert ids[0] == base.id and len(ids) == 3
    jobs = [app.extensions["webui"].jobs.get(i) for i in ids[1:]]
    for job in jobs:
        assert job.done.wait(30) and job.status == "done", job.error

    pastel, comfyui = jobs
    # Same definition: every field carries over, the checkpoint is the one ticked.
    assert pastel.service.id == "demo" and pastel.values["sd_model_checkpoint"] == (
        "demo-pastel.safetensors")
    assert (pastel.values["negative_prompt"], pastel.values["cfg_scale"]) == ("fog", 5.0)
    assert pastel.values["seed"] == 42
    # Another kind of service: by role (prompt, negative, seed, size) and plain fields of the
    # same name (steps); cfg_scale is not ComfyUI's cfg, which keeps its default.
    graph = sent(fakes, "comfyui", "/prompt")[-1]["json"]["prompt"]
    assert graph["6"]["inputs"]["text"] == "a lighthouse at dawn"
    assert graph["7"]["inputs"]["text"] == "fog"
    assert graph["3"]["inputs"]["seed"] == 42 and graph["3"]["inputs"]["steps"] == 3
    assert graph["3"]["inputs"]["cfg"] == 7
    assert graph["5"]["inputs"]["width"] == 64 and graph["4"]["inputs"]["ckpt_name"] == ckpts[0]

    page = client.get(location).get_data(as_text=True)
    labels = re.findall(r'<h2 id="cell-\d+" class="cell-label">([^<]+)</h2>', page)
    assert labels == ["A1111 demo · demo-procedural.safetensors [d3m0000001]",
                      "A1111 demo · demo-pastel.safetensors", f"ComfyUI · {ckpts[0]}"]
    assert page.count('<figure') == 3  # each cell shows its job's image


def test_the_cells_fill_in_while_they_run(make_settings):
    # A demo backend taking 0.2 s a step: the page is shown while the cell still runs, and the
    # cell is the job's own panel, which follows the job by itself.
    from webui.demo import create_demo_app

    from .helpers import ServerThread

    slow = ServerThread(create_demo_app(step_delay=0.2))
    try:
        app = create_app(make_settings(extras=[demo_extra(slow.url)]))
        client = app.test_client()
        base = demo_job(app, steps="10")
        r, location = started(client, base.id, "demo|demo-pastel.safetensors")
        page = client.get(location).get_data(as_text=True)
        cell = app.extensions["webui"].jobs.get(location.split(",")[1])
        assert cell.status in ("queued", "running")
        assert f'hx-get="/jobs/{cell.id}/update?' in page  # it asks what changed
        assert cell.done.wait(30)
        assert "1 image" in client.get(f"/jobs/{cell.id}/panel").get_data(as_text=True)
    finally:
        slow.stop()


def test_nothing_is_queued_when_a_cell_does_not_check_out(compare_app):
    app, client = compare_app, compare_app.test_client()
    base = demo_job(app)
    before = len(app.extensions["webui"].history.page().items)
    r, _ = started(client, base.id, "demo|no-such-model.safetensors", "demo")
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "Nothing was started." in html
    assert ("A1111 demo · no-such-model.safetensors: Checkpoint &#39;no-such-model.safetensors"
            "&#39; is not one of the choices offered by the backend now") in html
    # The boxes ticked stay ticked.
    assert 'value="demo" checked' in html
    r, _ = started(client, base.id)
    assert r.status_code == 422 and "Tick at least one" in r.get_data(as_text=True)
    wait_for(lambda: all(not j.active for j in app.extensions["webui"].jobs._jobs.values()),
             what="no job running")
    assert len(app.extensions["webui"].history.page().items) == before


def test_a_seed_the_other_service_cannot_take_stays_random(compare_app):
    app, client = compare_app, compare_app.test_client()
    r = submit(client, "/services/comfyui/txt2img/generate", data={
        "prompt": "a fox", "ckpt_name": "sd15-demo.safetensors", "sampler_name": "euler",
        "scheduler": "normal", "steps": "2", "cfg": "7", "width": "64", "height": "64",
        "batch_size": "1", "seed": str(2**40), "lora_strength": "1"})
    assert r.status_code == 200, r.html
    _, location = started(client, r.job.id, "demo")
    cell = app.extensions["webui"].jobs.get(location.split(",")[1])
    assert cell.done.wait(30) and cell.status == "done", cell.error
    assert cell.values["seed"] == -1 and cell.values["prompt"] == "a fox"
    assert (cell.values["width"], cell.values["steps"]) == (64, 2)


def test_image_jobs_and_unknown_jobs_are_not_compared(compare_app):
    client = compare_app.test_client()
    data = form(width="64", height="64", steps="2", denoising_strength="0.5", resize_mode="0")
    data.pop("hr_upscaler")
    r = submit(client, "/services/demo/img2img/generate", data={**data, "prompt": "x"},
               content_type="multipart/form-data")
    assert r.status_code == 422  # no input image: nothing made
    import io

    r = submit(client, "/services/demo/img2img/generate",
               data={**data, "prompt": "x", "init_image": (io.BytesIO(image_bytes()), "in.png")},
               content_type="multipart/form-data")
    assert r.status_code == 200, r.html
    assert "/compare/new" not in r.html  # no Compare under an img2img result
    answer = client.get(f"/compare/new?job={r.job.id}")
    assert answer.status_code == 404 and "take an input image" in answer.get_data(True)
    assert client.get("/compare/new?job=nope").status_code == 404
    assert client.get("/compare").status_code == 404


def test_a_comparison_survives_a_restart(compare_app, make_settings, demo_server, fakes):
    base = demo_job(compare_app)
    _, location = started(compare_app.test_client(), base.id, "demo|demo-pastel.safetensors")
    cell = compare_app.extensions["webui"].jobs.get(location.split(",")[1])
    assert cell.done.wait(30)
    restarted = create_app(make_settings(extras=[demo_extra(demo_server.url)]))
    page = restarted.test_client().get(location).get_data(as_text=True)
    assert "A1111 demo · demo-pastel.safetensors" in page
    assert page.count('href="/gallery/') == 2  # both jobs' images, from the history

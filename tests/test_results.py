"""Results you can act on, without a browser: which image of a batch is which (seed, image i of
n, what Skip or Interrupt cut short), the actions under a result for every service, the image
page's labelled values and neighbours, the gallery's filtered count and the queue page."""

from __future__ import annotations

import re
from html import unescape

import pytest

from webui import create_app, expr
from webui.demo import create_demo_app
from webui.history import ImageRecord, JobRecord
from webui.jobs import Job, Progress, _progress

from .helpers import HX, ServerThread, demo_extra, form, image_bytes, job_in, submit, wait_for


def _text(html: str) -> str:
    """The visible text of some HTML, on one line."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


@pytest.fixture
def slow_demo(make_settings):
    """webui on a demo whose every step takes 30 ms: a job runs long enough to act on it."""
    demo = ServerThread(create_demo_app(step_delay=0.03))
    app = create_app(make_settings(extras=[demo_extra(demo.url)]))
    yield app
    demo.stop()


def _start(client, **fields: str) -> Job:
    response = client.post("/services/demo/txt2img/generate", headers=HX,
                           data=form(**{"width": "64", "height": "64", **fields}))
    assert response.status_code == 202, response.get_data(as_text=True)
    return job_in(client, response.get_data(as_text=True))


# -- a batch says which image is which ---------------------------------------------------------

def test_each_image_of_a_batch_says_which_it_is_and_its_seed(demo_app):
    client = demo_app.test_client()
    done = submit(client, "/services/demo/txt2img/generate",
                  data=form(width="64", height="64", batch_size="2", n_iter="2", seed="500"))
    text = _text(done.html)
    for i, seed in enumerate(range(500, 504), start=1):
        assert f"Image {i} of 4 Seed {seed}" in text
    assert "Skipped" not in text and "Not made" not in text


def test_skip_marks_the_image_it_cut_short(slow_demo):
    client = slow_demo.test_client()
    job = _start(client, steps="40", n_iter="3")
    # Skip while the second of three batches is being made (A1111's state.job_no 1 of 3).
    wait_for(lambda: job.progress.batch == (1, 3) and job.progress.step, what="batch 2")
    client.post(f"/jobs/{job.id}/skip", headers=HX)
    assert job.done.wait(30) and job.status == "done"
    figures = re.findall(r"<figure.*?</figure>", client.get(f"/jobs/{job.id}/panel")
                         .get_data(as_text=True), re.S)
    assert len(figures) == 3
    assert "Skipped: made only as far as it got" in _text(figures[1])
    assert "Image 2 of 3" in _text(figures[1])
    assert "Skipped" not in _text(figures[0]) + _text(figures[2])


def test_an_interrupted_batch_says_which_images_were_not_made(slow_demo):
    client = slow_demo.test_client()
    job = _start(client, steps="40", n_iter="4")
    wait_for(lambda: job.progress.batch == (1, 4) and job.progress.step, what="batch 2")
    client.post(f"/jobs/{job.id}/interrupt", headers=HX)
    assert job.done.wait(30) and job.status == "interrupted"
    # A1111 returns the batches made and the one it was making, as far as it got.
    assert len(job.images) == 2
    text = _text(client.get(f"/jobs/{job.id}/panel").get_data(as_text=True))
    assert "Image 2 of 4" in text and "Interrupted: made only as far as it got" in text
    assert text.count("Not made: the job was interrupted") == 2
    assert "Image 4 of 4 Not made" in text


def test_the_batch_being_made_follows_the_progress_answer(app):
    """A1111 counts batches in state.job_no of state.job_count; with hires fix each batch is
    two passes (job_count = 2 x n_iter: modules/processing.py), so the count is scaled."""
    service = app.extensions["webui"].folders.catalog().get("a1111")
    spec = service.definition.jobs.progress
    answer = {"state": {"sampling_step": 3, "sampling_steps": 20, "job_no": 3, "job_count": 4}}
    job = Job(service, service.definition.modes["txt2img"], {"batch_size": 3, "n_iter": 2})
    assert job.asked == 6
    job.progress = _progress(spec, answer, Progress(), expr.Context({}))
    assert job.progress.batch == (3, 4)
    assert job.images_being_made() == range(3, 6)  # the second batch's hires pass
    job.progress = Progress(batch=(1, 2))  # without hires fix
    assert job.images_being_made() == range(3, 6)
    job.progress = Progress(batch=(0, 3))  # a count that fits no batch count: not known
    assert job.images_being_made() is None
    job.progress = Progress(batch=(2, 2))  # after the last batch (state.nextjob())
    assert job.images_being_made() is None


# -- the actions under a result, for every service ----------------------------------------------

def _record(app, service_id: str, mode: str = "txt2img", *, prompt: str = "a kite",
            parameters: dict | None = None, seeds: tuple = (11,), created: float = 1000.0,
            job_id: str | None = None) -> JobRecord:
    """A finished job of SERVICE_ID in the history, its images real files in the store."""
    st = app.extensions["webui"]
    job_id = job_id or f"{service_id}-{mode}-{created}"
    # Later positions a hair older, as the recorder writes them: a batch in its order.
    images = [ImageRecord(job_id=job_id, position=i, width=48, height=32, seed=seed,
                          path=st.store.save(image_bytes((48, 32)), "png", f"{service_id}-{i}"),
                          created=created - i * 1e-6)
              for i, seed in enumerate(seeds)]
    record = JobRecord(id=job_id, service_id=service_id, service_name=service_id, mode=mode,
                       status="done", prompt=prompt, parameters=parameters or {},
                       created=created, finished=created, images=images)
    st.history.record_job(record)
    return record


SERVICES = ("a1111", "forge", "sdnext", "comfyui", "openai", "stability")


@pytest.mark.parametrize("service_id", SERVICES)
def test_send_to_img2img_and_use_seed_work_for_every_service(services_app, service_id):
    client = services_app.test_client()
    catalog = services_app.extensions["webui"].folders.catalog()
    definition = catalog.get(service_id).definition
    init = next(p for p in definition.modes["img2img"].parameters if p.kind == "init_image")
    seed = next((p for p in definition.modes["txt2img"].parameters if p.kind == "seed"), None)
    image = _record(services_app, service_id, seeds=(4242,)).images[0]
    page = client.get(f"/gallery/{image.id}").get_data(as_text=True)

    send = unescape(re.search(r'href="([^"]+)">Send to img2img', page).group(1))
    form_page = client.get(send).get_data(as_text=True)
    # The image is the input of the field with the init_image role, whatever its key.
    assert f'name="{init.key}__from" value="{image.id}"' in form_page
    assert f'src="/images/{image.path}"' in form_page

    use = re.search(r'href="([^"]+)"\s+data-use-seed="4242" data-for="f-txt2img-(\w+)"', page)
    if seed is None:
        assert use is None and "Use seed" not in page
        return
    assert use.group(2) == seed.key
    form_page = client.get(unescape(use.group(1))).get_data(as_text=True)
    assert (f'id="use-seed" data-for="f-txt2img-{seed.key}" data-use-seed="4242"'
            in form_page)
    # Without JavaScript too, the field holds it; the rest is not taken from the image.
    assert re.search(rf'id="f-txt2img-{seed.key}"[^>]*?value="4242"', form_page, re.S)
    assert "data-prefilled" not in form_page


@pytest.mark.parametrize("service_id", SERVICES)
def test_upscale_is_offered_where_the_definition_has_an_upscale_mode(services_app, service_id):
    client = services_app.test_client()
    definition = services_app.extensions["webui"].folders.catalog().get(service_id).definition
    image = _record(services_app, service_id).images[0]
    page = client.get(f"/gallery/{image.id}").get_data(as_text=True)
    found = re.search(r'href="([^"]+)">Upscale</a>', page)
    if "upscale" not in definition.modes:
        assert found is None
        return
    # The image alone goes (an upscale has none of the txt2img parameters).
    assert unescape(found.group(1)) == f"/services/{service_id}/upscale?init={image.id}"
    form_page = client.get(unescape(found.group(1))).get_data(as_text=True)
    field = definition.modes["upscale"].by_role("init_image")
    assert f'name="{field.key}__from" value="{image.id}"' in form_page
    # Send to img2img still goes to img2img, not to the other mode with an input image.
    send = unescape(re.search(r'href="([^"]+)">Send to img2img', page).group(1))
    assert send.startswith(f"/services/{service_id}/img2img?")


def test_a_service_whose_only_input_image_mode_is_upscale_offers_upscale_alone(make_settings,
                                                                                tmp_path):
    import json

    from .helpers import minimal

    folder = tmp_path / "defs"
    folder.mkdir()
    tiny = minimal()
    generation = tiny["capabilities"][1]
    generation["endpoints"]["upscale"] = generation["endpoints"].pop("img2img")
    generation["parameters"]["upscale"] = [{"key": "picture", "type": "image", "required": True}]
    del generation["parameters"]["img2img"]
    (folder / "tiny.json").write_text(json.dumps(tiny))
    app = create_app(make_settings(extra_definition_dirs=[folder]))
    image = _record(app, "tiny").images[0]
    page = app.test_client().get(f"/gallery/{image.id}").get_data(as_text=True)
    assert "Send to img2img" not in page
    assert f'href="/services/tiny/upscale?init={image.id}">Upscale</a>' in page


def test_a_service_without_an_input_image_mode_offers_no_send_to_img2img(make_settings, tmp_path):
    import json

    from .helpers import minimal

    folder = tmp_path / "defs"
    folder.mkdir()
    tiny = minimal()
    del tiny["capabilities"][1]["parameters"]["img2img"]
    del tiny["capabilities"][1]["endpoints"]["img2img"]
    (folder / "tiny.json").write_text(json.dumps(tiny))
    app = create_app(make_settings(extra_definition_dirs=[folder]))
    image = _record(app, "tiny").images[0]
    page = app.test_client().get(f"/gallery/{image.id}").get_data(as_text=True)
    assert "Reuse parameters" in page and "Send to img2img" not in page


# -- the image page --------------------------------------------------------------------------

def test_the_image_page_labels_its_values_and_shows_the_seed_used(demo_app):
    client = demo_app.test_client()
    done = submit(client, "/services/demo/txt2img/generate",
                  data=form(width="64", height="64", batch_size="2", seed="-1", steps="3",
                            sampler_name="Euler"))
    second = demo_app.extensions["webui"].history.get_job(done.job.id).images[1]
    page = client.get(f"/gallery/{second.id}").get_data(as_text=True)
    rows = dict(re.findall(r'<th scope="row">([^<]*)</th><td>([^<]*)</td>', page))
    assert rows["Sampler"] == "Euler" and rows["Steps"] == "3" and rows["Batch size"] == "2"
    assert rows["Seed"] == str(second.seed) != "-1"  # the seed this image was made with
    assert rows["Hires fix"] == "off"
    assert "sampler_name" not in rows and "Prompt" not in rows
    assert "<h1>Image 2 of 2" in page


def test_prev_next_go_through_the_gallery_and_keep_its_filters(app):
    # Three jobs, the newest a batch of two: the gallery shows b0 b1 a0 c0 (newest first).
    c = _record(app, "a1111", prompt="a red kite", created=100.0)
    a = _record(app, "a1111", prompt="a blue boat", created=200.0)
    b = _record(app, "a1111", prompt="a red boat", seeds=(1, 2), created=300.0)
    client = app.test_client()
    order = [b.images[0], b.images[1], a.images[0], c.images[0]]

    def neighbours(image, query=""):
        page = client.get(f"/gallery/{image.id}{query}").get_data(as_text=True)
        found = dict(re.findall(r'rel="(prev|next)" data-page-nav href="/gallery/(\d+)', page))
        return found.get("prev"), found.get("next"), page

    ids = [str(image.id) for image in order]
    for i, image in enumerate(order):
        prev, nxt, _ = neighbours(image)
        assert prev == (ids[i - 1] if i else None)
        assert nxt == (ids[i + 1] if i + 1 < len(ids) else None)
    # From a search for "red", the neighbours are the red images, and the filter stays on.
    prev, nxt, page = neighbours(b.images[1], "?q=red")
    assert (prev, nxt) == (ids[0], str(c.images[0].id))
    assert f'href="/gallery/{c.images[0].id}?q=red"' in page
    viewer = client.get(f"/gallery/{b.images[1].id}/view?q=red").get_data(as_text=True)
    assert f'data-viewer-go="/gallery/{c.images[0].id}/view?q=red"' in viewer
    assert "Image 2 of 2 · seed 2" in viewer


# -- the gallery ---------------------------------------------------------------------------

def test_the_gallery_count_honours_the_filters(app):
    _record(app, "a1111", prompt="a red kite", created=100.0)
    _record(app, "comfyui", prompt="a red boat", seeds=(1, 2), created=200.0)
    _record(app, "comfyui", prompt="a blue boat", mode="img2img", created=300.0)
    client = app.test_client()
    assert "4 images" in _text(client.get("/gallery").get_data(as_text=True))
    assert "3 of 4 images" in _text(client.get("/gallery?q=red").get_data(as_text=True))
    # Changing the filters (htmx) updates the count with the tiles.
    answer = client.get("/gallery/page?service=comfyui&mode=txt2img", headers=HX)
    html = answer.get_data(as_text=True)
    assert re.search(r'id="gallery-count"[^>]*hx-swap-oob="true"[^>]*>2 of 4 images', html)
    assert "1 of 4 images" in _text(client.get("/gallery/page?q=red&service=a1111")
                                    .get_data(as_text=True))
    history = app.extensions["webui"].history
    assert history.count(query="boat", mode="img2img") == 1
    assert history.count(query="!!") == 4  # no words: no filter, as a page takes it


# -- the queue page --------------------------------------------------------------------------

def test_the_queue_page_lists_running_and_queued_jobs_with_their_actions(slow_demo):
    client = slow_demo.test_client()
    running = _start(client, prompt="a slow comet", steps="150", n_iter="3")
    queued = _start(client, prompt="a waiting lantern", steps="5")
    wait_for(lambda: running.status == "running", what="the first job to start")
    page = client.get("/queue").get_data(as_text=True)
    rows = re.findall(r'<li class="queue-job".*?</li>', page, re.S)
    assert [re.search(r'data-status="(\w+)"', r).group(1) for r in rows] == ["running", "queued"]
    assert "a slow comet" in rows[0] and "a waiting lantern" in rows[1]
    buttons = [re.findall(r'hx-post="/jobs/\w+/(\w+)"', r) for r in rows]
    assert buttons == [["interrupt", "skip"], ["cancel"]]
    assert "position 1 in the queue of A1111 demo" in _text(rows[1])
    # The home page's counts and the site's navigation lead there.
    assert 'href="/queue"' in page  # the navigation
    status = client.get("/services/demo/status").get_data(as_text=True)
    assert re.search(r'<a href="/queue#queue-demo">1 queued</a>', status)
    assert re.search(r'<a href="/queue#queue-demo">1 running</a>', status)

    # A button pressed on the queue page answers with the queue.
    answer = client.post(f"/jobs/{queued.id}/cancel", headers={**HX, "HX-Target": "queue-jobs"})
    html = answer.get_data(as_text=True)
    assert queued.status == "cancelled"
    assert 'id="queue-jobs"' in html and "a waiting lantern" not in html
    assert '<div id="queue-problems" hx-swap-oob="true"></div>' in html
    # What went wrong is said above the list (and stays there while it refreshes).
    again = client.post(f"/jobs/{running.id}/cancel", headers={**HX, "HX-Target": "queue-jobs"})
    assert "a slow comet: The job had already started." in _text(again.get_data(as_text=True))
    assert "queue-problems" not in client.get("/queue/jobs").get_data(as_text=True)

    client.post(f"/jobs/{running.id}/interrupt", headers={**HX, "HX-Target": "queue-jobs"})
    assert running.done.wait(30)
    assert "No job is running or waiting" in client.get("/queue/jobs").get_data(as_text=True)

"""History and gallery wired into the app: jobs recorded with thumbnails, restart persistence,
the image page and its actions, infotext written into every PNG and read back from a drop."""

from __future__ import annotations

import base64
import io
import logging
import random
import re
import threading

from PIL import Image

from webui import create_app
from webui.history import ImageRecord, JobRecord
from webui.images import Thumbnailer
from webui.infotext import read_png_infotext

from .helpers import (
    a1111_response,
    demo_extra,
    fill_gallery,
    form,
    gallery_jobs,
    image_bytes,
    submit,
    wait_for,
)


def make_app(make_settings, demo_server):
    return create_app(make_settings(extras=[demo_extra(demo_server.url)]))


def generate(app, **fields):
    """A job, ended, with its thumbnails made (a second after the end, or at once here)."""
    r = submit(app.test_client(), "/services/demo/txt2img/generate", data=form(**fields))
    assert r.status_code == 200, r.html
    assert app.extensions["webui"].thumbnailer.wait_idle(10)
    return r.job


def only_image(app):
    page = app.extensions["webui"].history.page()
    assert len(page.items) >= 1
    return page.items[0].image


def test_jobs_are_recorded_with_thumbnails_and_survive_a_restart(make_settings, demo_server):
    app = make_app(make_settings, demo_server)
    job = generate(app, prompt="a quiet harbour, dawn", width="96", height="64", seed="7",
                   steps="3")
    history = app.extensions["webui"].history
    record = history.get_job(job.id)
    assert record.status == "done" and record.prompt == "a quiet harbour, dawn"
    assert record.parameters["steps"] == 3 and record.seeds == [7]
    image = only_image(app)
    thumbs = app.extensions["webui"].settings.thumbs_dir
    with Image.open(thumbs / image.thumb_path) as thumb:
        assert thumb.format == "WEBP"
    html = app.test_client().get("/gallery").get_data(as_text=True)
    assert f'href="/gallery/{image.id}"' in html and "a quiet harbour, dawn" in html

    # A new process on the same data folder finds everything again.
    restarted = make_app(make_settings, demo_server)
    client = restarted.test_client()
    assert f'href="/gallery/{image.id}"' in client.get("/gallery").get_data(as_text=True)
    page = client.get(f"/gallery/{image.id}").get_data(as_text=True)
    assert "a quiet harbour, dawn" in page and "seed <code>7</code>" in page
    assert f"/services/demo/txt2img?from={image.id}" in page
    assert f"init={image.id}" in page  # send to img2img


def test_reuse_parameters_fills_the_form(make_settings, demo_server):
    app = make_app(make_settings, demo_server)
    generate(app, prompt="lanterns <b>&</b> rain", steps="7", cfg_scale="5.5", seed="-1",
             width="64", height="64")
    image = only_image(app)
    html = app.test_client().get(f"/services/demo/txt2img?from={image.id}").get_data(True)
    assert "data-prefilled" in html
    assert ">lanterns &lt;b&gt;&amp;&lt;/b&gt; rain</textarea>" in html
    assert 'name="steps"' in html and 'value="7"' in html and 'value="5.5"' in html
    # The seed of that image, not the -1 it was asked with.
    assert f'value="{image.seed}"' in html and image.seed >= 0


def test_send_to_img2img_uses_the_stored_image(make_settings, demo_server):
    app = make_app(make_settings, demo_server)
    generate(app, prompt="a red door", width="64", height="64", steps="2")
    image = only_image(app)
    client = app.test_client()
    page = client.get(f"/services/demo/img2img?init={image.id}&from={image.id}").get_data(True)
    assert f'name="init_image__from" value="{image.id}"' in page
    data = form(width="64", height="64", steps="2", denoising_strength="0", resize_mode="0")
    data.pop("hr_upscaler")
    r = submit(client, "/services/demo/img2img/generate",
               data={**data, "prompt": "a red door", "init_image__from": str(image.id)})
    assert r.status_code == 200, r.html
    store = app.extensions["webui"].store
    with Image.open(store.path(image.path)) as a, Image.open(store.path(r.job.images[0].path)) as b:
        # denoising 0 keeps the init image: the result is the stored image again
        assert a.convert("RGB").getpixel((32, 32)) == b.convert("RGB").getpixel((32, 32))
    bad = submit(client, "/services/demo/img2img/generate",
                 data={**data, "prompt": "x", "init_image__from": "999999"})
    assert "no longer in the history" in bad.html


def test_a_job_is_shown_ended_before_its_thumbnails_which_the_gallery_then_asks_for(
        make_settings, demo_server):
    """Thumbnails are made after the job is shown ended (only the gallery needs them); a
    gallery shown before then has the picture itself, and has the thumbnail made at once."""
    app = make_app(make_settings, demo_server)
    thumbnailer = app.extensions["webui"].thumbnailer
    thumbnailer.delay = 600  # "later" is after this test
    r = submit(app.test_client(), "/services/demo/txt2img/generate",
               data=form(prompt="a kite", width="64", height="64", steps="2"))
    assert r.status_code == 200 and r.job.status == "done"
    image = only_image(app)
    thumbs = app.extensions["webui"].settings.thumbs_dir
    assert image.thumb_path and not (thumbs / image.thumb_path).exists()

    client = app.test_client()
    html = client.get("/gallery").get_data(as_text=True)
    assert f'src="/images/{image.path}"' in html and "/thumbs/" not in html
    wait_for(lambda: (thumbs / image.thumb_path).is_file(), timeout=10,
             what="the thumbnail the gallery asked for")
    html = client.get("/gallery").get_data(as_text=True)
    assert f"/thumbs/{image.thumb_path}" in html


def test_thumbnailer_makes_each_once_later_and_none_of_a_deleted_image(tmp_path, caplog):
    picture = tmp_path / "a.png"
    Image.new("RGB", (512, 256), "teal").save(picture)
    thumbs = tmp_path / "thumbs"
    thumbnailer = Thumbnailer(thumbs, delay=0.3)
    thumbnailer.request(picture, "a.png.webp")
    thumbnailer.request(picture, "a.png.webp")  # asked twice
    assert not (thumbs / "a.png.webp").exists()  # not before the delay
    assert thumbnailer.wait_idle(10)
    with Image.open(thumbs / "a.png.webp") as made:
        assert made.size == (384, 192)
    assert (thumbs / "a.png.256.webp").is_file()

    gone = tmp_path / "gone.png"
    thumbnailer.request(gone, "gone.png.webp", now=True)
    assert thumbnailer.wait_idle(10)
    assert not (thumbs / "gone.png.webp").exists()
    # A picture that cannot be read is not tried again each time the gallery is shown.
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    with caplog.at_level(logging.WARNING, logger="webui.images"):
        for _ in range(3):
            thumbnailer.request(broken, "broken.png.webp", now=True)
            assert thumbnailer.wait_idle(10)
    assert len([r for r in caplog.records if "broken.png" in r.getMessage()]) == 1


def test_thumbnails_wait_while_jobs_run_but_not_when_wanted_now_or_too_long(tmp_path):
    picture = tmp_path / "a.png"
    Image.new("RGB", (64, 64), "teal").save(picture)
    thumbs = tmp_path / "thumbs"
    jobs_running = threading.Event()
    jobs_running.set()
    thumbnailer = Thumbnailer(thumbs, delay=0.0, busy=jobs_running.is_set, longest=600)
    thumbnailer.request(picture, "a.png.webp")
    thumbnailer.request(picture, "b.png.webp")
    # The thread has looked, and waits: a job has the machine.
    wait_for(lambda: thumbnailer._thread is not None and thumbnailer._cond._waiters,
             what="the thumbnailer to wait")
    assert not (thumbs / "a.png.webp").exists()
    thumbnailer.request(picture, "b.png.webp", now=True)  # the gallery wants it
    wait_for(lambda: (thumbs / "b.png.webp").is_file(), what="the wanted thumbnail")
    assert not (thumbs / "a.png.webp").exists()
    jobs_running.clear()  # the jobs ended
    wait_for(lambda: (thumbs / "a.png.webp").is_file(), what="the thumbnail after the jobs")

    late = Thumbnailer(thumbs, delay=0.0, busy=lambda: True, longest=0.3)
    late.request(picture, "c.png.webp")  # busy for ever: made once asked 0.3 s ago
    wait_for(lambda: (thumbs / "c.png.webp").is_file(), what="a thumbnail kept waiting long")


def test_delete_and_missing_files(make_settings, demo_server):
    app = make_app(make_settings, demo_server)
    generate(app, prompt="one", width="64", height="64", steps="2")
    generate(app, prompt="two", width="64", height="64", steps="2")
    history = app.extensions["webui"].history
    store = app.extensions["webui"].store
    thumbs = app.extensions["webui"].settings.thumbs_dir
    first, second = [item.image for item in history.page().items]
    client = app.test_client()

    r = client.delete(f"/gallery/{first.id}")
    assert r.status_code == 204 and r.headers["HX-Redirect"] == "/gallery"
    assert not store.path(first.path).exists() and not (thumbs / first.thumb_path).exists()
    assert history.get_image(first.id) is None
    assert client.get(f"/gallery/{first.id}").status_code == 404

    # A file gone from disk is shown as missing, not a crash.
    store.path(second.path).unlink()
    (thumbs / second.thumb_path).unlink()
    page = client.get(f"/gallery/{second.id}")
    assert page.status_code == 200 and "is missing from the images folder" in page.get_data(True)
    assert "image file missing" in client.get("/gallery").get_data(as_text=True)


def test_every_saved_png_carries_infotext(make_settings, demo_server):
    app = make_app(make_settings, demo_server)
    job = generate(app, prompt='a "quoted", odd: prompt', width="64", height="64", seed="11",
                   steps="2")
    data = app.extensions["webui"].store.path(job.images[0].path).read_bytes()
    text = read_png_infotext(data)
    # The demo writes its own (like A1111): kept as it is.
    assert text.startswith('a "quoted", odd: prompt\n') and "Model: demo-procedural" in text


def test_infotext_written_when_the_backend_writes_none(make_settings, tmp_path):
    import responses as responses_lib

    app = create_app(make_settings(url_overrides={"stability": "http://stab.test"}))
    png = image_bytes((32, 32), (1, 2, 3))
    with responses_lib.RequestsMock() as mock:
        mock.get("http://stab.test/v1/user/account", json={"id": "x"})
        mock.post("http://stab.test/v2beta/stable-image/generate/sd3", body=png,
                  headers={"seed": "4242", "finish-reason": "SUCCESS"},
                  content_type="image/png")
        import os

        os.environ["STABILITY_API_KEY"] = "sk-x"
        try:
            r = submit(app.test_client(), "/services/stability/txt2img/generate", data={
                "prompt": "a lake, at night", "model": "sd3.5-large", "aspect_ratio": "1:1",
                "output_format": "png", "seed": "4242"})
        finally:
            del os.environ["STABILITY_API_KEY"]
    assert r.status_code == 200, r.html
    saved = app.extensions["webui"].store.path(r.job.images[0].path).read_bytes()
    text = read_png_infotext(saved)
    assert text.startswith('"a lake, at night"') or text.startswith("a lake, at night")
    assert "Seed: 4242" in text
    assert "Generation info" in r.html


def test_dropped_png_fills_matching_fields(client):
    png = base64.b64decode(a1111_response("txt2img-200")["images"][0])
    r = client.post("/services/a1111/txt2img/read-image",
                    data={"image": (io.BytesIO(png), "from-a1111.png")},
                    content_type="multipart/form-data")
    values = r.get_json()["values"]
    assert values["prompt"] == "a cat"
    # In each field's type, as the form shows them.
    assert (values["steps"], values["sampler_name"], values["seed"]) == (1, "Euler", 1)
    assert (values["width"], values["height"], values["cfg_scale"]) == (64, 64, 7.0)
    r = client.post("/services/a1111/txt2img/read-image",
                    data={"image": (io.BytesIO(b"not an image"), "x.png")},
                    content_type="multipart/form-data")
    assert r.get_json()["error"] == "This image carries no generation parameters."


def test_gallery_filters_search_and_pages(app):
    history = app.extensions["webui"].history
    jobs = []
    for i in range(120):
        service = "a1111" if i % 2 else "comfyui"
        jobs.append(JobRecord(
            id=f"{i:032x}", service_id=service, service_name=service.upper(),
            mode="txt2img" if i % 3 else "img2img", status="done",
            prompt=f"{'red' if i % 5 == 0 else 'blue'} lighthouse number {i}",
            created=1000.0 + i, finished=1000.0 + i,
            images=[ImageRecord(job_id=f"{i:032x}", position=0, path=f"x/{i}.png",
                                created=1000.0 + i)]))
    history.record_jobs(jobs)
    client = app.test_client()
    html = client.get("/gallery").get_data(as_text=True)
    assert html.count('class="tile"') == 60
    assert "lighthouse number 119" in html and "lighthouse number 59" not in html
    more = re.search(r'hx-get="([^"]+)" hx-trigger="revealed', html).group(1).replace("&amp;", "&")
    nxt = client.get(more).get_data(as_text=True)
    assert "lighthouse number 59" in nxt and "lighthouse number 119" not in nxt
    red = client.get("/gallery/page?q=red&service=comfyui")
    assert red.headers["HX-Push-Url"] == "/gallery?service=comfyui&q=red"
    found = set(re.findall(r"lighthouse number (\d+)", red.get_data(as_text=True)))
    assert found and all(int(n) % 5 == 0 and int(n) % 2 == 0 for n in found)
    assert len(found) == 12
    hostile = client.get('/gallery/page?q=%22unbalanced+AND+OR+(').status_code
    assert hostile == 200


def tiles(html: str) -> list[str]:
    return re.findall(r'data-image="(\d+)"', html)


def link(html: str, pattern: str) -> str:
    return re.search(pattern, html).group(1).replace("&amp;", "&")


def test_gallery_pages_without_javascript_asked_again_and_sized_thumbnails(app, tmp_path):
    settings = app.extensions["webui"].settings
    pictures = []
    for n, size in enumerate([(512, 512), (768, 512)]):
        pictures.append(tmp_path / f"p{n}.png")
        pictures[-1].write_bytes(image_bytes(size))
    fill_gallery(app.extensions["webui"].history, gallery_jobs(130, random.Random(3)), pictures,
                 settings.images_dir, settings.thumbs_dir)
    client = app.test_client()
    first = client.get("/gallery").get_data(as_text=True)
    assert len(tiles(first)) == 60 and "Newer images" not in first
    # Each tile: the two thumbnails (256 and 384 px) for the browser to choose from, the
    # picture's size, loaded when near and decoded off the main thread.
    img = re.search(r"<img [^>]+>", first).group(0)
    assert re.search(r'srcset="/thumbs/\S+\.256\.webp 256w, /thumbs/\S+\.webp 384w"', img)
    assert 'loading="lazy"' in img and 'decoding="async"' in img
    assert re.search(r'width="(512|768)" height="512"', img)
    small = link(img, r'srcset="(\S+)')
    with Image.open(io.BytesIO(client.get(small).data)) as thumb:
        assert max(thumb.size) == 256
    # A small thumbnail not there (an image recorded before there were any) is made once asked.
    made = settings.thumbs_dir / small.removeprefix("/thumbs/")
    made.unlink()
    with Image.open(io.BytesIO(client.get(small).data)) as thumb:
        assert max(thumb.size) == 256 and made.is_file()

    # Without JavaScript: Older / Newer links through plain pages.
    second = client.get(link(first, r'class="more" href="([^"]+)"')).get_data(as_text=True)
    third = client.get(link(second, r'class="more" href="([^"]+)"')).get_data(as_text=True)
    assert len(tiles(second)) == 60 and len(tiles(third)) == 10
    assert not set(tiles(first)) & set(tiles(second)) and 'class="more" href' not in third
    back = client.get(link(third, r'class="more newer" href="([^"]+)"')).get_data(as_text=True)
    assert tiles(back) == tiles(second)
    top = client.get(link(back, r'class="more newer" href="([^"]+)"')).get_data(as_text=True)
    assert tiles(top) == tiles(first) and "Newer images" not in top

    # A page asked again from its own address (as app.js does when it comes back into view)
    # has the same tiles, though newer images came in since.
    own = link(second, r'class="gallery-page" hx-get="([^"]+)"')
    plain = link(second, r'data-plain="([^"]+)"')  # the same as a whole page (keyboard's link)
    later = gallery_jobs(1, random.Random(4))
    later[0].id = later[0].images[0].job_id = "f" * 32
    fill_gallery(app.extensions["webui"].history, later, pictures[:1],
                 settings.images_dir / "later", settings.thumbs_dir / "later")
    assert tiles(client.get("/gallery").get_data(as_text=True))[1:] == tiles(first)[:-1]
    assert tiles(client.get(own).get_data(as_text=True)) == tiles(second)
    assert tiles(client.get(plain).get_data(as_text=True)) == tiles(second)


def test_broken_history_file_does_not_stop_webui(make_settings, demo_server):
    settings = make_settings(extras=[demo_extra(demo_server.url)])
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.history_file.write_bytes(b"this is not a database" * 100)
    app = create_app(settings)
    client = app.test_client()
    r = client.get("/gallery")
    assert r.status_code == 503 and "history cannot be used" in r.get_data(as_text=True)
    job = submit(client, "/services/demo/txt2img/generate",
                 data=form(width="64", height="64", steps="2"))
    assert job.status_code == 200  # generating still works


def test_job_page_after_a_restart_leads_to_the_gallery(make_settings, demo_server):
    app = make_app(make_settings, demo_server)
    job = generate(app, prompt="kept", width="64", height="64", steps="2")
    restarted = make_app(make_settings, demo_server).test_client()
    r = restarted.get(f"/jobs/{job.id}")
    image = only_image(app)
    assert r.status_code == 302 and r.headers["Location"] == f"/gallery/{image.id}"

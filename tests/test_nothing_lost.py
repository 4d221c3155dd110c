"""Nothing lost: jobs are in the history from the moment they are queued, so a webui killed with
``kill -9`` comes back with its finished work, marks what was cut short, runs what waited
(never sending again a request that may have reached the backend) and recovers image files
without a row; a full disk is said as such; input images wait on disk, not in memory; and bad
input gets a field error or a 404, never a 500."""

from __future__ import annotations

import errno
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from flask import request

from webui import create_app, images
from webui.demo import create_demo_app
from webui.history import HistoryStore

from .helpers import (
    HX,
    ServerThread,
    demo_extra,
    field_errors,
    form,
    free_port,
    image_bytes,
    serving,
    submit,
    wait_for,
)


def recording_demo(step_delay: float) -> ServerThread:
    """The demo backend, remembering the prompt of every generation request it got."""
    app = create_demo_app(step_delay=step_delay)
    app.config["PROMPTS"] = []

    @app.before_request
    def remember() -> None:
        if request.path.endswith(("/txt2img", "/img2img")):
            app.config["PROMPTS"].append((request.get_json(silent=True) or {}).get("prompt"))

    return ServerThread(app)


def start_webui(data: Path, demo_url: str, port: int) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "webui"
    return subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--data-dir", str(data), "--no-demo",
         "--url", f"a1111={demo_url}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def post(base: str, mode: str = "txt2img", files=None, **fields) -> str:
    data = {"prompt": "x", "steps": "2", "width": "64", "height": "64", **fields}
    r = requests.post(f"{base}/services/a1111/{mode}/generate", data=data, files=files,
                      headers=HX, timeout=10)
    assert r.status_code == 202, r.text
    return re.search(r'id="job-([0-9a-f]{32})"', r.text).group(1)


def status(base: str, job_id: str) -> str:
    panel = requests.get(f"{base}/jobs/{job_id}/panel", timeout=10).text
    return re.search(r'data-status="(\w+)"', panel).group(1)


def test_kill_9_loses_nothing(tmp_path):
    data = tmp_path / "data"
    demo = recording_demo(step_delay=0.02)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_webui(data, demo.url, port)
    try:
        wait_for(lambda: serving(base + "/"), timeout=30, what="webui to answer")
        done = post(base, prompt="finished before the crash")
        wait_for(lambda: status(base, done) == "done", what="the first job to finish")
        cut = post(base, prompt="cut short", steps="150")
        waiting = post(base, prompt="waiting in the queue")
        upload = post(base, "img2img", prompt="an upload waiting",
                      files={"init_image": ("in.png", image_bytes((64, 64)), "image/png")})
        wait_for(lambda: status(base, cut) == "running", what="the long job to run")
        # Its request has reached the backend (running: it may be just about to be sent).
        wait_for(lambda: "cut short" in demo.server.app.config["PROMPTS"],
                 what="the long job's request to reach the backend")
        assert status(base, waiting) == "queued" and status(base, upload) == "queued"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # A file webui wrote and had no time to record (it died in between).
        orphan = data / "images" / "2026-01-01" / "101010-a1111-txt2img-5-abcdef.png"
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(image_bytes((32, 32)))

        proc = start_webui(data, demo.url, port)
        wait_for(lambda: serving(base + "/"), timeout=30, what="webui to come back")
        history = HistoryStore(data / "history.sqlite3")
        assert history.get_job(done).status == "done" and history.get_job(done).images
        cut_record = history.get_job(cut)
        assert cut_record.status == "interrupted"
        assert "was not sent again" in cut_record.error
        # The waiting jobs run now, the upload read back from disk.
        wait_for(lambda: history.get_job(waiting).status == "done", timeout=30,
                 what="the waiting job to run after the restart")
        wait_for(lambda: history.get_job(upload).status == "done", timeout=30,
                 what="the waiting img2img job to run after the restart")
        assert len(history.get_job(upload).images) == 1
        # The job cut short was never sent a second time.
        assert demo.server.app.config["PROMPTS"].count("cut short") == 1
        # Its page, and the recovered file, are there.
        assert "was not sent again" in requests.get(f"{base}/jobs/{cut}", timeout=10).text
        gallery = requests.get(f"{base}/gallery", timeout=10).text
        assert "Recovered after a restart" in gallery
        assert not list((data / "uploads").iterdir())  # input images leave with their jobs
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        demo.stop()



def test_a_full_disk_is_said_and_recorded(make_settings, demo_server, monkeypatch):
    app = create_app(make_settings(extras=[demo_extra(demo_server.url)]))
    client = app.test_client()

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images, "write_atomic", full)
    r = submit(client, "/services/demo/txt2img/generate",
               data={"prompt": "a cat", "steps": "1", "width": "64", "height": "64"})
    assert r.job.status == "failed"
    assert "is full" in r.job.error and str(app.extensions["webui"].settings.images_dir) in (
        r.job.error)
    assert "is full" in r.html
    record = app.extensions["webui"].history.get_job(r.job.id)
    assert record.status == "failed" and "is full" in record.error


def test_input_images_wait_on_disk_not_in_memory(make_settings, demo_server):
    app = create_app(make_settings(extras=[demo_extra(demo_server.url)]))
    client = app.test_client()
    uploads = app.extensions["webui"].settings.uploads_dir
    data = {**form(width="64", height="64", steps="1"),
            "init_image": (io.BytesIO(image_bytes((64, 64))), "in.png")}
    data.pop("hr_upscaler")
    r = client.post("/services/demo/img2img/generate", data=data, headers=HX,
                    content_type="multipart/form-data")
    assert r.status_code == 202
    job = app.extensions["webui"].jobs.get(r.headers["HX-Push-Url"].split("job=")[1])
    kept = job.values["init_image"]
    assert kept.path is not None and kept.path.parent == uploads
    assert kept._data == b""  # the bytes are read from the file when the request is made
    assert job.done.wait(20) and job.status == "done"
    assert not kept.path.exists()


def test_a_huge_prompt_is_a_field_error(demo_app):
    client = demo_app.test_client()
    r = submit(client, "/services/demo/txt2img/generate", data=form(prompt="a" * 2_000_000))
    assert r.status_code == 422
    assert field_errors(r.html)["prompt"].startswith("Prompt is longer than 20000 characters")


def test_odd_ids_are_404_or_ignored_never_500(client):
    assert client.get("/gallery/99999999999999999999999").status_code == 404
    assert client.delete("/gallery/99999999999999999999999").status_code in (404, 405)
    for query in ("from=%C2%B2", "from=99999999999999999999999", "init=%C2%B2",
                  "job=%00%FF"):
        assert client.get(f"/services/a1111/txt2img?{query}").status_code == 200
    assert client.get("/jobs/%C2%B2").status_code == 404


def test_a_history_with_jobs_of_a_removed_service_still_starts(make_settings, tmp_path):
    settings = make_settings()
    app = create_app(settings)
    history = app.extensions["webui"].history
    from webui.history import JobRecord

    history.record_job(JobRecord(id="gone1", service_id="nothere", service_name="Gone",
                                 mode="txt2img", status="queued", created=time.time()))
    app = create_app(make_settings())  # a restart
    record = app.extensions["webui"].history.get_job("gone1")
    assert record.status == "failed" and "no longer loaded" in record.error

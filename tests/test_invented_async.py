"""An asynchronous API unlike any bundled service, described by a definition written here from
docs/definition-format.md alone: its job id goes into the progress, cancel and result calls,
its progress is a percentage, its styles are a nested list, the size is a {w, h} object given
whole or not at all, a priority goes into the query, the results are relative WEBP URLs, and
its token comes from webui-data/secrets.yaml, added while webui runs. Plus a results endpoint
that answers JSON until the image is ready, then the image's bytes (Stability's async style).

The backend (``artjobs_app``) is invented: nothing here is a real service."""

from __future__ import annotations

import io
import itertools
import re
import threading

import pytest
import yaml
from flask import Flask, Response, jsonify, request
from PIL import Image

from webui import create_app

from .helpers import HX, ServerThread, job_in, wait_for

TOKEN = "tok-artjobs-1234"

DEFINITION = {
    "id": "artjobs",
    "name": "ArtJobs",
    "url": "http://placeholder.invalid",
    "authentication": {"type": "bearer", "tokenEnv": "WEBUI_ARTJOBS_TOKEN", "required": True},
    "capabilities": [
        {"capability": "health", "endpoints": {"ping": {"path": "/v1/ping"}}},
        {
            "capability": "image_generation",
            "endpoints": {
                "txt2img": {
                    "steps": [
                        {"name": "create", "method": "POST", "path": "/v1/jobs",
                         "body": {"input": {}}, "save": {"job_id": "job.id"}},
                        {"name": "watch", "path": "/v1/jobs/{job_id}",
                         "poll": {"until": "job.status == 'done'", "every": 0.05,
                                  "timeout": 30,
                                  "failWhen": "job.status == 'cancelled' && 'cancelled'"}},
                    ],
                    "result": {"images": "job.files[].href", "as": "url",
                               "seeds": "job.files[].seed"},
                },
                "getStyles": {"path": "/v1/styles"},
                "getJob": {"path": "/v1/jobs/{job_id}"},
                "cancel": {"method": "POST", "path": "/v1/jobs/{job_id}/cancel",
                           "headers": {"Idempotency-Key": "cancel-{job_id}"}},
            },
            "jobs": {
                "progress": {"endpoint": "getJob", "every": 0.05,
                             "value": "[job.percent, `100`]"},
                "interrupt": "cancel",
            },
            "parameters": {
                "txt2img": [
                    {"key": "text", "label": "Describe it", "type": "textarea",
                     "required": True, "role": "prompt", "target": "create:input.text"},
                    {"key": "style", "type": "select", "optionsEndpoint": "getStyles",
                     "optionsPath": "groups[].styles[]", "optionsValueKey": "id",
                     "optionsLabelKey": "title", "target": "create:input.style"},
                    {"key": "w", "label": "Width", "type": "integer", "range": [16, 256],
                     "role": "width", "together": ["h"], "target": "create:input.size.w"},
                    {"key": "h", "label": "Height", "type": "integer", "range": [16, 256],
                     "role": "height", "together": ["w"], "target": "create:input.size.h"},
                    {"key": "priority", "type": "select", "options": ["low", "high"],
                     "target": "create:query:priority"},
                    {"key": "slow", "type": "boolean", "target": "create:input.slow"},
                ],
            },
        },
    ],
}


def artjobs_app() -> Flask:
    """Jobs advance 10 % per poll of any job (a "slow" one 1 %); images are WEBP files served
    at relative URLs; every call but the files needs the bearer token."""
    app = Flask(__name__)
    jobs: dict[str, dict] = {}
    counter = itertools.count(1)
    lock = threading.Lock()
    app.config.update(CREATED=[], CANCELLED=[], SEEN_TOKENS=[])

    @app.before_request
    def auth():
        app.config["SEEN_TOKENS"].append(request.headers.get("Authorization"))
        if request.path.startswith("/files/"):
            return None
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return jsonify({"message": "bad token"}), 401
        return None

    @app.get("/v1/ping")
    def ping():
        return jsonify({"ok": True})

    @app.get("/v1/styles")
    def styles():
        return jsonify({"groups": [
            {"name": "Paint", "styles": [{"id": "oil", "title": "Oil"},
                                         {"id": "ink", "title": "Ink wash"}]},
            {"name": "Photo", "styles": [{"id": "film", "title": "Film"}]}]})

    @app.post("/v1/jobs")
    def create():
        body = request.get_json()
        app.config["CREATED"].append({"body": body, "query": request.args.to_dict()})
        job_id = f"j{next(counter)}"
        with lock:
            jobs[job_id] = {"id": job_id, "status": "queued", "percent": 0, "body": body}
        return jsonify({"job": {"id": job_id}}), 202

    @app.get("/v1/jobs/<job_id>")
    def watch(job_id: str):
        with lock:
            job = jobs.get(job_id)
            if job is None:
                return jsonify({"message": "no such job"}), 404
            if job["status"] in ("queued", "running"):
                step = 1 if job["body"]["input"].get("slow") else 10
                job["percent"] = min(100, job["percent"] + step)
                job["status"] = "done" if job["percent"] >= 100 else "running"
            answer = {"id": job_id, "status": job["status"], "percent": job["percent"]}
            if job["status"] == "done":
                answer["files"] = [{"href": f"/files/{job_id}-0.webp", "seed": 42}]
        return jsonify({"job": answer})

    @app.post("/v1/jobs/<job_id>/cancel")
    def cancel(job_id: str):
        with lock:
            jobs[job_id]["status"] = "cancelled"
        app.config["CANCELLED"].append((job_id, request.headers.get("Idempotency-Key")))
        return jsonify({"ok": True})

    @app.get("/files/<name>")
    def file(name: str):
        size = jobs[name.split("-")[0]]["body"]["input"].get("size", {"w": 64, "h": 64})
        buf = io.BytesIO()
        Image.new("RGB", (size["w"], size["h"]), (20, 90, 160)).save(buf, "WEBP")
        return Response(buf.getvalue(), mimetype="image/webp")

    return app


@pytest.fixture
def artjobs(make_settings, monkeypatch):
    monkeypatch.delenv("WEBUI_ARTJOBS_TOKEN", raising=False)
    backend = ServerThread(artjobs_app())
    settings = make_settings()
    settings.user_definitions.mkdir(parents=True, exist_ok=True)
    (settings.user_definitions / "artjobs.yaml").write_text(
        yaml.safe_dump({**DEFINITION, "url": backend.url}))
    app = create_app(settings)
    yield app, backend, settings
    backend.stop()


def form(**extra):
    return {"text": "a quiet harbour", "style": "ink", "w": "48", "h": "32",
            "priority": "high", **extra}


def test_the_invented_async_api_generates_with_a_token_added_while_running(artjobs):
    app, backend, settings = artjobs
    client = app.test_client()
    # No token yet: a setup problem, said before anything is sent.
    r = client.post("/services/artjobs/txt2img/generate", data=form(), headers=HX)
    assert r.status_code == 503 and "WEBUI_ARTJOBS_TOKEN" in r.get_data(as_text=True)
    assert backend.server.app.config["CREATED"] == []
    # The operator adds it to secrets.yaml; no restart.
    (settings.data_dir / "secrets.yaml").write_text(yaml.safe_dump({"artjobs": {"token": TOKEN}}))
    options = client.get("/services/artjobs/txt2img/options/style").get_data(as_text=True)
    assert re.search(r'<option value="film"\s*>Film</option>', options)  # a nested list
    r = client.post("/services/artjobs/txt2img/generate", data=form(), headers=HX)
    assert r.status_code == 202, r.get_data(as_text=True)
    job = job_in(client, r.get_data(as_text=True))
    # A determinate bar from the percentage (a pair [done, total]).
    wait_for(lambda: job.progress.fraction is not None or job.done.is_set(),
             what="a progress value")
    assert job.done.wait(20) and job.status == "done", job.error
    [created] = backend.server.app.config["CREATED"]
    assert created["body"] == {"input": {"text": "a quiet harbour", "style": "ink",
                                         "size": {"w": 48, "h": 32}, "slow": False}}
    assert created["query"] == {"priority": "high"}
    [image] = job.images
    assert image.mime == "image/webp" and (image.width, image.height) == (48, 32)
    assert image.seed == 42
    # The token never reaches a page.
    assert TOKEN not in client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)


def test_a_size_is_given_whole_or_not_at_all(artjobs):
    app, backend, settings = artjobs
    (settings.data_dir / "secrets.yaml").write_text(yaml.safe_dump({"artjobs": {"token": TOKEN}}))
    client = app.test_client()
    r = client.post("/services/artjobs/txt2img/generate", data=form(h=""), headers=HX)
    assert r.status_code == 422
    assert "Height is needed together with Width" in r.get_data(as_text=True)
    r = client.post("/services/artjobs/txt2img/generate", data=form(w="", h=""), headers=HX)
    assert r.status_code == 202
    job = job_in(client, r.get_data(as_text=True))
    assert job.done.wait(20) and job.status == "done", job.error
    assert "size" not in backend.server.app.config["CREATED"][-1]["body"]["input"]


def test_interrupt_cancels_the_remote_job(artjobs):
    app, backend, settings = artjobs
    (settings.data_dir / "secrets.yaml").write_text(yaml.safe_dump({"artjobs": {"token": TOKEN}}))
    client = app.test_client()
    r = client.post("/services/artjobs/txt2img/generate", data=form(slow="true"), headers=HX)
    job = job_in(client, r.get_data(as_text=True))
    wait_for(lambda: (job.progress.fraction or 0) > 0.02, what="the job to make progress")
    assert 0 < job.progress.fraction < 1 and job.progress.steps == 100
    client.post(f"/jobs/{job.id}/interrupt")
    assert job.done.wait(20)
    assert job.status == "interrupted"
    # A real remote cancel, naming this job.
    job_id = job.variables["job_id"]
    # The saved job id fills the cancel call's path and its headers alike.
    assert backend.server.app.config["CANCELLED"] == [(job_id, f"cancel-{job_id}")]


# A results endpoint that answers JSON while the job runs, then the image's bytes.
BYTES_DEFINITION = {
    "id": "bytesready", "name": "Bytes when ready", "url": "http://placeholder.invalid",
    "capabilities": [{"capability": "image_generation", "endpoints": {"txt2img": {
        "steps": [
            {"name": "start", "method": "POST", "path": "/start", "save": {"id": "id"}},
            {"name": "result", "path": "/result/{id}", "headers": {"accept": "image/*"},
             "poll": {"every": 0.05, "timeout": 10,
                      "until": "starts_with(header('content-type'), 'image/')"}},
        ],
        "result": {"as": "bytes", "seeds": "header('x-seed')"}}},
        "parameters": {"txt2img": [{"key": "prompt", "type": "textarea",
                                    "target": "start:prompt"}]}}],
}


def bytes_app() -> Flask:
    app = Flask(__name__)
    polls = {"n": 0}

    @app.post("/start")
    def start():
        return jsonify({"id": "r1"})

    @app.get("/result/<rid>")
    def result(rid: str):
        polls["n"] += 1
        if polls["n"] < 3:
            return jsonify({"id": rid, "status": "in-progress"}), 202
        buf = io.BytesIO()
        Image.new("RGB", (24, 24), (200, 10, 10)).save(buf, "PNG")
        return Response(buf.getvalue(), mimetype="image/png", headers={"x-seed": "77"})

    return app


def test_json_until_ready_then_the_image_bytes(make_settings):
    backend = ServerThread(bytes_app())
    try:
        settings = make_settings()
        settings.user_definitions.mkdir(parents=True, exist_ok=True)
        (settings.user_definitions / "b.yaml").write_text(
            yaml.safe_dump({**BYTES_DEFINITION, "url": backend.url}))
        client = create_app(settings).test_client()
        r = client.post("/services/bytesready/txt2img/generate", data={"prompt": "x"},
                        headers=HX)
        job = job_in(client, r.get_data(as_text=True))
        assert job.done.wait(20) and job.status == "done", job.error
        assert job.images[0].seed == 77 and job.images[0].width == 24
    finally:
        backend.stop()

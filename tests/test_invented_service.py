"""An invented service, known to nothing but this test: its own paths, a nested JSON body, an
async job to poll, image URLs to fetch, bearer auth. Written as a definition file here, it must
work with no change to webui — the proof that the engine knows no particular service."""

from __future__ import annotations

import base64
import itertools
import re

import pytest
import yaml
from flask import Flask, jsonify, request
from PIL import Image

from webui import create_app

from .helpers import ServerThread, image_bytes, submit

TOKEN = "pixel-token-42"

DEFINITION = {
    "id": "pixelforge",
    "name": "Pixel Forge Cloud",
    "url": "http://placeholder.invalid",
    "authentication": {"type": "bearer", "tokenEnv": "WEBUI_PIXELFORGE_TOKEN", "required": True},
    "errorMessage": "problem.title",
    "capabilities": [
        {"capability": "health", "endpoints": {"ping": {"path": "/api/v3/ping"}}},
        {
            "capability": "image_generation",
            "endpoints": {
                "txt2img": {
                    "steps": [
                        {"name": "create", "method": "POST", "path": "/api/v3/render-jobs",
                         "body": {"job": {"kind": "still", "client": "{client_id}"}},
                         "save": {"job_id": "data.job.id"}},
                        {"name": "watch", "path": "/api/v3/render-jobs/{job_id}",
                         "poll": {"until": "data.job.state == 'finished'", "every": 0.05,
                                  "timeout": 5, "failWhen": "data.job.state == 'crashed'",
                                  "failMessage": "data.job.error.reason"}},
                    ],
                    "result": {"images": "data.job.renders[].links.full", "encoding": "url",
                               "seeds": "data.job.renders[].seed",
                               "info": "data.job.stats"},
                },
                "styles": {"path": "/api/v3/catalog", "query": {"section": "styles"}},
            },
            "parameters": {
                "txt2img": [
                    {"key": "description", "label": "Describe it", "type": "textarea",
                     "required": True, "target": "create:job.scene.text"},
                    {"key": "style", "type": "select", "optionsEndpoint": "styles",
                     "optionsPath": "data.entries[?enabled]", "optionsValueKey": "slug",
                     "optionsLabelKey": "title", "required": True,
                     "target": "create:job.scene.look.style"},
                    {"key": "copies", "type": "integer", "range": [1, 4], "defaultValue": 1,
                     "target": "create:job.output.count"},
                    {"key": "edge", "type": "integer", "range": [16, 256], "step": 16,
                     "defaultValue": 64, "target": "create:job.output.size.edge"},
                ],
            },
        },
    ],
}


def pixelforge_app() -> Flask:
    """The invented backend: jobs finish after two polls; renders are served as PNG URLs."""
    app = Flask(__name__)
    jobs: dict[str, dict] = {}
    files: dict[str, bytes] = {}
    counter = itertools.count(1)
    app.config["BODIES"] = []

    @app.before_request
    def auth():
        if request.headers.get("Authorization") != f"Bearer {TOKEN}" and not \
                request.path.startswith("/cdn/"):
            return jsonify({"problem": {"title": "token rejected"}}), 401
        return None

    @app.get("/api/v3/ping")
    def ping():
        return jsonify({"ok": True})

    @app.get("/api/v3/catalog")
    def catalog():
        assert request.args["section"] == "styles"
        return jsonify({"data": {"entries": [
            {"slug": "ink", "title": "Ink wash", "enabled": True},
            {"slug": "neon", "title": "Neon", "enabled": True},
            {"slug": "old", "title": "Retired", "enabled": False}]}})

    @app.post("/api/v3/render-jobs")
    def create():
        body = request.get_json()
        app.config["BODIES"].append(body)
        job_id = f"job-{next(counter)}"
        jobs[job_id] = {"body": body, "polls": 0}
        return jsonify({"data": {"job": {"id": job_id, "state": "queued"}}}), 202

    @app.get("/api/v3/render-jobs/<job_id>")
    def watch(job_id: str):
        job = jobs[job_id]
        job["polls"] += 1
        spec = job["body"]["job"]
        if "crash" in spec["scene"]["text"]:
            return jsonify({"data": {"job": {"id": job_id, "state": "crashed",
                                             "error": {"reason": "renderer lost the GPU"}}}})
        if job["polls"] < 3:
            return jsonify({"data": {"job": {"id": job_id, "state": "rendering"}}})
        renders = []
        for i in range(spec["output"]["count"]):
            edge = spec["output"]["size"]["edge"]
            name = f"{job_id}-{i}.png"
            files[name] = image_bytes((edge, edge), (40 * i, 90, 200))
            renders.append({"seed": 1000 + i, "links": {"full": f"/cdn/{name}"}})
        return jsonify({"data": {"job": {"id": job_id, "state": "finished", "renders": renders,
                                         "stats": {"gpu_seconds": 1.5}}}})

    @app.get("/cdn/<name>")
    def cdn(name: str):
        return files[name], 200, {"Content-Type": "image/png"}

    return app


@pytest.fixture
def invented(make_settings, monkeypatch):
    backend = ServerThread(pixelforge_app())
    settings = make_settings(url_overrides={"pixelforge": backend.url})
    settings.user_definitions.mkdir(parents=True, exist_ok=True)
    (settings.user_definitions / "pixelforge.yaml").write_text(yaml.safe_dump(DEFINITION))
    monkeypatch.setenv("WEBUI_PIXELFORGE_TOKEN", TOKEN)
    yield create_app(settings), backend
    backend.stop()


def test_invented_service_generates(invented):
    app, backend = invented
    client = app.test_client()
    assert ">Pixel Forge Cloud</a>" in client.get("/").get_data(as_text=True)
    assert "online" in client.get("/services/pixelforge/status").get_data(as_text=True)
    options = client.get("/services/pixelforge/txt2img/options/style").get_data(as_text=True)
    assert '<option value="ink" >Ink wash</option>' in options and "Retired" not in options

    r = submit(client, "/services/pixelforge/txt2img/generate", data={
        "description": "a lantern", "style": "neon", "copies": "2", "edge": "48"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200, html
    [body] = backend.server.app.config["BODIES"]
    assert body["job"]["kind"] == "still" and len(body["job"]["client"]) == 32
    assert body["job"]["scene"] == {"text": "a lantern", "look": {"style": "neon"}}
    assert body["job"]["output"] == {"count": 2, "size": {"edge": 48}}
    paths = re.findall(r'<img src="/images/([^"]+)"', html)
    assert len(paths) == 2
    for path in paths:
        with Image.open(app.extensions["webui"].store.path(path)) as im:
            assert im.size == (48, 48)
    assert "Seed <code>1000</code>" in html and "Seed <code>1001</code>" in html
    assert "gpu_seconds" in html
    # The token went to the backend but never to the page.
    assert TOKEN not in html and base64.b64encode(TOKEN.encode()).decode() not in html


def test_invented_service_failures(invented, monkeypatch):
    app, _backend = invented
    client = app.test_client()
    r = submit(client, "/services/pixelforge/txt2img/generate", data={
        "description": "crash please", "style": "ink", "copies": "1", "edge": "32"})
    assert "Pixel Forge Cloud reports that the job failed: renderer lost the GPU" in r.get_data(
        as_text=True)
    r = submit(client, "/services/pixelforge/txt2img/generate", data={
        "description": "x", "style": "old", "copies": "1", "edge": "40"})
    errors = r.get_data(as_text=True)
    assert "Style &#39;old&#39; is not one of the choices" in errors
    assert "Edge must be a multiple of 16 from 16" in errors
    monkeypatch.setenv("WEBUI_PIXELFORGE_TOKEN", "wrong")
    r = submit(client, "/services/pixelforge/txt2img/generate", data={
        "description": "x", "style": "ink", "copies": "1", "edge": "32"})
    html = r.get_data(as_text=True)
    assert "Check the credentials of Pixel Forge Cloud" in html and "wrong" not in html

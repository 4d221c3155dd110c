"""Rules of jobs and definitions that had no test: several jobs at once on one instance, the
memory bound, a pool whose instances are all down, a definition edited while jobs wait,
`extends` mistakes, the form and data_url encodings, and the `serve` command."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import requests
import responses
import yaml

from webui import create_app
from webui.catalog import BUNDLED_DIR, DefinitionFolders
from webui.format import DefinitionError, load_data
from webui.images import ImageStore
from webui.jobs import DOWN_RETRY_SECONDS, JobManager

from .helpers import HX, demo_extra, free_port, image_bytes, job_in, serving, submit, wait_for


def start(client, service: str, data: dict) -> str:
    r = client.post(f"/services/{service}/txt2img/generate", data=data, headers=HX)
    assert r.status_code == 202, r.get_data(as_text=True)
    return job_in(client, r.get_data(as_text=True)).id


# --- jobs -----------------------------------------------------------------------------------


def test_an_instance_runs_as_many_jobs_at_once_as_its_concurrency(services_app, fakes,
                                                                   monkeypatch):
    # openai.yaml: jobs.concurrency 4 (a hosted API takes several requests at once).
    # Each request held until the test has seen the fifth job wait (a fixed delay ran out
    # on a busy machine before all five were even queued).
    gate = threading.Event()
    monkeypatch.setitem(fakes["openai"].server.app.config, "SLOW_GATE", gate)
    client = services_app.test_client()
    jobs = services_app.extensions["webui"].jobs
    ids = [start(client, "openai", {"prompt": f"SLOW {i}", "model": "gpt-image-1",
                                     "size": "1024x1024", "n": "1"}) for i in range(5)]
    try:
        wait_for(lambda: sum(jobs.get(i).status == "running" for i in ids) == 4,
                 what="4 running")
        assert [jobs.get(i).status for i in ids].count("queued") == 1
        catalog = services_app.extensions["webui"].folders.catalog()
        queued, load = jobs.load(catalog.get("openai"))
        assert queued == 1 and list(load.values())[0][0] == 4
    finally:
        gate.set()
    for i in ids:
        assert jobs.get(i).done.wait(20) and jobs.get(i).status == "done"


def test_finished_jobs_are_forgotten_beyond_the_bound(make_settings, demo_server):
    app = create_app(make_settings(extras=[demo_extra(demo_server.url)]))
    state = app.extensions["webui"]
    state.jobs = JobManager(ImageStore(state.settings.images_dir), keep=3)
    client = app.test_client()
    ids = []
    for i in range(5):
        ids.append(start(client, "demo", {"prompt": f"a cat {i}", "steps": "1", "width": "64",
                                          "height": "64"}))
    for i in ids[-3:]:
        assert state.jobs.get(i).done.wait(20)
    wait_for(lambda: all(state.jobs.get(i) is None or state.jobs.get(i).done.is_set() for i in ids),
          what="every job done")
    known = [i for i in ids if state.jobs.get(i) is not None]
    # The newest three stay; the oldest are forgotten (their images are on disk and in the
    # history).
    assert known == ids[-3:]


def test_a_pool_with_every_instance_down_fails_all_waiting_jobs_at_once(make_settings):
    dead = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead.append(f"http://127.0.0.1:{s.getsockname()[1]}")
    app = create_app(make_settings(url_overrides={"a1111": ",".join(dead)}))
    jobs = app.extensions["webui"].jobs
    service = app.extensions["webui"].folders.catalog().get("a1111")
    mode = service.definition.modes["txt2img"]
    submitted = [jobs.submit(service, mode, {"prompt": f"x{i}"}) for i in range(4)]
    for job in submitted:
        assert job.done.wait(10)
    # Together: within one check of the instances, not one job per retry interval (3 s).
    ends = [job.finished for job in submitted]
    assert max(ends) - min(ends) < DOWN_RETRY_SECONDS
    messages = {job.error for job in submitted}
    assert len(messages) == 1
    assert [job.status for job in submitted] == ["failed"] * 4
    assert "No instance of AUTOMATIC1111 WebUI is reachable" in messages.pop()


def test_a_job_keeps_the_definition_it_was_queued_with(make_settings, demo_server, tmp_path):
    settings = make_settings()
    folder = settings.user_definitions
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mine.yaml"

    def write(txt2img_path: str) -> None:
        path.write_text(yaml.safe_dump({
            "extends": "a1111", "id": "mine", "name": "Mine", "url": demo_server.url,
            "capabilities": [{"capability": "image_generation", "endpoints": {
                "txt2img": {"path": txt2img_path}}}]}))
        # A new modification time even on a coarse clock, so the folder sees the change.
        stamp = time.time() + (1 if txt2img_path.endswith("nothing") else 0)
        os.utime(path, (stamp, stamp))

    write("/sdapi/v1/txt2img")
    app = create_app(settings)
    client = app.test_client()
    jobs = app.extensions["webui"].jobs
    first = start(client, "mine", {"prompt": "slow", "steps": "150", "width": "64",
                                   "height": "64"})
    queued = start(client, "mine", {"prompt": "queued", "steps": "1", "width": "64",
                                    "height": "64"})
    assert jobs.get(queued).status == "queued"
    write("/sdapi/v1/nothing")  # an edit that would break any job sent with it
    assert client.get("/services/mine/txt2img").status_code == 200  # the new file is loaded
    later = start(client, "mine", {"prompt": "later", "steps": "1", "width": "64",
                                   "height": "64"})
    client.post(f"/jobs/{first}/interrupt")
    assert jobs.get(queued).done.wait(30)
    assert jobs.get(queued).status == "done", jobs.get(queued).error
    assert jobs.get(later).done.wait(30)
    assert jobs.get(later).status == "failed" and "/sdapi/v1/nothing" in jobs.get(later).error


# --- definitions ----------------------------------------------------------------------------


def child(**fields) -> dict:
    return {"id": "child", "name": "Child", **fields}


@pytest.mark.parametrize(("files", "expected"), [
    ({"c.yaml": child(extends="nobody")},
     "c.yaml: extends: no definition with id 'nobody' (bundled, or in the same folder)"),
    ({"c.yaml": {"extends": "a1111", "name": "No id"}},
     "c.yaml: id: a definition that extends another needs its own id"),
    ({"c.yaml": child(extends="other"), "o.yaml": {**child(extends="child"), "id": "other"}},
     "extends: definitions extend each other in a loop"),
    ({"c.yaml": child(extends="a1111", capabilities=[{
        "capability": "image_generation",
        "parameters": {"txt2img": {"extends": "a1111:txt2img", "exclude": ["nope"]}}}])},
     "c.yaml: capabilities[1].parameters.txt2img.exclude[0]: 'a1111:txt2img' has no "
     "parameter 'nope'"),
])
def test_extends_mistakes_are_reported(tmp_path, files, expected):
    for name, data in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(data))
    folders = DefinitionFolders([BUNDLED_DIR, tmp_path])
    catalog = folders.catalog()
    lines = [line for f in catalog.failures for line in f.lines]
    assert any(expected in line for line in lines), lines
    # The bundled services are unaffected.
    assert catalog.get("a1111") is not None


ENCODED = {
    "id": "enc", "name": "Encodings", "url": "http://enc.test",
    "capabilities": [{"capability": "image_generation", "endpoints": {
        "txt2img": {"method": "POST", "path": "/form", "encoding": "form",
                    "result": {"images": "image", "encoding": "data_url"}},
        "img2img": {"method": "POST", "path": "/json", "result": {"images": "image"}}},
        "parameters": {
            "txt2img": [{"key": "prompt", "type": "textarea", "required": True},
                        {"key": "steps", "type": "integer", "defaultValue": 4},
                        {"key": "tiled", "type": "boolean"}],
            "img2img": [{"key": "prompt", "type": "textarea"},
                        {"key": "picture", "type": "image", "encode": "data_url",
                         "required": True}]}}],
}


@responses.activate
def test_form_and_data_url_encodings(make_settings):
    folder = make_settings().user_definitions
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "enc.yaml").write_text(yaml.safe_dump(ENCODED))
    app = create_app(make_settings())
    client = app.test_client()
    picture = base64.b64encode(image_bytes((8, 8))).decode()
    responses.post("http://enc.test/form", json={"image": "data:image/png;base64," + picture})
    responses.post("http://enc.test/json", json={"image": picture})
    r = submit(client, "/services/enc/txt2img/generate",
               data={"prompt": "a cat & a dog", "steps": "6", "tiled": "true"})
    assert r.status_code == 200, r.html
    sent = responses.calls[0].request
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qs(sent.body) == {
        "prompt": ["a cat & a dog"], "steps": ["6"], "tiled": ["true"]}
    r = submit(client, "/services/enc/img2img/generate", content_type="multipart/form-data",
               data={"prompt": "x", "picture": (io.BytesIO(image_bytes((8, 8))), "in.png")})
    assert r.status_code == 200, r.html
    body = json.loads(responses.calls[1].request.body)
    assert body["picture"] == "data:image/png;base64," + picture


def test_an_image_cannot_go_into_a_form_body():
    data = json.loads(json.dumps(ENCODED))
    data["capabilities"][0]["parameters"]["txt2img"].append(
        {"key": "pic", "type": "image"})
    with pytest.raises(DefinitionError) as info:
        load_data(data, "enc.yaml")
    assert "an image cannot go into a form-encoded body" in str(info.value)


# --- the serve command ----------------------------------------------------------------------


def test_the_serve_command_with_its_options(tmp_path):
    port = free_port()
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "enc.yaml").write_text(yaml.safe_dump(ENCODED))
    exe = Path(sys.executable).parent / "webui"
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--data-dir", str(tmp_path / "data"),
         "--no-demo", "--url", "a1111=http://gpu-box.test:7860", "--definitions", str(extra)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: serving(base + "/"), timeout=30, what="webui serve to answer")
        html = requests.get(base + "/", timeout=5).text
        assert "http://gpu-box.test:7860" in html  # --url
        assert 'id="service-enc"' in html  # --definitions
        assert 'id="service-demo"' not in html  # --no-demo
        assert (tmp_path / "data" / "images").is_dir()  # --data-dir
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert f"webui on http://127.0.0.1:{port}/" in out



def test_webui_help_names_the_commands():
    out = subprocess.run([str(Path(sys.executable).parent / "webui"), "--help"],
                         capture_output=True, text=True, timeout=30).stdout
    for command in ("serve", "check", "schema", "demo"):
        assert command in out


def test_a_typo_keeps_the_last_good_version_serving(make_settings):
    settings = make_settings()
    folder = settings.user_definitions
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.yaml"
    from .helpers import minimal

    path.write_text(yaml.safe_dump(minimal()))
    client = create_app(settings).test_client()
    assert client.get("/services/tiny/txt2img").status_code == 200
    broken = minimal()
    broken["capabilities"][1]["parameters"]["txt2img"][1]["rnage"] = [1, 2]  # a typo
    path.write_text(yaml.safe_dump(broken))
    stamp = time.time() + 2
    os.utime(path, (stamp, stamp))
    index = client.get("/").get_data(as_text=True)
    assert "rnage: Extra inputs are not permitted" in index
    assert "goes on with the last version that loaded" in index
    page = client.get("/services/tiny/txt2img")
    assert page.status_code == 200
    assert "has an error since it was last changed" in page.get_data(as_text=True)


def test_check_suggests_a_step_that_has_a_body(tmp_path):
    from webui.cli import main as cli_main

    text = (BUNDLED_DIR / "comfyui.yaml").read_text().replace(
        '"submit:prompt.6.inputs.text"', '"prompt.6.inputs.text"', 1)
    (tmp_path / "comfyui").mkdir()
    for name in ("txt2img.json", "img2img.json"):
        (tmp_path / "comfyui" / name).write_text((BUNDLED_DIR / "comfyui" / name).read_text())
    (tmp_path / "c.yaml").write_text(text)
    import contextlib

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli_main(["check", str(tmp_path / "c.yaml")])
    # The suggestion names the submitting step (the last one, fetch, is a GET: no body).
    assert "name the step, e.g. submit:prompt.6.inputs.text" in out.getvalue()

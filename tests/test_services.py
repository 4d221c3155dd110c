"""The bundled definitions beyond A1111 — ComfyUI, OpenAI-compatible, Stability, Forge,
SD.Next — each generating through webui against its own test backend over real HTTP."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import requests
from PIL import Image

from webui import create_app, pipeline

from .backends.comfyui import create_comfyui_app
from .helpers import (
    HX,
    ServerThread,
    defaults,
    field_errors,
    generate,
    image_bytes,
    images_in,
    job_in,
    sent,
    submit,
    wait_for,
)

# ComfyUI ------------------------------------------------------------------------------------


def test_comfyui_txt2img_binds_the_workflow_and_fetches_outputs(services_app, fakes):
    data = {**defaults(services_app, "comfyui", "txt2img"), "prompt": "a fox",
            "ckpt_name": "sdxl-demo.safetensors", "width": "128", "height": "96",
            "batch_size": "2", "seed": "-1"}
    r, html = generate(services_app, "comfyui", "txt2img", data)
    assert r.status_code == 200, html
    assert len(images_in(html)) == 2
    [submitted] = sent(fakes, "comfyui", "/prompt")
    graph = submitted["json"]["prompt"]
    assert graph["6"]["inputs"]["text"] == "a fox"
    assert graph["4"]["inputs"]["ckpt_name"] == "sdxl-demo.safetensors"
    assert graph["5"]["inputs"] == {"width": 128, "height": 96, "batch_size": 2}
    assert graph["7"]["inputs"]["text"] == ""  # empty negative prompt is sent empty
    # No LoRA chosen: the LoRA node is taken out and its consumers rewired.
    assert "10" not in graph
    assert graph["3"]["inputs"]["model"] == ["4", 0] and graph["6"]["inputs"]["clip"] == ["4", 1]
    # -1 means we pick the seed (ComfyUI has no random value) and report it.
    seed = graph["3"]["inputs"]["seed"]
    assert isinstance(seed, int) and seed >= 0
    assert f"Seed <code>{seed}</code>" in html
    assert submitted["json"]["client_id"]
    assert len(sent(fakes, "comfyui", "/view")) == 2
    store = services_app.extensions["webui"].store
    with Image.open(store.path(images_in(html)[0])) as im:
        assert im.size == (128, 96)


def test_comfyui_lora_keeps_the_node(services_app, fakes):
    data = {**defaults(services_app, "comfyui", "txt2img"), "prompt": "a fox",
            "ckpt_name": "sd15-demo.safetensors", "loras": "detail.safetensors",
            "lora_strength": "0.6", "width": "64", "height": "64"}
    r, html = generate(services_app, "comfyui", "txt2img", data)
    assert r.status_code == 200, html
    graph = sent(fakes, "comfyui", "/prompt")[0]["json"]["prompt"]
    assert graph["10"]["inputs"]["lora_name"] == "detail.safetensors"
    assert graph["10"]["inputs"]["strength_model"] == 0.6


def test_comfyui_img2img_uploads_first(services_app, fakes):
    data = {**defaults(services_app, "comfyui", "img2img"), "prompt": "a fox",
            "ckpt_name": "sd15-demo.safetensors", "denoise": "0.4", "seed": "5"}
    r, html = generate(services_app, "comfyui", "img2img", data, {"image": image_bytes((80, 72))})
    assert r.status_code == 200, html
    [upload] = sent(fakes, "comfyui", "/upload/image")
    assert upload["files"] == {"image": "image.png"}
    graph = sent(fakes, "comfyui", "/prompt")[0]["json"]["prompt"]
    # The name ComfyUI stored it under ("image (1).png" when another upload has the name).
    assert re.fullmatch(r"image( \(\d+\))?\.png", graph["12"]["inputs"]["image"])
    assert graph["3"]["inputs"]["denoise"] == 0.4 and graph["3"]["inputs"]["seed"] == 5
    store = services_app.extensions["webui"].store
    with Image.open(store.path(images_in(html)[0])) as im:
        assert im.size == (80, 72)


def test_comfyui_failed_job_reports_the_node_error(services_app):
    data = {**defaults(services_app, "comfyui", "txt2img"), "prompt": "FAIL_EXECUTION",
            "ckpt_name": "sd15-demo.safetensors", "width": "64", "height": "64"}
    r, html = generate(services_app, "comfyui", "txt2img", data)
    assert r.status_code == 502
    assert "ComfyUI reports that the job failed: CUDA out of memory" in html


def comfy_service(services_app):
    return services_app.extensions["webui"].folders.catalog().get("comfyui")


def test_comfyui_validation_error_400_is_explained(services_app, tmp_path):
    service = comfy_service(services_app)
    mode = service.definition.modes["txt2img"]
    values = {p.key: p.defaultValue for p in mode.parameters}
    values.update(prompt="x", ckpt_name="missing.safetensors")  # a name the server lacks
    with pytest.raises(pipeline.BackendError) as info:
        pipeline.generate(service, mode, pipeline.prepare_values(mode, values),
                          services_app.extensions["webui"].store)
    message = info.value.message
    assert "ComfyUI failed (HTTP 400: Prompt outputs failed validation; ckpt_name" in message
    assert "missing.safetensors" in message


def test_comfyui_job_that_never_finishes_times_out(services_app, fakes, monkeypatch):
    service = comfy_service(services_app)
    mode = service.definition.modes["txt2img"]
    wait = mode.endpoint.steps[1]
    monkeypatch.setattr(wait.poll, "timeout", 1.0)
    monkeypatch.setattr(wait.poll, "every", 0.1)
    values = {p.key: p.defaultValue for p in mode.parameters}
    values.update(prompt="NEVER_FINISH", ckpt_name="sd15-demo.safetensors")
    with pytest.raises(pipeline.BackendError) as info:
        pipeline.generate(service, mode, pipeline.prepare_values(mode, values),
                          services_app.extensions["webui"].store)
    assert info.value.kind == "timeout"
    assert "did not finish the job within 1 s" in info.value.message
    # The pipeline alone does not stop it (the job manager does): leave the shared fake free.
    requests.post(fakes["comfyui"].url + "/interrupt", timeout=5)


def test_comfyui_choices_come_from_object_info(services_app):
    client = services_app.test_client()
    html = client.get("/services/comfyui/txt2img/options/ckpt_name").get_data(as_text=True)
    assert '<option value="sdxl-demo.safetensors"' in html
    html = client.get("/services/comfyui/txt2img/options/scheduler").get_data(as_text=True)
    assert '<option value="karras"' in html and '<option value="normal" selected' in html


# OpenAI-compatible --------------------------------------------------------------------------


def test_comfyui_random_seed_is_minus_one_and_the_picked_seed_is_shown(services_app, fakes):
    """KSampler's seed starts at 0 and has no "random" value: the form's random button gives
    -1 (which the field accepts) and webui picks the seed it sends and shows."""
    page = services_app.test_client().get("/services/comfyui/txt2img").get_data(as_text=True)
    seed = re.search(r'<input type="number" id="f-txt2img-seed"[^>]*>', page).group(0)
    assert 'min="-1"' in seed
    assert re.search(r'data-set-value="-1" data-for="f-txt2img-seed"', page)
    data = {**defaults(services_app, "comfyui", "txt2img"), "prompt": "a fox", "seed": "-1",
            "ckpt_name": "sd15-demo.safetensors", "width": "64", "height": "64"}
    r, html = generate(services_app, "comfyui", "txt2img", data)
    assert r.status_code == 200, html
    sent_seed = sent(fakes, "comfyui", "/prompt")[0]["json"]["prompt"]["3"]["inputs"]["seed"]
    assert sent_seed >= 0 and f"Seed <code>{sent_seed}</code>" in html


def test_openai_generation_with_bearer_token(services_app, fakes):
    data = {**defaults(services_app, "openai", "txt2img"), "prompt": "a kite", "n": "2",
            "size": "1024x1024"}
    r, html = generate(services_app, "openai", "txt2img", data)
    assert r.status_code == 200, html
    assert len(images_in(html)) == 2
    [call] = sent(fakes, "openai", "/v1/images/generations")
    assert call["auth"] and call["json"] == {"model": "gpt-image-1", "prompt": "a kite", "n": 2,
                                             "size": "1024x1024"}


def test_openai_urls_are_downloaded_by_the_server(services_app, fakes):
    data = {**defaults(services_app, "openai", "txt2img"), "prompt": "a kite",
            "model": "dall-e-2", "size": "256x256", "response_format": "url"}
    r, html = generate(services_app, "openai", "txt2img", data)
    assert r.status_code == 200, html
    assert len(sent(fakes, "openai", "/v1/images/generations")) == 1
    assert [r for r in fakes["openai"].server.app.config["REQUESTS"]
            if r["path"].startswith("/files/")]
    store = services_app.extensions["webui"].store
    with Image.open(store.path(images_in(html)[0])) as im:
        assert im.size == (256, 256)


def test_openai_edit_is_multipart(services_app, fakes):
    data = {**defaults(services_app, "openai", "img2img"), "prompt": "make it blue",
            "size": "1024x1024"}
    r, html = generate(services_app, "openai", "img2img", data, {"image": image_bytes((96, 96))})
    assert r.status_code == 200, html
    [call] = sent(fakes, "openai", "/v1/images/edits")
    assert call["files"] == {"image": ["image.png"]}
    assert call["form"]["prompt"] == "make it blue" and call["form"]["n"] == "1"


def test_openai_error_message_and_wrong_key(services_app, monkeypatch):
    data = {**defaults(services_app, "openai", "txt2img"), "prompt": "CONTENT_POLICY"}
    r, html = generate(services_app, "openai", "txt2img", data)
    assert r.status_code == 502 and "HTTP 400" in html
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-1234567890")
    r, html = generate(services_app, "openai", "txt2img", {**data, "prompt": "ok"})
    assert "Check the credentials of OpenAI-compatible images" in html
    assert "sk-wrong-key-1234567890" not in html


def test_missing_secret_is_a_setup_problem(services_app, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    client = services_app.test_client()
    status = client.get("/services/openai/status").get_data(as_text=True)
    assert "needs setup" in status and "set the environment variable(s) OPENAI_API_KEY" in status
    assert client.get("/").status_code == 200
    r, html = generate(services_app, "openai", "txt2img", {"prompt": "x", "size": "auto"})
    assert r.status_code == 503 and "OPENAI_API_KEY" in html


# Stability (multipart in, bytes out) --------------------------------------------------------


def test_stability_bytes_and_seed_header(services_app, fakes):
    data = {**defaults(services_app, "stability", "txt2img"), "prompt": "a lake",
            "aspect_ratio": "16:9", "seed": "1234"}
    r, html = generate(services_app, "stability", "txt2img", data)
    assert r.status_code == 200, html
    assert "Seed <code>1234</code>" in html
    [call] = sent(fakes, "stability", "/v2beta/stable-image/generate/sd3")
    assert call["accept"] == "image/*"
    assert call["form"]["mode"] == "text-to-image" and call["form"]["aspect_ratio"] == "16:9"


def test_stability_img2img_and_moderation(services_app, fakes):
    data = {**defaults(services_app, "stability", "img2img"), "prompt": "a lake",
            "strength": "0.4"}
    r, html = generate(services_app, "stability", "img2img", data, {"image": image_bytes()})
    assert r.status_code == 200, html
    [call] = sent(fakes, "stability", "/v2beta/stable-image/generate/sd3")
    assert call["form"]["mode"] == "image-to-image" and call["files"] == {"image": ["image.png"]}
    assert "aspect_ratio" not in call["form"]
    r, html = generate(services_app, "stability", "txt2img",
                       {**defaults(services_app, "stability", "txt2img"),
                        "prompt": "CONTENT_POLICY"})
    assert r.status_code == 502 and "Your request was flagged" in html


# Forge and SD.Next (extending a1111) --------------------------------------------------------


def test_forge_adds_modules_and_distilled_cfg(services_app, fakes):
    page = services_app.test_client().get("/services/forge/img2img").get_data(as_text=True)
    assert 'name="distilled_cfg_scale"' in page and 'name="modules"' in page
    data = {**defaults(services_app, "forge", "txt2img"), "prompt": "x", "width": "64",
            "height": "64", "steps": "2", "distilled_cfg_scale": "2.5"}
    client = services_app.test_client()
    payload = [(k, v) for k, v in data.items()] + [
        ("modules", "/opt/forge/models/VAE/ae.safetensors"),
        ("modules", "/opt/forge/models/text_encoder/clip_l.safetensors")]
    from werkzeug.datastructures import MultiDict

    r = submit(client, "/services/forge/txt2img/generate", data=MultiDict(payload))
    assert r.status_code == 200, r.get_data(as_text=True)
    [call] = sent(fakes, "forge", "/sdapi/v1/txt2img")
    assert call["json"]["distilled_cfg_scale"] == 2.5
    assert call["json"]["override_settings"]["forge_additional_modules"] == [
        "/opt/forge/models/VAE/ae.safetensors",
        "/opt/forge/models/text_encoder/clip_l.safetensors"]


def test_sdnext_has_its_own_defaults_and_no_scheduler(services_app, fakes):
    html = services_app.test_client().get("/services/sdnext/txt2img").get_data(as_text=True)
    assert 'name="scheduler"' not in html
    assert 'value="1024"' in html
    data = {**defaults(services_app, "sdnext", "txt2img"), "prompt": "x", "width": "64",
            "height": "64", "steps": "2"}
    r, html = generate(services_app, "sdnext", "txt2img", data)
    assert r.status_code == 200, html
    [call] = sent(fakes, "sdnext", "/sdapi/v1/txt2img")
    assert call["json"]["sampler_name"] == "Default" and "scheduler" not in call["json"]
    assert field_errors(html) == {}


def test_no_service_names_in_the_engine():
    root = Path(__file__).parent.parent
    out = subprocess.run(["grep", "-rniE", "comfy|openai|stability|forge|sdnext", "webui",
                          "--include=*.py"], cwd=root, capture_output=True, text=True).stdout
    # Two modules are about one service by design: the demo (an A1111 emulator) and
    # workflow.py, which reads ComfyUI's workflow files to write definitions (issue 15); what
    # it writes is data like any definition.
    offending = [line for line in out.splitlines()
                 if not line.startswith(("webui/demo/", "webui/workflow.py"))
                 and "#" not in line.split(":", 2)[2]]
    assert offending == []


def test_bundled_definitions_all_load():
    from webui.catalog import BUNDLED_DIR, DefinitionFolders

    catalog = DefinitionFolders([BUNDLED_DIR]).catalog()
    assert catalog.failures == []
    assert sorted(s.id for s in catalog.services) == [
        "a1111", "comfyui", "forge", "openai", "sdnext", "stability"]


def test_workflow_bindings_are_checked_at_load(tmp_path):
    from webui.catalog import BUNDLED_DIR
    from webui.format import DefinitionError, load_file

    (tmp_path / "comfyui").mkdir()
    for name in ("txt2img.json", "img2img.json"):
        (tmp_path / "comfyui" / name).write_text(
            (BUNDLED_DIR / "comfyui" / name).read_text())
    text = (BUNDLED_DIR / "comfyui.yaml").read_text()
    broken = text.replace("submit:prompt.6.inputs.text", "submit:prompt.66.inputs.text")
    broken = broken.replace("submit:prompt.3.inputs.cfg", "submit:prompt.3.inputs.cfgg")
    (tmp_path / "comfy.yaml").write_text(broken)
    with pytest.raises(DefinitionError) as info:
        load_file(tmp_path / "comfy.yaml")
    lines = "\n".join(info.value.lines())
    assert "txt2img[prompt].target: '66.inputs.text' does not exist in txt2img.json" in lines
    assert "txt2img[cfg].target: '3.inputs.cfgg' does not exist in txt2img.json" in lines
    json.loads((tmp_path / "comfyui" / "txt2img.json").read_text())


def test_stability_wrong_key_and_openai_timeout(services_app, fakes, monkeypatch):
    monkeypatch.setenv("STABILITY_API_KEY", "sk-nope")
    r, html = generate(services_app, "stability", "txt2img",
                       {**defaults(services_app, "stability", "txt2img"), "prompt": "x"})
    assert r.status_code == 502
    assert "Check the credentials of Stability AI (Stable Image)" in html and "sk-nope" not in html

    service = services_app.extensions["webui"].folders.catalog().get("openai")
    mode = service.definition.modes["txt2img"]
    monkeypatch.setattr(mode.endpoint, "timeout", 0.5)
    monkeypatch.setitem(fakes["openai"].server.app.config, "SLOW_SECONDS", 2)
    values = {p.key: p.defaultValue for p in mode.parameters}
    values["prompt"] = "SLOW please"
    with pytest.raises(pipeline.BackendError) as info:
        pipeline.generate(service, mode, pipeline.prepare_values(mode, values),
                          services_app.extensions["webui"].store)
    assert "did not answer within 0.5 s" in info.value.message
    assert "was not sent again" in info.value.message
    assert len(sent(fakes, "openai", "/v1/images/generations")) == 1


def test_comfyui_jobs_show_step_progress_and_a_live_preview(make_settings):
    """ComfyUI tells progress only over its websocket, to the socket named by the prompt's
    client_id (server.py websocket_handler; main.py hijack_progress): the job listens on it from
    before the prompt is queued and shows the steps and the preview frames as they come."""
    with ServerThread(create_comfyui_app(polls_before_done=4, previews=True)) as fake:
        app = create_app(make_settings(url_overrides={"comfyui": fake.url}))
        client = app.test_client()
        data = {**defaults(app, "comfyui", "txt2img"), "prompt": "a fox", "steps": "20",
                "ckpt_name": "sd15-demo.safetensors", "width": "128", "height": "128"}
        r = client.post("/services/comfyui/txt2img/generate", headers=HX, data=data)
        assert r.status_code == 202, r.get_data(as_text=True)
        job = job_in(client, r.get_data(as_text=True))
        wait_for(lambda: job.progress.preview, what="a live preview")
        steps = wait_for(lambda: job.progress.step, what="a step")
        panel = client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)
        # The fake samples only as webui polls its history: three polls are still to come.
        assert job.status == "running"
        assert re.search(r"step \d+/20", panel) and "<progress" in panel
        assert f"/jobs/{job.id}/preview?v=" in panel
        preview = client.get(f"/jobs/{job.id}/preview")
        assert preview.status_code == 200
        assert preview.data.startswith(b"\xff\xd8")  # the JPEG frame, without its 8-byte header
        assert job.done.wait(20) and job.status == "done", job.error
        assert 0 < steps <= 20
        [queued] = sent({"comfyui": fake}, "comfyui", "/prompt")
        sockets = [q for q in fake.server.app.config["REQUESTS"] if q["path"] == "/ws"]
        assert sockets and sockets[0]["args"]["clientId"] == queued["json"]["client_id"]

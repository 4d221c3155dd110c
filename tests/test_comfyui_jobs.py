"""ComfyUI jobs as a shared server sees them: another client's prompt runs first, webui's waits
in ComfyUI's own queue, an interrupt touches only webui's prompt, a prompt removed by someone
else is noticed, and uploads never replace another client's file.

Behaviours of the real server reproduced by tests/backends/comfyui.py, from
comfyanonymous/ComfyUI (Comfy-Org/ComfyUI) 0.3.64, commit 63722199: server.py post_interrupt
(a prompt_id interrupts only that prompt, if running), post_queue (``delete`` removes pending
prompts only), get_queue (items ``[number, prompt_id, …]``), get_history (``{}`` for queued,
running and unknown ids), image_upload (without overwrite, a taken name becomes ``name (1)``);
nodes.py KSampler (seed 0 … 2**64 - 1) and LoraLoader (strength_model, strength_clip)."""

from __future__ import annotations

import copy
import io
import json
import re

import pytest
import requests

from webui.catalog import BUNDLED_DIR

from .helpers import HX, defaults, image_bytes, job_in, sent, wait_for

WORKFLOW = json.loads((BUNDLED_DIR / "comfyui" / "txt2img.json").read_text())


@pytest.fixture
def comfy(fakes):
    """The shared fake ComfyUI, left with nothing running for the next test."""
    server = fakes["comfyui"]
    yield server
    requests.post(server.url + "/queue", json={"clear": True}, timeout=5)
    requests.post(server.url + "/interrupt", timeout=5)  # global: the other client's prompt


def other_client_prompt(comfy) -> str:
    """Another client of the same ComfyUI queues a prompt that runs until interrupted."""
    graph = copy.deepcopy(WORKFLOW)
    graph["6"]["inputs"]["text"] = "NEVER_FINISH"
    graph["4"]["inputs"]["ckpt_name"] = "sd15-demo.safetensors"
    graph["10"]["inputs"]["lora_name"] = "detail.safetensors"
    r = requests.post(comfy.url + "/prompt", json={"prompt": graph, "client_id": "other"},
                      timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["prompt_id"]


def queue_of(comfy) -> dict:
    return requests.get(comfy.url + "/queue", timeout=5).json()


def start(app, mode="txt2img", files=None, **fields):
    data = {**defaults(app, "comfyui", mode), "prompt": "a fox",
            "ckpt_name": "sd15-demo.safetensors", "width": "64", "height": "64", **fields}
    client = app.test_client()
    for key, blob in (files or {}).items():
        data[key] = (io.BytesIO(blob), f"{key}.png")
    r = client.post(f"/services/comfyui/{mode}/generate", headers=HX, data=data,
                    content_type="multipart/form-data")
    assert r.status_code == 202, r.get_data(as_text=True)
    return client, job_in(client, r.get_data(as_text=True))


def panel(client, job) -> str:
    return client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)


def test_a_job_behind_another_clients_prompt_shows_it_waits_there(services_app, comfy):
    other = other_client_prompt(comfy)
    client, job = start(services_app)
    html = wait_for(lambda: next((h for h in [panel(client, job)]
                                  if "queued on the backend" in h), None),
                    what="the panel to say the job waits in ComfyUI's queue")
    assert "waiting in ComfyUI's own queue behind <strong>1</strong> other job" in html
    assert "<progress" not in html
    # The other client's prompt ends; webui's runs and finishes.
    requests.post(comfy.url + "/interrupt", json={"prompt_id": other}, timeout=5)
    assert job.done.wait(20)
    assert job.status == "done", job.error
    assert len(job.images) == 1


def test_interrupt_removes_only_this_jobs_prompt(services_app, comfy):
    other = other_client_prompt(comfy)
    client, job = start(services_app)
    wait_for(lambda: job.remote == "waiting", what="webui's prompt waiting in ComfyUI")
    ours = job.variables["prompt_id"]
    r = client.post(f"/jobs/{job.id}/interrupt")
    assert r.status_code == 200
    assert job.done.wait(20)
    assert job.status == "interrupted"
    # webui's prompt left the queue without running; the other client's still runs.
    queue = queue_of(comfy)
    assert [item[1] for item in queue["queue_running"]] == [other]
    assert ours not in [item[1] for item in queue["queue_pending"]]
    calls = [(c["path"], c["json"]) for c in comfy.server.app.config["REQUESTS"]
             if c["method"] == "POST" and c["path"] in ("/queue", "/interrupt")]
    # Out of the queue first, then an interrupt naming only this prompt: never a bare one.
    assert calls == [("/queue", {"delete": [ours]}), ("/interrupt", {"prompt_id": ours})]
    assert "Interrupted before ComfyUI made an image." in panel(client, job)


def test_interrupting_a_running_prompt_stops_it(services_app, comfy, monkeypatch):
    client, job = start(services_app, prompt="NEVER_FINISH")
    wait_for(lambda: job.remote == "running", what="webui's prompt running in ComfyUI")
    client.post(f"/jobs/{job.id}/interrupt")
    assert job.done.wait(20)
    assert job.status == "interrupted"
    assert queue_of(comfy) == {"queue_running": [], "queue_pending": []}


def test_a_prompt_removed_by_someone_else_fails_the_job_at_once(services_app, comfy):
    other_client_prompt(comfy)
    client, job = start(services_app)
    wait_for(lambda: job.remote == "waiting", what="webui's prompt waiting in ComfyUI")
    # Another client (or ComfyUI's own UI) clears the queue.
    requests.post(comfy.url + "/queue", json={"clear": True}, timeout=5)
    assert job.done.wait(10), "the job kept waiting for a prompt ComfyUI no longer has"
    assert job.status == "failed"
    assert "ComfyUI no longer has this job: it is neither in its queue nor finished" in job.error


def test_a_job_that_times_out_is_stopped_on_comfyui_too(services_app, comfy, monkeypatch):
    service = services_app.extensions["webui"].folders.catalog().get("comfyui")
    wait = service.definition.modes["txt2img"].endpoint.steps[1]
    monkeypatch.setattr(wait.poll, "timeout", 1.0)
    monkeypatch.setattr(wait.poll, "every", 0.1)
    client, job = start(services_app, prompt="NEVER_FINISH")
    assert job.done.wait(20)
    assert job.status == "failed"
    assert "did not finish the job within 1 s. webui asked the service to stop it." in job.error
    assert queue_of(comfy) == {"queue_running": [], "queue_pending": []}


def test_uploads_never_replace_another_clients_file(services_app, comfy):
    # Another client already has an input called image.png.
    requests.post(comfy.url + "/upload/image", files={"image": ("image.png", image_bytes(
        (32, 32), (200, 0, 0)), "image/png")}, timeout=5)
    comfy.server.app.config["REQUESTS"].clear()
    client, job = start(services_app, mode="img2img", files={"image": image_bytes((64, 64))},
                        denoise="0.5", seed="3")
    assert job.done.wait(20) and job.status == "done", job.error
    [upload] = sent({"comfyui": comfy}, "comfyui", "/upload/image")
    assert "overwrite" not in upload["form"]
    graph = sent({"comfyui": comfy}, "comfyui", "/prompt")[0]["json"]["prompt"]
    # Renamed as ComfyUI does ("image (1).png", or a higher number if taken too).
    assert re.fullmatch(r"image \(\d+\)\.png", graph["12"]["inputs"]["image"])


def test_lora_strength_sets_model_and_clip(services_app, comfy):
    client, job = start(services_app, loras="detail.safetensors", lora_strength="0.6")
    assert job.done.wait(20) and job.status == "done", job.error
    lora = sent({"comfyui": comfy}, "comfyui", "/prompt")[-1]["json"]["prompt"]["10"]["inputs"]
    assert lora["strength_model"] == 0.6 and lora["strength_clip"] == 0.6


def test_the_whole_comfyui_seed_range(services_app, comfy):
    biggest = 2**64 - 1
    client, job = start(services_app, seed=str(biggest))
    assert job.done.wait(20) and job.status == "done", job.error
    graph = sent({"comfyui": comfy}, "comfyui", "/prompt")[-1]["json"]["prompt"]
    assert graph["3"]["inputs"]["seed"] == biggest
    assert job.images[0].seed == biggest
    # The history keeps it (SQLite integers stop at 2**63 - 1).
    record = services_app.extensions["webui"].history.get_job(job.id)
    assert record.images[0].seed == biggest
    r = client.post("/services/comfyui/txt2img/generate", headers=HX, data={
        **defaults(services_app, "comfyui", "txt2img"), "prompt": "x",
        "ckpt_name": "sd15-demo.safetensors", "seed": str(2**64)})
    assert r.status_code == 422
    assert "Seed must be at most 18446744073709551615" in r.get_data(as_text=True)


def test_sampler_and_scheduler_are_always_chosen(services_app):
    client = services_app.test_client()
    html = client.get("/services/comfyui/txt2img/options/sampler_name").get_data(as_text=True)
    assert '<option value="">' not in html
    r = client.post("/services/comfyui/txt2img/generate", headers=HX, data={
        **defaults(services_app, "comfyui", "txt2img"), "prompt": "x",
        "ckpt_name": "sd15-demo.safetensors", "sampler_name": ""})
    assert r.status_code == 422
    assert "Sampler is required" in r.get_data(as_text=True)


def test_workflows_and_bindings_name_inputs_the_nodes_declare(fakes):
    """ComfyUI ignores an input its node does not declare (execution.validate_inputs only reads
    the declared ones), so a misspelt binding would run silently with the workflow's own value.
    Every input of the bundled workflows, and every node input a definition writes, must be one
    the node class declares in /object_info (the fake's is built from nodes.py INPUT_TYPES)."""
    import yaml

    info = requests.get(fakes["comfyui"].url + "/object_info", timeout=5).json()

    def declared(node_class: str) -> set[str]:
        inputs = info[node_class]["input"]
        return set(inputs.get("required", {})) | set(inputs.get("optional", {}))

    workflows = {}
    for name in ("txt2img.json", "img2img.json", "inpaint.json", "upscale.json"):
        graph = json.loads((BUNDLED_DIR / "comfyui" / name).read_text())
        workflows[name] = graph
        for node_id, node in graph.items():
            unknown = set(node["inputs"]) - declared(node["class_type"])
            assert not unknown, f"{name} node {node_id}: {unknown}"
    definition = yaml.safe_load((BUNDLED_DIR / "comfyui.yaml").read_text())
    written = []
    for mode, params in definition["capabilities"][1]["parameters"].items():
        items = params if isinstance(params, list) else params.get("add", [])
        for p in items:
            targets = p.get("target", [])
            written += [(mode, t) for t in (targets if isinstance(targets, list) else [targets])]
    bindings = [(mode, t.split(":", 1)[1]) for mode, t in written if ".inputs." in t]
    assert len(bindings) >= 13
    for mode, path in bindings:
        _, node_id, _, name = path.split(".")
        # Each mode's workflow file is its own (img2img's also has txt2img's nodes).
        node = workflows[f"{mode}.json"][node_id]
        assert name in declared(node["class_type"]), path

"""The fake ComfyUI server (tests/backends/comfyui.py) answers like the real one, and the bundled
ComfyUI workflows (webui/services/comfyui/*.json) run on it once their model names are bound."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jmespath
import pytest
import requests
import websocket
from flask.testing import FlaskClient
from PIL import Image

from .backends.comfyui import OOM_MESSAGE, OOM_TIPS, SAMPLERS, create_comfyui_app
from .helpers import ServerThread, image_bytes

WORKFLOWS = Path(__file__).parent.parent / "webui" / "services" / "comfyui"

# What a definition reads from GET /history/{prompt_id} (one key, the prompt id, or none yet).
DONE = "values(@)[0].status.status_str != null"
FAILED = "values(@)[0].status.status_str == 'error'"
ERROR_MESSAGE = (
    "values(@)[0].status.messages[?[0] == 'execution_error'][1].exception_message | [0]"
)
IMAGES = "values(@)[0].outputs.*.images[]"


def workflow(name: str, **inputs: Any) -> dict[str, Any]:
    """A bundled workflow with the fake's model names bound, and NODE__INPUT=value overrides."""
    prompt = json.loads((WORKFLOWS / f"{name}.json").read_text())
    prompt["4"]["inputs"]["ckpt_name"] = "sd15-demo.safetensors"
    prompt["10"]["inputs"]["lora_name"] = "detail.safetensors"
    for key, value in inputs.items():
        node, _, field = key.partition("__")
        prompt[node]["inputs"][field] = value
    return prompt


def upload(client: FlaskClient, data: bytes, filename: str, **form: str):
    return client.post("/upload/image", data={"image": (io.BytesIO(data), filename), **form},
                       content_type="multipart/form-data")


def run(client: FlaskClient, prompt: dict[str, Any], polls: int = 2) -> tuple[str, dict]:
    """Queue PROMPT, check it stays pending for POLLS polls, and return its history entry."""
    r = client.post("/prompt", json={"prompt": prompt, "client_id": "tester"})
    assert r.status_code == 200, r.get_json()
    prompt_id = r.get_json()["prompt_id"]
    for _ in range(polls):
        assert client.get(f"/history/{prompt_id}").get_json() == {}
    history = client.get(f"/history/{prompt_id}").get_json()
    assert list(history) == [prompt_id]
    return prompt_id, history


def view(client: FlaskClient, image: dict[str, str]) -> Image.Image:
    r = client.get("/view", query_string=image)
    assert r.status_code == 200 and r.mimetype == "image/png"
    return Image.open(io.BytesIO(r.data))


def rejection(client: FlaskClient, prompt: Any) -> dict[str, Any]:
    r = client.post("/prompt", json={"prompt": prompt})
    assert r.status_code == 400
    return r.get_json()


@pytest.fixture
def client() -> FlaskClient:
    return create_comfyui_app().test_client()


def test_workflow_files_use_the_node_ids_the_definition_binds():
    txt = json.loads((WORKFLOWS / "txt2img.json").read_text())
    img = json.loads((WORKFLOWS / "img2img.json").read_text())
    assert {k: v["class_type"] for k, v in txt.items()} == {
        "3": "KSampler", "4": "CheckpointLoaderSimple", "5": "EmptyLatentImage",
        "6": "CLIPTextEncode", "7": "CLIPTextEncode", "8": "VAEDecode", "9": "SaveImage",
        "10": "LoraLoader"}
    assert set(img) == set(txt) - {"5"} | {"12", "13"}
    assert img["3"]["inputs"]["latent_image"] == ["13", 0] and img["3"]["inputs"]["denoise"] == 0.75
    assert all(node["_meta"]["title"] for node in (*txt.values(), *img.values()))


def test_txt2img_runs_after_the_polls(client):
    prompt_id, history = run(client, workflow("txt2img", **{"5__batch_size": 2}))
    entry = history[prompt_id]
    number, pid, prompt, extra_data, outputs = entry["prompt"]
    assert (number, pid, outputs) == (0, prompt_id, ["9"])
    assert prompt["3"]["inputs"]["seed"] == 156680208700286
    assert extra_data["client_id"] == "tester" and isinstance(extra_data["create_time"], int)
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    events = [m[0] for m in entry["status"]["messages"]]
    assert events == ["execution_start", "execution_cached", "execution_success"]
    assert all(m[1]["prompt_id"] == prompt_id and "timestamp" in m[1]
               for m in entry["status"]["messages"])
    assert entry["meta"]["9"]["node_id"] == "9"
    images = entry["outputs"]["9"]["images"]
    assert images == [
        {"filename": "webui_00001_.png", "subfolder": "", "type": "output"},
        {"filename": "webui_00002_.png", "subfolder": "", "type": "output"},
    ]
    first, second = (view(client, image) for image in images)
    assert first.size == second.size == (512, 512)
    assert first.tobytes() != second.tobytes()  # seed, seed + 1
    assert json.loads(first.info["prompt"])["9"]["class_type"] == "SaveImage"
    # Later polls and /history (all) show the same entry; the queue is empty again.
    assert client.get(f"/history/{prompt_id}").get_json() == history
    assert client.get("/history").get_json() == history
    assert client.get("/queue").get_json() == {"queue_running": [], "queue_pending": []}


def test_images_follow_the_seed_and_the_latent_size():
    client = create_comfyui_app(polls_before_done=0).test_client()
    sizes = {"5__width": 100, "5__height": 64}  # the VAE floors to 8: 96 wide
    pics = []
    for seed in (1, 1, 2):
        prompt_id, history = run(client, workflow("txt2img", **sizes, **{"3__seed": seed}), 0)
        pics.append(view(client, history[prompt_id]["outputs"]["9"]["images"][0]))
    assert pics[0].size == (96, 64)
    assert pics[0].tobytes() == pics[1].tobytes() != pics[2].tobytes()


def test_img2img_runs_on_an_uploaded_image(client):
    r = upload(client, image_bytes((200, 120)), "photo.png")
    assert r.status_code == 200
    assert r.get_json() == {"name": "photo.png", "subfolder": "", "type": "input"}
    choices = client.get("/object_info/LoadImage").get_json()["LoadImage"]["input"]["required"]
    assert choices["image"] == [["example.png", "photo.png"], {"image_upload": True}]

    prompt_id, history = run(client, workflow("img2img", **{"12__image": "photo.png"}))
    entry = history[prompt_id]
    assert entry["status"]["completed"] is True
    (image,) = entry["outputs"]["9"]["images"]
    out = view(client, image)
    assert out.size == (200, 120)
    # denoise 0.75 keeps a quarter of the red picture in every pixel
    assert out.convert("RGB").getpixel((0, 0))[0] >= 50


def test_img2img_file_runs_as_is_on_the_bundled_example_png(client):
    prompt_id, history = run(client, workflow("img2img"))
    (image,) = history[prompt_id]["outputs"]["9"]["images"]
    assert view(client, image).size == (512, 512)


def test_upload_names_duplicates_and_bad_uploads(client):
    assert upload(client, image_bytes((8, 8)), "a.png").get_json()["name"] == "a.png"
    # the same bytes again: the same file; other bytes: a new name, unless overwrite
    assert upload(client, image_bytes((8, 8)), "a.png").get_json()["name"] == "a.png"
    assert upload(client, image_bytes((8, 8), (1, 2, 3)), "a.png").get_json()["name"] == "a (1).png"
    r = upload(client, image_bytes((8, 8), (9, 9, 9)), "a.png", overwrite="true")
    assert r.get_json()["name"] == "a.png"
    r = upload(client, image_bytes((16, 8)), "b.png", subfolder="clips", type="input")
    assert r.get_json() == {"name": "b.png", "subfolder": "clips", "type": "input"}
    assert view(client, {"filename": "b.png", "subfolder": "clips", "type": "input"}).size == (
        16, 8)
    assert upload(client, image_bytes((8, 8)), "y.png", subfolder="../up").status_code == 400
    assert upload(client, image_bytes((8, 8)), "y.png", subfolder="/etc").status_code == 400
    assert client.post("/upload/image", data={"overwrite": "true"}).status_code == 400


def test_view_answers_404_and_400_like_the_real_server(client):
    assert client.get("/view", query_string={"filename": "nope.png"}).status_code == 404
    assert client.get("/view").status_code == 404
    assert client.get("/view", query_string={"filename": "../x.png"}).status_code == 400
    assert client.get("/view", query_string={"filename": "x.png", "type": "bad"}).status_code \
        == 400


def test_bundled_files_fail_validation_until_the_names_are_bound(client):
    body = rejection(client, json.loads((WORKFLOWS / "txt2img.json").read_text()))
    assert body["error"] == {"type": "prompt_outputs_failed_validation",
                             "message": "Prompt outputs failed validation",
                             "details": "", "extra_info": {}}
    assert set(body["node_errors"]) == {"4", "10"}
    ckpt = body["node_errors"]["4"]
    assert ckpt["class_type"] == "CheckpointLoaderSimple" and ckpt["dependent_outputs"] == ["9"]
    assert ckpt["errors"] == [{
        "type": "value_not_in_list", "message": "Value not in list",
        "details": "ckpt_name: 'v1-5-pruned-emaonly.safetensors' not in "
                   "['sd15-demo.safetensors', 'sdxl-demo.safetensors']",
        "extra_info": {
            "input_name": "ckpt_name",
            "input_config": [["sd15-demo.safetensors", "sdxl-demo.safetensors"],
                             {"tooltip": "The name of the checkpoint (model) to load."}],
            "received_value": "v1-5-pruned-emaonly.safetensors"}}]


@pytest.mark.parametrize(("node", "name", "value", "kind", "details"), [
    ("3", "steps", 0, "value_smaller_than_min", "steps"),
    ("3", "seed", 2**64, "value_bigger_than_max", "seed"),
    ("3", "denoise", 1.5, "value_bigger_than_max", "denoise"),
    ("5", "width", 8, "value_smaller_than_min", "width"),
    ("5", "batch_size", 5000, "value_bigger_than_max", "batch_size"),
    ("3", "steps", "many", "invalid_input_type",
     "steps, many, invalid literal for int() with base 10: 'many'"),
    ("3", "scheduler", "fast", "value_not_in_list",
     "scheduler: 'fast' not in ['simple', 'sgm_uniform', 'karras', 'exponential', "
     "'ddim_uniform', 'beta', 'normal', 'linear_quadratic', 'kl_optimal']"),
    ("3", "sampler_name", "magic", "value_not_in_list",
     f"sampler_name: 'magic' not in (list of length {len(SAMPLERS)})"),
])
def test_bad_values_give_the_real_node_errors(client, node, name, value, kind, details):
    body = rejection(client, workflow("txt2img", **{f"{node}__{name}": value}))
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    (error,) = body["node_errors"][node]["errors"]
    assert (error["type"], error["details"]) == (kind, details)
    assert error["extra_info"]["input_name"] == name


def test_missing_inputs_links_nodes_and_outputs(client):
    prompt = workflow("txt2img")
    del prompt["3"]["inputs"]["cfg"]
    (error,) = rejection(client, prompt)["node_errors"]["3"]["errors"]
    assert (error["type"], error["details"]) == ("required_input_missing", "cfg")

    prompt = workflow("txt2img", **{"3__latent_image": ["99", 0]})
    errors = rejection(client, prompt)["node_errors"]["3"]["errors"]
    assert [(e["type"], e["details"]) for e in errors] == [
        ("exception_during_inner_validation", "'99'")]

    prompt = workflow("txt2img", **{"3__positive": ["4", 1]})
    (error,) = rejection(client, prompt)["node_errors"]["3"]["errors"]
    assert error["type"] == "return_type_mismatch"

    prompt = workflow("img2img", **{"12__image": "missing.png"})
    (error,) = rejection(client, prompt)["node_errors"]["12"]["errors"]
    assert error == {"type": "custom_validation_failed",
                     "message": "Custom validation failed for node",
                     "details": "image - Invalid image file: missing.png",
                     "extra_info": {"input_name": "image"}}

    prompt = workflow("txt2img")
    prompt["3"]["class_type"] = "KSamplerTurbo"
    body = rejection(client, prompt)
    assert body["node_errors"] == {}
    assert body["error"]["type"] == "missing_node_type"
    assert body["error"]["extra_info"] == {"node_id": "3", "class_type": "KSamplerTurbo",
                                           "node_title": "KSampler"}

    prompt = workflow("txt2img")
    del prompt["9"]
    assert rejection(client, prompt)["error"]["type"] == "prompt_no_outputs"

    r = client.post("/prompt", json={"client_id": "x"})
    assert r.status_code == 400
    assert r.get_json()["error"]["type"] == "no_prompt"


def test_fail_execution_completes_as_an_error(client):
    prompt = workflow("txt2img", **{"6__text": "a cat FAIL_EXECUTION"})
    prompt_id, history = run(client, prompt)
    status = history[prompt_id]["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)
    assert history[prompt_id]["outputs"] == {}
    assert [m[0] for m in status["messages"]] == [
        "execution_start", "execution_cached", "execution_error"]
    error = status["messages"][-1][1]
    assert error["prompt_id"] == prompt_id
    assert (error["node_id"], error["node_type"]) == ("3", "KSampler")
    # v0.3.64 execution.execute: "{}\n{}".format(ex, tips), with the OOM tips
    assert error["exception_message"] == f"{OOM_MESSAGE}\n{OOM_TIPS}"
    assert error["exception_type"] == "torch.OutOfMemoryError"
    assert error["traceback"] and error["current_inputs"]["seed"] == [156680208700286]
    assert sorted(error["executed"]) == ["10", "4", "5", "6", "7"]  # all before the sampler


def test_a_failure_word_in_the_negative_prompt_does_nothing(client):
    prompt_id, history = run(client, workflow("txt2img", **{"7__text": "FAIL_EXECUTION"}))
    assert history[prompt_id]["status"]["completed"] is True


def test_never_finish_stays_running_until_interrupted(client):
    r = client.post("/prompt", json={"prompt": workflow("txt2img", **{"6__text": "NEVER_FINISH"})})
    prompt_id = r.get_json()["prompt_id"]
    other = client.post("/prompt", json={"prompt": workflow("txt2img")}).get_json()["prompt_id"]
    for _ in range(10):
        assert client.get(f"/history/{prompt_id}").get_json() == {}
    queue = client.get("/queue").get_json()
    assert [item[1] for item in queue["queue_running"]] == [prompt_id]
    assert [item[1] for item in queue["queue_pending"]] == [other]
    assert client.get("/prompt").get_json() == {"exec_info": {"queue_remaining": 2}}

    # an interrupt for another prompt is ignored; a global one ends the running prompt
    assert client.post("/interrupt", json={"prompt_id": other}).status_code == 200
    assert client.get(f"/history/{prompt_id}").get_json() == {}
    r = client.post("/interrupt")
    assert r.status_code == 200 and r.data == b""
    status = client.get(f"/history/{prompt_id}").get_json()[prompt_id]["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)
    assert status["messages"][-1][0] == "execution_interrupted"
    assert status["messages"][-1][1]["node_id"] == "3"


def test_object_info_and_system_stats_shapes(client):
    info = client.get("/object_info/CheckpointLoaderSimple").get_json()
    node = info["CheckpointLoaderSimple"]
    assert node["input"]["required"]["ckpt_name"][0] == ["sd15-demo.safetensors",
                                                         "sdxl-demo.safetensors"]
    assert (node["output"], node["name"], node["display_name"], node["category"]) == (
        ["MODEL", "CLIP", "VAE"], "CheckpointLoaderSimple", "Load Checkpoint", "loaders")
    assert node["output_node"] is False and node["input_order"] == {"required": ["ckpt_name"]}
    ksampler = client.get("/object_info/KSampler").get_json()["KSampler"]["input"]["required"]
    assert {"euler", "euler_ancestral", "dpmpp_2m"} <= set(ksampler["sampler_name"][0])
    assert {"normal", "karras", "exponential", "simple"} <= set(ksampler["scheduler"][0])
    assert ksampler["seed"][1]["max"] == 0xFFFFFFFFFFFFFFFF
    assert client.get("/object_info/SaveImage").get_json()["SaveImage"]["output_node"] is True
    assert client.get("/object_info/NoSuchNode").get_json() == {}
    assert set(client.get("/object_info").get_json()) >= {
        "CheckpointLoaderSimple", "KSampler", "LoraLoader", "EmptyLatentImage", "CLIPTextEncode",
        "VAEDecode", "VAEEncode", "LoadImage", "SaveImage"}

    stats = client.get("/api/system_stats").get_json()  # every route also under /api
    assert {"os", "python_version", "embedded_python", "comfyui_version"} <= set(stats["system"])
    assert stats["devices"][0]["type"] == "cuda"


def test_requests_are_recorded():
    app = create_comfyui_app()
    client = app.test_client()
    client.get("/system_stats")
    client.post("/prompt", json={"prompt": workflow("txt2img"), "client_id": "c"})
    upload(client, image_bytes((8, 8)), "a.png", overwrite="true")
    client.get("/history/abc", query_string={"x": "1"})
    seen = app.config["REQUESTS"]
    assert [(r["method"], r["path"]) for r in seen] == [
        ("GET", "/system_stats"), ("POST", "/prompt"), ("POST", "/upload/image"),
        ("GET", "/history/abc")]
    assert seen[1]["json"]["client_id"] == "c" and seen[1]["json"]["prompt"]["3"]
    assert seen[2]["form"] == ["image", "overwrite"] and seen[2]["files"] == {"image": "a.png"}
    assert seen[3]["args"] == {"x": "1"}


def test_jmespath_expressions_for_the_definition(client):
    def ask(expression: str, data: Any) -> Any:
        return jmespath.search(expression, data)

    pending: dict[str, Any] = {}
    assert ask(DONE, pending) is False and ask(FAILED, pending) is False
    assert ask(IMAGES, pending) is None

    prompt_id, ok = run(client, workflow("txt2img", **{"5__batch_size": 2}))
    assert ask(DONE, ok) is True and ask(FAILED, ok) is False
    assert ask(ERROR_MESSAGE, ok) is None
    assert [i["filename"] for i in ask(IMAGES, ok)] == ["webui_00001_.png", "webui_00002_.png"]

    prompt_id, bad = run(client, workflow("txt2img", **{"6__text": "FAIL_EXECUTION"}))
    assert ask(DONE, bad) is True and ask(FAILED, bad) is True
    assert ask(ERROR_MESSAGE, bad) == f"{OOM_MESSAGE}\n{OOM_TIPS}"
    assert ask(IMAGES, bad) == []

    never = workflow("txt2img", **{"6__text": "NEVER_FINISH"})
    prompt_id = client.post("/prompt", json={"prompt": never}).get_json()["prompt_id"]
    client.post("/interrupt")
    stopped = client.get(f"/history/{prompt_id}").get_json()
    assert ask(DONE, stopped) is True and ask(FAILED, stopped) is True
    assert ask(ERROR_MESSAGE, stopped) is None  # interrupted: no exception message

    info = client.get("/object_info/CheckpointLoaderSimple").get_json()
    assert ask("CheckpointLoaderSimple.input.required.ckpt_name[0]", info) == [
        "sd15-demo.safetensors", "sdxl-demo.safetensors"]
    info = client.get("/object_info/KSampler").get_json()
    assert "euler" in ask("KSampler.input.required.sampler_name[0]", info)
    assert "karras" in ask("KSampler.input.required.scheduler[0]", info)
    info = client.get("/object_info/LoraLoader").get_json()
    assert ask("LoraLoader.input.required.lora_name[0]", info) == ["detail.safetensors"]
    info = client.get("/object_info/LoadImage").get_json()
    assert ask("LoadImage.input.required.image[0]", info) == ["example.png"]


# The queue, interrupts and history as the real server runs them. Citations are to
# comfyanonymous/ComfyUI (now Comfy-Org/ComfyUI) at 637221995f7424a561bd825de3e61ea117dfe1e3,
# "ComfyUI version 0.3.64", written "v0.3.64" below. -----------------------------------------


def queue_prompt(client: FlaskClient, prompt: dict[str, Any], client_id: str = "webui",
                 **extra: Any) -> str:
    r = client.post("/prompt", json={"prompt": prompt, "client_id": client_id, **extra})
    assert r.status_code == 200, r.get_json()
    return r.get_json()["prompt_id"]


def another_clients_blocker(client: FlaskClient) -> str:
    """Another client's prompt that runs until interrupted (the NEVER_FINISH trigger)."""
    return queue_prompt(client, workflow("txt2img", **{"6__text": "NEVER_FINISH"}),
                        "someone-else")


def queue_ids(client: FlaskClient) -> tuple[list[str], list[str]]:
    queue = client.get("/queue").get_json()
    return ([item[1] for item in queue["queue_running"]],
            [item[1] for item in queue["queue_pending"]])


def where(client: FlaskClient, prompt_id: str) -> str:
    """A client's view of one prompt: /queue first, then /history/{id} (in this order a prompt
    that finishes in between is never taken for an unknown one: task_done moves it from
    currently_running to history under one lock)."""
    running, pending = queue_ids(client)
    history = client.get(f"/history/{prompt_id}").get_json()
    if history:
        return "finished"
    return "running" if prompt_id in running else "queued" if prompt_id in pending else "unknown"


def final_status(client: FlaskClient, prompt_id: str) -> dict[str, Any]:
    return client.get("/history").get_json()[prompt_id]["status"]


@pytest.mark.parametrize("body", [
    {}, {"data": b""}, {"data": b"not json"}, {"json": {}}, {"json": {"prompt_id": ""}},
    {"json": {"prompt_id": None}}, {"json": {"other": 1}},
])
def test_an_interrupt_without_a_prompt_id_stops_another_clients_prompt(client, body):
    """v0.3.64 server.py post_interrupt: a body that is not JSON counts as {} (the
    json.JSONDecodeError is caught); no truthy prompt_id -> nodes.interrupt_processing(),
    the global flag of comfy/model_management.py interrupt_current_processing, which stops
    whatever prompt runs, whoever queued it."""
    other = another_clients_blocker(client)
    r = client.post("/interrupt", **body)
    assert r.status_code == 200 and r.data == b""
    status = final_status(client, other)
    assert (status["status_str"], status["completed"]) == ("error", False)
    interrupted = status["messages"][-1]
    assert interrupted[0] == "execution_interrupted"
    assert interrupted[1]["prompt_id"] == other and interrupted[1]["node_id"] == "3"
    assert queue_ids(client) == ([], [])


def test_a_targeted_interrupt_only_stops_the_running_prompt_it_names(client):
    """v0.3.64 server.py post_interrupt: with a truthy prompt_id it interrupts only if an item
    of prompt_queue.get_current_queue()[0] (the running ones) has it at index 1; otherwise it
    only logs "not currently running, skipping interrupt" and answers 200."""
    other = another_clients_blocker(client)
    mine = queue_prompt(client, workflow("txt2img", **{"6__text": "a fox NEVER_FINISH"}))
    for target in (mine, "no-such-prompt"):  # pending, unknown: nothing happens
        assert client.post("/interrupt", json={"prompt_id": target}).status_code == 200
        assert queue_ids(client) == ([other], [mine])
        assert client.get(f"/history/{other}").get_json() == {}
    # the running one named: stopped, and the worker takes the next prompt
    assert client.post("/interrupt", json={"prompt_id": other}).status_code == 200
    assert final_status(client, other)["messages"][-1][0] == "execution_interrupted"
    assert queue_ids(client) == ([mine], [])
    assert client.post("/interrupt", json={"prompt_id": other}).status_code == 200  # finished
    assert queue_ids(client) == ([mine], [])
    assert client.post("/interrupt", json={"prompt_id": mine}).status_code == 200
    assert final_status(client, mine)["messages"][-1][0] == "execution_interrupted"
    assert queue_ids(client) == ([], [])


def test_an_interrupt_body_that_is_json_but_no_object_is_a_server_error(client):
    """v0.3.64 server.py post_interrupt calls json_data.get(...) on whatever request.json()
    returned: a list, a string or null raise AttributeError, which aiohttp answers with 500."""
    other = another_clients_blocker(client)
    for data in (b"[]", b"null", b'"x"'):
        assert client.post("/interrupt", data=data).status_code == 500
    assert queue_ids(client) == ([other], [])


def test_a_prompt_waits_in_the_queue_behind_another_clients_running_prompt(client):
    """main.py prompt_worker runs one prompt at a time (PromptQueue.get pops the next only
    after task_done); GET /history/{id} is PromptQueue.get_history(prompt_id), {} until then."""
    other = another_clients_blocker(client)
    mine = queue_prompt(client, workflow("txt2img"))
    for _ in range(20):
        assert client.get(f"/history/{mine}").get_json() == {}
    assert queue_ids(client) == ([other], [mine])
    assert (where(client, other), where(client, mine)) == ("running", "queued")
    assert client.get("/prompt").get_json() == {"exec_info": {"queue_remaining": 2}}

    client.post("/interrupt", json={"prompt_id": other})  # the other client gives up
    assert where(client, mine) == "running"
    prompt_id, history = run_after_start(client, mine, polls=1)  # where() polled once
    assert history[mine]["status"]["completed"] is True
    assert where(client, mine) == "finished" and queue_ids(client) == ([], [])


def run_after_start(client: FlaskClient, prompt_id: str, polls: int) -> tuple[str, dict]:
    for _ in range(polls):
        assert client.get(f"/history/{prompt_id}").get_json() == {}
    history = client.get(f"/history/{prompt_id}").get_json()
    assert list(history) == [prompt_id]
    return prompt_id, history


def test_a_prompt_ahead_in_the_queue_finishes_on_its_own():
    """The real worker does not wait for anyone's polls; the fake's worker steps on every
    GET /history/{id}, whatever the id, so a prompt queued behind an ordinary one of another
    client gets its turn while only its own history is polled."""
    client = create_comfyui_app(polls_before_done=2).test_client()
    other = queue_prompt(client, workflow("txt2img"), "someone-else")
    mine = queue_prompt(client, workflow("txt2img", **{"3__seed": 7}))
    assert queue_ids(client) == ([other], [mine])
    answers = [client.get(f"/history/{mine}").get_json() for _ in range(6)]
    assert answers[:5] == [{}] * 5 and list(answers[5]) == [mine]
    # the other prompt finished on the third step, without being polled
    assert client.get("/history").get_json()[other]["status"]["completed"] is True
    assert list(client.get("/history").get_json()) == [other, mine]


def test_a_prompt_deleted_from_the_queue_by_someone_else_is_unknown(client):
    """v0.3.64 server.py post_queue {"delete": [ids]} -> PromptQueue.delete_queue_item(lambda a:
    a[1] == id): only queued items; the running one lives in currently_running. The deleted
    prompt never runs: /history/{id} stays {} and /queue no longer lists it."""
    other = another_clients_blocker(client)
    mine = queue_prompt(client, workflow("txt2img"))
    third = queue_prompt(client, workflow("txt2img", **{"3__seed": 3}), "someone-else")
    r = client.post("/queue", json={"delete": [mine]})
    assert r.status_code == 200 and r.data == b""
    assert queue_ids(client) == ([other], [third])
    assert where(client, mine) == "unknown"

    # the running prompt cannot be deleted, an unknown id is ignored
    assert client.post("/queue", json={"delete": [other, "nope"]}).status_code == 200
    assert queue_ids(client) == ([other], [third])
    # {"clear": true} -> PromptQueue.wipe_queue: the pending ones only
    assert client.post("/queue", json={"clear": True}).status_code == 200
    assert queue_ids(client) == ([other], [])
    client.post("/interrupt")
    for _ in range(5):
        assert client.get(f"/history/{mine}").get_json() == {}
    assert set(client.get("/history").get_json()) == {other}
    assert queue_ids(client) == ([], [])
    # request.json() of an empty body raises: a 500, nothing changes
    assert client.post("/queue", data=b"").status_code == 500


def test_history_is_empty_alike_for_queued_running_and_unknown_prompts(client):
    """v0.3.64 execution.py PromptQueue.get_history(prompt_id): {prompt_id: entry} if the id is
    in the history, else {}; only /queue tells queued and running apart from unknown."""
    other = another_clients_blocker(client)
    mine = queue_prompt(client, workflow("txt2img"))
    for prompt_id in (other, mine, "never-queued"):
        assert client.get(f"/history/{prompt_id}").get_json() == {}
    assert [where(client, p) for p in (other, mine, "never-queued")] == [
        "running", "queued", "unknown"]


def test_queue_items_are_the_queued_tuples_in_heap_order(client):
    """v0.3.64 server.py post_prompt queues (number, prompt_id, prompt, extra_data,
    outputs_to_execute); number is PromptServer.number (an int, then += 1), negated with
    "front", or float(body["number"]). PromptQueue.put/get are heapq.heappush/heappop, and
    get_queue shows running items and the heap list as it stands."""
    other = another_clients_blocker(client)
    b = queue_prompt(client, workflow("txt2img"))
    c = queue_prompt(client, workflow("txt2img"), front=True)
    d = queue_prompt(client, workflow("txt2img"), number=0.5)
    queue = client.get("/queue").get_json()
    (running,) = queue["queue_running"]
    assert len(running) == 5 and running[:2] == [0, other]
    assert running[3]["client_id"] == "someone-else" and running[4] == ["9"]
    assert running[2]["3"]["class_type"] == "KSampler"
    assert [item[:2] for item in queue["queue_pending"]] == [[-2, c], [1, b], [0.5, d]]
    assert [item[3]["client_id"] for item in queue["queue_pending"]] == ["webui"] * 3

    client.post("/interrupt")
    assert queue_ids(client) == ([c], [d, b])  # lowest number first; heappop's new heap list
    run_after_start(client, c, polls=2)
    assert queue_ids(client) == ([d], [b])


def test_history_max_items_and_offset(client):
    """v0.3.64 server.py get_history -> PromptQueue.get_history(max_items, offset): oldest
    first; without offset the last max_items, with one max_items from there."""
    ids = [run(client, workflow("txt2img", **{"3__seed": i}))[0] for i in range(4)]
    assert list(client.get("/history").get_json()) == ids
    assert list(client.get("/history?max_items=2").get_json()) == ids[2:]
    assert list(client.get("/history?max_items=2&offset=1").get_json()) == ids[1:3]
    assert list(client.get("/history?offset=3").get_json()) == ids[3:]


# Uploads: v0.3.64 server.py image_upload ----------------------------------------------------


def test_upload_overwrite_and_the_renaming_rule(client):
    """overwrite exactly "true" or "1" writes over the file; anything else keeps it and tries
    f"{splitext[0]} ({i}){splitext[1]}" for i = 1, 2, ... unless a candidate holds the same
    bytes (compare_image_hash), whose name is then answered."""
    red = image_bytes((8, 8))
    green, blue = image_bytes((8, 8), (0, 200, 0)), image_bytes((8, 8), (0, 0, 200))
    assert upload(client, red, "a.png").get_json()["name"] == "a.png"
    for overwrite in ("false", "True", "yes"):
        r = upload(client, green, "a.png", overwrite=overwrite)
        assert r.get_json()["name"] == "a (1).png"  # the same green bytes each time
    assert upload(client, blue, "a.png").get_json()["name"] == "a (2).png"
    for overwrite in ("true", "1"):
        r = upload(client, blue, "a.png", overwrite=overwrite)
        assert r.get_json() == {"name": "a.png", "subfolder": "", "type": "input"}
        assert view(client, {"filename": "a.png", "type": "input"}).getpixel((0, 0))[2] == 200
    assert upload(client, red, "x.tar.gz").get_json()["name"] == "x.tar.gz"
    assert upload(client, blue, "x.tar.gz").get_json()["name"] == "x.tar (1).gz"
    assert upload(client, red, ".hidden").get_json()["name"] == ".hidden"
    assert upload(client, blue, ".hidden").get_json()["name"] == ".hidden (1)"


def test_upload_folders_and_types(client):
    """The path is join(upload_dir, normpath(subfolder), filename) and must stay inside the
    folder (commonpath); the answer echoes subfolder as sent. type None -> "input"; any other
    value than input/temp/output leaves get_dir_by_type's variable unbound: a 500."""
    r = upload(client, image_bytes((16, 8)), "b.png", subfolder="clips/../other")
    assert r.status_code == 200
    assert r.get_json() == {"name": "b.png", "subfolder": "clips/../other", "type": "input"}
    assert view(client, {"filename": "b.png", "subfolder": "other", "type": "input"}).size == (
        16, 8)
    r = upload(client, image_bytes((8, 8)), "t.png", type="temp")
    assert r.get_json() == {"name": "t.png", "subfolder": "", "type": "temp"}
    assert view(client, {"filename": "t.png", "type": "temp"}).size == (8, 8)
    assert upload(client, image_bytes((8, 8)), "c.png", type="models").status_code == 500
    assert upload(client, image_bytes((8, 8)), "c.png", type="").status_code == 500


def test_any_bytes_are_stored_and_load_image_fails_when_it_runs(client):
    """image_upload writes whatever file it gets. LoadImage lists input files by the type their
    extension guesses (folder_paths.filter_files_content_types), VALIDATE_INPUTS only checks
    that the file exists, and load_image's Image.open raises PIL.UnidentifiedImageError."""
    assert upload(client, b"not an image", "x.png").get_json()["name"] == "x.png"
    assert upload(client, b"some notes", "notes.txt").status_code == 200
    choices = client.get("/object_info/LoadImage").get_json()["LoadImage"]["input"]["required"]
    assert choices["image"][0] == ["example.png", "x.png"]
    prompt_id, history = run(client, workflow("img2img", **{"12__image": "x.png"}))
    status = history[prompt_id]["status"]
    assert (status["status_str"], status["completed"]) == ("error", False)
    error = status["messages"][-1][1]
    assert (error["node_id"], error["node_type"]) == ("12", "LoadImage")
    assert error["exception_type"] == "PIL.UnidentifiedImageError"
    # execution.execute: "{}\n{}".format(ex, tips), tips empty for anything but an OOM
    assert error["exception_message"] == (
        "cannot identify image file '/opt/ComfyUI/input/x.png'\n")


# Nodes: v0.3.64 nodes.py KSampler / LoraLoader INPUT_TYPES, execution.py validate_inputs ------


def test_the_seed_goes_up_to_2_64_minus_1_and_lora_has_two_strengths(client):
    """KSampler seed: ("INT", {"min": 0, "max": 0xffffffffffffffff}); LoraLoader: model, clip,
    lora_name, strength_model and strength_clip (FLOAT, -100.0 to 100.0, step 0.01)."""
    prompt_id, history = run(client, workflow("txt2img", **{"3__seed": 2**64 - 1}))
    assert history[prompt_id]["prompt"][2]["3"]["inputs"]["seed"] == 2**64 - 1
    assert history[prompt_id]["status"]["completed"] is True
    lora = client.get("/object_info/LoraLoader").get_json()["LoraLoader"]
    assert lora["input_order"] == {"required": [
        "model", "clip", "lora_name", "strength_model", "strength_clip"]}
    for name in ("strength_model", "strength_clip"):
        kind, extra = lora["input"]["required"][name]
        assert (kind, extra["min"], extra["max"], extra["step"]) == ("FLOAT", -100.0, 100.0, 0.01)
    (error,) = rejection(client, workflow("txt2img", **{"10__strength_clip": 100.5}))[
        "node_errors"]["10"]["errors"]
    assert (error["type"], error["details"]) == ("value_bigger_than_max", "strength_clip")


def test_an_input_name_the_node_does_not_have_is_ignored(client):
    """validate_inputs loops over the class's required and optional names only, so a value
    under any other name is never looked at: the prompt is accepted and runs (get_input_data
    drops it). Only a required input left without its own name is an error."""
    prompt = workflow("txt2img", **{"10__strenght_model": 0.25})
    prompt_id, history = run(client, prompt)
    assert history[prompt_id]["status"]["completed"] is True
    assert history[prompt_id]["prompt"][2]["10"]["inputs"]["strenght_model"] == 0.25

    prompt = workflow("txt2img", **{"10__strength": 0.25})
    del prompt["10"]["inputs"]["strength_model"]
    (error,) = rejection(client, prompt)["node_errors"]["10"]["errors"]
    assert error == {"type": "required_input_missing", "message": "Required input is missing",
                     "details": "strength_model", "extra_info": {"input_name": "strength_model"}}


def test_a_link_under_a_name_the_node_does_not_have_fails_when_it_runs(client):
    """A link is different: ExecutionList.add_node follows every linked input, get_input_data
    passes it on, and the node's function gets an unexpected keyword argument."""
    prompt_id, history = run(client, workflow("txt2img", **{"10__extra": ["4", 0]}))
    error = history[prompt_id]["status"]["messages"][-1]
    assert error[0] == "execution_error"
    assert (error[1]["node_id"], error[1]["exception_type"]) == ("10", "TypeError")
    assert error[1]["exception_message"] == (
        "LoraLoader.load_lora() got an unexpected keyword argument 'extra'\n")


# The websocket (GET /ws?clientId=…), on a real server: v0.3.64 server.websocket_handler,
# send_json/send_bytes/encode_bytes/send_image(_with_metadata), main.hijack_progress and
# prompt_worker, execution.execute/PromptExecutor, comfy_execution/progress.py. --------------


class WsClient:
    """A websocket-client connection to the fake, read message by message: text as
    ``(type, data)``, binary frames as ``("bytes", frame)``."""

    def __init__(self, url: str, client_id: str | None, path: str = "/ws"):
        query = f"?clientId={client_id}" if client_id is not None else ""
        self.conn = websocket.create_connection(url.replace("http://", "ws://") + path + query,
                                                timeout=5, suppress_origin=True)

    def read(self) -> tuple[str, Any]:
        message = self.conn.recv()
        if isinstance(message, bytes):
            return "bytes", message
        decoded = json.loads(message)
        return decoded["type"], decoded["data"]

    def read_until(self, done: Callable[[str, Any], bool]) -> list[tuple[str, Any]]:
        out = []
        while not out or not done(*out[-1]):
            out.append(self.read())
        return out

    def nothing_more(self, wait: float = 0.2) -> bool:
        """No message within WAIT seconds (the fake sends within milliseconds)."""
        self.conn.settimeout(wait)
        try:
            self.conn.recv()
        except websocket.WebSocketTimeoutException:
            return True
        finally:
            self.conn.settimeout(5)
        return False

    def close(self) -> None:
        self.conn.close()


def finished(kind: str, data: Any) -> bool:
    """main.prompt_worker's last message of a prompt: executing with node None."""
    return kind == "executing" and data["node"] is None


def summary(messages: list[tuple[str, Any]]) -> list[str]:
    """Each message in short: its type, and the node or step it is about."""
    out = []
    for kind, data in messages:
        if kind == "bytes":
            event, fmt = struct.unpack(">II", data[:8])
            out.append(f"bytes {event} {fmt}")
        elif kind in ("executing", "executed"):
            out.append(f"{kind} {data['node']}")
        elif kind == "progress":
            out.append(f"progress {data['value']}/{data['max']}")
        else:
            out.append(kind)
    return out


def node_messages(node: str, steps: int = 0, preview: str = "") -> list[str]:
    """execution.execute for one node: progress_state (start), executing, the sampler steps
    (progress_state, progress, and the preview frame), progress_state (finish)."""
    out = ["progress_state", f"executing {node}"]
    for step in range(1, steps + 1):
        out += ["progress_state", f"progress {step}/{steps}"] + ([preview] if preview else [])
    return [*out, "progress_state"]


# Depth first from SaveImage "9": the checkpoint, the LoRA, both prompts, the latent, then the
# KSampler, VAEDecode and SaveImage.
BEFORE_SAMPLER = ["4", "10", "6", "7", "5"]


@pytest.fixture
def comfy() -> Iterator[ServerThread]:
    with ServerThread(create_comfyui_app(polls_before_done=2, previews=True,
                                         preview_format="PNG")) as server:
        yield server


def test_the_websocket_sends_a_prompts_messages_in_order_to_its_client_only(comfy):
    mine, other = WsClient(comfy.url, "webui"), WsClient(comfy.url, "someone-else")
    # websocket_handler: status with the socket's sid, first.
    assert mine.read() == ("status", {"status": {"exec_info": {"queue_remaining": 0}},
                                      "sid": "webui"})
    assert other.read()[1]["sid"] == "someone-else"

    r = requests.post(f"{comfy.url}/prompt", json={
        "prompt": workflow("txt2img", **{"3__steps": 4}), "client_id": "webui"}, timeout=5)
    prompt_id = r.json()["prompt_id"]
    # It starts at once: its nodes up to the KSampler run, the KSampler starts ...
    started = mine.read_until(lambda kind, data: kind == "executing" and data["node"] == "3")
    assert summary(started) == [
        "status", "status", "execution_start", "execution_cached",
        *[m for node in BEFORE_SAMPLER for m in node_messages(node)],
        "progress_state", "executing 3"]
    assert [data["status"]["exec_info"]["queue_remaining"] for _, data in started[:2]] == [1, 1]
    assert mine.nothing_more()
    # ... and every GET /history/{id} is a worker step: 2 of the 4 sampler steps each, then
    # the rest of the prompt.
    sampler = node_messages("3", 4, "bytes 1 2")  # preview frames: PREVIEW_IMAGE, PNG
    answers, rest = [], []
    for _ in range(2):
        answers.append(requests.get(f"{comfy.url}/history/{prompt_id}", timeout=5).json())
        rest += [mine.read() for _ in range(6)]
        assert mine.nothing_more()
    assert summary(rest) == sampler[2:14]
    answers.append(requests.get(f"{comfy.url}/history/{prompt_id}", timeout=5).json())
    assert answers[:2] == [{}, {}] and list(answers[2]) == [prompt_id]
    rest += mine.read_until(finished)
    assert summary(rest) == [
        *sampler[2:], *node_messages("8"),
        "progress_state", "executing 9", "executed 9", "progress_state",
        "execution_success", "status", "executing None"]

    messages = started + rest
    by_type: dict[str, list[Any]] = {}
    for kind, data in messages:
        by_type.setdefault(kind, []).append(data)
    assert all(data.get("prompt_id") == prompt_id for kind, data in messages
               if kind not in ("bytes", "status"))
    assert by_type["executing"][0] == {"node": "4", "display_node": "4", "prompt_id": prompt_id}
    assert by_type["progress"][0] == {"value": 1, "max": 4, "prompt_id": prompt_id, "node": "3"}
    assert by_type["executed"] == [{
        "node": "9", "display_node": "9", "prompt_id": prompt_id,
        "output": {"images": [{"filename": "webui_00001_.png", "subfolder": "",
                               "type": "output"}]}}]
    # The execution messages are the history entry's status messages, timestamps and all.
    entry = answers[2][prompt_id]
    assert [[kind, data] for kind, data in messages
            if kind.startswith("execution_")] == entry["status"]["messages"]
    assert by_type["status"][-1] == {"status": {"exec_info": {"queue_remaining": 0}}}
    # progress_state: every node started so far, the KSampler's at its step.
    last = by_type["progress_state"][-1]
    assert list(last["nodes"]) == [*BEFORE_SAMPLER, "3", "8", "9"]
    assert last["nodes"]["3"] == {
        "value": 4, "max": 4, "state": "finished", "node_id": "3", "prompt_id": prompt_id,
        "display_node_id": "3", "parent_node_id": None, "real_node_id": "3"}
    during = by_type["progress_state"][len(BEFORE_SAMPLER) * 2 + 1]
    assert during["nodes"]["3"]["state"] == "running" and during["nodes"]["3"]["value"] == 1

    # A preview: event 1, format 2, then a PNG of the picture so far; the last one is the
    # final image at an eighth of its size.
    frames = [data for kind, data in messages if kind == "bytes"]
    assert len(frames) == 4
    pictures = [Image.open(io.BytesIO(frame[8:])) for frame in frames]
    assert {p.format for p in pictures} == {"PNG"} and {p.size for p in pictures} == {(64, 64)}
    final = view(comfy.server.app.test_client(), entry["outputs"]["9"]["images"][0])
    small = final.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
    assert pictures[-1].convert("RGB").getpixel((8, 8)) == pytest.approx(
        small.getpixel((8, 8)), abs=40)
    assert pictures[0].tobytes() != pictures[-1].tobytes()

    # The other client's socket got the broadcast queue statuses (put, get, task_done), and
    # nothing else before the last of them: none of this prompt's messages.
    theirs = other.read_until(lambda kind, data: kind == "status"
                              and data["status"]["exec_info"]["queue_remaining"] == 0)
    assert summary(theirs) == ["status"] * 3
    assert other.nothing_more()
    mine.close()
    other.close()


def test_previews_are_off_by_default_and_jpeg_when_on():
    """--preview-method defaults to none: progress without frames; latent_preview.
    prepare_callback makes JPEG previews (format 1)."""
    for previews, frame in ((False, None), (True, "bytes 1 1")):
        with ServerThread(create_comfyui_app(polls_before_done=0, previews=previews)) as srv:
            sock = WsClient(srv.url, "webui", "/api/ws")  # also under /api
            sock.read()
            prompt_id = queue_on(srv, workflow("txt2img", **{"3__steps": 2}), "webui")
            requests.get(f"{srv.url}/history/{prompt_id}", timeout=5)
            sampled = [m for m in summary(sock.read_until(finished))
                       if m.startswith(("progress ", "bytes"))]
            expected = ["progress 1/2", "progress 2/2"]
            if frame:
                expected = ["progress 1/2", frame, "progress 2/2", frame]
            assert sampled == expected
            sock.close()


def queue_on(server: ServerThread, prompt: dict[str, Any], client_id: str | None) -> str:
    body: dict[str, Any] = {"prompt": prompt}
    if client_id is not None:
        body["client_id"] = client_id
    r = requests.post(f"{server.url}/prompt", json=body, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["prompt_id"]


def test_a_prompt_without_client_id_broadcasts_only_progress(comfy):
    """send_json/send_bytes with sid None go to every socket; add_message(broadcast=False)
    and the ``if server.client_id is not None`` guards of executing/executed send nothing."""
    a, b = WsClient(comfy.url, "a"), WsClient(comfy.url, None)
    assert len(b.read()[1]["sid"]) == 32  # uuid4().hex
    a.read()
    prompt_id = queue_on(comfy, workflow("txt2img", **{"3__steps": 2}), None)
    for _ in range(3):
        requests.get(f"{comfy.url}/history/{prompt_id}", timeout=5)
    for sock in (a, b):
        got = sock.read_until(lambda kind, data: kind == "status"
                              and data["status"]["exec_info"]["queue_remaining"] == 0)
        kinds = set(summary(got))
        assert kinds == {"status", "progress_state", "progress 1/2", "progress 2/2", "bytes 1 2"}
        assert sock.nothing_more()
        sock.close()


def test_an_interrupt_ends_the_run_with_execution_interrupted(comfy):
    """A NEVER_FINISH prompt stays in the sampler; a reconnecting socket of its client gets
    ``executing`` with the last node (websocket_handler); POST /interrupt ends it with
    execution_interrupted (broadcast=True: also without a client_id), task_done's status and
    executing None."""
    sock = WsClient(comfy.url, "webui")
    sock.read()
    prompt_id = queue_on(comfy, workflow("txt2img", **{"6__text": "NEVER_FINISH"}), "webui")
    sock.read_until(lambda kind, data: kind == "executing" and data["node"] == "3")
    for _ in range(3):
        requests.get(f"{comfy.url}/history/{prompt_id}", timeout=5)
    assert sock.nothing_more()  # the clock does not move a NEVER_FINISH prompt

    again = WsClient(comfy.url, "webui")  # replaces the first socket for this clientId
    assert summary([again.read(), again.read()]) == ["status", "executing 3"]
    requests.post(f"{comfy.url}/interrupt", json={"prompt_id": prompt_id}, timeout=5)
    end = again.read_until(finished)
    assert summary(end) == ["execution_interrupted", "status", "executing None"]
    assert end[0][1]["node_id"] == "3" and end[0][1]["executed"] == BEFORE_SAMPLER
    assert sock.nothing_more()
    sock.close()
    again.close()

    # Without a client_id, the execution_interrupted message still goes to every socket.
    watcher = WsClient(comfy.url, "watcher")
    watcher.read()
    other = queue_on(comfy, workflow("txt2img", **{"6__text": "NEVER_FINISH"}), None)
    requests.post(f"{comfy.url}/interrupt", timeout=5)
    got = watcher.read_until(lambda kind, data: kind == "execution_interrupted")
    assert got[-1][1]["prompt_id"] == other
    watcher.close()


def test_fail_execution_ends_with_execution_error_and_no_progress(comfy):
    sock = WsClient(comfy.url, "webui")
    sock.read()
    prompt_id = queue_on(comfy, workflow("txt2img", **{"6__text": "FAIL_EXECUTION"}), "webui")
    for _ in range(3):
        requests.get(f"{comfy.url}/history/{prompt_id}", timeout=5)
    got = sock.read_until(finished)
    # execution.execute: the KSampler started and raised; no finish, no step.
    assert summary(got)[-5:] == ["progress_state", "executing 3", "execution_error", "status",
                                 "executing None"]
    assert not [m for m in summary(got) if m.startswith(("progress ", "bytes"))]
    error = got[-3][1]
    assert error["node_id"] == "3" and error["exception_type"] == "torch.OutOfMemoryError"
    assert error["exception_message"] == f"{OOM_MESSAGE}\n{OOM_TIPS}"
    sock.close()


def test_feature_flags_switch_previews_to_frames_with_metadata(comfy):
    """A first message {"type": "feature_flags"} is answered with the server's flags;
    supports_preview_metadata makes WebUIProgressHandler send type 4 frames (length, JSON with
    the prompt_id and node, image) before each progress message, and hijack_progress no type 1
    frame."""
    sock = WsClient(comfy.url, "webui")
    sock.read()
    sock.conn.send(json.dumps({"type": "feature_flags",
                               "data": {"supports_preview_metadata": True}}))
    assert sock.read() == ("feature_flags", {"supports_preview_metadata": True,
                                             "max_upload_size": 104857600.0})
    prompt_id = queue_on(comfy, workflow("txt2img", **{"3__steps": 2}), "webui")
    for _ in range(3):
        requests.get(f"{comfy.url}/history/{prompt_id}", timeout=5)
    got = sock.read_until(finished)
    sampled = [m.split()[:2] for m in summary(got) if m.startswith(("progress ", "bytes"))]
    assert sampled == [["bytes", "4"], ["progress", "1/2"], ["bytes", "4"], ["progress", "2/2"]]
    frame = next(data for kind, data in got if kind == "bytes")
    (length,) = struct.unpack(">I", frame[4:8])
    meta = json.loads(frame[8:8 + length])
    assert meta == {"node_id": "3", "prompt_id": prompt_id, "display_node_id": "3",
                    "parent_node_id": None, "real_node_id": "3", "image_type": "image/png"}
    assert Image.open(io.BytesIO(frame[8 + length:])).format == "PNG"
    # A later feature_flags message is not the first: ignored.
    sock.conn.send(json.dumps({"type": "feature_flags", "data": {}}))
    assert sock.nothing_more()
    sock.close()


def test_a_plain_get_of_the_websocket_is_a_400(comfy):
    """aiohttp's WebSocketResponse.prepare refuses a request without the upgrade headers."""
    assert requests.get(f"{comfy.url}/ws?clientId=x", timeout=5).status_code == 400

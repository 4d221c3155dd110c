"""The fake ComfyUI server (tests/backends/comfyui.py) answers like the real one, and the bundled
ComfyUI workflows (webui/definitions/comfyui/*.json) run on it once their model names are bound."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jmespath
import pytest
from flask.testing import FlaskClient
from PIL import Image

from tests.backends.comfyui import OOM_MESSAGE, SAMPLERS, create_comfyui_app

WORKFLOWS = Path(__file__).parent.parent / "webui" / "definitions" / "comfyui"

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


def png(size: tuple[int, int], color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


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
    r = upload(client, png((200, 120)), "photo.png")
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
    assert upload(client, png((8, 8)), "a.png").get_json()["name"] == "a.png"
    # the same bytes again: the same file; other bytes: a new name, unless overwrite
    assert upload(client, png((8, 8)), "a.png").get_json()["name"] == "a.png"
    assert upload(client, png((8, 8), (1, 2, 3)), "a.png").get_json()["name"] == "a (1).png"
    r = upload(client, png((8, 8), (9, 9, 9)), "a.png", overwrite="true")
    assert r.get_json()["name"] == "a.png"
    r = upload(client, png((16, 8)), "b.png", subfolder="clips", type="input")
    assert r.get_json() == {"name": "b.png", "subfolder": "clips", "type": "input"}
    assert view(client, {"filename": "b.png", "subfolder": "clips", "type": "input"}).size == (
        16, 8)
    assert upload(client, b"not an image", "x.png").status_code == 400
    assert upload(client, png((8, 8)), "y.png", subfolder="../up").status_code == 400
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
    assert error["exception_message"] == OOM_MESSAGE
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
    upload(client, png((8, 8)), "a.png", overwrite="true")
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
    assert ask(ERROR_MESSAGE, bad) == OOM_MESSAGE
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

"""ComfyUI workflows become services (issue 15): the save format converted to the API format
with the server's node definitions, the form derived from the nodes (or App mode's choice), a
missing node type refused, a dropped file on the home page at once, ``webui import-workflow``.

The node definitions are the fake ComfyUI's /object_info, built from v0.3.64's INPUT_TYPES
(tests/backends/comfyui.py cites them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from webui import create_app
from webui.cli import main
from webui.workflow import WorkflowError, convert, derive_parameters, image_outputs

from .backends.comfyui import FakeComfyUI, _object_info, create_comfyui_app
from .helpers import ServerThread

FIXTURES = Path(__file__).parent / "fixtures" / "comfyui"
BUNDLED = Path(__file__).parent.parent / "webui" / "services" / "comfyui"
LORAS = ("detail.safetensors", "style.safetensors")


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="module")
def object_info() -> dict:
    return _object_info(FakeComfyUI(["sd15-demo.safetensors"], LORAS, 1))


@pytest.fixture(scope="module")
def comfy():
    server = ServerThread(create_comfyui_app(polls_before_done=1, loras=LORAS))
    yield server
    server.stop()


def test_save_format_becomes_the_api_graph_comfyui_runs(object_info):
    """Widget values by input order (the seed's "control after generate" value skipped), the
    PrimitiveNode's value in the input it drives, the reroute followed, the bypassed LoRA passed
    through by type, the muted preview and the note left out."""
    converted = convert(fixture("fox-primitive-reroute.json"), object_info)
    graph = converted.prompt
    assert sorted(graph, key=int) == ["3", "4", "5", "6", "7", "8", "9"]
    assert graph["3"]["inputs"] == {
        "seed": 42, "steps": 12, "cfg": 6.5, "sampler_name": "dpmpp_2m", "scheduler": "karras",
        "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
        "latent_image": ["5", 0]}
    assert graph["5"]["inputs"] == {"width": 96, "height": 64, "batch_size": 1}
    assert graph["6"]["inputs"] == {"text": "a red fox in the snow", "clip": ["4", 1]}
    assert graph["7"]["inputs"] == {"text": "blurry, watermark", "clip": ["4", 1]}
    assert graph["8"]["inputs"] == {"samples": ["3", 0], "vae": ["4", 2]}
    assert graph["9"] == {"inputs": {"filename_prefix": "fox", "images": ["8", 0]},
                          "class_type": "SaveImage", "_meta": {"title": "Save Image"}}
    assert converted.controls[("3", "seed")] == "fixed"


def test_form_without_app_mode_has_the_expected_inputs_with_roles(object_info):
    converted = convert(fixture("fox-primitive-reroute.json"), object_info)
    params, images, _ = derive_parameters(converted, object_info)
    by_key = {p["key"]: p for p in params}
    assert [p["key"] for p in params] == [
        "prompt", "negative_prompt", "ckpt_name", "steps", "cfg", "sampler_name", "scheduler",
        "denoise", "width", "height", "batch_size", "seed"]
    assert by_key["prompt"]["target"] == "submit:prompt.6.inputs.text"
    assert by_key["prompt"]["role"] == "prompt" and by_key["prompt"]["type"] == "textarea"
    assert by_key["negative_prompt"]["target"] == "submit:prompt.7.inputs.text"
    assert by_key["negative_prompt"]["role"] == "negative"
    # Cleared, the negative prompt is empty (not the workflow's "blurry, watermark").
    assert by_key["negative_prompt"]["ifEmpty"] == {
        "set": {"submit:prompt.7.inputs.text": ""}}
    # "fixed" in the workflow keeps its seed; the range is KSampler's (0 … 2^64-1).
    assert by_key["seed"]["defaultValue"] == 42
    assert by_key["seed"]["range"] == [0, 0xFFFFFFFFFFFFFFFF]
    assert by_key["width"]["range"] == [16, 16384] and by_key["width"]["step"] == 8
    assert by_key["cfg"]["range"] == [0.0, 100.0] and by_key["cfg"]["step"] == 0.1
    assert by_key["ckpt_name"]["optionsPath"] == (
        "CheckpointLoaderSimple.input.required.ckpt_name[0]")
    assert images == []


def test_app_mode_gives_exactly_the_chosen_inputs_in_order(object_info):
    converted = convert(fixture("fox-app-mode.json"), object_info)
    params, _, _ = derive_parameters(converted, object_info)
    assert [(p["key"], p["target"]) for p in params] == [
        ("prompt", "submit:prompt.6.inputs.text"),
        ("steps", "submit:prompt.3.inputs.steps"),
        # The PrimitiveNode's widget: the input it drives.
        ("width", "submit:prompt.5.inputs.width")]
    assert params[1]["description"] == "More steps, more detail"
    assert image_outputs(converted, object_info) == ["9"]


def test_every_image_output_node_is_a_result(object_info):
    converted = convert(fixture("upscale-api.json"), object_info)
    assert image_outputs(converted, object_info) == ["9", "22"]
    params, _, _ = derive_parameters(converted, object_info)
    assert {p["key"]: p["target"] for p in params}["upscale_model"] == (
        "submit:prompt.20.inputs.model_name")


def test_a_lora_stack_gets_fields_for_each_loader(object_info):
    params, _, _ = derive_parameters(convert(fixture("lora-stack-api.json"), object_info),
                                     object_info)
    loras = [(p["key"], p["label"]) for p in params if "lora" in p["key"] or "strength" in p["key"]]
    assert loras == [
        ("lora_name", "LoRA"), ("strength_model", "LoRA model strength"),
        ("strength_clip", "LoRA CLIP strength"),
        ("lora_name_11", "LoRA (Load LoRA #11)"),
        ("strength_model_11", "LoRA model strength (Load LoRA #11)"),
        ("strength_clip_11", "LoRA CLIP strength (Load LoRA #11)")]


def test_a_missing_node_type_is_named_with_its_package(object_info):
    with pytest.raises(WorkflowError) as caught:
        convert(fixture("unknown-node-api.json"), object_info)
    assert str(caught.value).startswith(
        "this ComfyUI does not have the node type the workflow needs: node 21 ('Ultimate SD "
        "Upscale') is a 'UltimateSDUpscale' from the custom-node package "
        "'ComfyUI_UltimateSDUpscale'.")
    # The save format says the package itself (properties.cnr_id).
    save = fixture("fox-primitive-reroute.json")
    save["nodes"][0].update(type="Power Lora Loader (rgthree)",
                            properties={"cnr_id": "rgthree-comfy", "ver": "1.0.0"})
    with pytest.raises(WorkflowError, match="node 4 \\('Load Checkpoint'\\) is a 'Power Lora "
                                            "Loader \\(rgthree\\)' from the custom-node package "
                                            "'rgthree-comfy'"):
        convert(save, object_info)


def test_a_dropped_workflow_is_on_the_home_page_at_once(make_settings, comfy, tmp_path):
    app = create_app(make_settings(url_overrides={"comfyui": comfy.url}))
    client = app.test_client()
    folder = app.extensions["webui"].settings.user_definitions
    assert "Fox primitive reroute" not in client.get("/").get_data(as_text=True)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "fox-primitive-reroute.json", folder / "Fox primitive reroute.json")
    html = client.get("/").get_data(as_text=True)
    assert "Fox primitive reroute" in html
    assert "/services/comfyui-fox-primitive-reroute/txt2img" in html
    # The definition and the graph are files the user can read; the dropped file moved in.
    assert (folder / "fox-primitive-reroute.yaml").is_file()
    graph = json.loads((folder / "fox-primitive-reroute" / "workflow.json").read_text())
    assert graph["5"]["inputs"]["width"] == 96
    assert (folder / "fox-primitive-reroute" / "Fox primitive reroute.json").is_file()
    assert not (folder / "Fox primitive reroute.json").exists()
    page = client.get("/services/comfyui-fox-primitive-reroute/txt2img")
    assert page.status_code == 200


def test_a_dropped_workflow_with_an_unknown_node_is_listed_with_why(make_settings, comfy):
    app = create_app(make_settings(url_overrides={"comfyui": comfy.url}))
    folder = app.extensions["webui"].settings.user_definitions
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "unknown-node-api.json", folder / "castle.json")
    html = app.test_client().get("/").get_data(as_text=True)
    assert "castle.json" in html
    assert ("this ComfyUI workflow was not imported: this ComfyUI does not have the node type "
            "the workflow needs: node 21 (&#39;Ultimate SD Upscale&#39;) is a "
            "&#39;UltimateSDUpscale&#39;") in html
    assert (folder / "castle.json").is_file()  # left where it is, to be fixed


def test_import_workflow_command(comfy, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["import-workflow", str(BUNDLED / "txt2img.json"), "--name", "My txt2img",
                 "--data-dir", str(data), "--url", comfy.url]) == 0
    out = capsys.readouterr().out
    assert "ok (comfyui-my-txt2img: txt2img)" in out
    assert "'My txt2img'" in out
    assert main(["import-workflow", str(FIXTURES / "unknown-node-api.json"),
                 "--data-dir", str(data), "--url", comfy.url]) == 1
    err = capsys.readouterr().err
    assert "'UltimateSDUpscale' from the custom-node package 'ComfyUI_UltimateSDUpscale'" in err
    assert sorted(p.name for p in (data / "definitions").iterdir()) == [
        "my-txt2img", "my-txt2img.yaml"]


def test_a_dropped_workflow_waits_for_comfyui_to_be_reachable(make_settings):
    # Port 9 (discard): nothing listens.
    app = create_app(make_settings(url_overrides={"comfyui": "http://127.0.0.1:9"}))
    folder = app.extensions["webui"].settings.user_definitions
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "lora-stack-api.json", folder / "lighthouse.json")
    html = app.test_client().get("/").get_data(as_text=True)
    assert ("this ComfyUI workflow was not imported: could not read ComfyUI&#39;s node types: "
            "Could not connect to ComfyUI at http://127.0.0.1:9: connection refused. Is it "
            "running? Reload this page to try again (after 15 s).") in html
    assert (folder / "lighthouse.json").is_file()


def test_app_mode_inputs_inside_a_subgraph_are_refused(object_info):
    app = fixture("fox-app-mode.json")
    # A NodeLocatorId (subgraph uuid:node id), as the frontend stores an input of a subgraph.
    app["extra"]["linearData"]["inputs"].append(["8f0c3a1e-2b9d-4c57-a1e2-3d4c5b6a7f80:12",
                                                 "cfg"])
    with pytest.raises(WorkflowError, match="inside a subgraph; subgraphs are not supported"):
        derive_parameters(convert(app, object_info), object_info)

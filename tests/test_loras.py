"""Several LoRAs with weights: the picker's server-side search over thousands, the values
checked and inserted through each definition's rule (A1111's <lora:name:weight> tags, ComfyUI's
chain of LoraLoader nodes), names a tag cannot carry refused, the demo backend reading tags as
A1111 1.10.1 does, and the format's checks of weight, refuse, repeat and chain."""

from __future__ import annotations

import io
import json
import re
import shutil
from html import unescape

import pytest
import responses
import yaml
from werkzeug.datastructures import MultiDict

from webui.catalog import BUNDLED_DIR
from webui.format import DefinitionError, load_file

from .helpers import (
    API,
    HX,
    defaults,
    field_errors,
    form,
    job_in,
    lora_collection,
    mock_lists,
    sent,
    submit,
)

SEARCH = "/services/a1111/txt2img/options/loras/search"
ODD = "odd:name"


def options(page: str) -> list[str]:
    """The values a picker's answer offers, in order."""
    return re.findall(r'role="option"[^>]*data-value="([^"]*)"', page)


def count_line(page: str) -> str:
    """The picker's line under its matches (how many, or what went wrong)."""
    return " ".join(re.search(r'id="[^"]+-count"[^>]*>(.*?)</p>', page, re.S).group(1).split())


# --- Search ---------------------------------------------------------------------------------


@responses.activate
def test_the_search_finds_substrings_of_names_and_aliases_on_the_server(client):
    mock_lists()
    responses.replace(responses.GET, f"{API}/loras", json=lora_collection(5000))
    html = client.get(f"{SEARCH}?loras__q=miku").get_data(as_text=True)
    # An alias starting with the word first, then a word starting with it, then the rest.
    assert options(html) == ["mk_outfit_pack", "hatsune_miku_v2", "vocaloid_miku_nendo"]
    assert 'data-label="Hatsune Miku (v2)"' in html  # shown by its alias, its name beside
    assert count_line(html) == "3 LoRAs match “miku”."
    # Every word counts, in any case and order.
    assert options(client.get(f"{SEARCH}?loras__q=V2+HATSUNE").get_data(as_text=True)) == [
        "hatsune_miku_v2"]
    # Many matches: the first 50, and how many there are.
    html = client.get(f"{SEARCH}?loras__q=castle").get_data(as_text=True)
    assert len(options(html)) == 50
    total = sum("castle" in (f"{x['name']} {x['alias']}").lower()
                for x in lora_collection(5000))
    assert count_line(html) == (f"50 of {total:,} LoRAs shown for “castle”: type more to "
                                "narrow the list.")
    html = client.get(f"{SEARCH}?loras__q=").get_data(as_text=True)
    assert len(options(html)) == 50 and "50 of 5,000 LoRAs shown" in count_line(html)
    html = client.get(f"{SEARCH}?loras__q=zzz").get_data(as_text=True)
    assert options(html) == [] and count_line(html) == "No LoRAs match “zzz”."
    # All of it from one answer of the backend; ↻ asks again.
    assert len([c for c in responses.calls if c.request.url.endswith("/loras")]) == 1
    client.get(f"{SEARCH}?loras__q=miku&refresh=1")
    assert len([c for c in responses.calls if c.request.url.endswith("/loras")]) == 2


@responses.activate
def test_the_search_says_what_went_wrong_and_only_pickers_have_one(client):
    responses.get(f"{API}/loras", status=500, body="Internal Server Error")
    html = client.get(f"{SEARCH}?loras__q=miku").get_data(as_text=True)
    assert "Could not search:" in count_line(html) and "HTTP 500" in html
    assert 'class="picker-count inline-error"' in html
    assert client.get("/services/a1111/txt2img/options/sampler_name/search").status_code == 404
    assert client.get("/services/a1111/txt2img/options/nope/search").status_code == 404


@responses.activate
def test_a_name_a_tag_cannot_carry_is_marked_in_the_matches(client):
    responses.get(f"{API}/loras", json=lora_collection(10, extra=((ODD, ODD), ("a>b", "a>b"))))
    html = client.get(f"{SEARCH}?loras__q=odd").get_data(as_text=True)
    assert options(html) == [ODD]
    assert 'data-problem="A1111 reads &lt;lora:name:weight&gt; up to the first' in html
    assert "cannot be used here" in html


# --- A1111: tags in the prompt ---------------------------------------------------------------


def a1111_post(client, data):
    """POST the a1111 form with the LoRA pickers' fields (lists keep their order)."""
    payload = [(k, v) for k, v in form(**data).items() if not isinstance(v, list)]
    payload += [(k, item) for k, v in data.items() if isinstance(v, list) for item in v]
    return client.post("/services/a1111/txt2img/generate", headers=HX, data=MultiDict(payload))


def post_pairs(app, service: str, mode: str, pairs: list, files: dict | None = None):
    """Submit a form given as (name, value) pairs, names repeated as a picker posts them, and
    wait for its job."""
    payload = MultiDict(pairs)
    for key, blob in (files or {}).items():
        payload.add(key, (io.BytesIO(blob), f"{key}.png"))
    return submit(app.test_client(), f"/services/{service}/{mode}/generate", data=payload,
                  content_type="multipart/form-data")


@responses.activate
def test_several_loras_each_with_its_weight_become_tags(client):
    mock_lists()
    responses.replace(responses.GET, f"{API}/loras", json=lora_collection(
        20, extra=(("detail_tweaker", "Detail Tweaker"), ("film_grain", "film_grain"))))
    responses.post(f"{API}/txt2img", json={"images": [], "parameters": {},
                                           "info": json.dumps({"all_seeds": []})})
    r = a1111_post(client, {"prompt": "a cat", "loras": ["detail_tweaker", "film_grain"],
                            "lora_weight": ["0.6", "-1.25"]})
    assert r.status_code == 202, r.get_data(as_text=True)
    job = job_in(client, r.get_data(as_text=True))
    assert job.done.wait(10)
    [post] = [c for c in responses.calls if c.request.method == "POST"]
    body = json.loads(post.request.body)
    assert body["prompt"] == "a cat <lora:detail_tweaker:0.6> <lora:film_grain:-1.25>"
    assert "loras" not in body and "lora_weight" not in body
    # Asked for as given: what Reuse parameters brings back.
    assert job.values["loras"] == [{"value": "detail_tweaker", "weight": 0.6},
                                   {"value": "film_grain", "weight": -1.25}]


@responses.activate
def test_loras_and_weights_are_checked_at_the_field(client):
    mock_lists()
    responses.replace(responses.GET, f"{API}/loras", json=lora_collection(
        10, extra=((ODD, ODD), ("detail_tweaker", "Detail Tweaker"))))
    cases = [
        ({"loras": ["detail_tweaker"], "lora_weight": ["2.5"]},
         "LoRAs 'detail_tweaker': Weight must be at most 2"),
        ({"loras": ["detail_tweaker"], "lora_weight": ["0.33"]},
         "LoRAs 'detail_tweaker': Weight must be a multiple of 0.05 from -2"),
        ({"loras": ["gone_lora"], "lora_weight": ["1"]},
         "LoRAs 'gone_lora' is not one of the choices offered by the backend now "
         "(↻ reloads the list)"),
        ({"loras": [ODD], "lora_weight": ["1"]},
         f"LoRAs '{ODD}' is refused: A1111 reads <lora:name:weight> up to the first \">\" "
         "and splits it at \":\" and \"=\", so this name would make a broken tag. Rename the "
         "LoRA's file to use it."),
    ]
    for data, message in cases:
        r = a1111_post(client, {"prompt": "a cat", **data})
        assert r.status_code == 422
        errors = field_errors(r.get_data(as_text=True))
        assert {k: unescape(v) for k, v in errors.items()} == {"loras": message}
    assert not [c for c in responses.calls if c.request.method == "POST"]  # nothing sent


@responses.activate
def test_a_lora_without_its_weight_gets_the_default(client):
    mock_lists()
    responses.post(f"{API}/txt2img", json={"images": [], "parameters": {},
                                           "info": json.dumps({"all_seeds": []})})
    r = client.post("/services/a1111/txt2img/generate", headers=HX,
                    data=form(prompt="a cat", loras="tiny-random-lora", lora_weight=None))
    assert job_in(client, r.get_data(as_text=True)).done.wait(10)
    [post] = [c for c in responses.calls if c.request.method == "POST"]
    assert json.loads(post.request.body)["prompt"] == "a cat <lora:tiny-random-lora:0.8>"


# --- The demo backend reads tags as A1111 1.10.1 does ---------------------------------------


@pytest.mark.parametrize("prompt, applied", [
    ("a lake <lora:demo-cool:0.5>", "demo-cool"),
    ("a lake <lora:demo-cool:0.2:0.7> <lora:demo-warm>", "demo-cool, demo-warm"),
    ("a lake <lora:demo-cool:te=0.2:unet=0.7>", "demo-cool"),
    ("a lake <lora:missing:1> <lora:demo-warm:1>", "demo-warm"),
    # A name holding ":" makes a weight that is no number: nothing of the prompt is applied.
    ("a lake <lora:demo:cool:1> <lora:demo-warm:1>", None),
    # A name holding "=" is read as a named argument: no name is left.
    ("a lake <lora:demo=cool:1>", None),
])
def test_the_demo_applies_lora_tags_as_a1111(demo_server, prompt, applied):
    import requests

    body = {"prompt": prompt, "steps": 1, "width": 64, "height": 64, "seed": 1}
    info = json.loads(requests.post(f"{demo_server.url}/sdapi/v1/txt2img", json=body,
                                    timeout=30).json()["info"])
    hashes = info["extra_generation_params"].get("Lora hashes")
    if applied is None:
        assert hashes is None
    else:
        assert [h.split(":")[0] for h in hashes.split(", ")] == applied.split(", ")


def test_the_demo_applies_the_tags_webui_writes(demo_app):
    client = demo_app.test_client()
    r = submit(client, "/services/demo/txt2img/generate", data=MultiDict([
        *form(prompt="a harbour", width="64", height="64", steps="2",
              lora_weight=None).items(),
        ("loras", "demo-cool"), ("lora_weight", "0.5"),
        ("loras", "demo-warm"), ("lora_weight", "-0.25")]))
    assert r.status_code == 200, r.html
    assert 'Lora hashes: "demo-cool: ' in unescape(r.html) and "demo-warm: " in r.html
    assert r.job.sent["prompt"] == "a harbour <lora:demo-cool:0.5> <lora:demo-warm:-0.25>"


# --- ComfyUI: a chain of LoraLoader nodes -----------------------------------------------------


def test_comfyui_gets_one_lora_node_per_lora_each_feeding_the_next(services_app, fakes):
    data = [*{**defaults(services_app, "comfyui", "txt2img"), "prompt": "a fox",
              "ckpt_name": "sd15-demo.safetensors", "width": "64", "height": "64"}.items()]
    data = [(k, v) for k, v in data if k != "lora_strength"]
    for strength in ("0.5", "1.5", "-0.25"):
        data += [("loras", "detail.safetensors"), ("lora_strength", strength)]
    r = post_pairs(services_app, "comfyui", "txt2img", data)
    assert r.status_code == 200, r.html  # the fake validated and ran the whole graph
    graph = sent(fakes, "comfyui", "/prompt")[0]["json"]["prompt"]
    loras = {k: v["inputs"] for k, v in graph.items() if v["class_type"] == "LoraLoader"}
    assert list(loras) == ["10-1", "10-2", "10"]
    assert [(n["strength_model"], n["strength_clip"]) for n in loras.values()] == [
        (0.5, 0.5), (1.5, 1.5), (-0.25, -0.25)]
    assert [(n["model"], n["clip"]) for n in loras.values()] == [
        (["4", 0], ["4", 1]), (["10-1", 0], ["10-1", 1]), (["10-2", 0], ["10-2", 1])]
    # The sampler and both prompts read the end of the chain.
    assert graph["3"]["inputs"]["model"] == ["10", 0]
    assert graph["6"]["inputs"]["clip"] == graph["7"]["inputs"]["clip"] == ["10", 1]


def test_comfyui_img2img_chains_in_its_own_workflow(services_app, fakes):
    from .helpers import image_bytes

    data = [(k, v) for k, v in {**defaults(services_app, "comfyui", "img2img"),
                                "prompt": "a fox", "ckpt_name": "sd15-demo.safetensors"}.items()
            if k != "lora_strength"]
    data += [("loras", "detail.safetensors"), ("lora_strength", "0.3"),
             ("loras", "detail.safetensors"), ("lora_strength", "0.6")]
    # A picture of its own: the fake (as ComfyUI) names an upload identical to a stored one
    # after it, which the upload tests of the shared fake must not meet.
    picture = image_bytes((64, 64), (10, 180, 40))
    r = post_pairs(services_app, "comfyui", "img2img", data, {"image": picture})
    assert r.status_code == 200, r.html
    graph = sent(fakes, "comfyui", "/prompt")[0]["json"]["prompt"]
    assert graph["10-1"]["inputs"]["strength_model"] == 0.3
    assert graph["10"]["inputs"]["model"] == ["10-1", 0]
    assert graph["3"]["inputs"]["model"] == ["10", 0]


# --- The format: weight, refuse, repeat, chain -----------------------------------------------


def comfy_problems(tmp_path, change) -> str:
    """The load errors of the bundled ComfyUI definition after CHANGE(its txt2img params)."""
    shutil.copytree(BUNDLED_DIR / "comfyui", tmp_path / "comfyui")
    data = yaml.safe_load((BUNDLED_DIR / "comfyui.yaml").read_text())
    params = data["capabilities"][1]["parameters"]["txt2img"]
    change({p["key"]: p for p in params})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(DefinitionError) as info:
        load_file(tmp_path / "c.yaml")
    return "\n".join(info.value.lines())


@pytest.mark.parametrize("change, expected", [
    (lambda p: p["loras"].update(weight="nope"),
     "txt2img[loras].weight: no other parameter 'nope'"),
    (lambda p: p["loras"].update(weight="prompt"),
     "txt2img[loras].weight: 'prompt' is a textarea: a weight is a number or an integer"),
    (lambda p: p["loras"].update(repeat="submit:prompt.99"),
     "txt2img[loras].repeat: '99' does not exist in txt2img.json"),
    (lambda p: p["loras"].update(repeat="submit:prompt.10.inputs.lora_name"),
     "txt2img[loras].repeat: is not an object (only an object is copied)"),
    (lambda p: p["loras"].update(repeat="submit:client_id"),
     "txt2img[loras].repeat: must name an object of a file-loaded body"),
    (lambda p: p["loras"].update(target="submit:prompt.3.inputs.sampler_name"),
     "txt2img[loras].repeat: the target 'submit:prompt.3.inputs.sampler_name' is not inside "
     "the repeated object"),
    (lambda p: p["lora_strength"].update(target=["submit:prompt.3.inputs.cfg"]),
     "txt2img[loras].repeat: the weight 'lora_strength''s target"),
    (lambda p: p["loras"]["chain"].update({"inputs.model": ["{before}", 0]}),
     "txt2img[loras].chain: unknown placeholder {before} (known here: {previous})"),
    (lambda p: p["loras"].pop("repeat"),
     "txt2img[loras].chain: goes with repeat"),
    (lambda p: p["loras"].update(refuse={"[": "no"}),
     "txt2img[loras].refuse: '[' is not a regular expression"),
])
def test_the_format_checks_weights_and_repeats(tmp_path, change, expected):
    assert expected in comfy_problems(tmp_path, change)


def test_a_weight_sent_on_its_own_is_an_error(tmp_path):
    text = (BUNDLED_DIR / "a1111.yaml").read_text().replace(
        "target: [],\n           defaultValue: 0.8", "\n           defaultValue: 0.8")
    (tmp_path / "a.yaml").write_text(text)
    with pytest.raises(DefinitionError) as info:
        load_file(tmp_path / "a.yaml")
    assert ("txt2img[loras].weight: 'lora_weight' has targets of its own: give it target: []"
            in "\n".join(info.value.lines()))


@pytest.mark.parametrize("service", ["forge", "sdnext"])
def test_the_a1111_forks_get_the_same_tags(services_app, fakes, service):
    """Forge and SD.Next extend the a1111 definition: the same picker and tags (both read
    <lora:name:weight> as A1111 does)."""
    data = [(k, v) for k, v in {**defaults(services_app, service, "txt2img"),
                                "prompt": "a boat", "width": "64", "height": "64",
                                "steps": "2"}.items() if k != "lora_weight"]
    data += [("loras", "demo-cool"), ("lora_weight", "0.5"),
             ("loras", "demo-warm"), ("lora_weight", "1.5")]
    r = post_pairs(services_app, service, "txt2img", data)
    assert r.status_code == 200, r.html
    [request] = sent(fakes, service, "/sdapi/v1/txt2img")
    assert request["json"]["prompt"] == "a boat <lora:demo-cool:0.5> <lora:demo-warm:1.5>"

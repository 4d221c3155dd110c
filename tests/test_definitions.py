"""The definition format: loading, composition, and every reference checked at load."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from webui.catalog import BUNDLED_DIR
from webui.cli import main as cli_main
from webui.format import DefinitionError, load_data, load_file, schema_text
from webui.format.paths import PathError, format_path, parse_path, set_path

from .helpers import minimal

A1111_FILE = BUNDLED_DIR / "a1111.yaml"
SCHEMA_FILE = Path(__file__).parent.parent / "docs" / "definition.schema.json"


def gen_cap(data: dict[str, Any]) -> dict[str, Any]:
    return data["capabilities"][1]


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        load_data(data, "test.yaml")
    return info.value.lines()


def test_bundled_a1111_loads_with_its_three_modes():
    d = load_file(A1111_FILE)
    assert list(d.modes) == ["txt2img", "img2img", "upscale"]
    assert [m.label for m in d.modes.values()] == ["Text to image", "Image to image", "Upscale"]
    assert [m.upscales for m in d.modes.values()] == [False, False, True]
    assert d.health is not None and d.health.path == "/sdapi/v1/cmd-flags"
    txt = d.modes["txt2img"]
    assert txt.parameter("sd_model_checkpoint").target == "override_settings.sd_model_checkpoint"
    img = d.modes["img2img"]
    assert [p.key for p in img.parameters][:3] == ["init_image", "mask", "prompt"]
    assert img.parameter("enable_hr") is None
    # override keeps the parameter, changes only what it names
    ds = img.parameter("denoising_strength")
    assert (ds.group, ds.defaultValue, ds.range) == ("Image", 0.75, (0, 1))
    assert txt.parameter("denoising_strength").group == "Hires fix"


def test_json_definition_is_accepted(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(minimal()))
    assert load_file(path).id == "tiny"


def test_composition_exclude_add_before():
    d = load_data(minimal(), "x")
    assert [p.key for p in d.modes["img2img"].parameters] == ["image", "prompt", "model"]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: gen_cap(d)["parameters"]["txt2img"][1].update(type="slider"),
         "capabilities[1].parameters.txt2img[1].type: Input should be"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"][2].update(optionsEndpoint="getNothing"),
         "txt2img[model].optionsEndpoint: no endpoint named 'getNothing'"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append(
            {"key": "model2", "type": "text", "target": "settings"}),
         "txt2img[model2].target: 'settings' collides with the target of 'model'"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append({"key": "prompt", "type": "text"}),
         "txt2img[3].key: duplicate key 'prompt'"),
        (lambda d: gen_cap(d)["parameters"]["img2img"]["exclude"].append("cfg"),
         "img2img.exclude[1]: 'txt2img' has no parameter 'cfg'"),
        (lambda d: gen_cap(d)["parameters"]["img2img"]["add"].append(
            {"key": "prompt", "type": "text"}),
         "img2img.add[1].key: duplicate key 'prompt'"),
        (lambda d: gen_cap(d)["parameters"]["img2img"].update(extends="img2img"),
         "img2img.extends: parameter sets extend each other in a loop"),
        (lambda d: gen_cap(d)["parameters"]["img2img"].update(extends="nope"),
         "img2img.extends: no parameter set named 'nope'"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"][1].update(defaultValue=99),
         "txt2img[steps].defaultValue: must be at most 50"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"][1].update(step=0.5, type="text"),
         "txt2img[1]: Value error, a text parameter has no step"),
        (lambda d: gen_cap(d)["endpoints"]["txt2img"]["result"].update(images="images[?"),
         "endpoints.txt2img.result.images: invalid JMESPath"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append(
            {"key": "lora", "type": "text", "appendTo": {"to": "negative", "format": "{value}"}}),
         "txt2img[lora].appendTo.to: no parameter 'negative'"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append(
            {"key": "lora", "type": "text", "appendTo": {"to": "prompt", "format": "{wt}"}}),
         "txt2img[lora].appendTo.format: unknown placeholder 'wt'"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append(
            {"key": "x", "type": "text", "target": "a..b"}),
         "txt2img[x].target: invalid path 'a..b'"),
        (lambda d: gen_cap(d)["endpoints"]["txt2img"].update(body={"settings": {"model": "m"}}),
         "txt2img[model].target: 'settings.model' is also set by the endpoint's fixed body"),
        (lambda d: gen_cap(d)["parameters"].update(upscale=[{"key": "a", "type": "text"}]),
         "parameters.upscale: no generation endpoint named 'upscale'"),
        (lambda d: gen_cap(d)["endpoints"].update(
            upscale={"method": "POST", "path": "/up", "result": {"images": "images"}}),
         "capabilities[1].endpoints.upscale: generation endpoint 'upscale' has no parameter"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append({"key": "s", "type": "select"}),
         "txt2img[s]: a select needs options or optionsEndpoint"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append(
            {"key": "lora", "type": "text", "appendTo": {"to": "prompt", "format": "{value"}}),
         "txt2img[lora].appendTo.format: invalid format"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append(
            {"key": "lora", "type": "text", "appendTo": {"to": "prompt", "format": "<{}>"}}),
         "txt2img[lora].appendTo.format: placeholders need a name"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append(
            {"key": "w", "type": "number", "as": "data_url", "placeholder": "x"}),
         "txt2img[3]: Value error, a number parameter has no as, placeholder"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append(
            {"key": "flag", "type": "boolean", "required": True}),
         "txt2img[3]: Value error, a boolean parameter has no required"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append(
            {"key": "q", "type": "text", "target": "query:q", "role": "colour"}),
         "txt2img[q].role: unknown role 'colour'"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append(
            {"key": "q", "type": "text", "target": "path:q"}),
         "txt2img[q].target: the path of step 'request' has no {q}"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"].append(
            {"key": "q", "type": "text", "together": ["nope"]}),
         "txt2img[q].together: no other parameter 'nope'"),
        (lambda d: gen_cap(d)["parameters"]["txt2img"][1].update(before="prompt"),
         "txt2img[steps].before: 'before' is only used in 'add'"),
        (lambda d: d["capabilities"].append(copy.deepcopy(d["capabilities"][0])),
         "capabilities[2]: only one health capability is allowed"),
        (lambda d: gen_cap(d)["endpoints"]["txt2img"]["result"].pop("images"),
         "images (a JMESPath) is required unless as is bytes"),
        (lambda d: d.update(colour="blue"), "colour: Extra inputs are not permitted"),
        (lambda d: d.update(url="localhost:7860"), "url: String should match pattern"),
        (lambda d: d.update(authentication={"type": "bearer"}),
         "authentication: Value error, bearer authentication needs tokenEnv"),
    ],
)
def test_load_errors_name_the_field(mutate, expected):
    data = copy.deepcopy(minimal())
    mutate(data)
    lines = problems(data)
    assert any(expected in line for line in lines), lines
    assert all(line.startswith("test.yaml: ") for line in lines)


def test_yaml_syntax_error_gives_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("id: x\nname: [unclosed\n")
    with pytest.raises(DefinitionError) as info:
        load_file(path)
    assert "line 3" in info.value.lines()[0] or "line 2" in info.value.lines()[0]
    assert "not valid YAML/JSON" in info.value.lines()[0]


# Broken files and where each is broken, as both of PyYAML's parsers point at it.
YAML_ERRORS = {
    "an unclosed list": ("id: x\nname: [unclosed\n", "line 3, column 1"),
    "a key indented wrong": ("id: x\nmodes:\n  txt2img:\n    label: A\n   path: /b\n",
                             "line 5, column 4"),
    "a tab as indentation": ("id: x\nname: y\n\tbad: 1\n", "line 3, column 1"),
    "a colon in a plain value": ("id: x\nname: a: b\n", "line 2, column 8"),
    "an unknown alias": ("id: x\nname: *nope\n", "line 2, column 7"),
    "an unclosed quote": ('id: x\nname: "open\nmore: 1\n', "line 4, column 1"),
}


def test_definitions_are_read_with_libyaml_where_pyyaml_has_it():
    """The C parser (the bundled files load ~14 times faster); PyYAML's own one without it."""
    import webui.format.load

    expected = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    assert webui.format.load._LOADER is expected


@pytest.mark.parametrize("loader", ["CSafeLoader", "SafeLoader"])
@pytest.mark.parametrize("name", list(YAML_ERRORS))
def test_a_yaml_error_names_its_line_and_column_with_either_parser(name, loader, tmp_path,
                                                                   monkeypatch):
    import webui.format.load

    if not hasattr(yaml, loader):
        pytest.fail(f"this PyYAML has no {loader} (libyaml missing): install PyYAML's wheel")
    monkeypatch.setattr(webui.format.load, "_LOADER", getattr(yaml, loader))
    text, where = YAML_ERRORS[name]
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(DefinitionError) as info:
        load_file(path)
    line = info.value.lines()[0]
    assert line.startswith(f"{path}: {where}: not valid YAML/JSON: "), line


def test_check_command_reports_and_exits_nonzero(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(minimal(), sort_keys=False))
    bad_data = minimal()
    gen_cap(bad_data)["parameters"]["txt2img"][2]["optionsEndpoint"] = "getNothing"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(bad_data))
    assert cli_main(["check", str(good)]) == 0
    assert cli_main(["check", str(good), str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"{good}: ok (tiny: txt2img, img2img)" in out
    assert (f"{bad}: capabilities[1].parameters.txt2img[model].optionsEndpoint: "
            "no endpoint named 'getNothing'") in out


def test_committed_schema_is_current():
    assert SCHEMA_FILE.read_text() == schema_text(), "run: webui schema --output " + str(
        SCHEMA_FILE)


def test_bundled_definition_validates_against_published_schema():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(yaml.safe_load(A1111_FILE.read_text()), schema)


@pytest.mark.parametrize(
    "path, tokens",
    [
        ("prompt", ("prompt",)),
        ("override_settings.sd_model_checkpoint", ("override_settings", "sd_model_checkpoint")),
        ("init_images[0]", ("init_images", 0)),
        ("prompt.6.inputs.text", ("prompt", "6", "inputs", "text")),
    ],
)
def test_paths_round_trip(path, tokens):
    assert parse_path(path) == tokens
    assert format_path(tokens) == path


@pytest.mark.parametrize("path", ["", ".a", "a.", "a..b", "[0]", "a[x]", "a]b"])
def test_bad_paths(path):
    with pytest.raises(PathError):
        parse_path(path)


def test_set_path_creates_containers():
    doc: dict[str, Any] = {"keep": 1}
    set_path(doc, parse_path("override_settings.sd_model_checkpoint"), "m")
    set_path(doc, parse_path("init_images[0]"), "b64")
    set_path(doc, parse_path("prompt.6.inputs.text"), "cat")
    assert doc == {"keep": 1, "override_settings": {"sd_model_checkpoint": "m"},
                   "init_images": ["b64"], "prompt": {"6": {"inputs": {"text": "cat"}}}}


def test_committed_reference_is_current():
    from webui.format.reference import reference_markdown

    committed = (SCHEMA_FILE.parent / "definition-reference.md").read_text()
    assert committed == reference_markdown(), (
        "run: webui schema --output docs/definition.schema.json "
        "--reference docs/definition-reference.md")


# Field names the format gained after its second edition, each for a need the format could not
# express (a name added to the format goes here, on purpose): the LoRA picker's weights, values
# a service's syntax cannot carry, a workflow node repeated per value, the service's styles.
ADDED_SINCE_SECOND_EDITION = {"weight", "refuse", "repeat", "chain", "styles",
                              "maskTransparent"}


def test_the_second_edition_has_fewer_concepts_than_the_first():
    from webui.format.reference import concept_count

    # The first edition (docs/definition.schema.json before the second): 16 object types
    # besides the file itself, 86 field names, 30 enumerated values.
    objects, names, enums = concept_count()
    assert objects - 1 < 16 and names - len(ADDED_SINCE_SECOND_EDITION) < 86 and enums < 30
    # The README says so, with the numbers.
    readme = (SCHEMA_FILE.parent.parent / "README.md").read_text()
    assert f"{objects} object types, {names} field names and {enums} enumerated values" in readme


def test_a_workflow_file_is_read_once_per_load(monkeypatch):
    """The first edition read ComfyUI's workflow JSON 17-19 times per load; now once each."""
    from collections import Counter

    from webui.catalog import BUNDLED_DIR
    from webui.format import check, load_file

    reads: Counter[str] = Counter()
    real = check.read_json_file

    def counted(file):
        reads[file.name] += 1
        return real(file)

    monkeypatch.setattr(check, "read_json_file", counted)
    definition = load_file(BUNDLED_DIR / "comfyui.yaml")
    assert set(definition.modes) == {"txt2img", "img2img", "inpaint", "upscale"}
    assert reads and set(reads.values()) == {1}, reads


def test_an_upscale_mode_needs_an_input_image():
    """The Upscale action puts an image into the mode named upscale: one without an image
    parameter could never be used that way, and is refused at load."""
    data = minimal()
    gen = gen_cap(data)
    gen["endpoints"]["upscale"] = {"method": "POST", "path": "/up", "result": {"images": "image"}}
    gen["parameters"]["upscale"] = [{"key": "factor", "type": "number", "defaultValue": 2}]
    assert problems(data) == [
        "test.yaml: capabilities[1].parameters.upscale: the 'upscale' mode upscales an input "
        "image: it needs an image parameter (role init_image), where an image's Upscale action "
        "puts the image"]
    gen["parameters"]["upscale"].append({"key": "picture", "type": "image", "required": True})
    mode = load_data(data, "test.yaml").modes["upscale"]
    assert (mode.label, mode.upscales) == ("Upscale", True)

"""Files written for the first edition of the format: they load, each old keyword is a
warning at its place saying what to write instead, and ``webui check --upgrade`` writes a file
in the current edition that loads without warnings into the same definition."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import yaml

from webui.format import load_data, load_file

from .helpers import minimal


def first_edition() -> dict[str, Any]:
    """A definition using every first-edition keyword the loader still understands."""
    data = minimal()
    data["identify"] = {"endpoint": "getVersion", "when": "name == 'tiny'"}
    cap = data["capabilities"][1]
    eps = cap["endpoints"]
    eps["getVersion"] = {"path": "/version"}
    eps["getLoras"] = {"path": "/loras"}
    eps["getMore"] = {"path": "/more-loras"}
    eps["getQueue"] = {"path": "/queue"}
    eps["txt2img"] = {
        "steps": [
            {"name": "submit", "method": "POST", "path": "/gen", "encoding": "json",
             "save": {"job": "id"}},
            {"name": "wait", "path": "/jobs/{job}",
             "poll": {"until": "state == 'done'", "failWhen": "state == 'failed'",
                      "failMessage": "error",
                      "backendQueue": {"endpoint": "getQueue", "running": "running",
                                       "waiting": "waiting"}}},
        ],
        "result": {"images": "images", "seeds": "meta", "parseJson": ["meta"],
                   "headers": {"infotexts": "x-info"}},
    }
    eps["img2img"] = copy.deepcopy(eps["txt2img"])
    eps["img2img"]["steps"][1]["poll"] = {"until": "done", "failMessage": "error"}
    cap["jobs"] = {"progress": {"endpoint": "getVersion", "activeWhen": "busy",
                                "step": "n", "steps": "total", "fraction": "f",
                                "preview": "img", "previewEncoding": "base64"}}
    params = cap["parameters"]["txt2img"]
    params[0]["target"] = "submit:prompt"
    params[1]["target"] = "submit:steps"
    params[2]["target"] = "submit:settings.model"
    params += [
        {"key": "seed", "type": "seed", "pickRandom": True, "target": "submit:seed"},
        {"key": "note", "type": "text", "send": False},
        {"key": "lora", "type": "select", "target": "submit:lora",
         "optionsFrom": [{"endpoint": "getLoras", "path": "items", "valueKey": "name"},
                         {"endpoint": "getMore", "path": "data", "valueKey": "name"}]},
        {"key": "sampler", "type": "select", "target": "submit:sampler",
         "when": {"model": {"pattern": "^sd"}},
         "options": ["a", {"value": "b", "when": {"model": {"pattern": "xl$"}}}]},
    ]
    cap["parameters"]["img2img"]["add"][0].update(encode="data_url",
                                                  target="submit:images[0]")
    return data


def warnings_of(data: dict[str, Any]) -> dict[str, str]:
    return dict(load_data(copy.deepcopy(data), "old.yaml").warnings)


def test_each_old_keyword_is_a_warning_at_its_place():
    warnings = warnings_of(first_edition())
    cap, ep = "capabilities[1]", "capabilities[1].endpoints"
    expected = {
        "identify": "make the probe the health endpoint",
        f"{ep}.txt2img.steps[0].encoding": "write as: json",
        f"{ep}.txt2img.steps[1].poll.failMessage": "failWhen gives the reason itself",
        f"{ep}.txt2img.steps[1].poll.backendQueue": "one path gives the object",
        f"{ep}.txt2img.result.parseJson": "json(meta)",
        f"{ep}.txt2img.result.headers": "infotexts: \"header('x-info')\"",
        f"{ep}.img2img.steps[0].encoding": "write as: json",
        f"{ep}.img2img.steps[1].poll.failMessage": "removed: without failWhen it was never used",
        f"{ep}.img2img.result.parseJson": "json(meta)",
        f"{ep}.img2img.result.headers": "infotexts: \"header('x-info')\"",
        f"{cap}.parameters.txt2img[3].pickRandom": "-1 picked by webui",
        f"{cap}.parameters.txt2img[4].send": "target: []",
        f"{cap}.parameters.txt2img[5].optionsFrom": "optionsEndpoint",
        f"{cap}.parameters.txt2img[5].optionsFrom[1]": "read with the first source's path",
        f"{cap}.parameters.txt2img[6].when.model": 'write a pattern as "/^sd/"',
        f"{cap}.parameters.txt2img[6].options[1].when.model": 'write a pattern as "/xl$/"',
        f"{cap}.parameters.img2img.add[0].encode": "write as: data_url",
        f"{cap}.jobs.progress.activeWhen": "write when: busy",
        f"{cap}.jobs.progress.previewEncoding": "write as: base64",
        f"{cap}.jobs.progress": "fraction was dropped",
    }
    for loc, text in expected.items():
        assert loc in warnings, (loc, sorted(warnings))
        assert text in warnings[loc], (loc, warnings[loc])
    assert set(warnings) == set(expected)


def test_progress_with_step_but_no_steps_says_what_was_dropped():
    data = first_edition()
    progress = data["capabilities"][1]["jobs"]["progress"]
    del progress["steps"], progress["fraction"]
    message = warnings_of(data)["capabilities[1].jobs.progress"]
    assert "step without the other gives no progress and was dropped" in message


def test_the_upgraded_file_loads_without_warnings_into_the_same_definition(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(first_edition()))
    old = load_file(path)
    done = subprocess.run([sys.executable, "-m", "webui", "check", "--upgrade", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: " in done.stdout and "rewritten in the current edition" in done.stdout
    assert (tmp_path / "old.yaml.orig").read_text() == yaml.safe_dump(first_edition())
    new = load_file(path)
    assert new.warnings == ()
    assert new.model.model_dump() == old.model.model_dump()
    again = subprocess.run([sys.executable, "-m", "webui", "check", str(path)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "warning" not in again.stdout

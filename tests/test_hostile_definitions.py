"""Hostile or broken definition files: each is one ``file: field: message`` failure, listed on
``/`` and printed by ``webui check``, at a bounded cost; the other services keep working. Files
are parsed once per change, even by concurrent page loads, and so are their failures."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import webui.catalog
import webui.format.load
from webui import create_app
from webui.catalog import BUNDLED_DIR, DefinitionFolders
from webui.cli import main as cli_main
from webui.format import DefinitionError, read_raw

from .helpers import BASE, HX, minimal

MB = 1024 * 1024


# --- Hostile files -----------------------------------------------------------------------------

def laughs(levels: int) -> str:
    """The "billion laughs": each level a list of nine aliases of the level before."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnop"
    for prev, cur in zip(names[:levels - 1], names[1:levels], strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def with_body(body: Any) -> str:
    """A valid definition (id "hostile") whose txt2img endpoint sends ``body``."""
    data = minimal()
    data["id"], data["name"] = "hostile", "Hostile"
    data["capabilities"][1]["endpoints"]["txt2img"]["body"] = body
    return yaml.safe_dump(data, sort_keys=False)


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE: dict[str, tuple[Callable[[Path], str | bytes], str]] = {
    # name: (content, given the folder; what its failure line says)
    "nested-brackets.yaml": (lambda d: "a: " + "[" * 200_000, "not valid YAML/JSON"),
    "nested-lists.yaml": (lambda d: "a: " + deep_json(900) + "\n",
                          "line 1, column 67: nested more than 64 levels deep"),
    "nested-maps.yaml": (lambda d: "a: " + "{a: " * 900 + "1" + "}" * 900 + "\n",
                         "nested more than 64 levels deep"),
    "nested-blocks.yaml": (lambda d: "".join(" " * i + "a:\n" for i in range(100)) + " " * 100
                           + "b: 1\n", "line 65, column 65: nested more than 64 levels deep"),
    "laughs.yaml": (lambda d: laughs(7), "aliases expand to more than 100,000 values"),
    "billion-laughs.yaml": (lambda d: laughs(9), "aliases expand to more than 100,000 values"),
    # 41 levels, then 31 levels holding the 41: 71 once the alias is expanded.
    "deep-aliases.yaml": (lambda d: "a: &a " + deep_json(40) + "\nb: " + "[" * 30 + "*a"
                          + "]" * 30 + "\n", "nested more than 64 levels deep"),
    "too-big.yaml": (lambda d: "# padding\n" * (MB // 10) + with_body({}),
                     "(file): the file is 1,0"),  # then: 49,… bytes; a definition is at most…
    "not-a-date.yaml": (lambda d: "id: x\nwhen: 2001-02-30\n", "not valid YAML/JSON"),
    "long-int.yaml": (lambda d: "id: x\nn: " + "9" * 5000 + "\n", "not valid YAML/JSON"),
    "dev-zero.yaml": (lambda d: with_body({"$file": "/dev/zero"}),
                      "capabilities[1].endpoints.txt2img.body: {$file: '/dev/zero'}: only files "
                      "in the definition's folder (or below it) can be included"),
    "outside.yaml": (lambda d: with_body({"$file": "../outside.json"}),
                     "{$file: '../outside.json'}: only files in the definition's folder"),
    "link-out.yaml": (lambda d: with_body({"prompt": {"$file": "hostile/zero.json"}}),
                      "txt2img.body.prompt: {$file: 'hostile/zero.json'}: only files in the "
                      "definition's folder"),
    "fifo.yaml": (lambda d: with_body({"$file": "hostile/fifo.json"}),
                  "txt2img.body: cannot read JSON file fifo.json: not a regular file"),
    "folder.yaml": (lambda d: with_body({"$file": "hostile"}),
                    "txt2img.body: cannot read JSON file hostile: not a regular file"),
    "big-workflow.yaml": (lambda d: with_body({"$file": "hostile/big.json"}),
                          "cannot read JSON file big.json: the file is 4,194,307 bytes; an "
                          "included file is at most 4 MiB"),
    "deep-workflow.yaml": (lambda d: with_body({"$file": "hostile/deep.json"}),
                           "cannot read JSON file deep.json: nested more than 64 levels deep"),
    "deeper-workflow.yaml": (lambda d: with_body({"$file": "hostile/deeper.json"}),
                             "cannot read JSON file deeper.json: nested more than 64 levels"),
}
# Files that must not even be tried with the old code: /dev/zero is read until memory runs out,
# a FIFO blocks its reader forever.
NEVER_OPENED = ("dev-zero.yaml", "link-out.yaml", "fifo.yaml")


def write_hostile(folder: Path, names: list[str] | None = None) -> None:
    """The hostile files (NAMES, else all), and what they include, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    included = folder / "hostile"
    included.mkdir(exist_ok=True)
    if not (included / "fifo.json").exists():
        os.mkfifo(included / "fifo.json")
        (included / "zero.json").symlink_to("/dev/zero")
        (included / "big.json").write_text("[" + " " * (4 * MB) + "1]")
        (included / "deep.json").write_text(deep_json(65))
        (included / "deeper.json").write_text(deep_json(5000))
        (folder.parent / "outside.json").write_text("{}")
    for name in names or HOSTILE:
        content = HOSTILE[name][0](folder)
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(minimal(), sort_keys=False))


@contextlib.contextmanager
def fifo_unblocked(folder: Path, seconds: float = 30) -> Iterator[None]:
    """Fail, rather than hang, when a reader blocks on the FIFO: after ``seconds`` the FIFO is
    opened for writing (and closed), which ends any read waiting on it."""
    done = threading.Event()
    opened: list[bool] = []

    def watchdog() -> None:
        if done.wait(seconds):
            return
        try:
            fd = os.open(folder / "hostile" / "fifo.json", os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return  # nobody is reading it
        opened.append(True)
        os.close(fd)

    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    assert not opened, "a reader blocked on a FIFO"


LINE = re.compile(r"^(?P<file>\S+\.(?:yaml|yml|json)): (?P<field>[^:]+|line \d+, column \d+): "
                  r"(?P<message>\S.*)$")


def check_line(line: str) -> re.Match[str]:
    found = LINE.match(line)
    assert found, f"not a 'file: field: message' line: {line!r}"
    return found


# --- Through the app ---------------------------------------------------------------------------

@pytest.fixture
def hostile_app(make_settings, request):
    settings = make_settings(url_overrides={"a1111": BASE})
    write_hostile(settings.user_definitions, getattr(request, "param", None))
    return create_app(settings)


def test_every_hostile_file_is_one_failure_and_the_rest_works(hostile_app):
    client = hostile_app.test_client()
    folder = hostile_app.extensions["webui"].settings.user_definitions
    with fifo_unblocked(folder):
        started = time.monotonic()
        page = client.get("/")
        elapsed = time.monotonic() - started
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        catalog = hostile_app.extensions["webui"].folders.catalog()
        failures = {f.path.name: f.lines for f in catalog.failures}
        assert set(failures) == set(HOSTILE)
        for name, (_content, expected) in HOSTILE.items():
            assert f"<code>{name}</code>" in html
            lines = failures[name]
            for line in lines:
                assert check_line(line)["file"] == str(folder / name)
            assert any(expected in line for line in lines), (name, lines)
        assert elapsed < 30  # all of them: a bound for a hang, not a benchmark
        for page in ("/services/tiny/txt2img", "/services/a1111/txt2img",
                     "/services/a1111/img2img"):
            assert client.get(page).status_code == 200, page
        answer = client.post("/services/tiny/txt2img/generate", data={"prompt": "x"}, headers=HX)
        assert answer.status_code != 500


@pytest.mark.parametrize("hostile_app", [[name] for name in HOSTILE if name not in NEVER_OPENED],
                         ids=[name for name in HOSTILE if name not in NEVER_OPENED],
                         indirect=True)
def test_one_hostile_file(hostile_app):
    """Each file alone (the ones the old code could survive): the page works, the file fails."""
    client = hostile_app.test_client()
    page = client.get("/")
    assert page.status_code == 200
    failures = hostile_app.extensions["webui"].folders.catalog().failures
    assert len(failures) == 1
    name = failures[0].path.name
    assert any(HOSTILE[name][1] in line for line in failures[0].lines), failures[0].lines
    assert client.get("/services/tiny/txt2img").status_code == 200


@pytest.mark.parametrize("name", ["nested-brackets.yaml", "nested-maps.yaml", "laughs.yaml",
                                  "billion-laughs.yaml", "deep-aliases.yaml"])
def test_the_limits_hold_with_the_pure_python_yaml_parser_too(name, tmp_path, monkeypatch):
    """Without libyaml (PyYAML's own parser): no nesting limit of libyaml's to rely on."""
    monkeypatch.setattr(webui.format.load, "_LOADER", yaml.SafeLoader)
    path = tmp_path / name
    path.write_text(HOSTILE[name][0](tmp_path))
    with pytest.raises(DefinitionError) as info:
        read_raw(path)
    expected = "nested more than 64 levels deep" if name == "nested-brackets.yaml" else (
        HOSTILE[name][1])
    assert any(expected in line for line in info.value.lines()), info.value.lines()


def test_aliases_that_share_small_values_still_load(tmp_path):
    data = minimal()
    shared = {"images": "images"}  # safe_dump writes a value used twice as anchor + alias
    for name in ("txt2img", "img2img"):
        data["capabilities"][1]["endpoints"][name]["result"] = shared
    text = yaml.safe_dump(data, sort_keys=False)
    assert "&id001" in text and "*id001" in text
    (tmp_path / "tiny.yaml").write_text(text)
    (tmp_path / "merge.yaml").write_text(text.replace("id: tiny", "id: merged").replace(
        "path: /gen", "<<: {path: /gen, method: POST}"))
    catalog = DefinitionFolders([BUNDLED_DIR, tmp_path]).catalog()
    assert not catalog.failures
    assert {"a1111", "comfyui", "openai", "tiny", "merged"} <= {s.id for s in catalog.services}


# --- webui check ---------------------------------------------------------------------------------

def test_check_reports_every_hostile_file_in_lines(tmp_path, capsys):
    folder = tmp_path / "defs"
    write_hostile(folder)
    files = [str(folder / name) for name in (*HOSTILE, "tiny.yaml")]
    with fifo_unblocked(folder):
        assert cli_main(["check", *files]) == 1
        # The folder's own files and its FIFO, given by name, are reported too.
        assert cli_main(["check", str(folder / "hostile" / "fifo.json"), str(folder / "hostile"),
                         "/dev/zero", str(folder / "missing.yaml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"{folder / 'tiny.yaml'}: ok (tiny: txt2img, img2img)" in out
    problems = [line for line in out if not line.endswith("ok (tiny: txt2img, img2img)")]
    for line in problems[:-4]:
        check_line(line)
    for name, (_content, expected) in HOSTILE.items():
        assert any(line.startswith(f"{folder / name}: ") and expected in line
                   for line in problems), name
    assert problems[-4:-1] == [
        f"{folder / 'hostile' / 'fifo.json'}: (file): not a regular file",
        f"{folder / 'hostile'}: (file): not a regular file",
        "/dev/zero: (file): not a regular file",
    ]
    assert problems[-1].startswith(f"{folder / 'missing.yaml'}: (file): cannot read file: ")


# --- Parsed once per change ----------------------------------------------------------------------

def test_concurrent_loads_parse_each_file_once_and_cache_failures(tmp_path, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(minimal(), sort_keys=False))
    (tmp_path / "broken.yaml").write_text("id: broken\nname: [\n")
    (tmp_path / "invalid.yaml").write_text("id: invalid\nname: x\n")
    parsed: dict[str, int] = {}
    lock = threading.Lock()
    parse = webui.format.load.parse_text

    def slow_parse(text: str, source: str) -> Any:
        with lock:
            parsed[Path(source).name] = parsed.get(Path(source).name, 0) + 1
        time.sleep(0.05)  # long enough for every thread to ask at once
        return parse(text, source)

    monkeypatch.setattr(webui.format.load, "parse_text", slow_parse)
    folders = DefinitionFolders([BUNDLED_DIR, tmp_path])
    barrier = threading.Barrier(8)
    catalogs: list[Any] = []

    def load() -> None:
        barrier.wait()
        catalogs.append(folders.catalog())

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(catalogs) == 8
    for catalog in catalogs:
        assert {f.path.name for f in catalog.failures} == {"broken.yaml", "invalid.yaml"}
        assert "tiny" in {s.id for s in catalog.services}
    assert parsed == {name: 1 for name in ("a1111.yaml", "comfyui.yaml", "forge.yaml",
                                           "openai.yaml", "sdnext.yaml", "stability.yaml",
                                           "tiny.yaml", "broken.yaml", "invalid.yaml")}
    for _ in range(3):
        folders.catalog()
    assert parsed["broken.yaml"] == parsed["invalid.yaml"] == 1
    # A change is parsed again, once.
    (tmp_path / "broken.yaml").write_text("id: broken\nname: [x]\n")
    for _ in range(3):
        folders.catalog()
    assert parsed["broken.yaml"] == 2 and parsed["tiny.yaml"] == 1


def test_a_failure_caused_by_a_workflow_is_retried_when_the_workflow_changes(tmp_path):
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "flow.json").write_text("{not json")
    (tmp_path / "flow.yaml").write_text(with_body({"$file": "flows/flow.json"}))
    folders = DefinitionFolders([BUNDLED_DIR, tmp_path])
    assert [f.path.name for f in folders.catalog().failures] == ["flow.yaml"]
    (tmp_path / "flows" / "flow.json").write_text(json.dumps(
        {"prompt": "", "steps": 20, "settings": {"model": ""}}))
    catalog = folders.catalog()
    assert not catalog.failures and catalog.get("hostile") is not None


# --- A user file replacing a bundled one -----------------------------------------------------

def test_a_user_file_replacing_a_bundled_id_is_flagged(make_settings):
    settings = make_settings(url_overrides={"a1111": BASE})
    settings.user_definitions.mkdir(parents=True)
    data = copy.deepcopy(minimal())
    data["id"] = "a1111"
    (settings.user_definitions / "my-a1111.yaml").write_text(json.dumps(data))
    app = create_app(settings)
    catalog = app.extensions["webui"].folders.catalog()
    assert [(r.id, r.path.name, r.replaced.parent) for r in catalog.replaced] == [
        ("a1111", "my-a1111.yaml", BUNDLED_DIR)]
    assert catalog.get("a1111").definition.model.name == "Tiny"
    html = app.test_client().get("/").get_data(as_text=True)
    assert "your <code>definitions/my-a1111.yaml</code> replaces the bundled 'a1111'" in html

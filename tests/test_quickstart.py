"""The README's quick start, as a newcomer runs it: the command as written, in an empty folder,
with no --data-dir (so the data folder is the relative ``./webui-data``), then every image,
thumbnail and download link the pages show must answer 200.

The install part of the command (``python3 -m venv … && pip install -e .``) has already run:
it is the README's test command too. ``.ci/run`` runs that test command literally, from a clean
clone (checked below)."""

from __future__ import annotations

import html as html_lib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .helpers import free_port, serving, wait_for

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_commands() -> list[str]:
    """The shell lines of the README's "Quick start" section, in order."""
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_commands_need_no_system_pip_and_ci_runs_the_test_command():
    run, test = readme_commands()
    # A Python that refuses pip outside a venv (Debian's externally-managed-environment)
    # still runs these: each line makes and uses its own venv first.
    for line in (run, test):
        assert line.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install "
                               "-c constraints.txt -e ")
    assert run.endswith("&& webui")
    assert test.endswith("&& pytest")
    assert test in (ROOT / ".ci" / "run").read_text(encoding="utf-8")



def _links(page: str) -> list[str]:
    """Every image source and download link of a page (relative URLs, as the browser has them)."""
    found = re.findall(r'<img[^>]*\ssrc="(/[^"]*)"', page)
    found += re.findall(r'<a[^>]*\shref="(/[^"]*)"[^>]*\sdownload', page)
    return [html_lib.unescape(u) for u in found]


@pytest.fixture
def newcomer(tmp_path):
    """``webui`` started from an empty folder with no data options, as the README says."""
    command = readme_commands()[0].rsplit("&&", 1)[1].split()
    assert command == ["webui"]
    folder = tmp_path / "empty"
    folder.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBUI_")}
    exe = Path(sys.executable).parent / command[0]
    proc = subprocess.Popen([str(exe), "--port", str(port)], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: serving(base + "/", proc), timeout=30, interval=0.1,
                 what=f"webui to answer at {base}/")
        yield base, folder
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_quick_start_in_an_empty_folder_shows_every_image(newcomer):
    base, folder = newcomer
    s = requests.Session()
    index = s.get(base + "/", timeout=10).text
    assert "/services/demo/" in index
    r = s.post(base + "/services/demo/txt2img/generate", timeout=10,
               headers={"HX-Request": "true"}, data={
        "prompt": "a lighthouse", "steps": "3", "width": "64", "height": "64",
        "batch_size": "2"})
    assert r.status_code == 202, r.text
    job_id = re.search(r'id="job-([0-9a-f]{32})"', r.text).group(1)

    def finished() -> str | None:
        panel = s.get(f"{base}/jobs/{job_id}/panel", timeout=10).text
        assert 'data-status="failed"' not in panel, panel
        return panel if 'data-status="done"' in panel else None

    panel = wait_for(finished, timeout=30, interval=0.2, what="the demo job to finish")
    # The data folder is the relative default, in the folder webui was started from.
    assert list((folder / "webui-data" / "images").rglob("*.png"))

    urls = _links(panel)
    assert len([u for u in urls if u.startswith("/images/")]) >= 2
    # The thumbnails are made a moment after the job ended (the gallery shows the pictures
    # themselves until then).
    gallery = wait_for(lambda: (lambda html: html if "/thumbs/" in html else None)(
        s.get(base + "/gallery", timeout=10).text), timeout=20, interval=0.2,
        what="the gallery to show thumbnails")
    urls += _links(gallery)
    pages = re.findall(r'<a class="tile" href="(/gallery/[^"]+)"', gallery)
    assert pages
    for page in pages:
        urls += _links(s.get(base + page, timeout=10).text)
    for url in urls:
        r = s.get(base + url, timeout=10)
        assert r.status_code == 200, f"{url} answered {r.status_code}"
        assert r.headers["Content-Type"].startswith("image/")

"""Secrets: a definition file gets only the secrets its operator gave to its service id, and no
secret (in any of the forms it travels in) reaches a page or the history."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from webui import backend, create_app
from webui.catalog import BUNDLED_DIR
from webui.format import load_data
from webui.service import Service

from .backends.hostile import HostileBackend, definition
from .helpers import HX, sent, submit, wait_for

AWS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def hostile():
    with HostileBackend() as server:
        yield server


@pytest.fixture
def make_app(make_settings, monkeypatch):
    """An app with these definitions in its data folder (and its secrets file there)."""
    made: dict[str, Any] = {}

    def make(*definitions: dict[str, Any] | tuple[str, str], **settings: Any):
        made["settings"] = current = make_settings(**settings)
        current.user_definitions.mkdir(parents=True, exist_ok=True)
        for item in definitions:
            name, text = item if isinstance(item, tuple) else (
                f"{item['id']}.json", json.dumps(item))
            (current.user_definitions / name).write_text(text)
        app = create_app(current)
        # What the app factory does (webui/app.py), set here too so these tests do not
        # depend on the order of the two changes.
        monkeypatch.setattr(backend.SECRETS, "folder", current.data_dir)
        return app

    make.made = made  # type: ignore[attr-defined]
    return make


def status(client, service_id: str) -> str:
    """The service's status once its check has ended (it may say "checking…" first)."""
    def final() -> str | None:
        html = client.get(f"/services/{service_id}/status", headers=HX).get_data(as_text=True)
        return None if "checking…" in html else html

    return wait_for(final, timeout=15, what=f"the status of {service_id}")


def with_auth(data: dict[str, Any], **auth: Any) -> dict[str, Any]:
    data["authentication"] = auth
    return data


# --- Where a definition's secrets may come from ----------------------------------------------


@pytest.mark.parametrize("auth", [
    {"type": "bearer", "tokenEnv": "AWS_SECRET_ACCESS_KEY"},
    {"type": "header", "header": "x-api-key", "tokenEnv": "AWS_SECRET_ACCESS_KEY",
     "required": True},
    {"type": "basic", "usernameEnv": "WEBUI_MYSERVICE_USERNAME",
     "passwordEnv": "AWS_SECRET_ACCESS_KEY"},
])
def test_a_definition_cannot_read_an_unrelated_variable(make_app, hostile, monkeypatch, auth):
    """A dropped definition naming AWS_SECRET_ACCESS_KEY, at its own url: opening the pages
    (whose statuses check the service) sends that value nowhere."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_KEY)
    monkeypatch.setenv("WEBUI_MYSERVICE_USERNAME", "someone")
    client = make_app(with_auth(definition("myservice", hostile.url), **auth)).test_client()
    assert client.get("/").status_code == 200
    html = status(client, "myservice")
    assert "needs setup" in html
    assert ("may only read WEBUI_MYSERVICE_* variables or its entry in secrets.yaml"
            in html.replace("\n", " "))
    assert "AWS_SECRET_ACCESS_KEY" in html  # the message names what the file asked for
    options = client.get("/services/myservice/txt2img/options/model").get_data(as_text=True)
    assert "may only read WEBUI_MYSERVICE_*" in options
    r = client.post("/services/myservice/txt2img/generate", data={"prompt": "x"}, headers=HX)
    assert r.status_code == 503
    encoded = base64.b64encode(f"someone:{AWS_KEY}".encode()).decode()
    assert not hostile.saw(AWS_KEY) and not hostile.saw(encoded)
    assert not hostile.saw(quote(AWS_KEY, safe=""))


def test_a_copied_bundled_file_reads_the_variable_its_message_names(make_app, hostile,
                                                                    monkeypatch):
    """A copy of a bundled file still naming STABILITY_API_KEY is told to set
    WEBUI_<ID>_TOKEN; once set, that is the token it sends (and STABILITY_API_KEY never)."""
    monkeypatch.setenv("STABILITY_API_KEY", "sk-bundled-only")
    client = make_app(with_auth(definition("mystab", hostile.url), type="bearer",
                                tokenEnv="STABILITY_API_KEY", required=True)).test_client()
    assert "Set WEBUI_MYSTAB_TOKEN" in status(client, "mystab").replace("\n", " ")
    monkeypatch.setenv("WEBUI_MYSTAB_TOKEN", "sk-mine")
    client.get("/services/mystab/txt2img/options/model")
    assert hostile.saw("Bearer sk-mine") and not hostile.saw("sk-bundled-only")


@pytest.mark.parametrize("service_id, variable", [
    ("my", "WEBUI_MY_SD_TOKEN"),        # the variable of a service "my-sd", not of "my"
    ("myservice", "WEBUI_OTHER_TOKEN"),
    ("myservice", "OPENAI_API_KEY"),   # only the bundled openai definition may read it
    ("myservice", "WEBUI_MYSERVICE"),
])
def test_only_its_own_variables(make_app, hostile, monkeypatch, service_id, variable):
    monkeypatch.setenv(variable, "not-for-this-service")
    client = make_app(with_auth(definition(service_id, hostile.url), type="bearer",
                                tokenEnv=variable)).test_client()
    assert "needs setup" in status(client, service_id)
    assert not hostile.saw("not-for-this-service")


def test_its_own_variable_is_used(make_app, hostile, monkeypatch):
    monkeypatch.setenv("WEBUI_MYSERVICE_TOKEN", "own-token-1234")
    client = make_app(with_auth(definition("myservice", hostile.url), type="bearer",
                                tokenEnv="WEBUI_MYSERVICE_TOKEN")).test_client()
    assert 'class="status online"' in status(client, "myservice")
    assert hostile.saw("Bearer own-token-1234")


@pytest.mark.parametrize("name", ["secrets.yaml", "secrets.json"])
def test_the_secrets_file_gives_each_service_its_entry(make_app, hostile, name):
    bearer = with_auth(definition("myservice", hostile.url), type="bearer",
                       tokenEnv="PIXEL_TOKEN", required=True)  # a variable it may not read
    basic = with_auth(definition("mybasic", hostile.url), type="basic",
                      usernameEnv="WEBUI_MYBASIC_USERNAME",
                      passwordEnv="WEBUI_MYBASIC_PASSWORD", required=True)
    app = make_app(bearer, basic)
    entries = {"myservice": {"token": "file-token-5678"},
               "mybasic": {"username": "carol", "password": "file-password-9"}}
    path = make_app.made["settings"].data_dir / name
    path.write_text(json.dumps(entries) if name.endswith(".json") else yaml.safe_dump(entries))
    client = app.test_client()
    assert 'class="status online"' in status(client, "myservice")
    assert 'class="status online"' in status(client, "mybasic")
    assert hostile.saw("Bearer file-token-5678")
    assert hostile.saw("Basic " + base64.b64encode(b"carol:file-password-9").decode())


def test_a_token_added_while_webui_runs_is_used(make_app, hostile):
    app = make_app(with_auth(definition("myservice", hostile.url), type="bearer",
                             tokenEnv="WEBUI_MYSERVICE_TOKEN", required=True))
    client = app.test_client()
    html = status(client, "myservice")
    assert "needs setup" in html and "secrets.yaml" in html
    secrets = make_app.made["settings"].data_dir / "secrets.yaml"
    secrets.write_text("myservice: {token: first-token-1}\n")
    assert 'class="status online"' in status(client, "myservice")
    assert hostile.saw("Bearer first-token-1")
    secrets.write_text("myservice: {token: second-token-22}\n")  # changed again: read again
    r = submit(client, "/services/myservice/txt2img/generate",
               data={"prompt": "x"})  # its answer has no image; what it sent is what counts
    assert r.job is not None
    assert hostile.requests[-1].headers.get("Authorization") == "Bearer second-token-22"


def test_a_broken_secrets_file_is_a_setup_message(make_app, hostile):
    app = make_app(with_auth(definition("myservice", hostile.url), type="bearer",
                             tokenEnv="WEBUI_MYSERVICE_TOKEN", required=True))
    (make_app.made["settings"].data_dir / "secrets.yaml").write_text("myservice: [\n")
    html = status(app.test_client(), "myservice")
    assert "needs setup" in html and "secrets.yaml could not be read" in html


def test_the_bundled_openai_keeps_its_variable(services_app, fakes):
    client = services_app.test_client()
    assert 'class="status online"' in status(client, "openai")
    assert sent(fakes, "openai", "/v1/models")[-1]["auth"]


@pytest.mark.parametrize("how", ["copy", "extends"])
def test_a_user_file_for_openai_does_not_get_its_key(make_app, hostile, monkeypatch, how):
    """A file of one's own that replaces or extends the bundled openai, with another url,
    does not get OPENAI_API_KEY (it would then go to that url)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-openai-only-0000")
    if how == "copy":
        text = (BUNDLED_DIR / "openai.yaml").read_text().replace(
            "url: https://api.openai.com", f"url: {hostile.url}")
        app, service_id = make_app(("openai.yaml", text)), "openai"
    else:
        text = f"extends: openai\nid: notopenai\nname: Not OpenAI\nurl: {hostile.url}\n"
        app, service_id = make_app(("notopenai.yaml", text)), "notopenai"
    html = status(app.test_client(), service_id)
    assert "needs setup" in html and "OPENAI_API_KEY" in html
    assert not hostile.saw("sk-proj-openai-only-0000")


# --- Keeping secrets out of what is shown and stored ------------------------------------------


def test_an_echoed_token_stays_out_of_a_dropdown_error(make_app, hostile, monkeypatch):
    monkeypatch.setenv("WEBUI_MYSERVICE_TOKEN", "sk-live-0123456789abcdef")
    data = with_auth(definition("myservice", hostile.url, getModels={"path": "/echo"}),
                     type="bearer", tokenEnv="WEBUI_MYSERVICE_TOKEN")
    client = make_app(data).test_client()
    html = client.get("/services/myservice/txt2img/options/model").get_data(as_text=True)
    assert "not JSON" in html and "Authorization: Bearer •••" in html
    assert "sk-live-0123456789abcdef" not in html


def test_an_echoed_basic_password_stays_out_in_every_form(make_app, hostile, monkeypatch):
    password = "p@ss/wörd!9"
    monkeypatch.setenv("WEBUI_MYSERVICE_USERNAME", "alice-user")
    monkeypatch.setenv("WEBUI_MYSERVICE_PASSWORD", password)
    echoed = f" / {quote(password, safe='')} / {json.dumps(password)}"
    data = with_auth(definition("myservice", hostile.url, getModels={
        "path": "/echo", "query": {"then": echoed}}), type="basic",
        usernameEnv="WEBUI_MYSERVICE_USERNAME", passwordEnv="WEBUI_MYSERVICE_PASSWORD")
    client = make_app(data).test_client()
    html = client.get("/services/myservice/txt2img/options/model").get_data(as_text=True)
    assert "not JSON" in html
    encoded = base64.b64encode(f"alice-user:{password}".encode()).decode()
    for form in (password, encoded, quote(password, safe=""), json.dumps(password)[1:-1],
                 "alice-user"):
        assert form not in html, form


def test_an_echoed_token_stays_out_of_a_job_error_and_the_history(make_app, hostile,
                                                                  monkeypatch):
    monkeypatch.setenv("WEBUI_MYSERVICE_TOKEN", "sk-live-0123456789abcdef")
    data = with_auth(definition("myservice", hostile.url), type="bearer",
                     tokenEnv="WEBUI_MYSERVICE_TOKEN")
    data["capabilities"][1]["endpoints"]["txt2img"]["path"] = "/echo"
    app = make_app(data)
    r = submit(app.test_client(), "/services/myservice/txt2img/generate",
               data={"prompt": "x"})
    assert r.status_code == 502 and "not JSON" in r.job.error
    assert "sk-live-0123456789abcdef" not in r.job.error + r.html
    record = app.extensions["webui"].history.get_job(r.job.id)
    assert "•••" in record.error and "sk-live-0123456789abcdef" not in record.error


@pytest.fixture
def pool(make_app, hostile):
    """make(health): a service with two instances whose URLs carry credentials."""
    with HostileBackend() as second:
        def make(health: dict[str, Any]):
            data = definition("myservice", hostile.url, health=health)
            data["capabilities"][1]["endpoints"]["txt2img"].update(
                path="/result", query={"url": "/image"})
            urls = (f"http://alice:{quote('pw-one/1', safe='')}@127.0.0.1:{hostile.port},"
                    f"http://bob:pw-two-22@127.0.0.1:{second.port}")
            return make_app(data, url_overrides={"myservice": urls}), second

        yield make


def credentials_in(html: str) -> list[str]:
    forms = ["pw-one/1", quote("pw-one/1", safe=""), "pw-two-22", "alice:", "bob:",
             base64.b64encode(b"alice:pw-one/1").decode(),
             base64.b64encode(b"bob:pw-two-22").decode()]
    return [f for f in forms if f in html]


def test_pool_status_shows_urls_without_credentials(pool, hostile):
    # The health check answers an error that echoes what it was sent.
    app, second = pool({"path": "/echo", "query": {"status": 500}})
    html = status(app.test_client(), "myservice")
    assert f"<code>http://127.0.0.1:{hostile.port}</code>" in html
    assert f"<code>http://127.0.0.1:{second.port}</code>" in html
    assert "HTTP 500" in html and "Authorization: Basic •••" in html  # the echo, masked
    assert credentials_in(html) == []


def test_the_job_panel_shows_its_instance_without_credentials(pool):
    app, _second = pool({"path": "/health"})
    r = submit(app.test_client(), "/services/myservice/txt2img/generate", data={"prompt": "x"})
    assert r.status_code == 200, r.html
    assert re.search(r"on <code>http://127\.0\.0\.1:\d+</code>", r.html)
    assert credentials_in(r.html) == []
    record = app.extensions["webui"].history.get_job(r.job.id)
    assert credentials_in(str(record.instance)) == []


def test_scrub_knows_every_form_of_a_secret(monkeypatch):
    monkeypatch.setenv("WEBUI_TINY_TOKEN", "tok/en+with=odd&chars")
    data = with_auth(definition("tiny", "http://127.0.0.1:9"), type="bearer",
                     tokenEnv="WEBUI_TINY_TOKEN")
    service = Service(id="tiny", name="Tiny", definition=load_data(data, "x"),
                      base_url="http://user-x:pa%20ss%2Fw@127.0.0.1:9")
    text = ("tok/en+with=odd&chars | tok%2Fen%2Bwith%3Dodd%26chars | pa ss/w | pa%20ss%2Fw | "
            + base64.b64encode(b"user-x:pa ss/w").decode())
    assert backend.scrub(service, text) == " | ".join(["•••"] * 5)

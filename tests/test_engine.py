"""Backend calls of the engine and the options, with `responses` standing in for A1111 and
the bodies a real A1111 1.10.1 returned."""

from __future__ import annotations

import base64
import json

import pytest
import requests
import responses

from webui.backend import BackendError, check_health
from webui.catalog import BUNDLED_DIR
from webui.choices import OptionsCache, choices
from webui.format import load_file
from webui.images import ImageStore
from webui.pipeline import generate, prepare_values
from webui.service import Service

from .helpers import API, BASE, a1111_flags, a1111_response, image_bytes, minimal

TXT2IMG = f"{API}/txt2img"


@pytest.fixture(scope="module")
def service() -> Service:
    return Service(id="a1111", name="A1111", definition=load_file(BUNDLED_DIR / "a1111.yaml"),
                   base_url=BASE)


@pytest.fixture
def store(tmp_path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def values(service, **extra):
    mode = service.definition.modes["txt2img"]
    return {**{p.key: p.defaultValue for p in mode.parameters}, "prompt": "a cat", **extra}


def run(service, store, **extra):
    mode = service.definition.modes["txt2img"]
    return generate(service, mode, prepare_values(mode, values(service, **extra)), store)


def failure(service, store, **extra) -> BackendError:
    with pytest.raises(BackendError) as info:
        run(service, store, **extra)
    return info.value


@responses.activate
def test_images_are_saved_before_being_returned(service, store):
    real = a1111_response("txt2img-200")
    responses.post(TXT2IMG, json=real)
    gen = run(service, store, seed=1)
    assert len(gen.images) == 1
    image = gen.images[0]
    saved = store.path(image.path)
    assert saved.read_bytes() == base64.b64decode(real["images"][0])
    assert (image.mime, image.width, image.height, image.seed) == ("image/png", 64, 64, 1)
    assert image.infotext.startswith("a cat\nSteps: 1, Sampler: Euler")
    assert gen.info["sd_model_name"] == "random-sd15"  # info was a JSON string, now parsed
    sent = json.loads(responses.calls[0].request.body)
    assert sent["prompt"] == "a cat" and sent["seed"] == 1


@responses.activate
@pytest.mark.parametrize(
    "name, status, expected",
    [
        ("txt2img-422-invalid-body", 422,
         "rejected the request as invalid (HTTP 422: prompt: str type expected; "
         "steps: value is not a valid integer; width: value is not a valid integer)"),
        ("txt2img-500-no-checkpoint", 500, "failed (HTTP 500: No checkpoints found."),
        ("img2img-500-nans", 500, "HTTP 500: A tensor with NaNs was produced in Unet."),
    ],
)
def test_a1111_error_bodies_become_messages(service, store, name, status, expected):
    responses.post(TXT2IMG, json=a1111_response(name), status=status)
    err = failure(service, store)
    assert expected in err.message
    assert err.status == status


@responses.activate
def test_401_asks_to_check_credentials_without_showing_them(service, store, monkeypatch):
    monkeypatch.setenv("WEBUI_A1111_USERNAME", "alice")
    monkeypatch.setenv("WEBUI_A1111_PASSWORD", "s3cret-pass")
    responses.post(TXT2IMG, json=a1111_response("401-wrong-credentials"), status=401)
    err = failure(service, store)
    assert "Check the credentials of A1111" in err.message
    assert "WEBUI_A1111_PASSWORD" in err.message
    assert "s3cret-pass" not in err.message and "alice" not in err.message
    sent = responses.calls[0].request.headers["Authorization"]
    assert sent == "Basic " + base64.b64encode(b"alice:s3cret-pass").decode()


@responses.activate
def test_no_credentials_sent_when_none_configured(service, store, monkeypatch):
    monkeypatch.delenv("WEBUI_A1111_USERNAME", raising=False)
    responses.post(TXT2IMG, json=a1111_response("txt2img-200"))
    run(service, store)
    assert "Authorization" not in responses.calls[0].request.headers


@responses.activate
@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"body": "<html>Bad gateway</html>", "content_type": "text/html"},
         "answered HTTP 200 with something that is not JSON (text/html)"),
        ({"body": b""}, "answered HTTP 200 with an empty body"),
        ({"json": {"images": [], "info": "{}"}}, "answered without any image"),
        ({"json": {"images": None, "info": "{}"}}, "answered without any image"),
        ({"json": {"images": ["bm90IGFuIGltYWdl"], "info": "{}"}},
         "returned image 1 of 1 in a form that could not be read: it is not an image"),
        ({"json": {"images": [{"x": 1}], "info": "{}"}}, "it is a dict, not text"),
    ],
)
def test_garbage_answers_are_explained(service, store, kwargs, expected):
    responses.post(TXT2IMG, **kwargs)
    assert expected in failure(service, store).message
    assert not list(store.root.rglob("*.png")), "nothing half-made is saved"


@responses.activate
def test_cut_short_image_from_real_server_is_reported(service, store):
    # The stored img2img response has its base64 cut short ("..."): not a readable image.
    responses.post(TXT2IMG, json=a1111_response("img2img-200"))
    err = failure(service, store)
    assert err.kind == "garbage"


@responses.activate
def test_connection_refused_is_not_retried(service, store):
    responses.post(TXT2IMG, body=requests.exceptions.ConnectionError(
        "HTTPConnectionPool(host='a1111.test', port=7860): Max retries exceeded "
        "(Caused by NewConnectionError('[Errno 111] Connection refused'))"))
    err = failure(service, store)
    assert err.message == (f"Could not connect to A1111 at {BASE}: connection refused. "
                           "Is it running?")
    assert len(responses.calls) == 1


@responses.activate
def test_timeout_of_a_post_is_not_retried(service, store):
    responses.post(TXT2IMG, body=requests.exceptions.ReadTimeout("read timed out"))
    err = failure(service, store)
    assert err.kind == "timeout"
    assert "did not answer within 900 s" in err.message
    assert "was not sent again" in err.message
    assert len(responses.calls) == 1


def test_real_timeout_against_a_slow_server(service, store):
    """A server that accepts but never answers: the timeout of the endpoint applies."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        port = listener.getsockname()[1]
        slow = Service(id="a1111", name="Slow", definition=service.definition,
                       base_url=f"http://127.0.0.1:{port}")
        mode = service.definition.modes["txt2img"]
        quick = mode.endpoint.model_copy(update={"timeout": 0.3})
        import dataclasses

        quick_mode = dataclasses.replace(mode, endpoint=quick)
        with pytest.raises(BackendError) as info:
            generate(slow, quick_mode, prepare_values(mode, values(service)), store)
        assert "did not answer within 0.3 s" in info.value.message
    finally:
        listener.close()


@responses.activate
def test_health(service):
    responses.get(f"{BASE}/sdapi/v1/cmd-flags", json=a1111_flags())
    assert check_health(service) == ("online", "online")
    responses.replace(responses.GET, f"{BASE}/sdapi/v1/cmd-flags", status=404)
    state, message = check_health(service)
    # Another service there, or A1111 without its API: the page says both.
    assert state == "other" and "AUTOMATIC1111 WebUI started without --api" in message


@responses.activate
def test_options_from_real_lists(service):
    responses.get(f"{BASE}/sdapi/v1/samplers", json=a1111_response("samplers"))
    responses.get(f"{BASE}/sdapi/v1/schedulers", json=a1111_response("schedulers"))
    responses.get(f"{BASE}/sdapi/v1/sd-models", json=a1111_response("sd-models"))
    responses.get(f"{BASE}/sdapi/v1/upscalers", json=a1111_response("upscalers"))
    responses.get(f"{BASE}/sdapi/v1/latent-upscale-modes",
                  json=a1111_response("latent-upscale-modes"))
    mode = service.definition.modes["txt2img"]
    cache = OptionsCache()
    samplers = choices(service, mode.parameter("sampler_name"), cache)
    assert samplers[0].value == "DPM++ 2M" and "Euler a" in [c.value for c in samplers]
    schedulers = choices(service, mode.parameter("scheduler"), cache)
    assert (schedulers[0].value, schedulers[0].label) == ("automatic", "Automatic")
    models = choices(service, mode.parameter("sd_model_checkpoint"), cache)
    assert [(c.value, c.label) for c in models] == [
        ("random-sd15.safetensors [1c2e8cbb84]", "random-sd15")]
    upscalers = [c.value for c in choices(service, mode.parameter("hr_upscaler"), cache)]
    assert upscalers[:2] == ["Latent", "Latent (antialiased)"]
    assert "ESRGAN_4x" in upscalers and "Lanczos" in upscalers
    # The refiner uses the same endpoint as the checkpoint: answered from the cache.
    choices(service, mode.parameter("refiner_checkpoint"), cache)
    assert len([c for c in responses.calls if c.request.url.endswith("sd-models")]) == 1
    choices(service, mode.parameter("refiner_checkpoint"), cache, refresh=True)
    assert len([c for c in responses.calls if c.request.url.endswith("sd-models")]) == 2


@responses.activate
def test_options_errors(service):
    mode = service.definition.modes["txt2img"]
    responses.get(f"{BASE}/sdapi/v1/samplers", json={"not": "a list"}, status=200)
    with pytest.raises(BackendError, match="has no list at 'the top level'"):
        choices(service, mode.parameter("sampler_name"), OptionsCache())
    responses.get(f"{BASE}/sdapi/v1/loras", status=500, body="Internal Server Error")
    with pytest.raises(BackendError, match=r"failed \(HTTP 500: 'Internal Server Error'\)"):
        choices(service, mode.parameter("loras"), OptionsCache())


@responses.activate
@pytest.mark.parametrize(
    "auth, env, header, expected",
    [
        ({"type": "bearer", "tokenEnv": "WEBUI_TINY_TOKEN"}, {"WEBUI_TINY_TOKEN": "abc"},
         "Authorization", "Bearer abc"),
        ({"type": "header", "tokenEnv": "WEBUI_TINY_TOKEN", "header": "x-api-key"},
         {"WEBUI_TINY_TOKEN": "abc"}, "x-api-key", "abc"),
        ({"type": "basic", "usernameEnv": "WEBUI_TINY_USER", "passwordEnv": "WEBUI_TINY_PASS"},
         {"WEBUI_TINY_USER": "u", "WEBUI_TINY_PASS": "p"}, "Authorization", "Basic dTpw"),
    ],
)
def test_authentication_types(monkeypatch, auth, env, header, expected):
    from webui.format import load_data

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    data = minimal()
    data["authentication"] = auth
    svc = Service(id="tiny", name="Tiny", definition=load_data(data, "x"), base_url="http://t")
    responses.get("http://t/ping", json={})
    assert check_health(svc) == ("online", "online")
    assert responses.calls[0].request.headers[header] == expected


def test_required_secret_missing_is_a_setup_error(monkeypatch):
    from webui.format import load_data

    monkeypatch.delenv("WEBUI_TINY_TOKEN", raising=False)
    data = minimal()
    data["authentication"] = {"type": "bearer", "tokenEnv": "WEBUI_TINY_TOKEN",
                              "required": True}
    svc = Service(id="tiny", name="Tiny", definition=load_data(data, "x"), base_url="http://t")
    state, message = check_health(svc)
    assert state == "setup" and "set the environment variable(s) WEBUI_TINY_TOKEN" in message


@responses.activate
def test_values_go_into_the_query_the_path_and_headers(store):
    """query:/path:/header: targets: each value lands where its target names, as text."""
    from webui.format import load_data

    data = minimal()
    cap = data["capabilities"][1]
    cap["endpoints"]["txt2img"].update(path="/gen/{engine}", headers={"X-Fixed": "yes"})
    cap["endpoints"]["img2img"].update(path="/edit/{engine}")
    cap["parameters"]["txt2img"] += [
        {"key": "engine", "type": "text", "defaultValue": "fast", "target": "path:engine"},
        {"key": "hd", "type": "boolean", "defaultValue": True, "target": "query:hd"},
        {"key": "priority", "type": "integer", "defaultValue": 3, "target": "header:X-Priority"},
    ]
    svc = Service(id="tiny", name="Tiny", definition=load_data(data, "x"), base_url="http://t")
    mode = svc.definition.modes["txt2img"]
    responses.post("http://t/gen/fast%2Fer", json={"images": [base64.b64encode(
        image_bytes()).decode()]})
    values = {**{p.key: p.defaultValue for p in mode.parameters}, "prompt": "a cat",
              "engine": "fast/er", "model": None}
    gen = generate(svc, mode, prepare_values(mode, values), store)
    assert len(gen.images) == 1
    sent = responses.calls[0].request
    assert sent.url == "http://t/gen/fast%2Fer?hd=true"
    assert sent.headers["X-Priority"] == "3" and sent.headers["X-Fixed"] == "yes"
    body = json.loads(sent.body)
    assert "priority" not in body and "hd" not in body and "engine" not in body

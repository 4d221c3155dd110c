"""The Flask app of the demo backend (create_demo_app): routes, HTTP basic auth, error
handlers and Starlette-like JSON answers.

Routes (all under ``/sdapi/v1/``):

- GET ``memory``, ``sd-models``, ``samplers``, ``schedulers``, ``upscalers``,
  ``latent-upscale-modes``, ``loras``, ``sd-vae``, ``prompt-styles``; GET/POST ``options``;
  GET ``progress`` (query ``skip_current_image``); POST ``interrupt`` (answers ``{}``),
  ``skip``, ``refresh-checkpoints``, ``refresh-loras``, ``refresh-vae`` (these answer
  ``null``); POST ``txt2img`` and ``img2img``; POST ``extra-single-image`` (extras.py).

Decisions of the demo (not A1111 behaviour):

- ``prompt-styles`` lists three styles (data/prompt-styles.json), as a server with a
  styles.csv does; a fresh A1111 without one answers ``[]``.
- ``create_demo_app(api_auth="user:pass[,user2:pass2]")`` enables HTTP basic auth like
  ``--api-auth`` (401 on every route except ``loras``).
- ``create_demo_app(backend=...)`` serves a ``DemoBackend`` subclass: the test suite's fakes of
  the A1111 forks (tests/backends/a1111_variants.py) are built that way.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .painter import _png_b64
from .state import LIST_ROUTES, DemoBackend
from .validation import (
    _ApiError,
    _body_dict,
    _http_exception,
    _Invalid,
    _v_bool,
    _validation_error,
    _value,
)

API_PREFIX = "/sdapi/v1"


def _json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Starlette's JSONResponse: compact, UTF-8, no NaN, keys in insertion order.
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Response(body, status=status, mimetype="application/json", headers=headers)


def _parse_auth(api_auth: str | None) -> dict[str, str]:
    credentials: dict[str, str] = {}
    for item in (api_auth or "").split(","):
        user, sep, password = item.strip().partition(":")
        if sep:
            credentials[user] = password
    return credentials


def _read_json_body() -> Any:
    """Read the request body the way FastAPI does for a JSON body parameter."""
    raw = request.get_data(cache=True)
    if not raw:
        return None
    content_type = request.headers.get("Content-Type")
    mimetype = request.mimetype or ""
    main, _, sub = mimetype.partition("/")
    if content_type and not (main == "application" and (sub == "json" or sub.endswith("+json"))):
        # FastAPI hands the raw bytes to the model, which then is "not a valid dict".
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _validation_error(
            [
                {
                    "loc": ["body", exc.pos],
                    "msg": exc.msg,
                    "type": "value_error.jsondecode",
                    "ctx": {
                        "msg": exc.msg,
                        "doc": exc.doc,
                        "pos": exc.pos,
                        "lineno": exc.lineno,
                        "colno": exc.colno,
                    },
                }
            ]
        ) from None


def create_demo_app(
    *,
    step_delay: float = 0.02,
    api_auth: str | None = None,
    backend: DemoBackend | None = None,
) -> Flask:
    """Create the demo backend app.

    step_delay: seconds each sampling step of each image takes (0 for no delay).
    api_auth: optional "user:pass[,user2:pass2]" to require HTTP basic auth like A1111's
    --api-auth (every route but /loras then answers 401 without valid credentials).
    backend: the state to serve (a DemoBackend subclass for the emulated forks); by default a
    fresh A1111 one with ``step_delay``.
    """
    backend = backend if backend is not None else DemoBackend(step_delay)
    credentials = _parse_auth(api_auth)
    # Named after the package, as when the demo was one module (app.name, app.logger).
    app = Flask("webui.demo")
    app.extensions["webui_demo_backend"] = backend

    @app.errorhandler(_ApiError)
    def _api_error(exc: _ApiError) -> Response:
        return _json_response(exc.payload, exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # FastAPI's own answer for unknown routes and methods.
        return _json_response({"detail": exc.name}, exc.code or 500)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        status, payload = backend.exception_payload(exc)
        return _json_response(payload, status)

    if credentials:

        @app.before_request
        def _check_auth() -> Response | None:
            if request.path == f"{API_PREFIX}/loras":
                return None
            headers = {"WWW-Authenticate": "Basic"}
            auth = request.authorization
            if auth is None or auth.type != "basic":
                raise _http_exception(401, "Not authenticated", headers)
            expected = credentials.get(auth.username or "")
            if expected is None or not secrets.compare_digest(
                (auth.password or "").encode(), expected.encode()
            ):
                raise _http_exception(401, "Incorrect username or password", headers)
            return None

    def static_list(name: str) -> None:
        def view() -> Response:
            return _json_response(backend.list_answer(name))

        app.add_url_rule(f"{API_PREFIX}/{name}", f"list_{name}", view, methods=["GET"])

    for list_name in LIST_ROUTES:
        static_list(list_name)

    @app.get(f"{API_PREFIX}/options")
    def get_options() -> Response:
        with backend.cond:
            return _json_response(backend.options)

    @app.post(f"{API_PREFIX}/options")
    def post_options() -> Response:
        values = _body_dict(_read_json_body())
        backend.set_options({str(k): v for k, v in values.items()})
        return _json_response(None)

    @app.get(f"{API_PREFIX}/progress")
    def progress() -> Response:
        skip = False
        raw = request.args.get("skip_current_image")
        if raw is not None:
            try:
                skip = _v_bool(raw)
            except _Invalid as exc:
                raise _validation_error(
                    [{"loc": ["query", "skip_current_image"], "msg": exc.msg, "type": exc.type}]
                ) from None
        return _json_response(backend.progress(skip))

    @app.post(f"{API_PREFIX}/interrupt")
    def interrupt() -> Response:
        backend.interrupt()
        # Api.interruptapi returns {}.
        return _json_response({})

    @app.post(f"{API_PREFIX}/skip")
    def skip() -> Response:
        backend.skip()
        # Api.skip returns nothing.
        return _json_response(None)

    for refresh in ("refresh-checkpoints", "refresh-loras", "refresh-vae"):
        app.add_url_rule(
            f"{API_PREFIX}/{refresh}",
            refresh,
            lambda: _json_response(None),
            methods=["POST"],
        )

    def generate(mode: str) -> Response:
        params = backend.validate(mode, _read_json_body())
        plan = backend.plan(mode, params)
        images, indexes, job_timestamp = backend.run(plan)
        infotexts = [backend.infotext(plan, i) for i in indexes]
        send = _value(params, "send_images", True)
        pairs = zip(images, infotexts, strict=True)
        encoded = [_png_b64(img, text) for img, text in pairs] if send else []
        return _json_response(
            {
                "images": encoded,
                "parameters": backend.echo(mode, params),
                "info": backend.info(plan, infotexts, job_timestamp),
            }
        )

    @app.post(f"{API_PREFIX}/txt2img")
    def txt2img() -> Response:
        return generate("txt2img")

    @app.post(f"{API_PREFIX}/img2img")
    def img2img() -> Response:
        return generate("img2img")

    @app.post(f"{API_PREFIX}/extra-single-image")
    def extra_single_image() -> Response:
        return _json_response(backend.extras_single_image(_read_json_body()))

    return app

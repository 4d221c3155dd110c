"""Test backends for the A1111 forks, built on the demo emulator with their differences:
Forge lists extra modules at /sdapi/v1/sd-modules and takes distilled_cfg_scale; SD.Next has
no /sdapi/v1/schedulers and offers a "Default" sampler."""

from __future__ import annotations

from flask import Flask, jsonify, request

from webui.demo import create_demo_app

FORGE_MODULES = [
    {"model_name": "ae.safetensors",
     "filename": "/opt/forge/models/VAE/ae.safetensors"},
    {"model_name": "clip_l.safetensors",
     "filename": "/opt/forge/models/text_encoder/clip_l.safetensors"},
    {"model_name": "t5xxl_fp8_e4m3fn.safetensors",
     "filename": "/opt/forge/models/text_encoder/t5xxl_fp8_e4m3fn.safetensors"},
]


def _recording(app: Flask) -> Flask:
    app.config["REQUESTS"] = []

    @app.before_request
    def record() -> None:
        app.config["REQUESTS"].append(
            {"method": request.method, "path": request.path,
             "json": request.get_json(silent=True) if request.is_json else None})

    return app


def create_forge_app() -> Flask:
    app = _recording(create_demo_app(step_delay=0.001))

    @app.get("/sdapi/v1/sd-modules")
    def sd_modules():
        return jsonify(FORGE_MODULES)

    return app


def create_sdnext_app() -> Flask:
    app = _recording(create_demo_app(step_delay=0.001))

    @app.before_request
    def differences():
        if request.path == "/sdapi/v1/schedulers":
            return jsonify({"detail": "Not Found"}), 404
        if request.path == "/sdapi/v1/samplers":
            listed = app.test_client().get("/sdapi/v1/samplers-demo").get_json()
            return jsonify([{"name": "Default", "aliases": [], "options": {}}, *listed])
        return None

    @app.get("/sdapi/v1/samplers-demo")
    def demo_samplers():
        # The emulator's own list, reached under another path (the real one is shadowed).
        with app.test_request_context("/sdapi/v1/samplers"):
            return app.view_functions[_endpoint_for(app, "/sdapi/v1/samplers")]()

    return app


def _endpoint_for(app: Flask, path: str) -> str:
    adapter = app.url_map.bind("localhost")
    endpoint, _args = adapter.match(path, method="GET")
    return endpoint

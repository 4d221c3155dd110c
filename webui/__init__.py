"""webui: a browser UI for image generation, generated from service definition files."""

from .app import create_app

__all__ = ["create_app"]

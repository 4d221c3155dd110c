"""What every page module uses: the shared state, and finding the service and mode a URL
names."""

from __future__ import annotations

import re

from flask import abort, current_app
from markupsafe import Markup, escape

from ..format import Mode, Parameter
from ..service import Service
from ..state import State


def state() -> State:
    return current_app.extensions["webui"]


def find_service(service_id: str) -> Service:
    service = state().folders.catalog().get(service_id)
    if service is None:
        abort(404, f"There is no service {service_id!r}. Its definition may have been removed "
                   "or may have an error: see the list of services.")
    return service


def find_mode(service: Service, mode_name: str) -> Mode:
    mode = service.definition.modes.get(mode_name)
    if mode is None:
        abort(404, f"{service.name} has no mode {mode_name!r}.")
    return mode


def backticks(text: str) -> Markup:
    """Escape text, then show `code` spans as <code> (setup help in definitions)."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


_ID = re.compile(r"[0-9]{1,18}")


def image_id(text: str | None) -> int | None:
    """An image id from a URL (``?from=12``): ASCII digits that fit SQLite, else None."""
    return int(text) if text and _ID.fullmatch(text) else None


def input_image_mode(service: Service | None, upscale: bool = False) -> str | None:
    """The mode of a service that takes an input image (a parameter with the init_image
    role), where "Send to img2img" goes, or with ``upscale`` its upscale mode, where
    "Upscale" goes; None if it has none."""
    if service is None:
        return None
    return next((m.name for m in service.definition.modes.values()
                 if m.by_role("init_image") is not None and m.upscales == upscale), None)


def seed_parameter(mode: Mode | None) -> Parameter | None:
    """The parameter with the seed role, where "Use seed" puts a seed."""
    if mode is None:
        return None
    return next((p for p in mode.parameters if p.kind == "seed"), None)

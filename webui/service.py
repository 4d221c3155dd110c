"""A service: a definition bound to the address(es) it is reached at. What the catalog lists,
the pages show and the jobs talk to."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from .format import ServiceDefinition
from .redact import redact_url

# The definitions that come with webui (the catalog reads them from here). Only these may name
# the well-known variables of their service (OPENAI_API_KEY); any other file, which people
# download and share, reads only WEBUI_<ID>_* variables and its own entry of secrets.yaml.
BUNDLED_DIR = Path(__file__).parent / "services"


@dataclass(frozen=True)
class Service:
    """A definition bound to a base URL: what the UI lists and talks to."""

    id: str
    name: str
    definition: ServiceDefinition
    base_url: str
    note: str = ""
    demo: bool = False
    url_env: str = ""
    # Several base URLs make a pool; base_url is then the first.
    instances: tuple[str, ...] = ()
    # Set up by the operator (an address or a secret given, a definition of their own), or a
    # bundled one merely waiting at its default address: the home page lists those compactly.
    configured: bool = True

    @property
    def bundled(self) -> bool:
        """Whether the definition is one of webui's own (not a file of the user's, nor one
        that extends a bundled one)."""
        source = self.definition.source
        return source is not None and source.parent == BUNDLED_DIR

    @property
    def urls(self) -> tuple[str, ...]:
        return self.instances or (self.base_url,)

    def at(self, url: str) -> Service:
        """This service bound to one of its instances."""
        return replace(self, base_url=url, instances=(url,))

    @property
    def display_url(self) -> str:
        return redact_url(self.base_url)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


_ID_SAFE = re.compile(r"[^A-Za-z0-9]+")


def env_name(service_id: str, suffix: str) -> str:
    """``a1111`` + ``URL`` -> ``WEBUI_A1111_URL``: the operator's variables for a service."""
    return f"WEBUI_{_ID_SAFE.sub('_', service_id).upper()}_{suffix}"


def split_urls(value: str) -> tuple[str, ...]:
    """One base URL, or a comma-separated pool of them."""
    urls = tuple(u.strip() for u in value.split(",") if u.strip())
    return urls or (value,)

"""Settings of one running webui: where data and definitions live, which services to add."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import BUNDLED_DIR, ExtraService

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7870  # next to A1111's 7860, so both can run on one machine


@dataclass
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("WEBUI_DATA", "webui-data")))
    extra_definition_dirs: list[Path] = field(default_factory=list)
    url_overrides: dict[str, str] = field(default_factory=dict)
    extras: list[ExtraService] = field(default_factory=list)
    options_ttl: float = 120.0
    # Names webui is reached by besides the loopback ones and IP addresses (--allow-host).
    allowed_hosts: list[str] = field(default_factory=list)
    # The UI's own password (HTTP Basic, any user name); None: no password.
    password: str | None = field(default_factory=lambda: os.environ.get("WEBUI_PASSWORD") or None)
    # Event streams (pushed job updates) open at once, and how long one lasts before the
    # browser connects again: each holds a server thread while it is open (`webui serve`
    # allows half of its --threads; the other pages keep the rest). Beyond: pages poll.
    max_streams: int = 8
    stream_seconds: float = 120.0

    @property
    def user_definitions(self) -> Path:
        """The folder a user drops definition files into."""
        return self.data_dir / "definitions"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def thumbs_dir(self) -> Path:
        return self.data_dir / "thumbs"

    @property
    def uploads_dir(self) -> Path:
        """Input images of jobs that have not ended yet."""
        return self.data_dir / "uploads"

    @property
    def drafts_dir(self) -> Path:
        """Input images chosen in a form, not yet used (a reload keeps them)."""
        return self.data_dir / "drafts"

    @property
    def inputs_dir(self) -> Path:
        """Input images kept with their jobs for good (an inpainting job's mask and the image
        it was painted over), so that Reuse parameters brings them back."""
        return self.data_dir / "inputs"

    @property
    def kept_dir(self) -> Path:
        """Images read by PNG Info (the newest few), for its links to work after a reload."""
        return self.data_dir / "png-info"

    @property
    def history_file(self) -> Path:
        return self.data_dir / "history.sqlite3"

    @property
    def definition_dirs(self) -> list[Path]:
        # Later folders win on an id clash: bundled < data folder < --definitions.
        return [BUNDLED_DIR, self.user_definitions, *self.extra_definition_dirs]

"""What the history holds: jobs and their images, as records."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

FILENAME = "history.sqlite3"


STATUSES = ("queued", "running", "done", "failed", "interrupted", "cancelled")


PAGE_LIMIT_MAX = 500


BUSY_TIMEOUT = 10.0  # seconds a writer waits for another one before giving up


Cursor = tuple[float, int]  # (image created, image id) of the last image of a page


class HistoryError(Exception):
    """The history database or a thumbnail cannot be read or written; the message says why."""


@dataclass
class ImageRecord:
    """One result image; ``path`` and ``thumb_path`` are relative to the images folder."""

    job_id: str
    position: int
    path: str
    mime: str = "image/png"
    width: int | None = None
    height: int | None = None
    seed: int | str | None = None
    infotext: str | None = None
    thumb_path: str | None = None
    created: float | None = None  # None: when it is recorded
    id: int | None = None  # given by the store


@dataclass
class JobRecord:
    """One generation job. ``parameters`` are the validated form values (see ``clean``)."""

    id: str
    service_id: str
    service_name: str
    mode: str
    status: str = "queued"
    instance: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None
    negative_prompt: str | None = None
    seeds: list[Any] = field(default_factory=list)
    info: Any = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    images: list[ImageRecord] = field(default_factory=list)


@dataclass(frozen=True)
class GalleryItem:
    """An image of the gallery with what the gallery shows of its job."""

    image: ImageRecord
    prompt: str | None
    negative_prompt: str | None
    service_id: str
    service_name: str
    mode: str

    @property
    def cursor(self) -> Cursor:
        return (self.image.created or 0.0, self.image.id or 0)


@dataclass(frozen=True)
class Page:
    """A page of the gallery; ``next`` is the ``before`` of the following (older) page, ``prev``
    the ``after`` of the preceding (newer) one; None: there is none."""

    items: list[GalleryItem]
    next: Cursor | None
    prev: Cursor | None = None


@dataclass
class StyleRecord:
    """A prompt style saved in webui: merged into the prompt (``{prompt}`` stands for the
    user's text; without it the style is added after it) and into the negative prompt."""

    name: str
    prompt: str = ""
    negative_prompt: str = ""
    id: int | None = None  # given by the store
    created: float | None = None
    updated: float | None = None

"""What the pages share: settings, the definition folders, caches, the image store, the jobs
and the history. Built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import DefinitionFolders
from .choices import OptionsCache
from .config import Settings
from .grids import GridManager
from .history import HistoryStore
from .images import DraftStore, ImageStore, Thumbnailer
from .jobs import JobManager


@dataclass
class State:
    """What the views share: settings, the definition folders, caches and the image store."""

    settings: Settings
    folders: DefinitionFolders
    options: OptionsCache
    store: ImageStore
    jobs: JobManager
    history: HistoryStore | None
    drafts: DraftStore
    thumbnailer: Thumbnailer
    history_error: str | None = None
    grids: GridManager | None = None  # X/Y/Z grids (made by the app factory)

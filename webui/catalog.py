"""The catalog: which services exist right now.

Definition folders are scanned on every page load so a file dropped in shows up without a
restart; a file is only parsed again when its modification time or size changed. Bundled
definitions come first; a user file with the same id replaces the bundled one.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .client import Service, url_env_name
from .definitions import DefinitionError, ServiceDefinition, load_file

BUNDLED_DIR = Path(__file__).parent / "definitions"
SUFFIXES = {".yaml", ".yml", ".json"}


@dataclass(frozen=True)
class ExtraService:
    """A further service built from a loaded definition (the demo uses this)."""

    id: str
    definition: str
    name: str
    url: str
    note: str = ""
    demo: bool = False


@dataclass
class LoadFailure:
    path: Path
    lines: list[str]


@dataclass
class Catalog:
    services: list[Service] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)

    def get(self, service_id: str) -> Service | None:
        return next((s for s in self.services if s.id == service_id), None)


class DefinitionFolders:
    """Loads every definition file in the given folders, caching by (mtime, size)."""

    def __init__(
        self,
        folders: list[Path],
        url_overrides: dict[str, str] | None = None,
        extras: list[ExtraService] | None = None,
    ):
        self.folders = [Path(f) for f in folders]
        self.url_overrides = dict(url_overrides or {})
        self.extras = list(extras or [])
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple[float, int], ServiceDefinition | DefinitionError]] = {}

    def files(self) -> list[Path]:
        found = []
        for folder in self.folders:
            if folder.is_dir():
                found.extend(
                    p for p in sorted(folder.iterdir())
                    if p.suffix.lower() in SUFFIXES and p.is_file() and not p.name.startswith(".")
                )
        return found

    def _load(self, path: Path) -> ServiceDefinition | DefinitionError:
        try:
            stat = path.stat()
        except OSError as exc:
            return DefinitionError(str(path), [("", f"cannot read file: {exc}")])
        stamp = (stat.st_mtime, stat.st_size)
        with self._lock:
            hit = self._cache.get(path)
        if hit and hit[0] == stamp:
            return hit[1]
        try:
            loaded: ServiceDefinition | DefinitionError = load_file(path)
        except DefinitionError as exc:
            loaded = exc
        with self._lock:
            self._cache[path] = (stamp, loaded)
        return loaded

    def catalog(self) -> Catalog:
        """The services and the failures as the folders are now."""
        result = Catalog()
        by_id: dict[str, tuple[ServiceDefinition, Path]] = {}
        for path in self.files():
            loaded = self._load(path)
            if isinstance(loaded, DefinitionError):
                result.failures.append(LoadFailure(path, loaded.lines()))
                continue
            previous = by_id.get(loaded.id)
            if previous and previous[1].parent == path.parent:
                result.failures.append(LoadFailure(path, [
                    f"{path}: id: {loaded.id!r} is already defined by {previous[1].name}"]))
                continue
            by_id[loaded.id] = (loaded, path)  # a later folder replaces an earlier one
        # Extras (the demo) first: they work before anything is set up.
        for extra in self.extras:
            found = by_id.get(extra.definition)
            if found is not None:
                result.services.append(Service(
                    id=extra.id, name=extra.name, definition=found[0], base_url=extra.url,
                    note=extra.note, demo=extra.demo,
                ))
        for service_id, (definition, _path) in by_id.items():
            result.services.append(self._service(service_id, definition))
        return result

    def _service(self, service_id: str, definition: ServiceDefinition) -> Service:
        env = url_env_name(service_id)
        url = self.url_overrides.get(service_id) or os.environ.get(env) or definition.model.url
        return Service(id=service_id, name=definition.model.name, definition=definition,
                       base_url=url, url_env=env)

"""The catalog: which services exist right now.

Definition folders are scanned on every page load so a file dropped in shows up without a
restart; a file is only parsed again when its modification time or size changed, once however
many page loads ask at the same time, and a file that fails keeps its failure until it changes.
Bundled definitions come first; a user file with the same id replaces the bundled one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backend import BackendError, call, read_json
from .format import DefinitionError, ServiceDefinition, load_file, read_raw
from .service import BUNDLED_DIR, Service, env_name, split_urls
from .workflow import (
    BASE_SERVICE,
    NODE_TYPES_ENDPOINT,
    WorkflowError,
    is_workflow,
    node_types_failure,
    not_imported,
    read_workflow,
    write_service,
)

SUFFIXES = {".yaml", ".yml", ".json"}

log = logging.getLogger(__name__)

# A workflow that could not be imported because ComfyUI was not reachable is tried again after
# this many seconds (any other failure waits for the file to change).
WORKFLOW_RETRY = 15.0
# Seconds the page load that imports a dropped workflow waits for ComfyUI's node types.
WORKFLOW_TIMEOUT = 5.0


def node_types(service: Service, timeout: float | None = None) -> dict[str, Any]:
    """The node definitions a workflow is read with, through the service's node types
    endpoint (workflow.NODE_TYPES_ENDPOINT)."""
    endpoint = service.definition.endpoints.get(NODE_TYPES_ENDPOINT)
    if endpoint is None:
        raise node_types_failure(service.id, None)
    try:
        info = read_json(service, call(service, endpoint, timeout=timeout))
    except BackendError as exc:
        raise node_types_failure(service.id, str(exc)) from None
    if not isinstance(info, dict):
        raise node_types_failure(service.id, f"{service.name} answered no mapping of them")
    return info


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
    # The id of the service still served from the file's last good version, if any.
    serving: str | None = None


@dataclass
class Replaced:
    """A definition file whose id an earlier folder's file (``replaced``) already had."""

    id: str
    path: Path
    replaced: Path

    @property
    def bundled(self) -> bool:
        return self.replaced.parent == BUNDLED_DIR


@dataclass
class Catalog:
    services: list[Service] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)
    replaced: list[Replaced] = field(default_factory=list)

    def get(self, service_id: str) -> Service | None:
        return next((s for s in self.services if s.id == service_id), None)


Stamp = tuple[float, int]


def _stamp(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


def _unexpected(path: Path, exc: Exception) -> DefinitionError:
    """A failure the format did not foresee, as a failure of this file alone."""
    log.exception("loading %s", path)
    return DefinitionError(str(path), [("", f"could not be loaded ({type(exc).__name__}: "
                                            f"{str(exc)[:200]})")])


class DefinitionFolders:
    """Loads every definition file in the given folders. A file is parsed again only when it,
    a definition it extends or a file it includes (a workflow) changed."""

    def __init__(
        self,
        folders: list[Path],
        url_overrides: dict[str, str] | None = None,
        extras: list[ExtraService] | None = None,
        workflow_folders: list[Path] | None = None,
    ):
        self.folders = [Path(f) for f in folders]
        # Folders where a dropped ComfyUI workflow (.json) becomes a definition file.
        self.workflow_folders = [Path(f) for f in workflow_folders or []]
        # A dropped workflow that failed to import: (its stamp, when, the failure, retry?).
        self._workflows: dict[Path, tuple[Stamp | None, float, DefinitionError, bool]] = {}
        # Whether a .json file (as of its stamp) is a ComfyUI workflow.
        self._kinds: dict[Path, tuple[Stamp | None, bool]] = {}
        self.url_overrides = dict(url_overrides or {})
        self.extras = list(extras or [])
        self._lock = threading.Lock()
        # One lock per file: a file changed is parsed once, the page loads asking meanwhile
        # wait for that parse.
        self._file_locks: dict[Path, threading.RLock] = {}
        self._raw: dict[Path, tuple[Stamp | None, dict[str, Any] | DefinitionError]] = {}
        self._loaded: dict[Path, tuple[Any, ServiceDefinition | DefinitionError]] = {}
        # The last version of each file that loaded: served while a newer one has an error.
        self._good: dict[Path, ServiceDefinition] = {}

    def _file_lock(self, path: Path) -> threading.RLock:
        with self._lock:
            return self._file_locks.setdefault(path, threading.RLock())

    def files(self) -> list[Path]:
        found = []
        for folder in self.folders:
            if folder.is_dir():
                found.extend(
                    p for p in sorted(folder.iterdir())
                    if p.suffix.lower() in SUFFIXES and p.is_file() and not p.name.startswith(".")
                )
        return found

    def _read(self, path: Path) -> dict[str, Any] | DefinitionError:
        with self._file_lock(path):
            stamp = _stamp(path)
            with self._lock:
                hit = self._raw.get(path)
            if hit and hit[0] == stamp:
                return hit[1]
            try:
                raw: dict[str, Any] | DefinitionError = read_raw(path)
            except DefinitionError as exc:
                raw = exc
            except Exception as exc:  # one file never breaks the others
                raw = _unexpected(path, exc)
            with self._lock:
                self._raw[path] = (stamp, raw)
            return raw

    def raw_by_id(self) -> dict[str, tuple[dict[str, Any], Path]]:
        """Parsed files by their id; a later folder's file replaces an earlier one's."""
        out: dict[str, tuple[dict[str, Any], Path]] = {}
        for path in self.files():
            raw = self._read(path)
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                out[raw["id"]] = (raw, path)
        return out

    def load(
        self, path: Path, by_id: dict[str, tuple[dict[str, Any], Path]] | None = None
    ) -> ServiceDefinition | DefinitionError:
        """One file, validated and resolved (its parents looked up among the folders)."""
        by_id = self.raw_by_id() if by_id is None else by_id
        providers = tuple(sorted((k, str(v[1])) for k, v in by_id.items()))
        with self._file_lock(path):
            with self._lock:
                hit = self._loaded.get(path)
            if hit:
                (stamps, seen_providers), loaded = hit
                if seen_providers == providers and all(_stamp(p) == st for p, st in stamps):
                    return loaded
            raw = self._read(path)
            deps: tuple[Path, ...] = (path,)
            if isinstance(raw, DefinitionError):
                loaded = raw  # not parsed again before the file changes
            else:
                try:
                    loaded = load_file(path, by_id.get, raw)
                    deps = loaded.dependencies
                except DefinitionError as exc:
                    loaded, deps = exc, exc.dependencies or (path,)
                except Exception as exc:  # one file never breaks the others
                    loaded = _unexpected(path, exc)
            key = (tuple((p, _stamp(p)) for p in deps), providers)
            with self._lock:
                self._loaded[path] = (key, loaded)
                if isinstance(loaded, ServiceDefinition):
                    self._good[path] = loaded
            return loaded

    def last_good(self, path: Path) -> ServiceDefinition | None:
        """The version of a file that loaded last, if the file has had one."""
        with self._lock:
            return self._good.get(path)

    # --- dropped ComfyUI workflows (issue 15) ---

    def _dropped_workflows(self) -> list[Path]:
        """The ``.json`` files of the workflow folders that are workflows (workflow.py)."""
        found = []
        for path in self.files():
            if path.parent not in self.workflow_folders or path.suffix.lower() != ".json":
                continue
            stamp = _stamp(path)
            with self._lock:
                seen = self._kinds.get(path)
            if seen is None or seen[0] != stamp:
                try:
                    seen = (stamp, is_workflow(read_workflow(path)))
                except WorkflowError:
                    seen = (stamp, False)
                with self._lock:
                    self._kinds[path] = seen
            if seen[1]:
                found.append(path)
        return found

    def _import_workflow(self, path: Path, by_id: dict[str, tuple[dict[str, Any], Path]]
                         ) -> DefinitionError | None:
        """Turn a dropped workflow into ``<name>.yaml`` + ``<name>/`` beside it (the dropped
        file moves into that folder); the failure, if it could not be."""
        with self._file_lock(path):
            stamp = _stamp(path)
            if stamp is None:
                return None  # imported meanwhile
            with self._lock:
                seen = self._workflows.get(path)
            if seen and seen[0] == stamp and not (seen[3]
                                                  and time.monotonic() - seen[1] > WORKFLOW_RETRY):
                return seen[2]
            retry = False
            try:
                found = by_id.get(BASE_SERVICE)
                if found is None:
                    raise WorkflowError(f"there is no {BASE_SERVICE!r} service to run it on")
                base = self.load(found[1], by_id)
                if isinstance(base, DefinitionError):
                    raise WorkflowError(f"the {BASE_SERVICE!r} definition has errors")
                service = self._service(BASE_SERVICE, base)
                retry = True
                object_info = node_types(service, timeout=WORKFLOW_TIMEOUT)
                retry = False
                write_service(read_workflow(path), object_info, found[0], path.parent,
                              name=path.stem, url=service.base_url, source=path.name,
                              original=path)
            except WorkflowError as exc:
                again = (f" Reload this page to try again (after {WORKFLOW_RETRY:g} s)."
                         if retry else "")
                failure = DefinitionError(str(path), [("", not_imported(f"{exc}{again}"))])
                with self._lock:
                    self._workflows[path] = (stamp, time.monotonic(), failure, retry)
                return failure
            except OSError as exc:
                failure = DefinitionError(str(path), [("", f"could not write the service of "
                                                           f"this workflow: {exc}")])
                with self._lock:
                    self._workflows[path] = (stamp, time.monotonic(), failure, False)
                return failure
            except Exception as exc:  # a malformed workflow never breaks the page
                failure = _unexpected(path, exc)
                with self._lock:
                    self._workflows[path] = (stamp, time.monotonic(), failure, False)
                return failure
            return None

    def catalog(self) -> Catalog:
        """The services and the failures as the folders are now."""
        result = Catalog()
        by_id = self.raw_by_id()
        workflow_failures: dict[Path, DefinitionError] = {}
        dropped = self._dropped_workflows() if self.workflow_folders else []
        for path in dropped:
            failure = self._import_workflow(path, by_id)
            if failure is not None:
                workflow_failures[path] = failure
        if len(workflow_failures) < len(dropped):
            by_id = self.raw_by_id()  # the imported ones are definitions now
        loaded_by_id: dict[str, tuple[ServiceDefinition, Path]] = {}
        for path in self.files():
            if path in workflow_failures:
                result.failures.append(LoadFailure(path, workflow_failures[path].lines()))
                continue
            loaded = self.load(path, by_id)
            if isinstance(loaded, DefinitionError):
                good = self.last_good(path)
                result.failures.append(LoadFailure(path, loaded.lines(),
                                                   good.id if good else None))
                if good is None:
                    continue
                # A typo must not take the service away: the last good version goes on.
                loaded = good
            previous = loaded_by_id.get(loaded.id)
            if previous and previous[1].parent == path.parent:
                result.failures.append(LoadFailure(path, [
                    f"{path}: id: {loaded.id!r} is already defined by {previous[1].name}"]))
                continue
            if previous:
                result.replaced.append(Replaced(loaded.id, path, previous[1]))
            loaded_by_id[loaded.id] = (loaded, path)  # a later folder replaces an earlier one
        # Extras (the demo) first: they work before anything is set up.
        for extra in self.extras:
            found = loaded_by_id.get(extra.definition)
            if found is not None:
                urls = split_urls(extra.url)
                result.services.append(Service(
                    id=extra.id, name=extra.name, definition=found[0], base_url=urls[0],
                    note=extra.note, demo=extra.demo, instances=urls,
                ))
        for service_id, (definition, _path) in loaded_by_id.items():
            result.services.append(self._service(service_id, definition))
        return result

    def _service(self, service_id: str, definition: ServiceDefinition) -> Service:
        env = env_name(service_id, "URL")
        given = self.url_overrides.get(service_id) or os.environ.get(env)
        urls = split_urls(given or definition.model.url)
        auth = definition.model.authentication
        secrets = [auth.usernameEnv, auth.tokenEnv] if auth.required else []
        configured = bool(
            given
            or (definition.source is not None and definition.source.parent != BUNDLED_DIR)
            or any(name and os.environ.get(name) for name in secrets))
        return Service(id=service_id, name=definition.model.name, definition=definition,
                       base_url=urls[0], url_env=env, instances=urls, configured=configured)

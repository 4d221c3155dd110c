"""The application factory."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from . import backend, delivery, guard, recorder, views
from .catalog import DefinitionFolders
from .choices import OptionsCache
from .config import Settings
from .grids import GridManager
from .history import HistoryError, HistoryStore
from .images import MAX_IMAGE_BYTES, DraftStore, ImageStore, Thumbnailer
from .jobs import JobManager
from .state import State

log = logging.getLogger(__name__)

_HERE = Path(__file__).parent


def _asset_dir(name: str) -> Path:
    # Installed wheels carry templates/ and static/ inside the package; a source checkout
    # (and an editable install) has them at the top level, next to the package.
    inside = _HERE / name
    return inside if inside.is_dir() else _HERE.parent / name


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app for ``settings`` (defaults: ./webui-data, no demo)."""
    settings = settings or Settings()
    # Resolved once, here: Flask's send_from_directory resolves a relative folder against the
    # application's root, not the current directory, so a relative one would answer 404.
    settings.data_dir = settings.data_dir.expanduser().resolve()
    backend.use_secrets_folder(settings.data_dir)  # webui-data/secrets.yaml, read when changed
    for folder in (settings.data_dir, settings.user_definitions, settings.images_dir,
                   settings.thumbs_dir, settings.uploads_dir, settings.drafts_dir,
                   settings.inputs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    app = Flask(
        __name__,
        template_folder=str(_asset_dir("templates")),
        static_folder=str(_asset_dir("static")),
    )
    # The whole form, an upload included, with room for the other fields.
    app.config["MAX_CONTENT_LENGTH"] = MAX_IMAGE_BYTES + 2 * 1024 * 1024
    store = ImageStore(settings.images_dir)
    history: HistoryStore | None = None
    history_error = None
    try:
        history = HistoryStore(settings.history_file)
    except HistoryError as exc:
        # Generating still works; the gallery says what is wrong with the history file.
        history_error = str(exc)
        log.error("history unavailable: %s", exc)
    thumbnailer = Thumbnailer(settings.thumbs_dir)
    events = (recorder.Recorder(history, store, thumbnailer, settings.uploads_dir,
                                 settings.inputs_dir) if history else None)
    jobs = JobManager(store, events=events)
    thumbnailer.busy = jobs.busy  # jobs waiting or running have the machine first
    state = app.extensions["webui"] = State(
        settings=settings,
        folders=DefinitionFolders(settings.definition_dirs, settings.url_overrides,
                                  settings.extras, workflow_folders=[settings.user_definitions]),
        options=OptionsCache(settings.options_ttl),
        store=store,
        jobs=jobs,
        history=history,
        history_error=history_error,
        drafts=DraftStore(settings.drafts_dir),
        thumbnailer=thumbnailer,
    )

    state.grids = GridManager(state.jobs, store, history, thumbnailer)
    if events is not None:
        # What a stopped webui left: jobs cut short, jobs still waiting, files without a row.
        events.restore(state.folders.catalog(), state.jobs)
    views.register(app)

    guard.install(app, settings.allowed_hosts, settings.password, _problem)
    delivery.install(app)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        limit = MAX_IMAGE_BYTES // (1024 * 1024)
        return _problem(f"The upload is too large: the limit is {limit} MB.", 413)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _problem(exc.description or exc.name, exc.code or 500)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # Logged in full on the server; the browser gets a plain sentence, never a traceback.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _problem("Something went wrong inside webui; the details are in the server "
                        "log. Nothing was lost: try again.", 500)

    return app


def _problem(message: str, status: int):
    template = "_problem.html" if request.headers.get("HX-Request") else "problem.html"
    return render_template(template, message=message, status=status), status

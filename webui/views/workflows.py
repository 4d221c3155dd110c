"""A workflow file uploaded on the home page (workflow.py reads it): saved into the
definitions folder, where the catalog turns it into a service (as a dropped file); then its
page, or why it was not."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for

from ..workflow import (
    MAX_WORKFLOW_BYTES,
    UPLOAD_EMPTY,
    UPLOAD_NOT_JSON,
    UPLOAD_NOT_WORKFLOW,
    is_workflow,
)
from .common import state

bp = Blueprint("workflows", __name__)


def _file_name(name: str) -> str:
    """The uploaded file's own name, safe as a name in the definitions folder."""
    stem = re.sub(r"[\x00-\x1f/\\:]+", " ", name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1])
    stem = stem.removesuffix(".json").removesuffix(".JSON").strip(" .")[:80].strip()
    return stem or "workflow"


@bp.post("/workflows")
def upload() -> Any:
    """Save the workflow as ``<its name>.json`` in the definitions folder and load the
    catalog: the service's page if it became one, else the home page with its error."""
    st = state()
    upload = request.files.get("workflow")
    data = upload.read(MAX_WORKFLOW_BYTES + 1) if upload and upload.filename else b""
    problem = None
    if not data:
        problem = UPLOAD_EMPTY
    elif len(data) > MAX_WORKFLOW_BYTES:
        problem = f"This file is larger than {MAX_WORKFLOW_BYTES // 2**20} MiB."
    else:
        try:
            if not is_workflow(json.loads(data.decode("utf-8"))):
                problem = UPLOAD_NOT_WORKFLOW
        except (UnicodeDecodeError, ValueError):
            problem = UPLOAD_NOT_JSON
    if problem:
        catalog = st.folders.catalog()
        return render_template("index.html", catalog=catalog, settings=st.settings,
                               workflow_problem=problem), 422
    folder = st.settings.user_definitions
    folder.mkdir(parents=True, exist_ok=True)
    stem = _file_name(upload.filename or "")
    name, n = stem, 1
    while (folder / f"{name}.json").exists() or (folder / f"{name}.yaml").exists():
        n += 1
        name = f"{stem} ({n})"
    path = folder / f"{name}.json"
    path.write_bytes(data)
    catalog = st.folders.catalog()
    for service in catalog.services:
        source = service.definition.source
        if source is not None and (source.parent / source.stem / path.name).is_file():
            return redirect(url_for("services.service_home", service_id=service.id), 303)
    # Not imported: the upload is not kept, and the reason is said by the form.
    failure = next((f for f in catalog.failures if f.path == path), None)
    path.unlink(missing_ok=True)
    problem = " ".join(line.split(": (file): ", 1)[-1] for line in failure.lines) if (
        failure) else "This workflow did not become a service."
    catalog = st.folders.catalog()
    return render_template("index.html", catalog=catalog, settings=st.settings,
                           workflow_problem=problem), 422

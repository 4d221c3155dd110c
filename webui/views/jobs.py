"""A job's own page, its panel (polled while it runs), its actions and its live preview."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, url_for

from .common import state

bp = Blueprint("jobs", __name__)


def _job(job_id: str):
    job = state().jobs.get(job_id)
    if job is None:
        abort(404, "This job is not known here: webui may have been restarted since. Its "
                   "images, if it made any, are in the images folder.")
    return job


@bp.get("/jobs/<job_id>")
def job_page(job_id: str) -> Any:
    job = state().jobs.get(job_id)
    if job is None and state().history is not None:
        # A job from before a restart lives on in the history.
        record = state().history.get_job(job_id)
        if record is not None and record.images:
            return redirect(url_for("gallery.image_page", image_id=record.images[0].id))
        if record is not None:
            abort(404, f"This job ended {record.status}"
                       + (f": {record.error}" if record.error else "") + " (no images).")
    job = _job(job_id)
    return render_template("job.html", job=job, position=state().jobs.position(job))


@bp.get("/jobs/<job_id>/panel")
def job_panel(job_id: str) -> str:
    job = _job(job_id)
    return render_template("_job.html", job=job, mode=job.mode, service=job.service,
                           position=state().jobs.position(job))


@bp.post("/jobs/<job_id>/<action>")
def job_action(job_id: str, action: str) -> str:
    job = _job(job_id)
    jobs = state().jobs
    if action == "interrupt":
        problem = jobs.interrupt(job)
    elif action == "skip":
        problem = jobs.skip(job)
    elif action == "cancel":
        problem = None if jobs.cancel(job) else "The job had already started."
    else:
        abort(404, f"No job action {action!r}.")
    return render_template("_job.html", job=job, mode=job.mode, service=job.service,
                           position=jobs.position(job), action_error=problem)


@bp.get("/jobs/<job_id>/preview")
def job_preview(job_id: str) -> Response:
    progress = _job(job_id).progress
    if progress.preview is None:
        abort(404, "No preview yet.")
    # The panel asks for ?v=<version>: one URL is one picture, so it may be cached.
    return Response(progress.preview, mimetype=progress.preview_mime,
                    headers={"Cache-Control": "private, max-age=3600, immutable"})

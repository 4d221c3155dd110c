"""A job's own page, its panel (polled while it runs), its actions and its live preview; its
images one by one (which of the batch each is); the queue page of every active job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from ..history import HistoryError
from ..jobs import Job
from ..results import SavedImage
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
    if request.headers.get("HX-Target") == QUEUE_ID:
        # Pressed on the queue page: the queue answers, with the problem (if any) above it.
        return _queue(problems=[(job, problem)] if problem else [])
    return render_template("_job.html", job=job, mode=job.mode, service=job.service,
                           position=jobs.position(job), action_error=problem)


# -- the queue page -----------------------------------------------------------------------------

QUEUE_ID = "queue-jobs"  # the element the queue page refreshes


def _queue_context(problems: list[tuple[Job, str]] | None = None) -> dict[str, Any]:
    """The active jobs by service (running first, then queued in order), with their place."""
    jobs = state().jobs
    groups: dict[str, list[tuple[Job, int | None]]] = {}
    for job in jobs.active():
        groups.setdefault(job.service.id, []).append((job, jobs.position(job)))
    return {"groups": list(groups.values()), "problems": problems, "queue_id": QUEUE_ID,
            "now": time.time()}


def _queue(problems: list[tuple[Job, str]] | None = None) -> str:
    return render_template("_queue.html", **_queue_context(problems))


@bp.get("/queue")
def queue_page() -> str:
    """Every running and queued job of every service, with what each offers."""
    return render_template("queue.html", **_queue_context())


@bp.get("/queue/jobs")
def queue_jobs() -> str:
    """The queue page's list, polled while the page is open."""
    return _queue()


@bp.get("/jobs/<job_id>/preview")
def job_preview(job_id: str) -> Response:
    progress = _job(job_id).progress
    if progress.preview is None:
        abort(404, "No preview yet.")
    # The panel asks for ?v=<version>: one URL is one picture, so it may be cached.
    return Response(progress.preview, mimetype=progress.preview_mime,
                    headers={"Cache-Control": "private, max-age=3600, immutable"})


# -- a job's images, one by one ---------------------------------------------------------------

MARKS = {"skipped": "Skipped: made only as far as it got",
         "interrupted": "Interrupted: made only as far as it got"}


@dataclass(frozen=True)
class Slot:
    """One image of a job as its panel shows it: which of the batch it is, its record in the
    history (for the links that need one), what cut it short; no image: one that was asked
    for and not made."""

    position: int  # from 0
    count: int
    image: SavedImage | None
    image_id: int | None = None
    note: str | None = None


def result_slots(job: Job) -> list[Slot]:
    """The images of a job, each with its place in the batch ("image 2 of 4"); once the job
    has ended, the images it asked for and did not get are slots of their own."""
    images = list(job.images)
    ids: dict[int, int | None] = {}
    if images and state().history is not None:
        try:
            record = state().history.get_job(job.id)
        except HistoryError:
            record = None
        ids = {im.position: im.id for im in (record.images if record else [])
               if im.position < len(images) and im.path == images[im.position].path}
    count = max(job.asked, len(images))
    slots = [Slot(i, count, im, ids.get(i), MARKS.get(job.marks.get(i, "")))
             for i, im in enumerate(images)]
    if images and not job.active:
        missing = {"interrupted": "Not made: the job was interrupted",
                   "failed": "Not made: the job failed"}.get(
            job.status, f"Not returned by {job.service.name}")
        slots += [Slot(i, count, None, note=missing) for i in range(len(images), count)]
    return slots

"""A job's own page, its panel, what changed in it while it runs, its actions and its live
preview; its images one by one (which of the batch each is); the queue page of every active
job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from ..history import HistoryError
from ..jobs import Job
from ..results import SavedImage
from . import events
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
    return render_template("job.html", job=job.snapshot(), position=state().jobs.position(job))


def job_mark(job: Job) -> str:
    """What a panel shows of a running job, in a few characters, for the next poll to send
    back: its state (status, the backend's queue, an interrupt asked for), the preview
    version and the number of images."""
    return (f"{job.status}.{job.remote or ''}.{int(job.stop_requested)}."
            f"{job.progress.preview_version}.{len(job.images)}")


def changed_parts(job: Job, seen: str) -> set[str]:
    """The parts of the panel that differ from what ``seen`` (a :func:`job_mark`) showed,
    beyond the state line and the progress bar that every answer brings; "announce" when
    the state changed. Anything unreadable counts as all changed."""
    now, before = job_mark(job).split("."), seen.split(".")
    if len(before) != len(now):
        return {"announce", "buttons", "preview", "images"}
    parts = set()
    if now[:2] != before[:2]:
        parts |= {"announce", "buttons"}
    if now[2] != before[2]:
        parts.add("buttons")
    if now[3] != before[3]:
        parts.add("preview")
    if now[4] != before[4]:
        parts.add("images")
    return parts


def update_html(job: Job, seen: str, **extra: Any) -> str:
    """What changed in the panel since ``seen``; a job that ended: its final panel. Polled
    (:func:`job_update`) or pushed (:func:`job_events`)."""
    job = job.snapshot()
    context: dict[str, Any] = {"job": job, "mode": job.mode, "service": job.service,
                               "position": state().jobs.position(job), **extra}
    if not job.active:
        context.setdefault("announce", True)
    else:
        context["changed"] = changed_parts(job, seen)
        context.setdefault("announce", "announce" in context["changed"])
    return render_template("_job_update.html", **context)


def _update(job: Job, seen: str, **extra: Any) -> tuple[str, int, dict[str, str]]:
    """An answer of what changed; a job that ended: its final panel, replacing the old one."""
    job = job.snapshot()
    # A job that ended: its final panel out of band, found by its id in the page. Not a
    # retarget: htmx looks for that around the element that asked, which a pushed update may
    # have replaced meanwhile (a detached button finds nothing: htmx:targetError).
    return update_html(job, seen, final_oob=not job.active, **extra), 200, {}


@bp.get("/jobs/<job_id>/update")
def job_update(job_id: str) -> tuple[str, int, dict[str, str]]:
    """Polled by the panel of a running job: ``seen`` is what it shows."""
    return _update(_job(job_id), request.args.get("seen", ""))


@bp.get("/jobs/<job_id>/panel")
def job_panel(job_id: str) -> str:
    job = _job(job_id).snapshot()
    return render_template("_job.html", job=job, mode=job.mode, service=job.service,
                           position=state().jobs.position(job))


# What the live region says when an action was taken (the job goes on for a moment).
ACTION_SAID = {"interrupt": "Interrupting.", "skip": "Skipping the current image.",
               "cancel": "Cancelled."}


@bp.post("/jobs/<job_id>/<action>")
def job_action(job_id: str, action: str) -> str | tuple[str, int, dict[str, str]]:
    job = _job(job_id)
    jobs = state().jobs
    seen = job_mark(job)
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
    # A problem is said by its own alert; a job that ended meanwhile (the backend stopped it
    # while it was being asked to) says its end, not "Interrupting.".
    announce = None if problem else ACTION_SAID[action] if job.active else True
    return _update(job, seen, action_error=problem, announce=announce)


# -- the queue page -----------------------------------------------------------------------------

QUEUE_ID = "queue-jobs"  # the element the queue page refreshes


def _queue_context(problems: list[tuple[Job, str]] | None = None) -> dict[str, Any]:
    """The active jobs by service (running first, then queued in order), with their place."""
    jobs = state().jobs
    groups: dict[str, list[tuple[Job, int | None]]] = {}
    for job in jobs.active():
        groups.setdefault(job.service.id, []).append((job.snapshot(), jobs.position(job)))
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


# -- pushed: the same fragments over server-sent events ---------------------------------------

MAX_FOLLOWED = 100  # jobs one stream follows (a compare page's cells)


def events_url(jobs: list[Job]) -> str:
    """The stream of these jobs, each with what the page shows of it (its mark)."""
    return url_for("jobs.job_events") + "?" + urlencode({j.id: job_mark(j) for j in jobs})


def _urgent(mark: str) -> str:
    """What of a mark goes out at once: state and images; not a new preview."""
    parts = mark.split(".")
    return ".".join(parts[:3] + parts[4:])


@bp.get("/jobs/events")
def job_events() -> Response:
    """The jobs named in the query (``<id>=<mark>``) pushed as they change: event
    ``update-<id>``, what changed in its panel (the fragment a poll gets); ``end-<id>``, its
    final panel, once; ``close`` when every one has ended. A browser that connects again
    says the marks it had (Last-Event-ID)."""
    asked = dict(parse_qsl(request.query_string.decode(), keep_blank_values=True))
    asked.update(parse_qsl(request.headers.get("Last-Event-ID", "")))
    followed = [job for job in map(state().jobs.get, list(asked)[:MAX_FOLLOWED])
                if job is not None]
    if not followed:
        abort(404, "None of these jobs is known here.")
    marks = {job.id: asked[job.id] for job in followed}
    shown: dict[str, str] = {}  # the last update sent, per job
    ended: set[str] = set()

    def render() -> tuple[list[str], bool]:
        out = []
        for live in followed:
            if live.id in ended:
                continue
            job = live.snapshot()  # one instant: its status, its mark and its fragment agree
            if not job.active:
                out.append(events.event(f"end-{job.id}", update_html(job, marks[job.id])))
                ended.add(job.id)
                continue
            mark = job_mark(job)
            html = update_html(job, marks[job.id])
            if html != shown.get(job.id):
                shown[job.id], marks[job.id] = html, mark
                out.append(events.event(f"update-{job.id}", html, urlencode(marks)))
        if len(ended) == len(followed):
            return [*out, events.event("close")], True
        return out, False

    def due() -> bool:
        return any(job.id not in ended and _urgent(job_mark(job)) != _urgent(marks[job.id])
                   for job in followed)

    return events.stream(render, due)


@bp.get("/queue/events")
def queue_events() -> Response:
    """The queue page's list, pushed when it changes (event ``queue``)."""
    shown = [""]

    def render() -> tuple[list[str], bool]:
        html = _queue()
        if html == shown[0]:
            return [], False
        shown[0] = html
        return [events.event("queue", html)], False

    return events.stream(render)


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

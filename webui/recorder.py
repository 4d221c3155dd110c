"""The history's side of a job: recorded (with thumbnails) when it ends; an image of the
history used again as an input image."""

from __future__ import annotations

import logging
from pathlib import Path

from .history import HistoryStore, ImageRecord, JobRecord
from .images import ImageStore, ThumbnailError, make_thumbnail
from .jobs import Job

log = logging.getLogger(__name__)


def record(
    history: HistoryStore, store: ImageStore, thumbs: Path, job: Job, status: str
) -> None:
    """Write a job that ended with ``status`` to the history, with a thumbnail per image (made
    once, here in the job's thread, never while a page is being served)."""
    images = []
    for position, image in enumerate(job.images):
        thumb = f"{image.path}.webp"
        try:
            make_thumbnail(store.path(image.path), thumbs / thumb)
        except ThumbnailError as exc:
            log.warning("no thumbnail for %s: %s", image.path, exc)
            thumb = None
        images.append(ImageRecord(
            job_id=job.id, position=position, path=image.path, mime=image.mime,
            width=image.width, height=image.height, seed=image.seed, infotext=image.infotext,
            thumb_path=thumb,
            # Later positions a hair later, so the gallery (newest first) keeps batch order.
            created=(job.finished or job.created) - position * 1e-6,
        ))
    negative = job.values.get("negative_prompt")
    history.record_job(JobRecord(
        id=job.id, service_id=job.service.id, service_name=job.service.name,
        mode=job.mode.name, status=status, instance=job.instance, parameters=job.values,
        prompt=job.prompt, negative_prompt=negative if isinstance(negative, str) else None,
        seeds=[im.seed for im in job.images], info=job.info, error=job.error,
        created=job.created, started=job.started, finished=job.finished,
        seconds=job.seconds if job.started else None, images=images,
    ))


def stored_image(
    history: HistoryStore, store: ImageStore, ref: str
) -> tuple[bytes, str] | None:
    """(bytes, file name) of a history image sent on as an input image; None for no
    reference. ValueError says why it cannot be used."""
    if not ref.isdigit():
        return None
    image = history.get_image(int(ref))
    if image is None:
        raise ValueError("refers to an image that is no longer in the history")
    path = store.path(image.path)
    if not path.is_file():
        raise ValueError("refers to an image whose file is missing")
    return path.read_bytes(), Path(image.path).name

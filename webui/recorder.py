"""The history's side of jobs: each job recorded from the moment it is queued (its input images
kept on disk while it waits), marked as sent before it is sent, each image recorded as it lands,
and the end with thumbnails. After a restart (even ``kill -9``): jobs cut short are marked so,
waiting jobs queue again, and image files without a record are recovered.

Also: an image of the history used again as an input image.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from pathlib import Path
from typing import Any

from .format import MODE_LABELS
from .history import HistoryError, HistoryStore, ImageRecord, JobRecord
from .images import (
    ImageStore,
    StorageError,
    Thumbnailer,
    UploadedImage,
    storage_problem,
    thumb_name,
    write_atomic,
)
from .infotext import InfotextError, parse_infotext, read_png_infotext
from .jobs import Job, JobEvents, JobManager
from .pipeline import prepare_values

log = logging.getLogger(__name__)

RECOVERED = "recovered"


class Recorder(JobEvents):
    """Keeps the history of every job, so that nothing is lost in a crash."""

    def __init__(self, history: HistoryStore, store: ImageStore, thumbnailer: Thumbnailer,
                 uploads: Path, inputs: Path | None = None):
        self.history = history
        self.store = store
        self.thumbnailer = thumbnailer
        self.uploads = uploads
        self.inputs = inputs if inputs is not None else uploads.parent / "inputs"

    # -- a job's life --------------------------------------------------------------------------

    def queued(self, job: Job) -> None:
        self._keep_uploads(job)
        self._write(job, "queued")

    def started(self, job: Job) -> None:
        self._write(job, "running")

    def image(self, job: Job, image: Any) -> None:
        # Recorded as it lands, so a crash cannot leave a file the gallery does not know.
        position = len(job.images) - 1
        self._guard(lambda: self.history.add_image(ImageRecord(
            job_id=job.id, position=position, path=image.path, mime=image.mime,
            width=image.width, height=image.height, seed=image.seed, infotext=image.infotext,
            created=time.time() - position * 1e-6)))

    def ended(self, job: Job, status: str) -> None:
        """Recorded with the name of each image's thumbnail, which the thumbnailer makes a
        little later (the job is shown ended without waiting for it); the job's input images
        leave the uploads folder."""
        images = []
        for position, image in enumerate(job.images):
            images.append(ImageRecord(
                job_id=job.id, position=position, path=image.path, mime=image.mime,
                width=image.width, height=image.height, seed=image.seed,
                infotext=image.infotext, thumb_path=thumb_name(image.path),
                # Later positions a hair later, so the gallery (newest first) keeps batch order.
                created=(job.finished or job.created) - position * 1e-6,
            ))
        self._write(job, status, images, self._keep_inputs(job))
        self._drop_uploads(job.values)
        for record in images:
            self.thumbnailer.request(self.store.path(record.path), record.thumb_path)

    # -- after a restart -----------------------------------------------------------------------

    def restore(self, catalog: Any, jobs: JobManager) -> None:
        """Pick up what a stopped webui left: jobs cut short are marked "interrupted" (their
        request may have reached the service: never sent again), waiting ones are queued again
        in their order, and image files without a record are recovered into the gallery."""
        for record in self.history.unfinished():
            service = catalog.get(record.service_id)
            mode = service.definition.modes.get(record.mode) if service else None
            if record.status == "running":
                self._close(record, "interrupted", "webui was restarted while this job ran. Its "
                            f"request may have reached {record.service_name}, so it was not "
                            "sent again; the images it made before are kept.")
                continue
            values = self._values_of(record) if mode is not None else None
            if mode is None:
                self._close(record, "failed", f"webui was restarted while this job waited, "
                            f"and {record.service_name} · {record.mode} is no longer loaded.")
            elif values is None:
                self._close(record, "failed", "webui was restarted while this job waited, and "
                            "its input image is gone from the uploads folder.")
            else:
                jobs.submit(service, mode, values, prepare_values(mode, values),
                            job_id=record.id, created=record.created)
        self._recover_files()

    def _close(self, record: JobRecord, status: str, error: str) -> None:
        record.status, record.error = status, error
        record.finished = record.finished or time.time()
        self._guard(lambda: self.history.record_job(record))
        self._drop_uploads(record.parameters)

    def _values_of(self, record: JobRecord) -> dict[str, Any] | None:
        """The job's values as it was asked, its input images read back from the uploads
        folder (None if one is gone)."""
        values = dict(record.parameters)
        for key, value in values.items():
            if isinstance(value, dict) and "upload" in value:
                path = self.uploads / str(value.get("file", ""))
                if not value.get("file") or not path.is_file():
                    return None
                values[key] = UploadedImage(b"", value.get("mime") or "image/png",
                                            value["upload"], value.get("width") or 0,
                                            value.get("height") or 0, path,
                                            value.get("bytes"))
        return values

    def _recover_files(self) -> None:
        """Image files the history has no row for (written, then webui died)."""
        root = self.store.root
        if not root.is_dir():
            return
        known = self.history.image_paths()
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).as_posix()
            if not path.is_file() or path.name.startswith(".") or relative in known:
                continue
            try:
                data = path.read_bytes()
                text = read_png_infotext(data) if path.suffix == ".png" else None
            except OSError:
                continue
            prompt = parse_infotext(text)[0] if text else None
            # Files are named <time>-<service>-<mode>-…: a known mode name tells the mode.
            mode = next((m for m in MODE_LABELS if f"-{m}-" in path.name), "unknown")
            job_id = f"{RECOVERED}-{hashlib.sha1(relative.encode()).hexdigest()[:16]}"
            created = path.stat().st_mtime
            record = JobRecord(
                id=job_id, service_id=RECOVERED, service_name="Recovered after a restart",
                mode=mode, status="done", prompt=prompt, created=created, finished=created,
                error="Found in the images folder without a record (webui stopped while "
                      "saving it); its parameters are what the file says.",
                images=[ImageRecord(job_id=job_id, position=0, path=relative,
                                    mime=_MIME.get(path.suffix.lower(), "image/png"),
                                    infotext=text, created=created,
                                    thumb_path=thumb_name(relative))])
            self._guard(lambda r=record: self.history.record_job(r))
            # Made in the background, not while webui starts.
            self.thumbnailer.request(path, thumb_name(relative))
            log.warning("recovered %s into the history", relative)

    # -- helpers -------------------------------------------------------------------------------

    def _keep_inputs(self, job: Job) -> dict[str, Any]:
        """An inpainting job's input images (its mask and the image it was painted over) stay
        with its record, in the inputs folder, so that Reuse parameters brings them back (a
        mask means nothing without its image). Named by their content: an image many jobs
        used is kept once. Their records gain ``"kept"``, the file's name there."""
        mask = job.mode.by_role("mask")
        if mask is None or not isinstance(job.values.get(mask.key), UploadedImage):
            return {}
        out: dict[str, Any] = {}
        for key, value in job.values.items():
            if not isinstance(value, UploadedImage):
                continue
            try:
                data = value.data
                name = f"k-{hashlib.sha256(data).hexdigest()[:32]}.{_EXT.get(value.mime, 'bin')}"
                path = self.inputs / name
                if not path.is_file():
                    self.inputs.mkdir(parents=True, exist_ok=True)
                    write_atomic(path, lambda fh, d=data: fh.write(d))
            except OSError as exc:
                # The job's own images matter more: it ends as it did, without its inputs.
                log.warning("input image %s of job %s not kept: %s", key, job.id, exc)
                continue
            out[key] = {"upload": value.filename, "mime": value.mime, "width": value.width,
                        "height": value.height, "bytes": value.size, "kept": name}
        return out

    def _write(self, job: Job, status: str, images: list[ImageRecord] | None = None,
               kept: dict[str, Any] | None = None) -> None:
        # The prompts as sent (styles merged in): what the gallery shows and searches. The
        # parameters keep what was asked, with the styles' names, for Reuse parameters.
        prompt = job.text_of("prompt", sent=True)
        negative = job.text_of("negative", sent=True)
        if job.mode.by_role("prompt") is None and images and images[0].infotext:
            # A mode without a prompt (an upscale): the image still shows what the picture it
            # came from was made with when the backend kept that text (A1111's extras keep
            # the PNG's "parameters"), so the gallery captions and finds it by that prompt.
            with contextlib.suppress(InfotextError):
                prompt, negative, _ = parse_infotext(images[0].infotext)
            prompt, negative = prompt or None, negative or None
        record = JobRecord(
            id=job.id, service_id=job.service.id, service_name=job.service.name,
            mode=job.mode.name, status=status, instance=job.instance,
            parameters={**job.values, **(kept or {})},
            prompt=prompt, negative_prompt=negative,
            seeds=[im.seed for im in job.images], info=job.info, error=job.error,
            created=job.created, started=job.started, finished=job.finished,
            seconds=job.seconds if job.started else None, images=images or [],
        )
        self._guard(lambda: self.history.record_job(record))

    def _guard(self, write: Any) -> None:
        try:
            write()
        except HistoryError as exc:
            raise StorageError(f"The history could not be written: {exc}") from None

    def _keep_uploads(self, job: Job) -> None:
        """Move the job's input images to the uploads folder: a waiting job holds paths, not
        bytes, and survives a restart."""
        for key, value in list(job.values.items()):
            if isinstance(value, UploadedImage) and value.path is None:
                ext = _EXT.get(value.mime, "bin")
                path = self.uploads / f"{job.id}-{_SAFE.sub('-', key)}.{ext}"
                try:
                    kept = value.on_disk(path)
                except OSError as exc:
                    raise storage_problem(path, exc) from None
                job.values[key] = kept
                if job.sent.get(key) is value:
                    job.sent[key] = kept

    def _drop_uploads(self, values: dict[str, Any]) -> None:
        for value in values.values():
            name = (value.path.name if isinstance(value, UploadedImage) and value.path
                    else value.get("file") if isinstance(value, dict) else None)
            if name:
                (self.uploads / name).unlink(missing_ok=True)


_SAFE = re.compile(r"[^A-Za-z0-9_-]+")
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif",
        "image/bmp": "bmp", "image/tiff": "tiff"}
_MIME = {f".{ext}": mime for mime, ext in _EXT.items()}


KEPT_INPUT = re.compile(r"k-[0-9a-f]{32}\.[a-z0-9]{2,5}")


def kept_input(inputs: Path, ref: str) -> tuple[bytes, str] | None:
    """(bytes, file name) of an input image kept with its job (``k-…``, see
    Recorder._keep_inputs); None for another kind of reference. ValueError if it is gone."""
    if not KEPT_INPUT.fullmatch(ref):
        return None
    path = inputs / ref
    if not path.is_file():
        raise ValueError("is no longer kept with its job: choose the image again")
    return path.read_bytes(), ref


def stored_image(
    history: HistoryStore, store: ImageStore, ref: str
) -> tuple[bytes, str] | None:
    """(bytes, file name) of a history image sent on as an input image; None for no
    reference. ValueError says why it cannot be used."""
    if not re.fullmatch(r"[0-9]{1,18}", ref):
        return None
    image = history.get_image(int(ref))
    if image is None:
        raise ValueError("refers to an image that is no longer in the history")
    path = store.path(image.path)
    if not path.is_file():
        raise ValueError("refers to an image whose file is missing")
    return path.read_bytes(), Path(image.path).name

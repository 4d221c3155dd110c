"""Generation jobs: a FIFO queue per service, a pool of instances behind it, progress while a
job runs, interrupt/skip/cancel.

A job is submitted and returns at once; a dispatcher thread per service hands the oldest
queued job to the least busy healthy instance (checked just before submission, so a dead one is
skipped before anything is sent to it), and a runner thread carries it through the engine. A
request that may have reached a backend is never sent again: a job whose instance dies while
it runs fails with a clear message, and the jobs still queued go to the other instances.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jmespath

from . import engine
from .client import BackendError, Service, call, check_health, read_json
from .definitions import Mode
from .engine import SavedImage
from .images import ImageDataError, decode_base64, decode_data_url, inspect

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
DOWN_RETRY_SECONDS = 3.0


@dataclass
class Progress:
    fraction: float | None = None
    eta: float | None = None
    step: int | None = None
    steps: int | None = None
    preview: bytes | None = None
    preview_mime: str = "image/png"
    preview_version: int = 0


class Job:
    """One generation, from the queue to its images."""

    def __init__(self, service: Service, mode: Mode, values: dict[str, Any]):
        self.id = uuid.uuid4().hex
        self.service = service
        self.mode = mode
        self.values = values
        self.status = "queued"
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.instance: str | None = None
        self.images: list[SavedImage] = []
        self.info: Any = None
        self.error: str | None = None
        self.progress = Progress()
        self.stop_requested = False
        self.done = threading.Event()

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def prompt(self) -> str | None:
        value = self.values.get("prompt")
        return value if isinstance(value, str) else None

    @property
    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def add_image(self, image: SavedImage) -> None:
        # Called by the engine as each image lands on disk, so a batch shows up image by image
        # where the backend delivers them one by one.
        self.images = [*self.images, image]


@dataclass
class Instance:
    url: str
    running: int = 0
    healthy: bool | None = None
    message: str = "not checked yet"
    retry_at: float = 0.0
    finished: int = 0


@dataclass
class Pool:
    """The queue and instances of one service."""

    service: Service
    queue: deque[Job] = field(default_factory=deque)
    instances: dict[str, Instance] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def sync(self, service: Service) -> None:
        """Follow the service's current definition and instance list."""
        self.service = service
        for url in service.urls:
            self.instances.setdefault(url, Instance(url))
        for url in [u for u, i in self.instances.items() if u not in service.urls]:
            if self.instances[url].running == 0:
                del self.instances[url]


class JobManager:
    """All jobs of this webui process."""

    def __init__(
        self,
        store: engine.ImageStore,
        on_finish: Callable[[Job, str], None] | None = None,
        keep: int = 1000,
    ):
        self.store = store
        self.on_finish = on_finish
        self.keep = keep
        self._cond = threading.Condition()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._pools: dict[str, Pool] = {}

    # -- asking --------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """1-based place in its service's queue, or None when not queued."""
        with self._cond:
            pool = self._pools.get(job.service.id)
            if pool is None or job.status != "queued":
                return None
            for i, queued in enumerate(pool.queue):
                if queued is job:
                    return i + 1
        return None

    def load(self, service: Service) -> tuple[int, dict[str, tuple[int, int]]]:
        """(jobs queued, {instance URL: (running, finished)}) for the status of a service."""
        with self._cond:
            pool = self._pools.get(service.id)
            if pool is None:
                return 0, {}
            return len(pool.queue), {
                i.url: (i.running, i.finished) for i in pool.instances.values()}

    # -- acting --------------------------------------------------------------------------------

    def submit(self, service: Service, mode: Mode, values: dict[str, Any]) -> Job:
        job = Job(service, mode, values)
        with self._cond:
            pool = self._pools.get(service.id)
            if pool is None:
                pool = self._pools[service.id] = Pool(service)
            pool.sync(service)
            pool.queue.append(job)
            self._jobs[job.id] = job
            self._drop_old()
            if pool.thread is None:
                pool.thread = threading.Thread(target=self._dispatch, args=(pool,),
                                               name=f"dispatch-{service.id}", daemon=True)
                pool.thread.start()
            self._cond.notify_all()
        return job

    def cancel(self, job: Job) -> bool:
        """Take a queued job out of the queue. False if it had already started."""
        with self._cond:
            pool = self._pools.get(job.service.id)
            if job.status != "queued" or pool is None or job not in pool.queue:
                return False
            pool.queue.remove(job)
        self._end(job, "cancelled")
        return True

    def interrupt(self, job: Job) -> str | None:
        """Stop a job: cancel it if queued, else ask its backend to stop. Returns a problem
        message, or None."""
        if self.cancel(job):
            return None
        if job.status != "running":
            return None
        job.stop_requested = True
        return self._job_endpoint(job, job.service.definition.jobs.interrupt)

    def skip(self, job: Job) -> str | None:
        if job.status != "running":
            return None
        return self._job_endpoint(job, job.service.definition.jobs.skip)

    def _job_endpoint(self, job: Job, name: str | None) -> str | None:
        if name is None or job.instance is None:
            return None
        endpoint = job.service.definition.endpoints[name]
        try:
            call(job.service.at(job.instance), endpoint)
        except BackendError as exc:
            return exc.message
        return None

    # -- running -------------------------------------------------------------------------------

    def _dispatch(self, pool: Pool) -> None:
        while True:
            with self._cond:
                while not (pool.queue and self._free(pool)):
                    self._cond.wait(timeout=1.0)
                candidates = sorted(self._free(pool), key=lambda i: (i.running, i.url))
                service = pool.service
            chosen = None
            for instance in candidates:
                state, message = check_health(service.at(instance.url))
                with self._cond:
                    instance.healthy = state == "online"
                    instance.message = message
                    instance.retry_at = 0.0 if instance.healthy else (
                        time.monotonic() + DOWN_RETRY_SECONDS)
                if instance.healthy:
                    chosen = instance
                    break
            if chosen is None:
                failed = None
                with self._cond:
                    if pool.queue and not any(i.running for i in pool.instances.values()):
                        # Nothing can take it now: say so rather than wait without end.
                        reasons = "; ".join(i.message for i in candidates) or "no instance"
                        failed = pool.queue.popleft()
                        failed.error = f"No instance of {service.name} is reachable. {reasons}"
                if failed is not None:
                    self._end(failed, "failed")
                continue
            with self._cond:
                if not pool.queue:
                    continue  # cancelled while we checked
                job = pool.queue.popleft()
                job.status = "running"
                job.started = time.time()
                job.instance = chosen.url
                job.service = service
                chosen.running += 1
            threading.Thread(target=self._run, args=(pool, job, chosen),
                             name=f"job-{job.id[:8]}", daemon=True).start()

    def _free(self, pool: Pool) -> list[Instance]:
        limit = pool.service.definition.jobs.concurrency
        now = time.monotonic()
        return [i for i in pool.instances.values()
                if i.url in pool.service.urls and i.running < limit and i.retry_at <= now]

    def _run(self, pool: Pool, job: Job, instance: Instance) -> None:
        service = job.service.at(instance.url)
        follower = None
        following = threading.Event()  # set when the generation has ended
        if service.definition.jobs.progress is not None:
            follower = threading.Thread(target=self._follow, args=(service, job, following),
                                        daemon=True)
            follower.start()
        control = engine.Control(should_stop=lambda: job.stop_requested,
                                 on_image=job.add_image)
        status = "failed"
        try:
            generation = engine.generate(service, job.mode, job.values, self.store, control)
            job.images = generation.images
            job.info = generation.info
            status = "interrupted" if job.stop_requested else "done"
        except BackendError as exc:
            status = "interrupted" if job.stop_requested else "failed"
            if not (job.stop_requested and exc.kind == "interrupted"):
                job.error = exc.message
            if exc.kind in ("offline", "dropped"):
                with self._cond:
                    instance.healthy = False
                    instance.message = exc.message
                    instance.retry_at = time.monotonic() + DOWN_RETRY_SECONDS
        except Exception:
            log.exception("job %s failed unexpectedly", job.id)
            job.error = "Something went wrong inside webui; the details are in the server log."
        finally:
            following.set()
            if follower is not None:
                follower.join(timeout=5)
            with self._cond:
                instance.running -= 1
                instance.finished += 1
                self._cond.notify_all()
            self._end(job, status)

    def _end(self, job: Job, status: str) -> None:
        """Record a job that ended (outside the lock), then show it as ended: whoever sees
        its final status finds it in the history already."""
        job.finished = time.time()
        if self.on_finish is not None:
            try:
                self.on_finish(job, status)
            except Exception:
                log.exception("recording job %s failed", job.id)
        with self._cond:
            job.status = status
            self._cond.notify_all()
        job.done.set()

    def _follow(self, service: Service, job: Job, ended: threading.Event) -> None:
        """Poll the progress endpoint while the job runs. Best effort: a failed poll is
        skipped, it never fails the job."""
        spec = service.definition.jobs.progress
        assert spec is not None
        endpoint = service.definition.endpoints[spec.endpoint]
        while not ended.wait(spec.every):
            try:
                data = read_json(service, call(service, endpoint))
            except BackendError:
                continue
            if ended.is_set():
                break
            progress = job.progress
            new = Progress(
                fraction=_number(spec.fraction, data),
                eta=_number(spec.eta, data),
                step=_int(spec.step, data),
                steps=_int(spec.steps, data),
                preview=progress.preview,
                preview_mime=progress.preview_mime,
                preview_version=progress.preview_version,
            )
            raw = jmespath.search(spec.preview, data) if spec.preview else None
            if isinstance(raw, str) and raw:
                try:
                    blob = (decode_data_url(raw) if spec.previewEncoding == "data_url" or (
                        spec.previewEncoding == "auto" and raw.startswith("data:"))
                        else decode_base64(raw))
                    new.preview_mime = inspect(blob).mime
                    new.preview = blob
                    new.preview_version += 1
                except ImageDataError:
                    pass
            job.progress = new

    def _drop_old(self) -> None:
        # Called with the lock held: keep memory bounded; finished jobs go first.
        while len(self._jobs) > self.keep:
            oldest = next((j for j in self._jobs.values() if not j.active), None)
            if oldest is None:
                break
            del self._jobs[oldest.id]


def _number(expr: str | None, data: Any) -> float | None:
    value = jmespath.search(expr, data) if expr else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(expr: str | None, data: Any) -> int | None:
    value = _number(expr, data)
    return int(value) if value is not None else None

"""Generation jobs: a FIFO queue per service, a pool of instances behind it, progress while a
job runs, interrupt/skip/cancel.

A job is submitted and returns at once; a dispatcher thread per service hands the oldest
queued job to the least busy healthy instance, and a runner thread carries it through the
pipeline. An instance is checked just before it is sent a job (a dead one is skipped before
anything is sent to it), unless it answered in the last FRESH_SECONDS: then the job goes at
once (a check is a round trip: on a cloud API, a tenth of a second or more), and if the
instance cannot be reached after all, the job, which nothing reached, goes back to the front of
the queue. A request that may have reached a backend is never sent again: a job whose instance
dies while it runs fails with a clear message, and the jobs still queued go to the other
instances.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from . import expr, images, pipeline
from .backend import BackendError, call, check_health, connections_made, read_json, resolve_auth
from .format import Mode, placeholders
from .images import ImageDataError, ImageStore, StorageError
from .results import SavedImage
from .service import Service

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
DOWN_RETRY_SECONDS = 3.0
FRESH_SECONDS = 30.0  # an instance that answered this recently is sent a job without a check


@dataclass
class Progress:
    fraction: float | None = None
    eta: float | None = None
    step: int | None = None
    steps: int | None = None
    preview: bytes | None = None
    preview_mime: str = "image/png"
    preview_version: int = 0
    batch: tuple[int, int] | None = None  # (index from 0, count): the batch being made


class Job:
    """One generation, from the queue to its images."""

    def __init__(
        self, service: Service, mode: Mode, values: dict[str, Any],
        sent: dict[str, Any] | None = None,
    ):
        self.id = uuid.uuid4().hex
        # The service (and its definition) as it was when the job was queued: an edit of the
        # definition file affects later jobs, not this one.
        self.service = service
        self.mode = mode
        self.values = values  # as the user asked (what "Reuse parameters" gives back)
        self.sent = sent if sent is not None else values  # as sent (seeds picked, text joined)
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
        # Its first request was sent (or is being sent): from then on a stop must reach the
        # service. Before, a stop keeps it from being sent at all (set under _lock, as is
        # stop_requested: A1111 forgets an interrupt that comes before the job begins).
        self.begun = False
        self.done = threading.Event()
        # Values the job's steps saved (the service's own id of the job, …).
        self.variables: dict[str, Any] = {}
        # Where the job stands in the service's own queue: None, "waiting" or "running".
        self.remote: str | None = None
        self.remote_ahead: int | None = None
        # Interrupt/skip endpoints asked for but waiting for a value (the job's id) to exist.
        self.pending_calls: list[str] = []
        # Images cut short, by position: "skipped" or "interrupted" (made as far as they got).
        self.marks: dict[int, str] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def snapshot(self) -> Job:
        """The job as it stands at this instant, for a page to draw. The job's thread changes
        its fields while a template reads them; a panel drawn half before and half after the
        job ended showed "running" without the poller that would have updated it."""
        view = object.__new__(Job)
        view.__dict__ = self.__dict__.copy()
        return view

    @property
    def prompt(self) -> str | None:
        return self.text_of("prompt")

    def value_of(self, role: str, *, sent: bool = False) -> Any:
        """The value of the parameter with this role (prompt, width…), if any: as asked, or
        as sent (styles merged, LoRA tags appended)."""
        values = self.sent if sent else self.values
        return next((values.get(p.key) for p in self.mode.parameters if p.kind == role), None)

    def text_of(self, role: str, *, sent: bool = False) -> str | None:
        value = self.value_of(role, sent=sent)
        return value if isinstance(value, str) else None

    @property
    def asked(self) -> int:
        """How many images the job asked for."""
        return asked_images(self.mode, self.values)

    @property
    def offers(self) -> list[str]:
        """The actions this job offers now (its panel's and the queue page's buttons)."""
        if self.status == "queued":
            return ["cancel"]
        if self.status != "running":
            return []
        # Skip moves on to the next image of a batch: a mode without one (an upscale: one
        # image in, one out) has nothing to skip to, and A1111's extras answer a 500 to it.
        batched = any(p.kind in ("batch", "batch_count") for p in self.mode.parameters)
        return ["interrupt"] + (["skip"] if batched and self.service.definition.jobs.skip_calls
                                else [])

    def images_being_made(self) -> range | None:
        """The positions of the images of the batch being made, from the progress the service
        reports (None when it does not say)."""
        if self.progress.batch is None:
            return None
        index, count = self.progress.batch
        size, batches = batch_shape(self.mode, self.values)
        # A1111 counts a hires pass as a batch of its own: its count is then a multiple of
        # the batch count, and each batch spans that many of its parts.
        if count < batches or count % batches or not 0 <= index < count:
            return None
        batch = index * batches // count
        return range(batch * size, (batch + 1) * size)

    def mark_current(self, mark: str) -> None:
        """Mark the images being made now (a Skip or Interrupt cuts them short)."""
        for position in self.images_being_made() or ():
            self.marks.setdefault(position, mark)

    @property
    def seconds(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def add_image(self, image: SavedImage) -> None:
        # Called by the engine as each image lands on disk, so a batch shows up image by image
        # where the backend delivers them one by one.
        self.images = [*self.images, image]

    def set_remote(self, where: str, ahead: int | None) -> None:
        self.remote, self.remote_ahead = where, ahead


def batch_shape(mode: Mode, values: dict[str, Any]) -> tuple[int, int]:
    """(images made at once, batches one after another) that values ask of a mode: the
    values of its batch and batch_count roles, 1 for a role it lacks."""
    def count(role: str) -> int:
        value = next((values.get(p.key) for p in mode.parameters if p.kind == role), None)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
            else 1
    return count("batch"), count("batch_count")


def asked_images(mode: Mode, values: dict[str, Any]) -> int:
    """How many images values ask of a mode: batch size x batch count."""
    size, batches = batch_shape(mode, values)
    return size * batches


class JobEvents:
    """What happens to jobs, for whoever keeps a record of them (the history): a job is queued,
    is about to be sent, has an image on disk, has ended. Each is told in order; ``queued`` and
    ``started`` before the job moves on (a job that cannot be recorded as started is not sent:
    after a crash its record must say it may have reached the service)."""

    def queued(self, job: Job) -> None:
        """The job is accepted (not yet in the queue)."""

    def started(self, job: Job) -> None:
        """The job is about to be sent to ``job.instance``."""

    def image(self, job: Job, image: SavedImage) -> None:
        """An image of the job is on disk (the last of ``job.images``)."""

    def ended(self, job: Job, status: str) -> None:
        """The job ended with ``status`` (before anyone sees it ended)."""


@dataclass
class Instance:
    url: str
    running: int = 0
    healthy: bool | None = None
    message: str = "not checked yet"
    retry_at: float = 0.0
    finished: int = 0
    answered: float = 0.0  # (monotonic) when it last answered: a check, or a job's request


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
        store: ImageStore,
        events: JobEvents | None = None,
        keep: int = 1000,
    ):
        self.store = store
        self.events = events or JobEvents()
        self.keep = keep
        self._cond = threading.Condition()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._pools: dict[str, Pool] = {}
        # (service id, mode) -> (instance URL, message): modes a server answered 404 for.
        self._missing: dict[tuple[str, str], tuple[str, str]] = {}
        # Whoever follows jobs (a job's event stream, the queue's) waits on this for the next
        # change of any job, rather than asking again and again. Its own lock: a progress
        # report does not wake the dispatchers.
        self._changes = threading.Condition()
        self.version = 0

    # -- following -----------------------------------------------------------------------------

    def changed(self) -> None:
        """Something a page shows has changed (a job's progress, status, images…, or the
        queues): wake every follower."""
        with self._changes:
            self.version += 1
            self._changes.notify_all()

    def wait_changed(self, version: int, timeout: float) -> int:
        """Wait until something changed after ``version`` (a value of :attr:`version`), at
        most ``timeout`` seconds; the version now."""
        with self._changes:
            self._changes.wait_for(lambda: self.version != version, timeout)
            return self.version

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
                if queued.id == job.id:
                    return i + 1
        return None

    def active(self) -> list[Job]:
        """Every running job, then every queued one in its queue's order (the queue page)."""
        with self._cond:
            running = sorted((j for j in self._jobs.values() if j.status == "running"),
                             key=lambda j: (j.started or 0.0, j.created))
            queued = [j for pool in self._pools.values() for j in pool.queue]
        return running + queued

    def load(self, service: Service) -> tuple[int, dict[str, tuple[int, int]]]:
        """(jobs queued, {instance URL: (running, finished)}) for the status of a service."""
        with self._cond:
            pool = self._pools.get(service.id)
            if pool is None:
                return 0, {}
            return len(pool.queue), {
                i.url: (i.running, i.finished) for i in pool.instances.values()}

    def busy(self) -> bool:
        """Whether any job waits or runs (work nobody waits for, thumbnails, waits its turn)."""
        with self._cond:
            return any(pool.queue or any(i.running for i in pool.instances.values())
                       for pool in self._pools.values())

    # -- acting --------------------------------------------------------------------------------

    def submit(
        self, service: Service, mode: Mode, values: dict[str, Any],
        sent: dict[str, Any] | None = None, *, job_id: str | None = None,
        created: float | None = None,
    ) -> Job:
        """Queue a job (``job_id``/``created``: a job queued before a restart, queued again).
        StorageError if it cannot be recorded: then nothing is queued."""
        job = Job(service, mode, values, sent)
        if job_id is not None:
            job.id = job_id
        if created is not None:
            job.created = created
        self.events.queued(job)
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
        self.changed()
        return job

    def cancel(self, job: Job) -> bool:
        """Take a queued job out of the queue. False if it had already started."""
        return bool(self._dequeue([job]))

    def interrupt(self, job: Job) -> str | None:
        """Stop a job: cancel it if queued, else ask its backend to stop. Returns a problem
        message, or None."""
        return " ".join(self.stop([job])) or None

    def stop(self, jobs: list[Job]) -> list[str]:
        """Stop jobs together (a grid's cells): the queued ones leave the queue at once, so
        none of them starts while the others are being stopped; then each running one is
        interrupted. The problems the services answered, once each."""
        taken = self._dequeue(jobs)
        problems = [self._interrupt(job) for job in jobs if job not in taken]
        return list(dict.fromkeys(p for p in problems if p))

    def _dequeue(self, jobs: list[Job]) -> list[Job]:
        """Take the queued ones of these jobs out of their queues, in one hold of the lock,
        and end them as cancelled."""
        with self._cond:
            taken = []
            for job in jobs:
                pool = self._pools.get(job.service.id)
                if job.status == "queued" and pool is not None and job in pool.queue:
                    pool.queue.remove(job)
                    taken.append(job)
        for job in taken:
            self._end(job, "cancelled")
        return taken

    def _interrupt(self, job: Job) -> str | None:
        if job.status != "running":
            return None
        job.mark_current("interrupted")
        with job._lock:
            job.stop_requested = True
            begun = job.begun
            if begun:
                job.pending_calls = list(job.service.definition.jobs.interrupt_calls)
        self.changed()
        # Not begun: its thread sees the stop before sending anything (_begin).
        return self._send_calls(job) if begun else None

    def _begin(self, job: Job) -> bool:
        """Said by the job's thread before its first request: False when a stop came first
        (then nothing is sent, and the job ends as cancelled)."""
        with job._lock:
            job.begun = not job.stop_requested
            return job.begun

    def skip(self, job: Job) -> str | None:
        if "skip" not in job.offers:
            return None
        with job._lock:
            if not job.begun:
                return None  # nothing is being made yet: there is nothing to skip
            job.pending_calls += job.service.definition.jobs.skip_calls
        job.mark_current("skipped")
        self.changed()
        return self._send_calls(job)

    def _send_calls(self, job: Job) -> str | None:
        """Send the pending interrupt/skip endpoints whose values the job has now; keep the
        others until its steps saved them (the engine reports each save). Each goes once."""
        if job.instance is None:
            return None
        service = job.service.at(job.instance)
        problems = []
        with job._lock:
            ready = [n for n in job.pending_calls
                     if _fillable(service.definition.endpoints[n], job.variables)]
            job.pending_calls = [n for n in job.pending_calls if n not in ready]
        for name in ready:
            endpoint = service.definition.endpoints[name]
            path, query, headers = pipeline.fill(endpoint, job.variables)
            try:
                call(service, endpoint, path=path, query=query, headers=headers,
                     body=pipeline.substitute(endpoint.body, {"client_id": "", **job.variables}))
            except BackendError as exc:
                problems.append(exc.message)
        return " ".join(problems) or None

    def _abandon(self, job: Job) -> str:
        """A job webui gives up on: stop it on the service too, where the definition's
        interrupt names this job (a global interrupt could stop another client's work)."""
        names = [n for n in job.service.definition.jobs.interrupt_calls
                 if _job_scoped(job.service.definition.endpoints[n])]
        if not names:
            return ""
        with job._lock:
            job.pending_calls = names
        problem = self._send_calls(job)
        return ("webui could not ask the service to stop it: " + problem) if problem else (
            "webui asked the service to stop it.")

    def missing(self, service: Service, mode: Mode) -> tuple[str, str] | None:
        """(instance URL, message) if a server of this service lacks this mode."""
        with self._cond:
            return self._missing.get((service.id, mode.name))

    # -- running -------------------------------------------------------------------------------

    def _dispatch(self, pool: Pool) -> None:
        while True:
            with self._cond:
                while not (pool.queue and (self._free(pool) or self._all_down(pool))):
                    self._cond.wait(timeout=1.0)
                candidates = sorted(self._free(pool), key=lambda i: (i.running, i.url))
                fresh = {i.url for i in candidates
                         if i.healthy and time.monotonic() - i.answered < FRESH_SECONDS}
                service = pool.service
            chosen = None
            for instance in candidates:
                if instance.url in fresh:
                    chosen = instance
                    break
                state, message = check_health(service.at(instance.url))
                with self._cond:
                    instance.healthy = state == "online"
                    instance.message = message
                    instance.retry_at = 0.0 if instance.healthy else (
                        time.monotonic() + DOWN_RETRY_SECONDS)
                    if instance.healthy:
                        instance.answered = time.monotonic()
                if instance.healthy:
                    chosen = instance
                    break
            if chosen is None:
                self._fail_waiting(pool, service)
                continue
            with self._cond:
                if not pool.queue:
                    continue  # cancelled while we checked
                job = pool.queue.popleft()
                job.status = "running"
                job.started = time.time()
                job.instance = chosen.url
                chosen.running += 1
            self.changed()  # and the places of the jobs behind it
            try:
                self.events.started(job)
            except Exception as exc:
                # Not sent: after a crash nothing would say it may have reached the service.
                log.exception("recording job %s as started failed", job.id)
                job.error = f"Not sent: {exc}"
                with self._cond:
                    chosen.running -= 1
                self._end(job, "failed")
                continue
            threading.Thread(target=self._run, args=(pool, job, chosen),
                             name=f"job-{job.id[:8]}", daemon=True).start()

    def _fail_waiting(self, pool: Pool, service: Service) -> None:
        """When no instance can take a job (all failed their last check, none is busy), every
        waiting job fails at once with one message, rather than waiting without end."""
        with self._cond:
            if not pool.queue or not self._all_down(pool):
                return
            failed = list(pool.queue)
            pool.queue.clear()
            reasons = "; ".join(dict.fromkeys(
                i.message for i in pool.instances.values() if i.url in service.urls))
            for job in failed:
                job.error = f"No instance of {service.name} is reachable. {reasons}"
        for job in failed:
            self._end(job, "failed")

    def _all_down(self, pool: Pool) -> bool:
        """Every instance failed its last check and none is running a job (with the lock)."""
        instances = [i for i in pool.instances.values() if i.url in pool.service.urls]
        return bool(instances) and all(
            i.healthy is False and i.running == 0 for i in instances)

    def _free(self, pool: Pool) -> list[Instance]:
        limit = pool.service.definition.jobs.concurrency
        now = time.monotonic()
        return [i for i in pool.instances.values()
                if i.url in pool.service.urls and i.running < limit and i.retry_at <= now]

    def _run(self, pool: Pool, job: Job, instance: Instance) -> None:
        service = job.service.at(instance.url)
        follower = None
        following = threading.Event()  # set when the generation has ended
        # Known before anything is sent, so a progress websocket can listen from the start.
        job.variables.setdefault("client_id", uuid.uuid4().hex)
        if service.definition.jobs.progress is not None:
            follower = threading.Thread(target=self._follow, args=(service, job, following),
                                        daemon=True)
            follower.start()
        def on_image(image: SavedImage) -> None:
            job.add_image(image)
            try:
                self.events.image(job, image)
            except Exception:
                log.exception("recording an image of job %s failed", job.id)
            self.changed()  # shown as soon as it is on disk and recorded

        def on_remote(where: str, ahead: int | None) -> None:
            job.set_remote(where, ahead)
            self.changed()

        control = pipeline.Control(should_stop=lambda: job.stop_requested,
                                 begin=lambda: self._begin(job),
                                 on_image=on_image,
                                 on_saved=lambda: self._send_calls(job),
                                 on_remote=on_remote, variables=job.variables,
                                 stamp=_stamp(job))
        status = "failed"
        key = (service.id, job.mode.name)
        answered = False  # the instance answered a request of this job
        unsent = False  # the instance could not be reached: nothing of this job reached it
        connections = connections_made()
        try:
            generation = pipeline.generate(service, job.mode, job.sent, self.store, control)
            job.images = generation.images
            job.info = generation.info
            status = "interrupted" if job.stop_requested else "done"
            answered = True
            with self._cond:
                self._missing.pop(key, None)
        except BackendError as exc:
            answered = exc.status is not None
            unsent = (exc.kind == "offline" and connections_made() == connections
                      and not job.stop_requested)
            status = "interrupted" if job.stop_requested else "failed"
            if exc.kind == "cancelled":
                status = "cancelled"  # stopped before its first request: nothing was sent
            elif not (job.stop_requested and exc.kind == "interrupted"):
                job.error = exc.message
            if exc.kind == "missing" and not set(job.variables) - {"client_id"}:
                # The first request of the mode is not there: this server lacks the mode (a
                # LocalAI without image edits). The page says so until it works again.
                with self._cond:
                    self._missing[key] = (service.display_url, exc.message)
            if exc.kind == "timeout" and not job.stop_requested:
                job.error = f"{job.error} {self._abandon(job)}".strip()
            if exc.kind in ("offline", "dropped"):
                with self._cond:
                    instance.healthy = False
                    instance.message = exc.message
                    instance.retry_at = time.monotonic() + DOWN_RETRY_SECONDS
        except StorageError as exc:
            job.error = str(exc)
        except Exception:
            log.exception("job %s failed unexpectedly", job.id)
            job.error = "Something went wrong inside webui; the details are in the server log."
        finally:
            # The follower is told to stop, and not waited for: the job is recorded and shown
            # as ended at once, while a progress request it may be making still runs out.
            following.set()
            with self._cond:
                instance.running -= 1
                if answered:
                    instance.answered = time.monotonic()
                if unsent:
                    # Sent without a check (it had answered moments before), and it could not
                    # be reached: the job goes back to the front of the queue, for another
                    # instance, or to fail with the others when none is up (_fail_waiting).
                    job.status, job.instance, job.error = "queued", None, None
                    pool.queue.appendleft(job)
                elif status != "cancelled":  # cancelled here: stopped before it was sent
                    instance.finished += 1
                self._cond.notify_all()
            if unsent:
                try:
                    self.events.queued(job)  # after a crash: queued again, not "may have been sent"
                except Exception:
                    log.exception("recording job %s as queued again failed", job.id)
                self.changed()
            else:
                self._end(job, status)
            if follower is not None:
                follower.join(timeout=5)

    def _end(self, job: Job, status: str) -> None:
        """Record a job that ended (outside the lock), then show it as ended: whoever sees
        its final status finds it in the history already."""
        job.finished = time.time()
        try:
            self.events.ended(job, status)
        except Exception as exc:
            log.exception("recording job %s failed", job.id)
            if job.error is None:
                job.error = f"The job ended but could not be recorded in the history: {exc}"
        with self._cond:
            job.status = status
            self._drop_old()
            self._cond.notify_all()
        job.done.set()
        self.changed()

    def _follow(self, service: Service, job: Job, ended: threading.Event) -> None:
        """Follow the job's progress while it runs: poll the progress endpoint (once the
        values its path names exist), or listen to it when it is a websocket. Best effort: a
        failed poll or a message that does not fit is skipped, it never fails the job."""
        spec = service.definition.jobs.progress
        assert spec is not None
        endpoint = service.definition.endpoints[spec.endpoint]

        def read(data: Any) -> None:
            context = expr.Context(job.variables)
            if ended.is_set() or (spec.when and not _truthy(spec.when, data, context)):
                return  # not about this job: what is left of the last one, another client's
            job.progress = _progress(spec, data, job.progress, context)
            self.changed()

        if endpoint.method == "websocket":
            self._listen(service, endpoint, job, ended, read)
            return
        while not ended.wait(spec.every):
            if not _fillable(endpoint, job.variables):
                continue  # its path names the job ({job_id}): not known yet
            path, query, headers = pipeline.fill(endpoint, job.variables)
            try:
                data = read_json(service, call(service, endpoint, path=path, query=query,
                                               headers=headers))
            except BackendError:
                continue
            read(data)

    def _listen(self, service: Service, endpoint: Any, job: Job, ended: threading.Event,
                read: Callable[[Any], None]) -> None:
        """A websocket progress source: its messages are read until the job ends. A binary
        message is given to the expressions as {binary: <base64>}."""
        from . import ws  # a websocket only where a definition has one

        while not _fillable(endpoint, job.variables):
            if ended.wait(0.05):
                return
        path, query, headers = pipeline.fill(endpoint, job.variables)
        url = service.url(path)
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        ws.listen(url, {**headers, **resolve_auth(service).headers}, ended,
                  on_text=lambda text: read(_json_or_none(text)),
                  on_bytes=lambda blob: read({"binary": base64.b64encode(blob).decode()}),
                  connect_timeout=endpoint.timeout)

    def _drop_old(self) -> None:
        # Called with the lock held: keep memory bounded; finished jobs go first.
        while len(self._jobs) > self.keep:
            oldest = next((j for j in self._jobs.values() if not j.active), None)
            if oldest is None:
                break
            del self._jobs[oldest.id]


def _stamp(job: Job) -> dict[str, Any]:
    """What webui notes in each PNG of a job: its service, mode and values as asked (no input
    images), so that PNG Info can send it back to the same form."""
    values = {p.key: job.values.get(p.key) for p in job.mode.parameters
              if p.type != "image" and job.values.get(p.key) is not None}
    return {"service": job.service.id, "mode": job.mode.name, "values": values}


def _value(text: str | None, data: Any, context: expr.Context | None = None) -> Any:
    # Progress is best effort: an expression that does not fit this answer reads as nothing.
    if not text or data is None:
        return None
    try:
        return expr.search(text, data, context)
    except expr.ExprError:
        return None


def _truthy(text: str, data: Any, context: expr.Context | None = None) -> bool:
    # As for until and failWhen: false, null, 0 and empty text, lists and objects are false.
    return _value(text, data, context) not in (None, False, "", [], {})


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def _progress(spec: Any, data: Any, before: Progress, context: expr.Context) -> Progress:
    """The job's progress from one answer: ``value`` is 0..1 or [done, total]."""
    value = _value(spec.value, data, context)
    new = Progress(eta=_number(_value(spec.eta, data, context)), preview=before.preview,
                   preview_mime=before.preview_mime, preview_version=before.preview_version,
                   batch=_pair(_value(spec.images, data, context)) or before.batch)
    pair = value if isinstance(value, list) and len(value) == 2 else [None, None]
    done, total = _number(pair[0]), _number(pair[1])
    if done is not None and total:
        new.fraction = max(0.0, min(1.0, done / total))
        new.step, new.steps = int(done), int(total)
    elif _number(value) is not None:
        new.fraction = max(0.0, min(1.0, _number(value) or 0.0))
    else:
        # A message without a value (a preview frame: [null, null]) leaves the progress as
        # it was.
        new.fraction, new.step, new.steps = before.fraction, before.step, before.steps
    raw = _value(spec.preview, data, context)
    if isinstance(raw, str) and raw:
        try:
            blob = images.decode_text(raw, spec.as_)
            if blob != before.preview:  # a new version only for a new picture
                new.preview_mime = images.check(blob).mime
                new.preview = blob
                new.preview_version += 1
        except ImageDataError:
            pass
    return new


def _pair(value: Any) -> tuple[int, int] | None:
    """[index, count] of whole numbers, else None."""
    if isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) and v == int(v)
            for v in value):
        return int(value[0]), int(value[1])
    return None


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _fillable(endpoint: Any, variables: dict[str, Any]) -> bool:
    needed = placeholders([endpoint.path, endpoint.query, endpoint.headers,
                           endpoint.body]) - {"client_id"}
    return needed <= set(variables)


def _job_scoped(endpoint: Any) -> bool:
    return bool(placeholders([endpoint.path, endpoint.query, endpoint.headers,
                              endpoint.body]) - {"client_id"})

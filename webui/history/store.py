"""The history store: generation jobs and the gallery of their images, an SQLite file in the
data folder (``<data_dir>/history.sqlite3``).

Every job is a row of ``jobs``; every image it produced is a row of ``images`` (its file stays
in the images folder, the row holds the path relative to it). The gallery reads images newest
first a page at a time, optionally for one service or mode or matching a search of the prompts
(SQLite FTS5).

Threads: each thread gets its own connection (the app is served by waitress threads). In WAL
mode readers never wait for the writer, so a gallery page is not held up by a job being
recorded; writes are serialised by SQLite itself (BEGIN IMMEDIATE, with a busy timeout).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..images import UploadedImage
from ..redact import is_secret_key, redact_url
from .migrations import migrate
from .records import (
    BUSY_TIMEOUT,
    PAGE_LIMIT_MAX,
    STATUSES,
    Cursor,
    GalleryItem,
    HistoryError,
    ImageRecord,
    JobRecord,
    Page,
    StyleRecord,
)
from .search import match_expression

_INT = re.compile(r"-?\d+")


def clean(value: Any) -> Any:
    """``value`` made fit for storing as JSON: uploads become a reference, secrets are blanked.

    An uploaded image becomes ``{"upload": filename, "mime", "width", "height", "bytes"}``
    (and ``"file"``, its name in the uploads folder, while it is kept there); raw bytes become
    ``{"bytes": n}``; the value of a key that names a secret (password, token, api_key, ...)
    becomes ``"[redacted]"``.
    """
    if isinstance(value, dict):
        return {str(k): "[redacted]" if is_secret_key(str(k)) else clean(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": len(value)}
    if isinstance(value, UploadedImage):
        ref = {"upload": value.filename, "mime": value.mime, "width": value.width,
               "height": value.height, "bytes": value.size}
        if value.path is not None:
            ref["file"] = value.path.name  # in the uploads folder, while its job waits
        return ref
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(clean(value), ensure_ascii=False)


def _loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def _seed_in(seed: Any) -> str | None:
    # Stored as text: some services' seeds go up to 2**64 - 1, past SQLite's signed 64 bits.
    return None if seed is None else str(seed)


def _seed_out(text: str | None) -> int | str | None:
    return int(text) if text is not None and _INT.fullmatch(text) else text


T = TypeVar("T")


_JOB_COLUMNS = ("id", "service_id", "service_name", "instance", "mode", "status", "parameters",
                "prompt", "negative_prompt", "seeds", "info", "error", "created", "started",
                "finished", "seconds")


_UPSERT_JOB = "INSERT INTO jobs ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}".format(
    ", ".join(_JOB_COLUMNS), ", ".join("?" * len(_JOB_COLUMNS)),
    ", ".join(f"{c} = excluded.{c}" for c in _JOB_COLUMNS[1:]))


_IMAGE_VALUES = ("path", "thumb_path", "mime", "width", "height", "seed", "infotext", "created")


# Service and mode come from the job row, so they cannot disagree with it; no job, no row.
_UPSERT_IMAGE = """
    INSERT INTO images (job_id, position, {cols}, service_id, mode)
    SELECT id, ?, {marks}, service_id, mode FROM jobs WHERE id = ?
    ON CONFLICT (job_id, position) DO UPDATE SET {sets}""".format(
    cols=", ".join(_IMAGE_VALUES), marks=", ".join("?" * len(_IMAGE_VALUES)),
    sets=", ".join(f"{c} = excluded.{c}" for c in _IMAGE_VALUES))


_IMAGE_SELECT = ("i.id, i.job_id, i.position, i.path, i.thumb_path, i.mime, i.width, i.height, "
                 "i.seed, i.infotext, i.created")


def _image(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(id=row["id"], job_id=row["job_id"], position=row["position"],
                       path=row["path"], thumb_path=row["thumb_path"], mime=row["mime"],
                       width=row["width"], height=row["height"], seed=_seed_out(row["seed"]),
                       infotext=row["infotext"], created=row["created"])


def _filter(service: str | None, mode: str | None, query: str | None
            ) -> tuple[list[str], list[Any]]:
    """The WHERE terms (and their arguments) of the gallery's filters; a query needs the
    images joined to their jobs as ``j``."""
    where: list[str] = []
    args: list[Any] = []
    if service is not None:
        where.append("i.service_id = ?")
        args.append(service)
    if mode is not None:
        where.append("i.mode = ?")
        args.append(mode)
    match = match_expression(query) if query else None
    if match is not None:
        # The unary + keeps SQLite from driving the join through the list of matches (with
        # a service filter it probed every match for every image: 50 ms at 20,000
        # images); so the matches are a set each image of the index range is checked
        # against, the page's cost bounded by the range scanned (3.5 ms at worst).
        where.append("+j.num IN (SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH ?)")
        args.append(match)
    return where, args


def _adjacent(db: sqlite3.Connection, service: str | None, mode: str | None,
              query: str | None, cursor: Cursor, test: str) -> int | None:
    """The id of the image just newer (``test`` ``>``) or just older (``<``) than ``cursor``
    among those the gallery's filters keep; None at that end."""
    where, args = _filter(service, mode, query)
    join = " JOIN jobs j ON j.id = i.job_id" if query else ""
    order = "ASC" if test == ">" else "DESC"
    sql = (f"SELECT i.id FROM images i{join} WHERE "
           + " AND ".join([*where, f"(i.created, i.id) {test} (?, ?)"])
           + f" ORDER BY i.created {order}, i.id {order} LIMIT 1")
    row = db.execute(sql, [*args, float(cursor[0]), int(cursor[1])]).fetchone()
    return row[0] if row else None


def _describe(path: Path, exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "malformed" in str(exc) \
            or "not a database" in str(exc):
        return (f"The history database {path} is damaged or is not an SQLite database "
                f"({exc}). Move it aside; webui then starts a new, empty history.")
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_IOERR")) \
            or "unable to open" in str(exc):
        return (f"The history database {path} cannot be opened or written ({exc}). Check "
                "that its folder exists and that webui may read and write it.")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc):
        return (f"The history database {path} stayed locked by another program for "
                f"{BUSY_TIMEOUT:g} s ({exc}).")
    return f"The history database {path} failed: {exc}"


def _drop_connection(connections: set[sqlite3.Connection], lock: threading.Lock,
            conn: sqlite3.Connection) -> None:
    with lock:
        connections.discard(conn)
    conn.close()


class HistoryStore:
    """Jobs and images in the SQLite file ``path`` (created, or upgraded, when opened)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[sqlite3.Connection] = set()
        self._generation = 0  # bumped by close(): threads then open a new connection
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"Cannot create the folder of the history database "
                               f"{self.path}: {exc}") from None
        try:
            with self._errors():
                db = self._db()
                # WAL is a property of the file: set once, it stays.
                db.execute("PRAGMA journal_mode = WAL").fetchone()
                try:
                    migrate(db)
                except HistoryError as exc:
                    raise HistoryError(f"The history database {self.path} cannot be used: "
                                       f"{exc}") from None
        except HistoryError:
            self.close()
            raise

    # Connections and errors

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation == self._generation:
            return conn
        # check_same_thread=False only so that close() may close every thread's connection;
        # otherwise each connection is used by the thread that opened it alone.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable across crashes in WAL mode
        except sqlite3.Error:
            conn.close()
            raise
        with self._lock:
            self._connections.add(conn)
            self._local.conn, self._local.generation = conn, self._generation
        # A thread that ends takes its connection with it: without this, code that starts a
        # thread per job would leave an open file behind for every job.
        weakref.finalize(threading.current_thread(), _drop_connection, self._connections,
                         self._lock, conn)
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise HistoryError(_describe(self.path, exc)) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; every error comes out as HistoryError."""
        with self._errors():
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._errors():
            db = self._db()
            # One snapshot for every statement of the read (WAL readers are not blocked).
            db.execute("BEGIN")
            try:
                return fn(db)
            finally:
                if db.in_transaction:
                    db.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection; the store opens new ones if used again."""
        with self._lock:
            self._generation += 1
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            conn.close()

    # Writing

    def record_job(self, job: JobRecord) -> None:
        """Insert the job, or update the row with its id, and write ``job.images`` with it.

        An image is keyed by (job, position): recording it again updates it. Images of the job
        not in ``job.images`` are kept. The ids given to the images are set on them.
        """
        self.record_jobs([job])

    def record_jobs(self, jobs: Iterable[JobRecord]) -> None:
        """``record_job`` for many jobs in one transaction (imports, tests, benchmarks)."""
        jobs = list(jobs)
        for job in jobs:
            if job.status not in STATUSES:
                raise ValueError(f"unknown job status {job.status!r}")
        with self._write() as db:
            db.executemany(_UPSERT_JOB, [self._job_row(job) for job in jobs])
            for job in jobs:
                default = job.finished or job.created
                for image in job.images:
                    self._put_image(db, image, job.id, default)

    def add_image(self, image: ImageRecord) -> ImageRecord:
        """Record one image of an already recorded job; return it with its id set."""
        with self._write() as db:
            self._put_image(db, image, image.job_id, time.time())
        return image

    def set_thumbnail(self, image_id: int, thumb_path: str) -> None:
        """Remember where the thumbnail of an image was written."""
        with self._write() as db:
            db.execute("UPDATE images SET thumb_path = ? WHERE id = ?", (thumb_path, image_id))

    @staticmethod
    def _job_row(job: JobRecord) -> tuple[Any, ...]:
        return (job.id, job.service_id, job.service_name, redact_url(job.instance), job.mode,
                job.status, _dumps(job.parameters or {}), job.prompt, job.negative_prompt,
                _dumps(list(job.seeds or [])), _dumps(job.info) if job.info is not None
                else None, job.error, job.created, job.started, job.finished, job.seconds)

    @staticmethod
    def _put_image(db: sqlite3.Connection, image: ImageRecord, job_id: str,
                   default_created: float) -> None:
        image.job_id = job_id
        if image.created is None:
            image.created = default_created
        db.execute(_UPSERT_IMAGE, (
            image.position, image.path, image.thumb_path, image.mime, image.width, image.height,
            _seed_in(image.seed), image.infotext, image.created, job_id))
        row = db.execute("SELECT id FROM images WHERE job_id = ? AND position = ?",
                         (job_id, image.position)).fetchone()
        if row is None:
            raise HistoryError(f"No job {job_id!r} in the history: record the job first")
        image.id = row[0]

    def delete_image(self, image_id: int) -> ImageRecord | None:
        """Delete an image's row (the last one of a job takes the job with it) and return it,
        for the caller to delete its files; None if there was no such image.
        """
        with self._write() as db:
            row = db.execute(f"SELECT {_IMAGE_SELECT} FROM images i WHERE i.id = ?",
                             (image_id,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM images WHERE id = ?", (image_id,))
            db.execute("DELETE FROM jobs WHERE id = ? AND NOT EXISTS "
                       "(SELECT 1 FROM images WHERE job_id = ?)", (row["job_id"], row["job_id"]))
        return _image(row)

    # Reading

    def get_job(self, job_id: str) -> JobRecord | None:
        """The job with this id and its images in position order; None if there is none."""
        def read(db: sqlite3.Connection) -> JobRecord | None:
            row = db.execute(f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE id = ?",
                             (job_id,)).fetchone()
            if row is None:
                return None
            images = db.execute(f"SELECT {_IMAGE_SELECT} FROM images i WHERE i.job_id = ? "
                                "ORDER BY i.position", (job_id,)).fetchall()
            return JobRecord(
                id=row["id"], service_id=row["service_id"], service_name=row["service_name"],
                instance=row["instance"], mode=row["mode"], status=row["status"],
                parameters=_loads(row["parameters"], {}), prompt=row["prompt"],
                negative_prompt=row["negative_prompt"], seeds=_loads(row["seeds"], []),
                info=_loads(row["info"]), error=row["error"], created=row["created"],
                started=row["started"], finished=row["finished"], seconds=row["seconds"],
                images=[_image(r) for r in images])
        return self._read(read)

    def get_image(self, image_id: int) -> ImageRecord | None:
        """The image with this id; None if there is none."""
        return self._read(lambda db: next(
            (_image(r) for r in db.execute(f"SELECT {_IMAGE_SELECT} FROM images i "
                                           "WHERE i.id = ?", (image_id,))), None))

    def page(
        self,
        *,
        service: str | None = None,
        mode: str | None = None,
        query: str | None = None,
        before: Cursor | None = None,
        after: Cursor | None = None,
        limit: int = 48,
    ) -> Page:
        """Images newest first, ``limit`` at most, older than the ``before`` cursor (or the
        ``limit`` just newer than the ``after`` cursor: the page before a page).

        ``service`` and ``mode`` keep one service id or mode; ``query`` keeps images whose
        prompt has every word of it (see ``match_expression``). Pass ``page.next`` as
        ``before`` for the following page and ``page.prev`` as ``after`` for the preceding
        one: unlike an offset they stay right while images are added or deleted, and cost
        the same deep in the list.
        """
        limit = max(1, min(int(limit), PAGE_LIMIT_MAX))
        where, args = _filter(service, mode, query)
        newer = after is not None and before is None
        cursor = after if newer else before
        if cursor is not None:
            where = [*where, f"(i.created, i.id) {'>' if newer else '<'} (?, ?)"]
            args = [*args, float(cursor[0]), int(cursor[1])]
        order = "ASC" if newer else "DESC"
        sql = (f"SELECT {_IMAGE_SELECT}, j.prompt, j.negative_prompt, j.service_id, "
               "j.service_name, j.mode FROM images i JOIN jobs j ON j.id = i.job_id"
               + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY i.created {order}, i.id {order} LIMIT ?")

        def read(db: sqlite3.Connection) -> Page:
            # One more than shown tells whether there is a page further on; the first image
            # the other way, whether there is one back (none before the first page).
            rows = db.execute(sql, [*args, limit + 1]).fetchall()
            items = [GalleryItem(image=_image(r), prompt=r["prompt"],
                                 negative_prompt=r["negative_prompt"],
                                 service_id=r["service_id"], service_name=r["service_name"],
                                 mode=r["mode"]) for r in rows[:limit]]
            further = len(rows) > limit
            if not items:
                return Page(items=[], next=None)
            if newer:
                items.reverse()
                back = _adjacent(db, service, mode, query, items[-1].cursor, "<") is not None
                return Page(items=items, next=items[-1].cursor if back else None,
                            prev=items[0].cursor if further else None)
            back = cursor is not None and _adjacent(
                db, service, mode, query, items[0].cursor, ">") is not None
            return Page(items=items, next=items[-1].cursor if further else None,
                        prev=items[0].cursor if back else None)
        return self._read(read)

    def services(self) -> list[tuple[str, str]]:
        """(service id, name) of the services that have images in the gallery, by name; the
        name is the one the service had last.
        """
        # The distinct service ids are found by stepping through the images_service index
        # (one lookup per service, rather than reading every row), each with the name of its
        # newest job through jobs_service.
        rows = self._read(lambda db: db.execute("""
            WITH RECURSIVE s(id) AS (
                SELECT min(service_id) FROM images
                UNION ALL
                SELECT (SELECT min(service_id) FROM images WHERE service_id > s.id)
                FROM s WHERE s.id IS NOT NULL
            )
            SELECT id, (SELECT service_name FROM jobs WHERE service_id = s.id
                        ORDER BY created DESC LIMIT 1) AS name
            FROM s WHERE id IS NOT NULL ORDER BY lower(name), id""").fetchall())
        return [(r[0], r[1]) for r in rows]

    def count(
        self, *, service: str | None = None, mode: str | None = None, query: str | None = None
    ) -> int:
        """How many images the gallery holds; with filters (as ``page`` takes them), how many
        of them it shows."""
        match = match_expression(query) if query else None
        if match is None:
            where, args = _filter(service, mode, None)
        else:
            # Unlike a page, a count needs no order: it is driven by the matching jobs' images,
            # the other filters checked on those (+: not through their own index, which would
            # scan a whole service for a rare word). 4 ms at most at 20,000 images.
            where = ["i.job_id IN (SELECT id FROM jobs WHERE num IN "
                     "(SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH ?))"]
            args = [match]
            for column, value in (("service_id", service), ("mode", mode)):
                if value is not None:
                    where.append(f"+i.{column} = ?")
                    args.append(value)
        sql = "SELECT count(*) FROM images i" + (" WHERE " + " AND ".join(where) if where else "")
        return self._read(lambda db: db.execute(sql, args).fetchone()[0])

    def neighbours(
        self, image: ImageRecord, *, service: str | None = None, mode: str | None = None,
        query: str | None = None,
    ) -> tuple[int | None, int | None]:
        """The ids of the images just before and just after ``image`` in the gallery's order
        (newest first), among those the filters keep; None at either end. A batch is together
        in that order, its first image first."""
        here = (float(image.created or 0.0), int(image.id or 0))
        return self._read(lambda db: (_adjacent(db, service, mode, query, here, ">"),
                                      _adjacent(db, service, mode, query, here, "<")))

    def unfinished(self) -> list[JobRecord]:
        """Jobs recorded as queued or running, oldest first: after a restart, what was waiting
        and what was cut short."""
        ids = self._read(lambda db: [r[0] for r in db.execute(
            "SELECT id FROM jobs WHERE status IN ('queued', 'running') ORDER BY created, id")])
        return [job for job in (self.get_job(i) for i in ids) if job is not None]

    def image_paths(self) -> set[str]:
        """The paths of every recorded image (relative to the images folder)."""
        return self._read(lambda db: {r[0] for r in db.execute("SELECT path FROM images")})

    # Prompt styles

    def styles(self) -> list[StyleRecord]:
        """Every saved style, by name (any case)."""
        rows = self._read(lambda db: db.execute(
            "SELECT id, name, prompt, negative_prompt, created, updated FROM styles "
            "ORDER BY name COLLATE NOCASE, id").fetchall())
        return [_style(r) for r in rows]

    def get_style(self, style_id: int) -> StyleRecord | None:
        """The style with this id; None if there is none."""
        return self._read(lambda db: next((_style(r) for r in db.execute(
            "SELECT id, name, prompt, negative_prompt, created, updated FROM styles "
            "WHERE id = ?", (style_id,))), None))

    def save_style(self, style: StyleRecord) -> StyleRecord:
        """Insert the style (no id) or update the one with its id; its id and times are set.
        ValueError if another style has its name (in any case), or if the id is unknown."""
        now = time.time()
        with self._write() as db:
            clash = db.execute("SELECT id FROM styles WHERE name = ? AND id IS NOT ?",
                               (style.name, style.id)).fetchone()
            if clash is not None:
                raise ValueError(f"a style named {style.name!r} exists already")
            if style.id is None:
                cursor = db.execute(
                    "INSERT INTO styles (name, prompt, negative_prompt, created, updated) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (style.name, style.prompt, style.negative_prompt, now, now))
                style.id, style.created = cursor.lastrowid, now
            elif db.execute("UPDATE styles SET name = ?, prompt = ?, negative_prompt = ?, "
                            "updated = ? WHERE id = ?",
                            (style.name, style.prompt, style.negative_prompt, now,
                             style.id)).rowcount == 0:
                raise ValueError("this style no longer exists")
            style.updated = now
        return style

    def delete_style(self, style_id: int) -> bool:
        """Delete a style; False if there was none with this id."""
        with self._write() as db:
            return db.execute("DELETE FROM styles WHERE id = ?", (style_id,)).rowcount > 0


def _style(row: sqlite3.Row) -> StyleRecord:
    return StyleRecord(id=row["id"], name=row["name"], prompt=row["prompt"],
                       negative_prompt=row["negative_prompt"], created=row["created"],
                       updated=row["updated"])

"""The history's schema, as numbered migrations: an upgrade never loses data."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from .records import HistoryError


def _v1_tables(db: sqlite3.Connection) -> None:
    # jobs.num is the stable integer rowid FTS5 needs (a table keyed by TEXT gets rowids that
    # VACUUM may renumber); the job's own id is the uuid the caller gives.
    db.execute("""
        CREATE TABLE jobs (
            num INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            service_id TEXT NOT NULL,
            service_name TEXT NOT NULL,
            instance TEXT,
            mode TEXT NOT NULL,
            status TEXT NOT NULL,
            parameters TEXT NOT NULL DEFAULT '{}',
            prompt TEXT,
            negative_prompt TEXT,
            seeds TEXT NOT NULL DEFAULT '[]',
            info TEXT,
            error TEXT,
            created REAL NOT NULL,
            started REAL,
            finished REAL,
            seconds REAL
        )""")
    # AUTOINCREMENT: an image id is never reused, so a link to a deleted image cannot show
    # another one.
    db.execute("""
        CREATE TABLE images (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            path TEXT NOT NULL,
            thumb_path TEXT,
            mime TEXT NOT NULL,
            width INTEGER,
            height INTEGER,
            seed TEXT,
            infotext TEXT,
            created REAL NOT NULL,
            UNIQUE (job_id, position)
        )""")
    db.execute("CREATE INDEX images_created ON images (created, id)")
    db.execute("CREATE INDEX jobs_created ON jobs (created)")


def _v2_gallery_columns(db: sqlite3.Connection) -> None:
    # A job's service and mode are copied onto its images so that a filtered gallery page is
    # one range of one index, whatever share of the images the filter keeps.
    db.execute("ALTER TABLE images ADD COLUMN service_id TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE images ADD COLUMN mode TEXT NOT NULL DEFAULT ''")
    db.execute("""
        UPDATE images SET
            service_id = (SELECT service_id FROM jobs WHERE jobs.id = images.job_id),
            mode = (SELECT mode FROM jobs WHERE jobs.id = images.job_id)""")
    db.execute("CREATE INDEX images_service ON images (service_id, created, id)")
    db.execute("CREATE INDEX images_mode ON images (mode, created, id)")
    db.execute("CREATE INDEX images_service_mode ON images (service_id, mode, created, id)")
    db.execute("CREATE INDEX jobs_service ON jobs (service_id, created)")
    db.execute("""
        CREATE TRIGGER jobs_gallery AFTER UPDATE OF service_id, mode ON jobs
        WHEN old.service_id IS NOT new.service_id OR old.mode IS NOT new.mode
        BEGIN
            UPDATE images SET service_id = new.service_id, mode = new.mode
            WHERE job_id = new.id;
        END""")


def _v3_search(db: sqlite3.Connection) -> None:
    try:
        db.execute("""
            CREATE VIRTUAL TABLE jobs_fts USING fts5(
                prompt, negative_prompt,
                content='jobs', content_rowid='num',
                tokenize='unicode61 remove_diacritics 2'
            )""")
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc).lower():
            raise HistoryError(
                f"The SQLite library of this Python ({sqlite3.sqlite_version}) was built "
                "without FTS5, which the history's prompt search needs. Use a Python whose "
                "sqlite3 module has FTS5 (python.org and most Linux distributions do).") from None
        raise
    # An external-content index only knows what these triggers tell it.
    db.execute("""
        CREATE TRIGGER jobs_fts_insert AFTER INSERT ON jobs BEGIN
            INSERT INTO jobs_fts (rowid, prompt, negative_prompt)
            VALUES (new.num, new.prompt, new.negative_prompt);
        END""")
    db.execute("""
        CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs BEGIN
            INSERT INTO jobs_fts (jobs_fts, rowid, prompt, negative_prompt)
            VALUES ('delete', old.num, old.prompt, old.negative_prompt);
        END""")
    db.execute("""
        CREATE TRIGGER jobs_fts_update AFTER UPDATE OF prompt, negative_prompt ON jobs
        WHEN old.prompt IS NOT new.prompt OR old.negative_prompt IS NOT new.negative_prompt
        BEGIN
            INSERT INTO jobs_fts (jobs_fts, rowid, prompt, negative_prompt)
            VALUES ('delete', old.num, old.prompt, old.negative_prompt);
            INSERT INTO jobs_fts (rowid, prompt, negative_prompt)
            VALUES (new.num, new.prompt, new.negative_prompt);
        END""")
    db.execute("INSERT INTO jobs_fts (jobs_fts) VALUES ('rebuild')")  # rows of older versions


def _v4_styles(db: sqlite3.Connection) -> None:
    # Prompt styles saved in webui: a name (unique whatever its case), the text merged into the
    # prompt ({prompt} stands for the user's) and the text merged into the negative prompt.
    db.execute("""
        CREATE TABLE styles (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            prompt TEXT NOT NULL DEFAULT '',
            negative_prompt TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            updated REAL NOT NULL
        )""")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_tables,
    _v2_gallery_columns,
    _v3_search,
    _v4_styles,
]


SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Bring the database up to ``SCHEMA_VERSION``; return the version it had."""
    db.execute("BEGIN IMMEDIATE")  # read the version under the write lock: one migrator
    try:
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise HistoryError(f"it has schema version {found}, newer than this webui knows "
                               f"({SCHEMA_VERSION}); use a newer webui")
        for version in range(found + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version - 1](db)
            db.execute(f"PRAGMA user_version = {version}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return found

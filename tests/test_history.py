"""The history store: schema and migrations, jobs and images, the gallery's pages, search,
deletion, threads, damaged files, and thumbnails."""

from __future__ import annotations

import gc
import random
import sqlite3
import threading
from pathlib import Path

import pytest
from PIL import Image

from webui.history import (
    GalleryItem,
    HistoryError,
    HistoryStore,
    ImageRecord,
    JobRecord,
    cursor_text,
    match_expression,
    migrations,
    parse_cursor,
)
from webui.history.migrations import MIGRATIONS, SCHEMA_VERSION
from webui.history.records import PAGE_LIMIT_MAX, Cursor
from webui.images import ThumbnailError, UploadedImage, make_thumbnail
from webui.redact import redact_url as public_url

from .helpers import image_bytes

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    s = HistoryStore(tmp_path / "history.sqlite3")
    yield s
    s.close()


def job(n: int, *, images: int = 1, service: str = "a1111", mode: str = "txt2img",
        prompt: str | None = None, created: float | None = None, **kw) -> JobRecord:
    jid = f"{n:032x}"
    created = T0 + n if created is None else created
    return JobRecord(
        id=jid, service_id=service, service_name=service.upper(), mode=mode, status="done",
        prompt=f"prompt {n}" if prompt is None else prompt, created=created,
        images=[ImageRecord(job_id=jid, position=p, path=f"2024-01-01/{n}-{p}.png",
                            width=64, height=64, seed=n * 10 + p) for p in range(images)],
        **kw)


def ids(items: list[GalleryItem]) -> list[int]:
    return [i.image.id for i in items]


# --- Schema and migrations -------------------------------------------------------------------

def test_a_new_database_is_at_the_latest_version_in_wal_mode(store: HistoryStore) -> None:
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert {"jobs", "images", "jobs_fts", "images_created", "images_service"} <= names
    db.close()
    assert store._db().execute("PRAGMA foreign_keys").fetchone()[0] == 1


# Version 1 of the schema exactly as the first release wrote it; never change this copy.
V1 = [
    """CREATE TABLE jobs (
        num INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, service_id TEXT NOT NULL,
        service_name TEXT NOT NULL, instance TEXT, mode TEXT NOT NULL, status TEXT NOT NULL,
        parameters TEXT NOT NULL DEFAULT '{}', prompt TEXT, negative_prompt TEXT,
        seeds TEXT NOT NULL DEFAULT '[]', info TEXT, error TEXT, created REAL NOT NULL,
        started REAL, finished REAL, seconds REAL)""",
    """CREATE TABLE images (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        position INTEGER NOT NULL, path TEXT NOT NULL, thumb_path TEXT, mime TEXT NOT NULL,
        width INTEGER, height INTEGER, seed TEXT, infotext TEXT, created REAL NOT NULL,
        UNIQUE (job_id, position))""",
    "CREATE INDEX images_created ON images (created, id)",
    "CREATE INDEX jobs_created ON jobs (created)",
]


def test_a_version_1_database_is_upgraded_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    db = sqlite3.connect(path)
    for sql in V1:
        db.execute(sql)
    db.execute("INSERT INTO jobs (id, service_id, service_name, mode, status, parameters, "
               "prompt, negative_prompt, seeds, created) VALUES "
               "('j1', 'a1111', 'A1111', 'txt2img', 'done', '{\"steps\": 20}', "
               "'an old lighthouse', 'blurry', '[7, 8]', 100.0), "
               "('j2', 'comfy', 'ComfyUI', 'img2img', 'failed', '{}', 'a broken job', NULL, "
               "'[]', 101.0)")
    db.execute("INSERT INTO images (job_id, position, path, mime, width, height, seed, "
               "infotext, created) VALUES ('j1', 0, 'd/a.png', 'image/png', 64, 64, '7', "
               "'an old lighthouse', 100.0), ('j1', 1, 'd/b.png', 'image/png', 64, 64, "
               "'8', NULL, 100.0)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    store = HistoryStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    columns = {r[1] for r in db.execute("PRAGMA table_info(images)")}
    assert {"service_id", "mode"} <= columns
    db.close()

    old = store.get_job("j1")
    assert old is not None
    assert (old.prompt, old.negative_prompt, old.parameters, old.seeds) == (
        "an old lighthouse", "blurry", {"steps": 20}, [7, 8])
    assert [(i.position, i.path, i.seed) for i in old.images] == [(0, "d/a.png", 7),
                                                                  (1, "d/b.png", 8)]
    assert store.get_job("j2").status == "failed"
    # The new columns were filled from the jobs, and the new search index knows the old rows.
    assert len(store.page(service="a1111", mode="txt2img").items) == 2
    assert len(store.page(query="lighthouse").items) == 2
    assert store.page(service="comfy").items == []
    store.record_job(job(3, prompt="a new lighthouse"))
    assert len(store.page(query="lighthouse").items) == 3
    store.close()
    # Opening an up-to-date database again changes nothing.
    assert HistoryStore(path).count() == 3


def test_a_failing_migration_leaves_the_database_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.sqlite3"
    HistoryStore(path).close()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        db.execute("SELECT no_such_column FROM jobs")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, broken])
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(HistoryError, match="h.sqlite3"):
        HistoryStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'"
                      ).fetchone()[0] == 0
    db.close()


def test_a_database_from_a_newer_webui_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(HistoryError, match="newer"):
        HistoryStore(path)


# --- Damaged or unreadable files -------------------------------------------------------------

def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"this is not SQLite at all\n" * 200)
    with pytest.raises(HistoryError, match="damaged or is not an SQLite database") as info:
        HistoryStore(path)
    assert not isinstance(info.value, sqlite3.Error)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_database_damaged_after_opening(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    store = HistoryStore(path)
    store.record_jobs([job(n, images=2, prompt="x " * 200) for n in range(300)])
    store.close()
    data = bytearray(path.read_bytes())
    data[4096 * 3:4096 * 40] = b"\xff" * (4096 * 37)  # wipe pages past the schema
    path.write_bytes(bytes(data))
    (tmp_path / "history.sqlite3-wal").unlink(missing_ok=True)
    with pytest.raises(HistoryError, match="damaged"):
        s = HistoryStore(path)
        for _ in range(10):
            s.page(limit=500)
            s.page(query="x", limit=500)
            before = None
            while (p := s.page(before=before, limit=500)).next:
                before = p.next


def test_a_folder_where_the_file_should_be(tmp_path: Path) -> None:
    (tmp_path / "history.sqlite3").mkdir()
    with pytest.raises(HistoryError, match="cannot be opened"):
        HistoryStore(tmp_path / "history.sqlite3")


# --- Jobs and images -------------------------------------------------------------------------

def test_record_and_read_a_job(store: HistoryStore) -> None:
    upload = UploadedImage(data=b"\x89PNG" + b"0" * 100, mime="image/png", filename="in.png",
                           width=32, height=16)
    record = JobRecord(
        id="0123456789abcdef0123456789abcdef", service_id="a1111", service_name="My A1111",
        mode="img2img", status="done",
        instance="http://user:hunter2@gpu-box:7860/sdapi?token=abc#x",
        parameters={"prompt": "a cat", "steps": 20, "init_image": upload, "api_key": "sk-1",
                    "nested": {"password": "p", "ok": [1, 2]}, "raw": b"xyz"},
        prompt="a cat, ünï", negative_prompt="dog", seeds=[2**64 - 1, 5],
        info={"all_seeds": [1], "Authorization": "Bearer x"}, error=None, created=T0,
        started=T0 + 1, finished=T0 + 3.5, seconds=2.5,
        images=[ImageRecord(job_id="", position=0, path="2024-01-01/a.png", mime="image/png",
                            width=512, height=768, seed=2**64 - 1, infotext="a cat\nSteps: 20"),
                ImageRecord(job_id="", position=1, path="2024-01-01/b.webp", mime="image/webp",
                            width=512, height=768, seed="abc")])
    store.record_job(record)
    assert all(isinstance(i.id, int) for i in record.images)
    assert record.images[0].created == T0 + 3.5  # the job's finish time by default

    got = store.get_job(record.id)
    assert got is not None
    assert got.instance == "http://gpu-box:7860/sdapi"
    assert got.parameters == {
        "prompt": "a cat", "steps": 20, "api_key": "[redacted]", "raw": {"bytes": 3},
        "init_image": {"upload": "in.png", "mime": "image/png", "width": 32, "height": 16,
                       "bytes": 104},
        "nested": {"password": "[redacted]", "ok": [1, 2]}}
    assert got.info == {"all_seeds": [1], "Authorization": "[redacted]"}
    assert got.seeds == [2**64 - 1, 5]
    assert (got.prompt, got.negative_prompt, got.status, got.mode) == (
        "a cat, ünï", "dog", "done", "img2img")
    assert (got.created, got.started, got.finished, got.seconds) == (T0, T0 + 1, T0 + 3.5, 2.5)
    assert got.images == record.images
    assert got.images[0].seed == 2**64 - 1 and got.images[1].seed == "abc"
    assert store.get_image(record.images[1].id) == record.images[1]
    assert store.get_job("nope") is None and store.get_image(10**9) is None
    raw = Path(store.path).read_bytes() + Path(f"{store.path}-wal").read_bytes()
    assert b"hunter2" not in raw and b"sk-1" not in raw and b"Bearer" not in raw


def test_a_job_is_updated_as_it_runs(store: HistoryStore) -> None:
    record = job(1, images=0, prompt="first idea")
    record.status = "queued"
    store.record_job(record)
    assert store.count() == 0 and store.get_job(record.id).status == "queued"

    record.status, record.started = "running", T0 + 2
    record.prompt = "second idea"
    store.record_job(record)
    record.status, record.finished, record.seconds = "done", T0 + 5, 3.0
    record.images = [ImageRecord(job_id=record.id, position=p, path=f"x/{p}.png")
                     for p in range(2)]
    store.record_job(record)
    first_ids = [i.id for i in record.images]
    store.record_job(record)  # recording the same images again updates them
    assert [i.id for i in record.images] == first_ids
    assert store.count() == 2

    got = store.get_job(record.id)
    assert (got.status, got.started, got.finished, got.seconds) == ("done", T0 + 2, T0 + 5, 3.0)
    assert store.page(query="first").items == []
    assert len(store.page(query="second").items) == 2

    extra = store.add_image(ImageRecord(job_id=record.id, position=2, path="x/2.png"))
    assert extra.id > max(first_ids)
    assert [i.position for i in store.get_job(record.id).images] == [0, 1, 2]
    store.set_thumbnail(extra.id, "thumbs/x/2.webp")
    assert store.get_image(extra.id).thumb_path == "thumbs/x/2.webp"


def test_a_service_or_mode_change_reaches_the_images(store: HistoryStore) -> None:
    record = job(1, images=2)
    store.record_job(record)
    record.service_id, record.mode = "forge", "img2img"
    store.record_job(record)
    assert len(store.page(service="forge", mode="img2img").items) == 2
    assert store.page(service="a1111").items == []


def test_images_need_a_recorded_job_and_jobs_a_known_status(store: HistoryStore) -> None:
    with pytest.raises(HistoryError, match="record the job first"):
        store.add_image(ImageRecord(job_id="missing", position=0, path="x.png"))
    bad = job(1)
    bad.status = "exploded"
    with pytest.raises(ValueError, match="status"):
        store.record_job(bad)
    assert store.count() == 0


def test_delete_image_and_then_its_job(store: HistoryStore) -> None:
    record = job(1, images=2, prompt="unique zebra")
    store.record_jobs([record, job(2)])
    first, second = record.images

    gone = store.delete_image(first.id)
    assert gone == first
    assert store.get_image(first.id) is None
    assert [i.id for i in store.get_job(record.id).images] == [second.id]

    assert store.delete_image(second.id) == second
    assert store.get_job(record.id) is None
    assert store.page(query="zebra").items == []
    assert store.delete_image(second.id) is None
    assert store.count() == 1
    fts_rows = store._db().execute("SELECT count(*) FROM jobs_fts WHERE jobs_fts MATCH 'zebra'")
    assert fts_rows.fetchone()[0] == 0
    # A new image never gets the id of a deleted one.
    store.record_job(job(3))
    assert store.page(limit=1).items[0].image.id > second.id


def test_deleting_a_job_deletes_its_images(store: HistoryStore) -> None:
    store.record_jobs([job(1, images=3), job(2)])
    with store._write() as db:
        db.execute("DELETE FROM jobs WHERE id = ?", (f"{1:032x}",))
    assert store.count() == 1


def test_failed_jobs_without_images_stay_in_the_history(store: HistoryStore) -> None:
    record = job(1, images=0)
    record.status, record.error = "failed", "CUDA out of memory"
    store.record_job(record)
    assert store.get_job(record.id).error == "CUDA out of memory"
    assert store.count() == 0 and store.services() == []


# --- Gallery pages ---------------------------------------------------------------------------

def test_pages_are_newest_first_and_join_up_exactly(store: HistoryStore) -> None:
    # Several jobs per timestamp and several images per job: the id breaks every tie.
    jobs = [job(n, images=1 + n % 3, created=T0 + n // 4) for n in range(40)]
    store.record_jobs(jobs)
    everything = sorted((i for j in jobs for i in j.images), key=lambda i: (i.created, i.id),
                        reverse=True)
    seen: list[int] = []
    before = None
    while True:
        page = store.page(before=before, limit=7)
        seen += ids(page.items)
        if page.next is None:
            break
        assert page.next == page.items[-1].cursor
        before = page.next
    assert seen == [i.id for i in everything]
    assert store.page(limit=len(everything)).next is None
    assert store.page(limit=len(everything) - 1).next is not None


def test_a_page_cursor_holds_while_images_come_and_go(store: HistoryStore) -> None:
    store.record_jobs(job(n, images=2) for n in range(10))
    first = store.page(limit=5)
    store.record_job(job(100, images=3))  # newer images arrive
    store.delete_image(first.items[0].image.id)
    second = store.page(before=first.next, limit=5)
    expected = store.page(limit=100)
    after = [i for i in ids(expected.items) if i < first.items[-1].image.id]
    assert ids(second.items) == after[:5]


def test_pages_walk_back_to_the_newest_exactly(store: HistoryStore) -> None:
    # From the last page back through ``prev``/``after``: the same pages, newest first in
    # each, and the first page has no page before it.
    jobs = [job(n, images=1 + n % 3, created=T0 + n // 4, service=["a", "b"][n % 2])
            for n in range(40)]
    store.record_jobs(jobs)
    for service in (None, "b"):
        forward = []
        page = store.page(service=service, limit=7)
        assert page.prev is None
        while True:
            forward.append(ids(page.items))
            if page.next is None:
                break
            page = store.page(service=service, before=page.next, limit=7)
        backward = [ids(page.items)]
        while page.prev is not None:
            back = store.page(service=service, after=page.prev, limit=7)
            assert back.next == back.items[-1].cursor  # and forward again from there
            page = back
            backward.append(ids(page.items))
        assert backward[::-1] == forward and len(forward) > 2


def test_a_page_just_newer_than_the_newest_is_empty(store: HistoryStore) -> None:
    store.record_jobs(job(n) for n in range(3))
    top = store.page(limit=2)
    assert store.page(after=top.items[0].cursor).items == []
    # A page asked from above its first image (as the gallery asks a page again) is that page.
    again = (top.items[0].cursor[0], top.items[0].cursor[1] + 1)
    assert ids(store.page(before=again, limit=2).items) == ids(top.items)
    # The page after it has one before it: from its first image.
    second = store.page(before=top.next, limit=2)
    assert second.prev == second.items[0].cursor and second.next is None


def test_page_items_carry_their_job(store: HistoryStore) -> None:
    store.record_job(job(1, prompt="a red fox", negative_prompt="blurry", service="comfy",
                         mode="img2img"))
    (item,) = store.page().items
    assert (item.prompt, item.negative_prompt, item.service_id, item.service_name,
            item.mode) == ("a red fox", "blurry", "comfy", "COMFY", "img2img")
    assert item.image.path == f"2024-01-01/{1}-0.png" and item.image.seed == 10


def test_filters_services_and_count(store: HistoryStore) -> None:
    jobs = [job(n, service=["a1111", "comfy", "forge"][n % 3],
                mode=["txt2img", "img2img"][n % 2]) for n in range(30)]
    store.record_jobs(jobs)
    by_service = store.page(service="comfy", limit=100).items
    assert {i.service_id for i in by_service} == {"comfy"} and len(by_service) == 10
    by_mode = store.page(mode="img2img", limit=100).items
    assert {i.mode for i in by_mode} == {"img2img"} and len(by_mode) == 15
    both = store.page(service="comfy", mode="img2img", limit=100).items
    assert len(both) == 5
    assert store.page(service="nope").items == []
    assert store.services() == [("a1111", "A1111"), ("comfy", "COMFY"), ("forge", "FORGE")]
    renamed = job(99, service="comfy")
    renamed.service_name = "ComfyUI at home"
    store.record_job(renamed)
    assert ("comfy", "ComfyUI at home") in store.services()
    assert store.count() == 31


def test_page_limit_is_bounded(store: HistoryStore) -> None:
    store.record_jobs(job(n, images=4) for n in range(130))
    assert len(store.page(limit=0).items) == 1
    assert len(store.page(limit=-5).items) == 1
    big = store.page(limit=10_000)
    assert len(big.items) == PAGE_LIMIT_MAX and big.next is not None


# --- Search ----------------------------------------------------------------------------------

def test_search_finds_every_word_as_a_word_start(store: HistoryStore) -> None:
    store.record_jobs([
        job(1, prompt="A Lighthouse on a cliff, oil painting", negative_prompt="cats"),
        job(2, prompt="two cats on a sofa"),
        job(3, prompt="Café at night, (masterpiece:1.2)"),
        job(4, prompt="lighthouse keeper's cat"),
    ])

    def found(q: str) -> list[str]:
        return [i.prompt for i in store.page(query=q).items]

    assert found("lighthouse") == ["lighthouse keeper's cat",
                                   "A Lighthouse on a cliff, oil painting"]
    assert found("LIGHT") == found("lighthouse")
    assert found("cat") == ["lighthouse keeper's cat", "two cats on a sofa"]  # not negatives
    assert found("lighthouse cat") == ["lighthouse keeper's cat"]
    assert found("cafe") == ["Café at night, (masterpiece:1.2)"]
    assert found("masterpiece:1.2") == ["Café at night, (masterpiece:1.2)"]
    assert found("zebra") == []
    assert len(found("   ")) == 4  # no words: no search
    assert found("cats") == ["two cats on a sofa"]


HOSTILE = ['cat "dog', "AND OR", "OR", "NOT cat", "cat NOT", "NEAR(cat dog)", "NEAR/2", "*",
           '"', '""', "'", "prompt:cat", "negative_prompt : cat", "{prompt}:x", "^cat", "cat*",
           "cat OR", "(", ")", "()", "-cat", "+", "a AND", "\\", "'; DROP TABLE jobs; --",
           "col:umn:s", "🐱", "x" * 2000, "\x00cat", "cat\ttab\nnewline", "rowid = 1"]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_search_text_is_searched_for_not_run(store: HistoryStore, query: str) -> None:
    store.record_jobs([job(1, prompt="cat and dog or not"), job(2, prompt="a prompt")])
    page = store.page(query=query)
    assert isinstance(page.items, list)
    assert store.count() == 2


def test_search_words_that_are_fts_operators(store: HistoryStore) -> None:
    store.record_jobs([job(1, prompt="cat and dog or not"), job(2, prompt="a cat")])
    assert [i.prompt for i in store.page(query="AND OR").items] == ["cat and dog or not"]
    assert [i.prompt for i in store.page(query='cat "dog').items] == ["cat and dog or not"]
    assert match_expression('cat "dog') == 'prompt : "cat"* AND prompt : """dog"*'
    assert match_expression(" \" ' ( ") is None


def test_search_with_filters_and_paging(store: HistoryStore) -> None:
    store.record_jobs(job(n, images=2, prompt=f"{'red' if n % 2 else 'blue'} boat {n}",
                          service=["a", "b"][n % 3 == 0]) for n in range(30))
    got: list[GalleryItem] = []
    before = None
    while True:
        page = store.page(query="red", service="a", before=before, limit=4)
        got += page.items
        if page.next is None:
            break
        before = page.next
    expected = [n for n in reversed(range(30)) if n % 2 and n % 3]
    assert [int(i.prompt.split()[-1]) for i in got[::2]] == expected
    assert all(i.service_id == "a" and i.prompt.startswith("red") for i in got)


# --- 20,000 images ---------------------------------------------------------------------------

WORDS = ["lighthouse", "forest", "portrait", "city", "dragon", "ocean", "robot", "castle",
         "flower", "mountain", "desert", "river"]


def test_correct_at_twenty_thousand_images(store: HistoryStore) -> None:
    rng = random.Random(7)
    services = ["a1111", "comfy", "forge", "openai"]
    modes = ["txt2img", "img2img"]
    jobs: list[JobRecord] = []
    total = 0
    n = 0
    while total < 20_000:
        count = min(rng.choice([1, 1, 2, 4]), 20_000 - total)
        words = rng.sample(WORDS, 3)
        # Timestamps collide across jobs often, so the id has to break ties.
        record = job(n, images=count, service=rng.choice(services), mode=rng.choice(modes),
                     prompt=" ".join(words), created=T0 + rng.randrange(4000))
        jobs.append(record)
        total += count
        n += 1
    store.record_jobs(jobs)
    assert store.count() == 20_000

    rows = [(i.created, i.id, j.service_id, j.mode, set(j.prompt.split()))
            for j in jobs for i in j.images]
    rows.sort(key=lambda r: (r[0], r[1]), reverse=True)

    def expect(keep=lambda r: True) -> list[int]:
        return [r[1] for r in rows if keep(r)]

    everything = expect()
    assert ids(store.page().items) == everything[:48]

    comfy_img2img = expect(lambda r: r[2] == "comfy" and r[3] == "img2img")
    assert ids(store.page(service="comfy", mode="img2img").items) == comfy_img2img[:48]
    assert ids(store.page(mode="txt2img", limit=100).items) == expect(
        lambda r: r[3] == "txt2img")[:100]

    dragons = expect(lambda r: "dragon" in r[4])
    assert ids(store.page(query="dragon", limit=60).items) == dragons[:60]
    both = expect(lambda r: {"dragon", "ocean"} <= r[4] and r[2] == "forge")
    assert ids(store.page(query="drag ocean", service="forge", limit=500).items) == both[:500]

    # Five pages in a row, then one far down the list through its cursor.
    before = None
    got: list[int] = []
    for _ in range(5):
        page = store.page(service="openai", before=before, limit=48)
        got += ids(page.items)
        before = page.next
    assert got == expect(lambda r: r[2] == "openai")[:240]

    deep = rows[15_000]
    assert ids(store.page(before=(deep[0], deep[1]), limit=48).items) == everything[
        15_001:15_049]
    last = rows[-3]
    tail = store.page(before=(last[0], last[1]), limit=48)
    assert ids(tail.items) == everything[-2:] and tail.next is None


# --- Threads ---------------------------------------------------------------------------------

def test_threads_write_and_read_at_once(store: HistoryStore) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for k in range(25):
                store.record_job(job(t * 1000 + k, images=2, prompt=f"thread {t}"))
                store.page(query=f"thread {t}", limit=5)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 6 * 25 * 2
    assert len(store._connections) == 7  # one per thread, and the test's own


def test_a_thread_that_ends_closes_its_connection(store: HistoryStore) -> None:
    store.count()
    threads = [threading.Thread(target=store.count) for _ in range(5)]
    for t in threads:
        t.start()
        t.join()
    del threads, t
    gc.collect()
    assert len(store._connections) == 1  # the test's own thread's


def test_close_then_use_again(store: HistoryStore) -> None:
    store.record_job(job(1))
    store.close()
    assert store.count() == 1


@pytest.mark.parametrize("cursor", [(T0 + 0.1234567891, 5), (0.0, 0), (1e-7, 2**40)])
def test_cursor_as_text(cursor: Cursor) -> None:
    assert parse_cursor(cursor_text(cursor)) == cursor


@pytest.mark.parametrize("text", [None, "", "abc", "1.5", "1.5_x", "_3", "nan_1", "inf_2"])
def test_malformed_cursor_text_means_the_first_page(text: str | None) -> None:
    assert parse_cursor(text) is None


# --- Values ----------------------------------------------------------------------------------

@pytest.mark.parametrize("url, shown", [
    ("http://127.0.0.1:7860", "http://127.0.0.1:7860"),
    ("https://user:pass@example.com/api/?key=secret#frag", "https://example.com/api/"),
    ("http://[::1]:8188/", "http://[::1]:8188/"),
    (None, None),
    ("", ""),
])
def test_public_url(url: str | None, shown: str | None) -> None:
    assert public_url(url) == shown


# --- Thumbnails ------------------------------------------------------------------------------

def save(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_thumbnail_is_made_once(tmp_path: Path) -> None:
    src = save(tmp_path / "images" / "a.png", image_bytes((1000, 500), (10, 200, 30)))
    dst = tmp_path / "thumbs" / "a.webp"
    assert make_thumbnail(src, dst) == (384, 192)
    with Image.open(dst) as img:
        assert (img.format, img.size) == ("WEBP", (384, 192))
    stamp = dst.stat().st_mtime_ns
    src.unlink()  # a second call does not even need the source
    assert make_thumbnail(src, dst) == (384, 192)
    assert dst.stat().st_mtime_ns == stamp
    assert [p.name for p in dst.parent.iterdir()] == ["a.webp"]


def test_thumbnail_of_a_small_transparent_or_rotated_image(tmp_path: Path) -> None:
    small = save(tmp_path / "s.png", image_bytes((50, 80), (0, 0, 0, 0), mode="RGBA"))
    assert make_thumbnail(small, tmp_path / "s.webp", size=128) == (50, 80)
    with Image.open(tmp_path / "s.webp") as img:
        assert img.mode == "RGBA"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: shown as 300 wide, 600 high
    rotated = save(tmp_path / "r.jpg", image_bytes((600, 300), 0, format="JPEG", exif=exif))
    assert make_thumbnail(rotated, tmp_path / "r.webp", size=100) == (50, 100)
    palette = save(tmp_path / "p.png", image_bytes((20, 20), 0, mode="P"))
    assert make_thumbnail(palette, tmp_path / "p.webp") == (20, 20)


def test_thumbnail_of_a_missing_or_broken_image(tmp_path: Path) -> None:
    with pytest.raises(ThumbnailError, match="does not exist"):
        make_thumbnail(tmp_path / "nope.png", tmp_path / "t.webp")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    with pytest.raises(ThumbnailError, match="not a readable image"):
        make_thumbnail(broken, tmp_path / "t.webp")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(image_bytes((300, 300), (1, 2, 3))[:-40])
    with pytest.raises(ThumbnailError, match="not a readable image"):
        make_thumbnail(truncated, tmp_path / "t.webp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "truncated.png"]


def test_a_damaged_thumbnail_is_made_again(tmp_path: Path) -> None:
    src = save(tmp_path / "a.png", image_bytes((800, 800), 0))
    dst = tmp_path / "a.webp"
    dst.write_bytes(b"half a file")
    assert make_thumbnail(src, dst) == (384, 384)

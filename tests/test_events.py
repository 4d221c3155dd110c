"""A job's events pushed over server-sent events (views/events.py, views/jobs.py job_events):
what a stream sends, that it ends with the job and its final panel, and that it never keeps a
server thread it no longer needs (a browser gone, a bound on open streams, a time limit) —
through waitress, the server `webui serve` runs."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from waitress.server import create_server

from webui import create_app
from webui.demo import create_demo_app
from webui.views.jobs import job_mark

from .helpers import HX, ServerThread, demo_extra, form, job_in, wait_for


def parse(text: str) -> list[tuple[str, str, str | None]]:
    """The events of a text/event-stream body: (name, data, id); the retry line is skipped."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in block.splitlines():
            key, _, value = line.partition(": ")
            fields.setdefault(key, []).append(value)
        if "event" in fields:
            events.append((fields["event"][0], "\n".join(fields.get("data", [])),
                           fields.get("id", [None])[0]))
    return events


@pytest.fixture
def slow_demo() -> Iterator[ServerThread]:
    server = ServerThread(create_demo_app(step_delay=0.02))
    yield server
    server.stop()


@pytest.fixture
def waitress_for(make_settings):
    """webui with the demo service at URL, served by waitress as `webui serve` does."""
    servers = []

    def make(url: str, **settings):
        app = create_app(make_settings(extras=[demo_extra(url)], **settings))
        server = create_server(app, host="127.0.0.1", port=0, threads=4)
        threading.Thread(target=server.run, daemon=True).start()
        servers.append(server)
        return app, f"http://127.0.0.1:{server.effective_port}"

    yield make
    for server in servers:
        server.close()


def start(client, **fields):
    r = client.post("/services/demo/txt2img/generate", headers=HX, data=form(**fields))
    assert r.status_code == 202, r.get_data(as_text=True)
    html = r.get_data(as_text=True)
    return job_in(client, html), html


def free_streams(app) -> int:
    return app.extensions["webui-streams"]._free._value


def test_the_panel_subscribes_to_its_jobs_stream(make_settings, slow_demo):
    client = create_app(make_settings(extras=[demo_extra(slow_demo.url)])).test_client()
    job, html = start(client, steps="30", width="64", height="64")
    url = re.search(r'sse-connect="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert url.startswith(f"/jobs/events?{job.id}=")
    assert f'sse-swap="update-{job.id}"' in html and f'sse-swap="end-{job.id}"' in html
    assert "data-poll" in html  # the fallback is there too
    assert job.done.wait(20)
    final = client.get(f"/jobs/{job.id}/panel").get_data(as_text=True)
    assert "sse-connect" not in final  # an ended job's panel follows nothing


def test_stream_sends_updates_then_the_final_panel_and_ends(waitress_for, slow_demo):
    app, url = waitress_for(slow_demo.url)
    client = app.test_client()
    job, _ = start(client, steps="40", n_iter="2", width="64", height="64")
    r = requests.get(f"{url}/jobs/events", params={job.id: ""}, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["Cache-Control"] == "no-store, no-transform"
    # The whole body arrived: the stream ended by itself once the job ended.
    assert job.status == "done"
    events = parse(r.text)
    names = [name for name, _, _ in events]
    assert names[-2:] == [f"end-{job.id}", "close"]
    assert names.count(f"end-{job.id}") == 1
    updates = [(data, event_id) for name, data, event_id in events if name == f"update-{job.id}"]
    assert updates
    # An update is what a poll gets: the parts out of band, and the poller for the fallback.
    first, event_id = updates[0]
    assert f'id="job-{job.id}-state"' in first and 'hx-swap-oob="true"' in first
    assert f'id="job-{job.id}-poll"' in first
    assert event_id.startswith(f"{job.id}=")  # the mark a reconnecting browser sends back
    # Progress arrived while it ran (two batches of 40 steps: several reports).
    assert any(re.search(r"step \d+/40", data) for data, _ in updates)
    # The final panel, with both images, saved before it was sent.
    final = events[-2][1]
    assert f'id="job-{job.id}"' in final and 'data-status="done"' in final
    srcs = re.findall(r'<img[^>]+src="(/images/[^"]+\.png)"', final)
    assert len(set(srcs)) == 2
    for src in set(srcs):
        assert requests.get(url + src, timeout=10).content.startswith(b"\x89PNG")
    assert free_streams(app) == app.extensions["webui"].settings.max_streams


def test_a_job_that_already_ended_gets_its_final_panel_at_once(make_settings, slow_demo):
    client = create_app(make_settings(extras=[demo_extra(slow_demo.url)])).test_client()
    job, _ = start(client, steps="2", width="64", height="64")
    assert job.done.wait(20)
    events = parse(client.get(f"/jobs/events?{job.id}=queued..0.0.0").get_data(as_text=True))
    assert [name for name, _, _ in events] == [f"end-{job.id}", "close"]
    assert 'data-status="done"' in events[0][1]


def test_stream_of_unknown_jobs_is_refused(client):
    r = client.get("/jobs/events?0123456789abcdef0123456789abcdef=x")
    assert r.status_code == 404


def test_streams_are_bounded_and_a_browser_that_left_frees_its_thread(waitress_for,
                                                                     slow_demo):
    app, url = waitress_for(slow_demo.url, max_streams=1)
    client = app.test_client()
    job, _ = start(client, steps="150", n_iter="3", width="64", height="64")
    host, port = url.removeprefix("http://").split(":")
    browser = socket.create_connection((host, int(port)), timeout=10)
    try:
        browser.sendall(f"GET /jobs/events?{job.id}= HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        received = b""
        while f"update-{job.id}".encode() not in received:
            received += browser.recv(65536)
        # The one stream allowed is taken: another page is told to poll (503), at once.
        assert requests.get(f"{url}/jobs/events", params={job.id: ""}, timeout=5).status_code == 503
        assert free_streams(app) == 0
    finally:
        browser.close()  # the browser goes away while the job still runs
    # Its thread notices at its next write (the elapsed time ticks every second, a ping every
    # few) and gives its slot back: a new stream is served again.
    wait_for(lambda: free_streams(app) == 1, what="the stream's slot to be given back")
    assert job.active
    with requests.get(f"{url}/jobs/events", params={job.id: ""}, stream=True,
                      timeout=10) as again:
        assert again.status_code == 200
    client.post(f"/jobs/{job.id}/interrupt")
    assert job.done.wait(20)
    wait_for(lambda: free_streams(app) == 1, what="the second stream's slot")


def test_a_stream_lasts_at_most_stream_seconds(make_settings, slow_demo):
    app = create_app(make_settings(extras=[demo_extra(slow_demo.url)], stream_seconds=0.3))
    client = app.test_client()
    job, _ = start(client, steps="150", n_iter="3", width="64", height="64")
    body = client.get(f"/jobs/events?{job.id}=").get_data(as_text=True)
    # Ended while the job runs, without "close": the browser connects again (retry: 1 s).
    assert body.startswith("retry: 1000\n\n")
    assert job.active and "close" not in [name for name, _, _ in parse(body)]
    client.post(f"/jobs/{job.id}/interrupt")
    assert job.done.wait(20)


def test_a_browser_that_connects_again_gets_what_changed_since_its_last_event(make_settings,
                                                                           slow_demo):
    app = create_app(make_settings(extras=[demo_extra(slow_demo.url)], stream_seconds=0.3))
    client = app.test_client()
    job, _ = start(client, steps="150", n_iter="3", width="64", height="64")
    wait_for(lambda: job.status == "running", what="the job to run")
    def first_update(**headers: str) -> str:
        body = client.get(f"/jobs/events?{job.id}=queued..0.0.0", headers=headers)
        return next(data for name, data, _ in parse(body.get_data(as_text=True))
                    if name == f"update-{job.id}")

    # The page's address says it showed the job queued: its buttons changed since…
    assert f'id="job-{job.id}-buttons"' in first_update()
    # …but a browser connecting again says (Last-Event-ID) it had seen it running.
    assert f'id="job-{job.id}-buttons"' not in first_update(
        **{"Last-Event-ID": f"{job.id}={job_mark(job)}"})
    client.post(f"/jobs/{job.id}/interrupt")
    assert job.done.wait(20)


def test_a_job_ends_without_waiting_for_its_progress_request(make_settings):
    # The demo's /progress is held 3 s (a backend slow to draw a preview). The job itself
    # is done well before: it is recorded and shown ended while that request is still out —
    # it used to wait for the progress thread, which waited for that request.
    demo_app = create_demo_app(step_delay=0.02)
    inner = demo_app.wsgi_app
    job_holder: list = []
    ended_first: list[bool] = []

    def slow_progress(environ, start_response):
        if environ["PATH_INFO"].endswith("/progress") and job_holder:
            job_holder[0].done.wait(3)
            ended_first.append(job_holder[0].done.is_set())
        return inner(environ, start_response)

    demo_app.wsgi_app = slow_progress
    with ServerThread(demo_app) as demo:
        client = create_app(make_settings(extras=[demo_extra(demo.url)])).test_client()
        job, _ = start(client, steps="40", width="64", height="64")
        job_holder.append(job)
        assert job.done.wait(20) and job.status == "done"
        wait_for(lambda: ended_first, what="a progress request to be answered")
        assert ended_first[0] is True

"""Server-sent events: a page follows its jobs over one stream (htmx's sse extension) and
gets what changed the moment it changes, instead of asking every half second.

A stream holds one of the server's threads while it is open (waitress serves a request in a
thread until its answer is written), so streams are bounded:

- at most ``Settings.max_streams`` are open at once (``webui serve``: half its threads); one
  more is refused (503) and its page polls instead, so other pages are never starved;
- one lasts at most ``Settings.stream_seconds``; then it ends and the browser connects again;
- it writes something at least every :data:`PING_SECONDS` (an event ``ping``): a browser that
  went away is noticed then (the write fails) and its thread is freed, and the page knows its
  stream is alive (app.js polls when it hears nothing).

Nothing here sleeps: a stream waits on the job manager's condition for the next change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from flask import Flask, Response, abort, current_app, stream_with_context

from .common import state

PING_SECONDS = 5.0
# Between two sends of mere progress (a step, an ETA, a preview): a service that reports
# every step (a ComfyUI websocket) is shown at most this often. A change of state and new
# images go out at once.
GAP_SECONDS = 0.25
# Elapsed times ("12 s elapsed") move on by themselves: looked at this often.
TICK_SECONDS = 1.0
RETRY_MS = 1000  # how soon a browser connects again after a stream ended or dropped


class Slots:
    """How many streams may be open at once."""

    def __init__(self, count: int):
        self.count = count
        self._free = threading.BoundedSemaphore(count)

    def take(self) -> bool:
        return self._free.acquire(blocking=False)

    def give_back(self) -> None:
        self._free.release()


def install(app: Flask) -> None:
    """Give the app its stream slots (from its settings)."""
    app.extensions["webui-streams"] = Slots(app.extensions["webui"].settings.max_streams)


def event(name: str, data: str = "", event_id: str | None = None) -> str:
    """One event in the text/event-stream format (each line of ``data`` a data: line)."""
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in (data.splitlines() or [""])]
    return "\n".join(lines) + "\n\n"


Render = Callable[[], tuple[list[str], bool]]


def stream(render: Render, due: Callable[[], bool] = lambda: False) -> Response:
    """An event stream: ``render()`` gives the events to send now and whether the stream is
    finished; it is asked at once, after each change of any job (at most every
    GAP_SECONDS unless ``due()`` says a change must go out now) and every TICK_SECONDS.
    503 when every slot is taken: the page polls."""
    slots: Slots = current_app.extensions["webui-streams"]
    if not slots.take():
        abort(503, f"Too many live pages ({slots.count}): this one asks for updates instead.")
    settings = state().settings
    response = Response(
        stream_with_context(_follow(render, due, settings.stream_seconds)),
        mimetype="text/event-stream",
        # Not cached, not compressed nor buffered on the way (no-transform; nginx: X-Accel-).
        headers={"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"})
    # Given back when the answer is closed: ended, or the browser went away (also when the
    # stream never started, which a finally in the generator would miss).
    response.call_on_close(slots.give_back)
    return response


def _follow(render: Render, due: Callable[[], bool], seconds: float) -> Iterator[str]:
    jobs = state().jobs
    yield f"retry: {RETRY_MS}\n\n"
    now = time.monotonic()
    deadline = now + seconds
    sent = written = now - GAP_SECONDS
    pending = True  # something may have changed since the last render
    version = jobs.version
    while True:
        now = time.monotonic()
        if pending and (now - sent >= GAP_SECONDS or due()):
            version = jobs.version  # before rendering: a change meanwhile is seen next time
            events, finished = render()
            pending = False
            if events:
                yield "".join(events)
                sent = written = now
            if finished:
                return
        if now - written >= PING_SECONDS:
            yield event("ping")
            written = now
        if now >= deadline:
            return
        wait = sent + GAP_SECONDS - now if pending else TICK_SECONDS
        wait = min(wait, written + PING_SECONDS - now, deadline - now)
        new = jobs.wait_changed(version, max(wait, 0.005))
        if new != version or not pending:
            # A change, or the tick: render again (an unchanged render sends nothing).
            version, pending = new, True

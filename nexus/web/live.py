"""The live feed: what happens in the workspace, as JSON events, to every WebSocket (`/ws`) and
server-sent-events (`/api/events`) client.

Shell.  Two sources, both in threads:

* a watchdog observer marks what changed on disk; a worker thread then re-reads the task files
  and sends a `changed` event for each task that differs from what it last saw (with its old and
  new status), and `changed` events for scratchpads, agents and the daemon's state;
* the same worker tails `.nexus/events.jsonl`, where `nexus watch` appends its events
  (transition, agent_started, agent_output, agent_finished, message, progress, daemon), and
  passes them on as they are.

Threads hand events to the event loop with `call_soon_threadsafe`.  Each client has its own
bounded queue: a slow client loses its oldest events and is told how many (`dropped`), so it can
reload what it shows; it never slows the others down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket

from nexus.events import Event
from nexus.service import Snapshot

log = logging.getLogger("nexus.web")
EVENTS_FILE = ".nexus/events.jsonl"
QUEUE_SIZE = 1000
MAX_READ = 1024 * 1024  # of the daemon's event log per look


class Subscriber:
    """One client's queue; lives on the event loop."""

    def __init__(self, size: int) -> None:
        self._items: deque[dict[str, Any]] = deque()
        self._size = size
        self._wake = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def put(self, event: dict[str, Any]) -> None:
        if len(self._items) >= self._size:
            self._items.popleft()
            self.dropped += 1
        self._items.append(event)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def get(self) -> dict[str, Any] | None:
        """The next event; None once the feed or the client is closed."""
        while True:
            if self.closed:
                return None
            if self.dropped:
                count, self.dropped = self.dropped, 0
                return Event("dropped", data={"count": count}).to_json()
            if self._items:
                return self._items.popleft()
            self._wake.clear()
            await self._wake.wait()


class Feed:
    """Fan-out of events to subscribers.  `publish` may be called from any thread."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subscribers: set[Subscriber] = set()
        self.closed = False

    def publish(self, event: dict[str, Any]) -> None:
        loop = self.loop
        if loop is None or self.closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop has just closed
            loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: dict[str, Any]) -> None:
        for sub in list(self.subscribers):
            sub.put(event)

    def subscribe(self) -> Subscriber:
        sub = Subscriber(self.queue_size)
        if self.closed:
            sub.close()
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def close(self) -> None:
        """Let every client go (on shutdown)."""
        self.closed = True
        for sub in list(self.subscribers):
            sub.close()


# -- sources -------------------------------------------------------------------------------------


class Sources:
    """Turns changes on disk into events (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        read: Callable[[], Snapshot],
        publish: Callable[[dict[str, Any]], None],
        poll: float = 1.0,
    ) -> None:
        self.root = root
        self.read = read
        self.publish = publish
        self.poll = poll  # the event log is also checked this often, events or not
        self._marks: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._known: dict[str, dict[str, Any]] = {}
        self._broken: set[str] = set()
        self._log_at: tuple[int | None, int] = (None, 0)  # (inode, offset) in the event log
        self._observer: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from watchdog import events as ev
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        snap = self.read()
        self._known = {tid: t.summary() for tid, t in snap.tasks.items()}
        self._broken = {e.path for e in snap.broken}
        with contextlib.suppress(OSError):
            st = os.stat(self.root / EVENTS_FILE)
            self._log_at = (st.st_ino, st.st_size)  # only what happens from now on
        sources = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                for p in (event.src_path, getattr(event, "dest_path", "")):
                    if p:
                        sources.mark(os.fsdecode(p))

        self._observer = Observer()
        # Changes only: reading a file (this server does, for every request) is no event.
        wanted = [
            ev.FileCreatedEvent,
            ev.FileModifiedEvent,
            ev.FileDeletedEvent,
            ev.FileMovedEvent,
            ev.FileClosedEvent,
            ev.DirMovedEvent,
        ]
        for folder, recursive in (
            ("tasks", True),
            ("scratchpads", False),
            ("agents", False),
            (".nexus", False),
        ):
            if (self.root / folder).is_dir():
                self._observer.schedule(
                    Handler(), str(self.root / folder), recursive=recursive, event_filter=wanted
                )
        self._observer.daemon = True
        self._observer.start()
        self._thread = threading.Thread(target=self._run, name="nexus-web-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def mark(self, path: str) -> None:
        """Note a changed path (called by the observer's thread)."""
        what = _what(self.root, path)
        if what is None:
            return
        kind, name = what
        with self._lock:
            self._marks.setdefault(kind, set()).add(name)
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            if self._stop.is_set():
                return
            time.sleep(0.03)  # an editor's save is a burst of events: take them as one
            self._wake.clear()
            with self._lock:
                marks, self._marks = self._marks, {}
            try:
                self._look(marks)
            except Exception:  # the feed must outlive any one bad look
                log.exception("live feed: could not read the workspace")

    def _look(self, marks: dict[str, set[str]]) -> None:
        for event in self._tail():
            self.publish(event)
        if "tasks" in marks:
            self._diff_tasks()
        for name in sorted(marks.get("scratchpads", ())):
            self.publish(Event("changed", data={"what": "scratchpad", "name": name}).to_json())
        for kind in ("agents", "daemon"):
            if kind in marks:
                self.publish(Event("changed", data={"what": kind}).to_json())

    def _diff_tasks(self) -> None:
        snap = self.read()
        now = {tid: t.summary() for tid, t in snap.tasks.items()}
        for tid, summary in now.items():
            old = self._known.get(tid)
            if old != summary:
                data = {
                    "what": "task",
                    "status": summary["status"],
                    "from": old["status"] if old else None,
                    "summary": summary,
                }
                self.publish(Event("changed", tid, data).to_json())
        for tid in self._known.keys() - now.keys():
            self.publish(Event("changed", tid, {"what": "task", "removed": True}).to_json())
        broken = {e.path for e in snap.broken}
        if broken != self._broken:
            self.publish(
                Event("changed", data={"what": "broken", "paths": sorted(broken)}).to_json()
            )
        self._known, self._broken = now, broken

    def _tail(self) -> Iterator[dict[str, Any]]:
        """New complete lines of the daemon's event log, parsed."""
        path = self.root / EVENTS_FILE
        try:
            st = os.stat(path)
        except OSError:
            return
        inode, offset = self._log_at
        if st.st_ino != inode or st.st_size < offset:
            offset = 0  # a new file (rotated, or the first one): read it from the start
        if st.st_size == offset:
            self._log_at = (st.st_ino, offset)
            return
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(min(st.st_size - offset, MAX_READ))
        end = data.rfind(b"\n") + 1  # a line still being written waits for its end
        self._log_at = (st.st_ino, offset + end)
        if end and offset + end < st.st_size:
            self._wake.set()  # more than one read's worth: come back at once
        for line in data[:end].splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("kind"), str):
                yield event


def _what(root: Path, path: str) -> tuple[str, str] | None:
    """What a changed path means: (kind, name), or None when it does not matter."""
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return None
    if not parts:
        return None
    name = parts[-1]
    if name.startswith(".") or name.endswith((".tmp", "~")):
        return None  # temp files of atomic writes and editors
    top = parts[0]
    if top == "tasks" and name.endswith(".md"):
        return "tasks", name
    if top == "scratchpads" and len(parts) == 2 and name.endswith(".md"):
        return "scratchpads", name[:-3]
    if top == "agents" and len(parts) == 2:
        return "agents", name
    if top == ".nexus" and len(parts) == 2:
        if name.startswith("events.jsonl"):
            return "events", name
        if name == "daemon-state.json":
            return "daemon", name
    return None


# -- the endpoints -------------------------------------------------------------------------------


async def websocket_feed(websocket: WebSocket) -> None:
    """`/ws`: one JSON event per text message; the client sends nothing."""
    feed: Feed = websocket.app.state.feed
    await websocket.accept()
    sub = feed.subscribe()

    async def until_gone() -> None:
        try:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            sub.close()

    watcher = asyncio.create_task(until_gone())
    try:
        await websocket.send_text(json.dumps(Event("hello").to_json()))
        while (event := await sub.get()) is not None:
            await websocket.send_text(json.dumps(event, default=str))
        if feed.closed:
            await websocket.close(1001)  # going away: the server stops
    except Exception:  # the client went away mid-send
        pass
    finally:
        feed.unsubscribe(sub)
        watcher.cancel()


async def sse_feed(request: Request) -> Response:
    """`/api/events`: the same events as server-sent events (a comment every 15 s keeps proxies
    from closing an idle stream)."""
    feed: Feed = request.app.state.feed
    sub = feed.subscribe()

    async def stream() -> Any:
        try:
            yield "retry: 2000\n" + _sse(Event("hello").to_json())
            while True:
                try:
                    event = await asyncio.wait_for(sub.get(), 15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if event is None:
                    return
                yield _sse(event)
        finally:
            feed.unsubscribe(sub)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, default=str)}\n\n"

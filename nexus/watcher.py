"""watchdog → "look again soon", through a `Wake` the daemon's loop sleeps on.

Shell.  A file event is only a hint: the daemon recomputes everything from the files, so a
missed or doubled event costs nothing but time.  Ignored: `.git/`, `.nexus/`, temp files of
atomic writes, and files whose current stat equals what the daemon itself last wrote there (its
own writes must not wake it into a pass that finds nothing to do).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from pathlib import Path
from typing import Any

IGNORED_DIRS = (".git", ".nexus", "__pycache__", "node_modules", ".venv")


class Wake:
    """What the daemon's loop sleeps on: set by the watcher, by finished runs, and by signal
    handlers.  Not a threading.Event: its set() takes a lock, and a signal handler runs in the
    main thread between any two bytecodes, maybe while that thread holds that very lock, and
    would then wait for it forever.  A byte written down a pipe takes no lock at all."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()  # not inherited by child processes (PEP 446)
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._poll = select.poll()
        self._poll.register(self._read, select.POLLIN)

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError):  # the pipe is full: it is set already
            os.write(self._write, b"!")

    def wait(self, timeout: float | None = None) -> bool:
        """True when set (now or within `timeout` seconds)."""
        return bool(self._poll.poll(None if timeout is None else max(timeout, 0.0) * 1000))

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass

    def __del__(self) -> None:
        # Only once nothing can set it: closed earlier, a late set() (a run thread that
        # outlived the daemon's stop) could write into whatever file got the number next.
        os.close(self._read)
        os.close(self._write)


class Watcher:
    def __init__(self, root: Path, wake: Wake) -> None:
        self.root = root
        self.wake = wake
        self._pending: set[str] = set()  # paths with events, judged when the daemon looks
        self._own: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._observer: Any = None

    def start(self) -> None:
        from watchdog import events as ev
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory and event.event_type == "modified":
                    return  # a folder's entries changed: the files' own events say which
                paths = [os.fsdecode(p) for p in (event.src_path, getattr(event, "dest_path", ""))
                         if p]  # fmt: skip
                with watcher._lock:
                    watcher._pending.update(paths)
                watcher.wake.set()

        self._observer = Observer()
        # Only changes: opens and reads (the daemon's own, mostly) are not even reported.
        wanted = [ev.FileCreatedEvent, ev.FileModifiedEvent, ev.FileDeletedEvent,
                  ev.FileMovedEvent, ev.FileClosedEvent, ev.DirCreatedEvent, ev.DirDeletedEvent,
                  ev.DirMovedEvent]  # fmt: skip
        self._observer.schedule(Handler(), str(self.root), recursive=True, event_filter=wanted)
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)

    def foreign_changes(self) -> bool:
        """Did anything other than the daemon change a relevant file since the last call?
        Judged now, not when the event arrived: by now the daemon has registered its own
        writes (their events can arrive before it could)."""
        with self._lock:
            paths, self._pending = self._pending, set()
        return any(self.relevant(p) for p in paths)

    def own_writes(self, paths: list[Path]) -> None:
        """Remember what the daemon just wrote, so the events of these writes are ignored."""
        with self._lock:
            for p in paths:
                try:
                    st = p.stat()
                except OSError:
                    continue
                self._own[str(p)] = (st.st_mtime_ns, st.st_size)

    def relevant(self, path: str) -> bool:
        try:
            rel = Path(path).relative_to(self.root)
        except ValueError:
            return False
        parts = rel.parts
        if not parts or any(p in IGNORED_DIRS for p in parts):
            return False
        name = parts[-1]
        if name.endswith(".tmp") or name.endswith("~") or name.startswith(".#"):
            return False
        with self._lock:
            mine = self._own.get(path)
        if mine is not None:
            try:
                st = os.stat(path)
                if (st.st_mtime_ns, st.st_size) == mine:
                    return False
            except OSError:
                pass
        return True

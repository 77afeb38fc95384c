"""Events, not prints: what happens flows as values to sinks.

Sinks: the console (progress for a person), a JSONL log in `.nexus/events.jsonl` (read by the
dashboards), and anything else that subscribes.  A sink that raises is dropped
from that event, never from the daemon.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus.redact import redactor

Sink = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    kind: (
        str  # transition | agent_started | agent_output | agent_finished | message | cost | daemon
    )
    task: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "task": self.task, "time": self.time, **self.data}


class Bus:
    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._lock = threading.Lock()

    def subscribe(self, sink: Sink) -> None:
        with self._lock:
            self._sinks.append(sink)

    def unsubscribe(self, sink: Sink) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._sinks.remove(sink)

    def emit(self, kind: str, task: str | None = None, **data: Any) -> None:
        event = Event(kind, task, data)
        with self._lock:
            sinks = list(self._sinks)
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink(event)


class JsonlSink:
    """Appends events to a file, one JSON object a line (rotated at `max_bytes`)."""

    def __init__(self, path: Path, max_bytes: int = 20 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # The log is read by dashboards: secret values never reach it, whoever emitted them.
        self._redact = redactor()

    def __call__(self, event: Event) -> None:
        line = self._redact(json.dumps(event.to_json(), ensure_ascii=False, default=str)) + "\n"
        with self._lock:
            with contextlib.suppress(OSError):
                if self.path.exists() and self.path.stat().st_size > self.max_bytes:
                    self.path.replace(self.path.with_suffix(".jsonl.1"))
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)

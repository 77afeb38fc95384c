"""What the daemon knows between passes: its settings, the runs in flight, and the roles it
read.  The layers of `nexus/daemon/` build on it."""

from __future__ import annotations

import os
import queue
import socket
import threading
from dataclasses import dataclass
from typing import Any

from nexus import agents, budgets, results, runner
from nexus.events import Bus
from nexus.service import Service, Snapshot
from nexus.task import Task
from nexus.watcher import Wake, Watcher


@dataclass
class Active:
    task_id: str
    engine: str
    role: str | None
    touches: tuple[str, ...]
    persistent: bool
    info: results.RunInfo
    cancel: threading.Event
    thread: threading.Thread
    started: float
    inbox_ids: list[str]  # messages shown in the prompt: read once the run succeeds


class DaemonState:
    def __init__(
        self,
        svc: Service,
        *,
        bus: Bus,
        workers: int | None = None,
        engine: str | None = None,
        until_idle: bool = False,
        grace: float = 10.0,
        poll: float = 5.0,
        debounce: float = 0.02,
    ) -> None:
        self.svc = svc
        self.ws = svc.ws
        self.bus = bus
        cfg = self.ws.config
        self.workers = workers or cfg.limits.workers
        self.engine_override = engine
        self.until_idle = until_idle
        self.grace = grace
        self.poll = poll
        self._sync_cost = 0.0  # seconds the last full sync took (see Daemon._poll_interval)
        self.debounce = debounce
        self.ident = f"daemon@{socket.gethostname()}:{os.getpid()}"
        self.wake = Wake()
        self._signals = 0  # counted by the signal handler, taken by the loop (_take_signals)
        self._signals_taken = 0
        self.stopping = threading.Event()
        self.watcher = Watcher(self.ws.root, self.wake)
        self.active: dict[str, Active] = {}
        self.done: queue.Queue[runner.RunReport] = queue.Queue()
        self.status = runner.SharedStatus(svc.repo, self.ws)  # git status, shared by runs
        self.paused: dict[str, float] = {}
        self.waiting: dict[str, str] = {}
        self._last_progress: dict[str, Any] | None = None
        self.failed_for_good: set[str] = set()
        self._last_sync = 0.0
        self._role_problems: list[str] = []
        self._pass_roles: dict[str, agents.Role] | None = None
        self._roles_read: tuple[Any, tuple[dict[str, agents.Role], list[str]]] | None = None
        self._published = ""
        self._failed_cache: tuple[Snapshot, list[Task]] | None = None
        self._stop_deadline: float | None = None
        self._unapplied: list[tuple[runner.RunReport, Active | None]] = []
        self._retry_soon: float | None = None  # a failed pass or result is tried again then
        self._failing = False  # the last pass failed: never idle then
        self._claim_failed = False  # a claim commit failed: see _release_unclaimed
        self._requeued: set[str] = set()  # results whose commit failed once
        self.budget: budgets.Verdict | None = None  # the last budget verdict (None: no budget)
        self._config_problem: str | None = None

    def _roles(self) -> dict[str, agents.Role]:
        if self._pass_roles is not None:
            return self._pass_roles
        folder = self.ws.root / "agents"
        try:
            key: Any = (
                repr(self.ws.config.roles),
                [(p.name, p.stat().st_mtime_ns) for p in folder.glob("*.md")],
            )
        except OSError:  # a persona removed while we looked: read them all again
            key = None
        if key is not None and self._roles_read is not None and self._roles_read[0] == key:
            roles, problems = self._roles_read[1]
        else:  # parsing every persona took ~10 ms a pass
            roles, problems = agents.load_roles(self.ws.root, self.ws.config)
            self._roles_read = (key, (roles, problems))
        self._pass_roles = roles
        if problems != self._role_problems:
            self._role_problems = problems
            for problem in problems:
                self.bus.emit("daemon", state="warning", message=problem)
        return roles

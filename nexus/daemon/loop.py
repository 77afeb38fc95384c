"""The loop: start, one pass after another until stopped or idle, stop; when it is idle or
stuck, and what it publishes for `nexus status` and the dashboards."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from nexus import gitrepo, promote, store, warm
from nexus.daemon.recovery import Recovery
from nexus.errors import NexusError, WorkspaceError
from nexus.store import try_lock
from nexus.task import Status, Task


class Daemon(Recovery):
    # -- lifecycle ---------------------------------------------------------------------------

    def run(self) -> int:
        lock_path = self.ws.runtime / "daemon.lock"
        fd = try_lock(lock_path)
        if fd is None:
            raise WorkspaceError(
                f"another `nexus watch` runs this workspace ({_owner(lock_path)})",
                fix="stop it first, or watch a different workspace",
            )
        owner = lock_path.with_name("daemon.owner")
        owner.write_text(
            json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        )
        previous = self._install_signals()
        # A process that stays up: pygit2's import pays for itself, and so does keeping what
        # each scan built for the next.
        gitrepo.commit_in_process()
        store.keep_scans()
        self.bus.emit("daemon", state="started", workers=self.workers, pid=os.getpid())
        # A daemon that stays up also serves `nexus` commands from a warm process (nexus/warm.py).
        server = (
            warm.start(str(self.ws.root))
            if warm.enabled(os.environ) and not self.until_idle
            else None
        )
        try:
            self.watcher.start()
            recovered = False
            while True:
                self._take_signals()
                try:
                    if not recovered:  # retried, like a pass, until it gets through
                        self._recover()
                        recovered = True
                    self._pass()
                    self._failing = False
                except (NexusError, OSError) as exc:
                    self._failing = True
                    # A full disk, a broken git, a lock held too long: say so and look again
                    # soon; the files are the state, so the next pass picks up where this one
                    # stopped.
                    self._last_sync = time.monotonic() - self.poll + 1.0  # sync again in 1 s
                    self._retry_soon = time.monotonic() + 1.0
                    message = str(exc) if isinstance(exc, NexusError) else f"{exc}"
                    self.bus.emit("daemon", state="error", message=f"pass failed: {message}")
                self._take_signals()
                if self.stopping.is_set() and not self.active and self.done.empty():
                    break
                if self.until_idle and self._idle():
                    self._say_budget_stop()
                    break
                self.wake.wait(timeout=self._timeout())
                self.wake.clear()
                if self.done.empty():  # a finished run needs no settling: apply it now
                    time.sleep(self.debounce)  # let a burst of file events settle
        finally:
            for a in self.active.values():
                a.cancel.set()
            for a in list(self.active.values()):
                a.thread.join(timeout=10)
            self._drain_results()
            self.watcher.stop()
            self._restore_signals(previous)
            if server is not None:
                warm.stop(server)
            owner.unlink(missing_ok=True)
            (self.ws.runtime / "daemon-state.json").unlink(missing_ok=True)
            os.close(fd)
            self.bus.emit("daemon", state="stopped")
        return 1 if self.failed_for_good or self._stuck() else 0

    def stop(self, now: bool = False) -> None:
        """Stop dispatching; running agents get `grace` seconds (none when `now`)."""
        if self.stopping.is_set() or now:
            self._stop_deadline = time.monotonic()
        else:
            self._stop_deadline = time.monotonic() + self.grace
        self.stopping.set()
        self.bus.emit("daemon", state="stopping", running=len(self.active))
        self.wake.set()

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _restore_signals(self, previous: Mapping[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # It may run between any two bytecodes of the main thread, even one holding a lock:
        # so it takes none (no events written here), only counts and wakes the loop.
        self._signals += 1
        self.wake.set()

    def _take_signals(self) -> None:
        """Act on the signals counted since the last look: the first stops dispatching (runs
        get the grace period), another stops now."""
        while self._signals_taken < self._signals:
            self._signals_taken += 1
            self.stop(now=self.stopping.is_set())

    # -- one pass ----------------------------------------------------------------------------

    def _pass(self) -> None:
        self._pass_roles = None  # roles are read at most once a pass
        self.svc.written.clear()
        now = time.monotonic()
        foreign = self.watcher.foreign_changes()
        # An intent left by a failed commit: sync repairs it before anything else is written.
        repair = self._claim_failed or self._unapplied
        if foreign or now - self._last_sync >= self._poll_interval() or self._retry_due() or repair:
            self._last_sync = now
            self._reload_config()
            report = self.svc.sync()
            self._sync_cost = time.monotonic() - now
            self.watcher.own_writes([self.ws.root / p for p in self.svc.written])
            for t in report.transitions:
                self.bus.emit(
                    "transition",
                    t.task_id,
                    src=str(t.src),
                    dst=str(t.dst),
                    reason=t.reason,
                    actor="user" if report.person_edits else "daemon",
                )
        if self._claim_failed:
            self._release_unclaimed()
        self._drain_results()
        snap = self.svc.current()
        self._cancel_moved(snap)
        if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
            for a in self.active.values():
                a.cancel.set()
        if not self.stopping.is_set():
            self._dispatch(snap)
            self._decompose_xl(snap)
        self._publish_state()
        self._emit_progress()

    def _reload_config(self) -> None:
        """Read nexus.yaml again (a raised budget resumes dispatch without a restart); while
        it is broken, keep the last good configuration and say so once."""
        previous = self.ws.config
        try:
            self.ws.reload_config()
            problem = None
        except NexusError as exc:
            self.ws._config = previous
            problem = f"{exc} — the daemon keeps its previous configuration until it is fixed"
        if problem != self._config_problem:
            self._config_problem = problem
            if problem:
                self.bus.emit("daemon", state="error", message=problem)

    def _poll_interval(self) -> float:
        """The safety-net sync (for changes the watcher missed) every `poll` seconds, or
        less often when a sync costs more than 5% of that (a scan of 10,000 files takes
        ~0.3-0.5 s; the watcher's events still sync at once)."""
        return max(self.poll, 20 * self._sync_cost)

    def _timeout(self) -> float:
        now = time.monotonic()
        deadlines = [self._last_sync + self._poll_interval()]
        deadlines += [t for t in self.paused.values() if t > now]
        if self._stop_deadline is not None:
            deadlines.append(self._stop_deadline)
        if self._retry_soon is not None:
            deadlines.append(self._retry_soon)
            self._retry_soon = None
        retry = self._next_retry()
        if retry is not None:
            deadlines.append(retry)
        return max(0.01, min(deadlines) - now)

    def _failed(self) -> list[Task]:
        snap = self.svc.current()
        if self._failed_cache is None or self._failed_cache[0] is not snap:
            failed = [t for t in snap.tasks.values() if t.status is Status.FAILED]
            self._failed_cache = (snap, failed)
        return self._failed_cache[1]

    def _next_retry(self) -> float | None:
        policy = self.svc.policy()
        now_wall = self.svc.now()
        best = None
        for t in self._failed():
            at = promote.retry_at(t, policy)
            if at is not None:
                delta = (at - now_wall).total_seconds()
                mono = time.monotonic() + max(delta, 0.0)
                best = mono if best is None else min(best, mono)
        return best

    def _retry_due(self) -> bool:
        nxt = self._next_retry()
        return nxt is not None and nxt <= time.monotonic()

    def _idle(self) -> bool:
        if self.active or not self.done.empty() or self._unapplied or self._failing:
            return False
        if self._claim_failed:
            return False
        if self._next_retry() is not None:
            return False
        now = time.monotonic()
        if any(_passing(reason) for reason in self.waiting.values()):
            return False
        if any(until > now for until in self.paused.values()) and self.waiting:
            return False
        self.failed_for_good |= {t.id for t in self._failed()}
        return True

    def _stuck(self) -> bool:
        """Ready tasks that can never start without a person (unknown engine, missing key)."""
        return any(
            not r.startswith(("XL", "it has children")) and not _passing(r)
            for r in self.waiting.values()
        )

    def _publish_state(self) -> None:
        """`.nexus/daemon-state.json`: what runs and why each ready task waits, for `nexus why`
        and the dashboards (written only when it changes)."""
        busy = [tid for tid, why in self.waiting.items() if "workers are busy" in why]
        state = {
            "pid": os.getpid(),
            "running": sorted(self.active),
            # The common "all workers busy" is a count, not 10,000 entries rewritten each pass.
            "waiting": {t: w for t, w in self.waiting.items() if "workers are busy" not in w},
            "waiting_for_a_worker": len(busy),
            "paused": {e: round(t - time.monotonic(), 1) for e, t in self.paused.items()
                       if t > time.monotonic()},
            "stopping": self.stopping.is_set(),
            "budget": self.budget.to_json() if self.budget else None,
        }  # fmt: skip
        text = json.dumps(state, sort_keys=True)
        if text != self._published:
            self._published = text
            path = self.ws.runtime / "daemon-state.json"
            tmp = path.with_name(".daemon-state.tmp")
            with contextlib.suppress(OSError):
                tmp.write_text(text)
                os.replace(tmp, path)

    def _emit_progress(self) -> None:
        """A `progress` event when a figure changed.  It carries counts: the reason each ready
        task waits is in `daemon-state.json` (one entry per task made each event ~500 KB at
        10,000 ready tasks, written to events.jsonl every pass)."""
        tasks = self.svc.current().tasks
        done = sum(1 for t in tasks.values() if t.status is Status.COMPLETE)
        cost = sum(float(t.cost.get("usd") or 0) for t in tasks.values() if t.cost)
        figures: dict[str, Any] = {
            "done": done,
            "total": len(tasks),
            "running": sorted(self.active),
            "cost_usd": round(cost, 6),
            "waiting": len(self.waiting),
            "paused_by_budget": sum(1 for w in self.waiting.values() if w.startswith("budget:")),
        }
        if figures != self._last_progress:
            self._last_progress = figures
            self.bus.emit("progress", **figures)


def _passing(reason: str) -> bool:
    """A wait that ends by itself (a worker frees up, a pause runs out): not stuck."""
    if reason.startswith("budget:"):
        return False  # only a person raising the budget ends it (whatever the task is named)
    return any(w in reason for w in ("paused", "busy", "at its limit", "overlap",
                                      "persistent session"))  # fmt: skip


def _owner(lock: Path) -> str:
    try:
        data = json.loads(lock.with_name("daemon.owner").read_text())
        return f"pid {data['pid']} on {data['host']}"
    except (OSError, ValueError, KeyError):
        return "another process"

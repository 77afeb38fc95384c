"""Starting again after a crash, and runs whose task moved away: saved results applied, claimed
tasks returned to ready (the journal says whether their session resumes)."""

from __future__ import annotations

import socket

from nexus import agents, proc, runner
from nexus.changes import Batch
from nexus.daemon.starting import Starting
from nexus.service import Snapshot
from nexus.store import remove_stale_temps
from nexus.task import Status, Task


class Recovery(Starting):
    def _recover(self) -> None:
        running = self.ws.runtime / "running"
        for pids in sorted(running.glob("*.pids")) if running.is_dir() else []:
            killed = proc.kill_tracked(pids)
            if killed:
                self.bus.emit(
                    "daemon",
                    state="recovering",
                    message=f"stopped {len(killed)} "
                    f"process group(s) left running by a dead daemon ({pids.stem})",
                )
        stale = remove_stale_temps(self.ws.root)
        if stale:
            message = f"removed {len(stale)} temp file(s) of interrupted writes"
            self.bus.emit("daemon", state="recovering", message=message)
        # First commit what a killed daemon wrote but did not commit (the intent): it may be
        # the very result saved below, which must then not be applied a second time.
        self.svc.sync()
        for report in runner.saved_reports(self.ws):
            self.bus.emit(
                "daemon",
                state="recovering",
                message=f"applying the saved result of "
                f"{report.task_id} (the daemon stopped before committing it)",
            )
            self._apply([(report, None)])
        self.svc.sync()
        host = f"daemon@{socket.gethostname()}:"
        orphans = [
            t
            for t in self.svc.current().tasks.values()
            if t.status.active and (t.assignee or "").startswith(host)
        ]
        if orphans:
            self._back_to_ready(orphans, "{assignee} stopped while it ran")

    def _back_to_ready(self, orphans: list[Task], why: str) -> None:
        """Return claimed tasks that no run of this daemon holds to ready (interrupted), without
        spending an attempt.  `why` may name the `{assignee}`."""
        roles = self._roles()

        def build(batch: Batch, snap: Snapshot) -> str:
            for t in orphans:
                task = batch.current(t.id)
                if not task.status.active:
                    continue
                engine = agents.route(
                    task, roles.get(task.role or ""), self.ws.config, self.engine_override
                ).engine
                session = self._session_for(task, roles.get(task.role or ""), engine)
                how = (
                    f"session {session} will be resumed"
                    if session
                    else "it will be run again from the start"
                )
                reason = why.format(assignee=task.assignee)
                batch.move(
                    task.id,
                    Status.READY,
                    f"interrupted: {reason}; {how}",
                    {"attempts": max(task.attempts - 1, 0)},
                    f"## Attempts\n\n- {batch.stamp}: interrupted ({reason}); {how}",
                )
            return f"recover {len(orphans)} interrupted task(s)"

        batch = self.svc.mutate(build, None, "daemon", snapshot=self.svc.current())
        self._emit_transitions(batch)

    def _release_unclaimed(self) -> None:
        """After a claim whose files were written but whose commit failed (git busy or broken,
        e.g. `git gc` pruning under it): those tasks are in_progress on disk with no run; the
        next sync commits the claim, and this returns them to ready."""
        held = self.active.keys() | {r.task_id for r, _ in self._unapplied}
        stray = [t for t in self.svc.snapshot().tasks.values()
                 if t.status.active and t.assignee == self.ident and t.id not in held]  # fmt: skip
        if stray:
            self._back_to_ready(stray, "its claim was written but could not be committed")
        self._claim_failed = False

    def _cancel_moved(self, snap: Snapshot) -> None:
        for tid, a in self.active.items():
            t = snap.tasks.get(tid)
            if (t is None or t.status is not Status.IN_PROGRESS) and not a.cancel.is_set():
                a.cancel.set()
                self.bus.emit(
                    "daemon",
                    state="cancel",
                    message=f"{tid} was moved to "
                    f"{t.status if t else 'deleted'}; its agent is stopped",
                )

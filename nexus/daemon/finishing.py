"""Finished runs into the journal: results applied to their task files and committed, sessions
recorded, the messages agents asked to send posted."""

from __future__ import annotations

import contextlib
import queue
import time
from pathlib import Path
from typing import Any

from nexus import promote, results, runner, sessions
from nexus.changes import Batch
from nexus.daemon.state import Active, DaemonState
from nexus.errors import NexusError, WorkspaceError
from nexus.service import Snapshot
from nexus.task import Status, Task


class Finishing(DaemonState):
    def _drain_results(self) -> None:
        """Apply every finished run.  Runs that carry nothing of their own to record (no cost,
        tokens, session or changed files) share one commit; every other run gets its own, so
        its cost and session trailers belong to exactly one task."""
        finished, self._unapplied = self._unapplied, []
        while True:
            try:
                report = self.done.get_nowait()
            except queue.Empty:
                break
            finished.append((report, self.active.pop(report.task_id, None)))
        plain = [f for f in finished if _plain(f[0])]
        groups = ([plain] if plain else []) + [[f] for f in finished if not _plain(f[0])]
        for group in groups:
            statuses = self._apply(group)
            for report, active in group:
                if (
                    active
                    and active.role
                    and active.inbox_ids
                    and statuses.get(report.task_id) is Status.COMPLETE
                ):
                    with contextlib.suppress(NexusError):
                        self.svc.mark_read(active.role, active.inbox_ids)

    def _apply(
        self, group: list[tuple[runner.RunReport, Active | None]]
    ) -> dict[str, Status | None]:
        """Commit the outcomes of finished runs in one commit; each task's status afterwards."""
        posted: list[tuple[str, Any, str]] = []
        paused: dict[str, float] = {}
        facts: dict[str, str] = {}
        all_facts: list[dict[str, str]] = []

        def apply_one(
            batch: Batch, report: runner.RunReport, active: Active | None, snap: Snapshot
        ) -> str:
            if report.task_id not in batch.tasks:
                unreadable = [e for e in snap.broken if Path(e.path).stem == report.task_id]
                if unreadable:
                    # Not gone: its file does not read right now (an editor halfway through
                    # writing it, or a person's broken edit).  Dropping the result here lost
                    # it and left the task in_progress with nothing running.
                    raise WorkspaceError(
                        f"{unreadable[0]}",
                        fix="the result is kept and applied once the file reads again",
                    )
                return f"result of {report.task_id} (task no longer exists)"
            task = batch.current(report.task_id)
            info = active.info if active else results.RunInfo(
                engine=str(task.fields.get("engine") or "?"), model=task.model, role=task.role,
                attempt=report.attempt,
            )  # fmt: skip
            if (
                (active is None or task.id in self._requeued)
                and task.status in (Status.COMPLETE, Status.FAILED)
                and task.attempts == report.attempt
            ):
                # A saved report whose commit was made (or repaired) before the daemon died.
                return f"result of {task.id} already recorded"
            if task.status is not Status.IN_PROGRESS:
                note = (
                    f"## Attempts\n\n- {batch.stamp}: a run finished after the task was set "
                    f"to {task.status}; its result was kept here and not applied:\n\n"
                    + (report.result.text or report.result.reason or "")
                )
                batch.update(task.id, {}, append=note)
                return f"late result of {task.id} ({task.status})"
            out = results.outcome(
                task,
                report.result,
                info,
                stamp=batch.stamp,
                interrupted=report.interrupted,
                verify_error=report.verify_error,
                rate_limit_backoff=self.ws.config.limits.rate_limit_backoff,
            )
            batch.move(task.id, out.dst, out.reason, out.changes, out.append)
            batch.extra_paths.extend(report.files)
            if out.pause_seconds is not None:
                paused[info.engine] = out.pause_seconds
            self._record_session(batch, task, info, report)
            posted.extend((task.role or "nexus", m, task.id) for m in report.result.messages)
            run_facts = dict(out.facts)
            if report.files:
                run_facts["Files"] = str(len(report.files))
            all_facts.append(run_facts)
            return f"{out.dst} {task.id} ({task.title[:60]})"

        def build(batch: Batch, snap: Snapshot) -> str:
            summaries = [apply_one(batch, report, active, snap) for report, active in group]
            facts.update(_common(all_facts) if len(all_facts) > 1 else
                         (all_facts[0] if all_facts else {}))  # fmt: skip
            return summaries[0] if len(summaries) == 1 else f"{len(summaries)} runs finished"

        ids = [report.task_id for report, _ in group]
        try:
            batch = self.svc.mutate(build, facts, "daemon", snapshot=self.svc.current())
        except NexusError as exc:
            message = f"could not record the results of {', '.join(ids)}: {exc}"
            self.bus.emit("daemon", state="error", message=message)
            # The saved reports stay (a restart applies them); this daemon tries again soon.
            self._unapplied.extend(group)
            self._requeued.update(ids)
            self._retry_soon = time.monotonic() + 1.0
            return {}
        self._requeued.difference_update(ids)
        for tid in ids:
            runner.drop_report(self.ws, tid)
        self.watcher.own_writes([self.ws.root / p for p in batch.texts])
        for t in batch.transitions:
            self.bus.emit("transition", t.task_id, src=str(t.src), dst=str(t.dst),
                          reason=t.reason, actor="daemon")  # fmt: skip
        for engine, seconds in paused.items():
            self.paused[engine] = time.monotonic() + seconds
        statuses: dict[str, Status | None] = {}
        for report, _active in group:
            task = batch.tasks.get(report.task_id)
            status = task.status if task else None
            statuses[report.task_id] = status
            if task is not None and status is Status.FAILED:
                if promote.retry_at(task, self.svc.policy()) is None:
                    self.failed_for_good.add(task.id)
            else:
                self.failed_for_good.discard(report.task_id)
            r = report.result
            self.bus.emit(
                "agent_finished",
                report.task_id,
                ok=r.ok and not report.verify_error,
                status=str(status),
                duration=round(r.duration, 3),
                cost_usd=r.cost_usd,
                reason=report.verify_error or r.reason,
                tokens=[r.usage.input_tokens, r.usage.output_tokens],
            )
        for frm, message, tid in posted:
            self._post(frm, message, tid)
        return statuses

    def _emit_transitions(self, batch: Batch) -> None:
        for t in batch.transitions:
            self.bus.emit("transition", t.task_id, src=str(t.src), dst=str(t.dst),
                          reason=t.reason, actor="daemon")  # fmt: skip

    def _post(self, frm: str, message: Any, task_id: str) -> None:
        try:
            self.svc.send_message(frm, message.to, message.text, message.type, task_id)
        except NexusError as exc:
            self.bus.emit(
                "daemon",
                state="warning",
                message=f"message from {frm} to {message.to} not posted: {exc}",
            )
            return
        self.bus.emit("message", task_id, frm=frm, to=message.to, type=message.type)

    def _record_session(
        self, batch: Batch, task: Task, info: results.RunInfo, report: runner.RunReport
    ) -> None:
        session = report.result.session
        role = self._roles().get(task.role or "")
        if not session or role is None or role.session != "persistent":
            return
        path = self.ws.root / "agents" / "sessions.yaml"
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        current, _warning = sessions.parse_sessions(text)
        updated = sessions.record(
            current, role.role, info.engine, session, batch.stamp, report.result.session_replaced
        )
        if updated != current:
            batch.put("agents/sessions.yaml", sessions.render_sessions(updated))


def _plain(report: runner.RunReport) -> bool:
    """A run with nothing of its own to record in trailers (it may share a commit)."""
    r = report.result
    return not (r.cost_usd is not None or r.usage.input_tokens or r.usage.output_tokens
                or r.session or r.session_replaced or r.rate_limited or report.files)  # fmt: skip


def _common(facts: list[dict[str, str]]) -> dict[str, str]:
    """The trailer values every run of a shared commit agrees on (never the attempt)."""
    first = facts[0]
    return {k: v for k, v in first.items()
            if k != "Attempt" and all(f.get(k) == v for f in facts[1:])}  # fmt: skip

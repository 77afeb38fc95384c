"""`nexus watch`: the reconcile loop that runs ready tasks through engines.

Shell.  Level-triggered: a file event, a finished run or a timer only means "look again"; each
pass recomputes the picture from the files:

1. sync (people's edits committed as theirs, promotions) when something else wrote, a retry
   is due, or every `poll` seconds as a safety net;
2. apply finished runs, one commit each (its cost, engine and session trailers belong to one
   task), then post the messages the agent asked to send;
3. cancel runs whose task a person moved away from in_progress;
4. dispatch: claim what may start (one commit: ready → assigned → in_progress) and start a
   worker thread per run.

Crash safety: a run's report is saved in `.nexus/results/` before it is committed, and on start
the daemon applies saved reports first, then returns tasks it had claimed (assignee
`daemon@<host>:<pid>`) to ready, saying in the journal whether their session will be resumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from nexus import agents, budgets, dispatch, proc, promote, results, runner, sessions
from nexus.changes import Batch
from nexus.engines.base import get_engine
from nexus.errors import EngineError, NexusError, TransitionError, WorkspaceError
from nexus.events import Bus
from nexus.service import Service, Snapshot
from nexus.store import remove_stale_temps, try_lock
from nexus.task import Size, Status, Task
from nexus.watcher import Watcher


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


class Daemon:
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
        self.debounce = debounce
        self.ident = f"daemon@{socket.gethostname()}:{os.getpid()}"
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.watcher = Watcher(self.ws.root, self.wake)
        self.active: dict[str, Active] = {}
        self.done: queue.Queue[runner.RunReport] = queue.Queue()
        self.paused: dict[str, float] = {}
        self.waiting: dict[str, str] = {}
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
        self.bus.emit("daemon", state="started", workers=self.workers, pid=os.getpid())
        try:
            self.watcher.start()
            recovered = False
            while True:
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
                if self.stopping.is_set() and not self.active and self.done.empty():
                    break
                if self.until_idle and self._idle():
                    self._say_budget_stop()
                    break
                self.wake.wait(timeout=self._timeout())
                self.wake.clear()
                time.sleep(self.debounce)  # let a burst of file events settle
        finally:
            for a in self.active.values():
                a.cancel.set()
            for a in list(self.active.values()):
                a.thread.join(timeout=10)
            self._drain_results()
            self.watcher.stop()
            self._restore_signals(previous)
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
        self.stop(now=self.stopping.is_set())

    # -- one pass ----------------------------------------------------------------------------

    def _pass(self) -> None:
        self._pass_roles = None  # roles are read at most once a pass
        self.svc.written.clear()
        now = time.monotonic()
        foreign = self.watcher.foreign_changes()
        # An intent left by a failed commit: sync repairs it before anything else is written.
        repair = self._claim_failed or self._unapplied
        if foreign or now - self._last_sync >= self.poll or self._retry_due() or repair:
            self._last_sync = now
            self._reload_config()
            report = self.svc.sync()
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

    def _timeout(self) -> float:
        now = time.monotonic()
        deadlines = [self._last_sync + self.poll]
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

    # -- results -----------------------------------------------------------------------------

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

        def apply_one(batch: Batch, report: runner.RunReport, active: Active | None) -> str:
            if report.task_id not in batch.tasks:
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
            summaries = [apply_one(batch, report, active) for report, active in group]
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

    # -- dispatch ----------------------------------------------------------------------------

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

    def _dispatch(self, snap: Snapshot) -> None:
        containers = {t.parent for t in snap.tasks.values() if t.parent}
        ready = sorted((t for t in snap.tasks.values() if t.status is Status.READY),
                       key=dispatch.order_key)  # fmt: skip
        waiting: dict[str, str] = {}
        runnable = []
        held = self._check_budget(snap, ready)
        for t in ready:  # decided from the scan alone: no file read
            if why := dispatch.static_reason(t, containers, held):
                waiting[t.id] = why
            else:
                runnable.append(t)
        free = self.workers - len(self.active)
        if free <= 0 or self.stopping.is_set() or not runnable:
            why = (
                "the daemon is stopping"
                if self.stopping.is_set()
                else f"all {self.workers} workers are busy"
            )
            waiting.update((t.id, why) for t in runnable)
            self.waiting = waiting
            return
        # Read only as many task files as this wave can start (widening if too few start).
        window = free + 2  # usually every candidate can start; widened below when not
        while True:
            plan = self._plan(runnable[:window], containers)
            if len(plan.start) >= free or window >= len(runnable):
                break
            window *= 4
        waiting.update(plan.waiting)
        waiting.update((t.id, f"all {self.workers} workers are busy")
                       for t in runnable[window:])  # fmt: skip
        self.waiting = waiting
        if plan.start:
            self._claim_and_start(plan.start, self._roles())

    def _check_budget(self, snap: Snapshot, ready: list[Task]) -> dict[str, str]:
        """The ready tasks a budget holds (task id → reason), from the journal's recorded
        costs; says once when a scope pauses and once when it resumes."""
        project = self.ws.config.project_budget
        if not ready:
            return {}  # nothing to hold: keep the last verdict (no pause/resume noise)
        if not budgets.configured(ready, project):
            verdict = None
        else:
            try:
                verdict = budgets.check(ready, self.svc.spending(), project)
            except NexusError as exc:
                self.bus.emit("daemon", state="error", message=f"budget check: {exc}")
                return {}
        empty = budgets.Verdict(project, 0.0)
        ids = {t.id for t in ready}
        for state, scope, message in budgets.changes(self.budget, verdict or empty):
            if state == "resumed" and scope != "project" and scope not in ids:
                continue  # cancelled or deleted meanwhile: nothing resumed
            self.bus.emit("daemon", scope if scope != "project" else None, state=state,
                          message=message, scope=scope)  # fmt: skip
        self.budget = verdict
        if verdict is None:
            return {}
        return {t.id: why for t in ready if (why := verdict.holds(t.id))}

    def _say_budget_stop(self) -> None:
        held = [tid for tid, why in self.waiting.items() if why.startswith("budget:")]
        if held:
            example = self.waiting[held[0]]
            self.bus.emit(
                "daemon",
                state="paused",
                message=f"nothing else can run: {len(held)} ready task(s) paused by budget "
                f"({example}); exiting with 1",
            )

    def _plan(self, scanned: list[Task], containers: set[str]) -> dispatch.Plan:
        roles = self._roles()
        checks: dict[str, str | None] = {}
        candidates = []
        for item in scanned:
            try:
                task, _ = self.ws.load_task(item)  # routing needs its engine_settings
            except NexusError:
                continue
            role = roles.get(task.role or "")
            r = agents.route(task, role, self.ws.config, self.engine_override)
            if task.role and role is None:
                problem: str | None = (
                    f"role {task.role} cannot be used: agents/{task.role}.md is missing "
                    "or broken (see `nexus validate`)"
                )
            else:
                problem = self._engine_problem(r.engine, r.settings, checks)
            persistent = bool(role and role.session == "persistent")
            candidates.append(dispatch.Candidate(task, r.engine, persistent, problem))
        running = [
            dispatch.Running(a.task_id, a.engine, a.role, a.touches, a.persistent)
            for a in self.active.values()
        ]
        limits = {
            name: int(s["max_parallel"])
            for name, s in self.ws.config.engines.items()
            if isinstance(s, Mapping) and isinstance(s.get("max_parallel"), int)
        }
        return dispatch.plan(
            candidates,
            running,
            workers=self.workers,
            engine_limits=limits,
            paused=self.paused,
            containers=containers,
            now=time.monotonic(),
            stopping=self.stopping.is_set(),
        )

    def _engine_problem(
        self, engine: str, settings: Mapping[str, Any], cache: dict[str, str | None]
    ) -> str | None:
        if engine in cache:
            return cache[engine]
        try:
            eng = get_engine(engine)
            problem = eng.check(settings, os.environ)
        except EngineError as exc:
            problem = str(exc)
        except Exception as exc:  # a broken third-party engine is reported, not fatal
            problem = f"engine {engine} failed its check: {exc}"
        cache[engine] = problem
        return problem

    def _claim_and_start(
        self, start: tuple[dispatch.Candidate, ...], roles: Mapping[str, agents.Role]
    ) -> None:
        claimed: list[tuple[dispatch.Candidate, agents.Route, str | None]] = []

        def build(batch: Batch, snap: Snapshot) -> str:
            for cand in start:
                task = batch.current(cand.task.id)
                if task.status is not Status.READY:
                    continue
                role = roles.get(task.role or "")
                r = agents.route(task, role, self.ws.config, self.engine_override)
                session = self._session_for(task, role, r.engine)
                try:
                    batch.move(
                        task.id,
                        Status.ASSIGNED,
                        f"claimed by {self.ident}",
                        {"assignee": self.ident},
                    )
                    batch.move(
                        task.id,
                        Status.IN_PROGRESS,
                        f"engine {r.engine} started ({r.reason})",
                        {"session": session} if session else None,
                    )
                except TransitionError:
                    continue
                claimed.append((cand, r, session))
            return f"start {len(claimed)} task(s)"

        try:
            batch = self.svc.mutate(
                build, {"Actor": "daemon"}, "daemon", snapshot=self.svc.current()
            )
        except NexusError as exc:
            self.bus.emit("daemon", state="error", message=f"could not claim tasks: {exc}")
            self._claim_failed = True
            self._retry_soon = time.monotonic() + 1.0
            return
        self.watcher.own_writes([self.ws.root / p for p in batch.texts])
        self._emit_transitions(batch)
        for cand, r, session in claimed:
            task = batch.current(cand.task.id)
            self._start(task, roles.get(task.role or ""), r, session, batch.tasks)

    def _session_for(self, task: Task, role: agents.Role | None, engine: str) -> str | None:
        if role is not None and role.session == "persistent":
            path = self.ws.root / "agents" / "sessions.yaml"
            text = path.read_text(encoding="utf-8") if path.exists() else ""
            found = sessions.session_for(sessions.parse_sessions(text)[0], role.role, engine)
            if found:
                return found
        return (
            task.session if task.session and task.fields.get("engine", engine) == engine else None
        )

    def _start(
        self,
        task: Task,
        role: agents.Role | None,
        r: agents.Route,
        session: str | None,
        tasks: Mapping[str, Task],
    ) -> None:
        inbox_ids: list[str] = []
        role_names = sorted(self._roles())
        workdir = self.svc.repo.top
        if isinstance(r.settings.get("workdir"), str):
            workdir = self.ws.inside(r.settings["workdir"])
        timeout = float(task.timeout or self.ws.config.limits.timeout)

        def assignment() -> runner.Assignment:
            # Built in the worker thread: reading dependency results and the inbox is file work
            # the coordinator need not wait for.
            try:
                prompt = self.svc.task_prompt(task, role, tasks, inbox_ids, role_names)
            except NexusError as exc:
                prompt = f"(the prompt could not be built: {exc})\n\n{task.title}\n\n{task.body}"
            return runner.Assignment(
                task=task,
                engine=r.engine,
                model=r.model,
                settings=r.settings,
                prompt=prompt,
                system_prompt="",  # the persona is in the prompt itself
                session=session,
                attempt=task.attempts,
                timeout=timeout,
                workdir=workdir,
            )

        info = results.RunInfo(r.engine, r.model, task.role, task.attempts)
        cancel = threading.Event()

        def work() -> None:
            def progress(line: str) -> None:
                self.bus.emit("agent_output", task.id, line=line[:500])

            try:
                report = runner.run(
                    self.ws, self.svc.repo, assignment(), cancel=cancel, on_progress=progress
                )
            except Exception as exc:  # never lose a run: report it as a failure
                from nexus.engines.base import EngineResult

                report = runner.RunReport(
                    task.id, task.attempts, EngineResult.failure(f"nexus runner crashed: {exc}")
                )
                with contextlib.suppress(OSError):  # a full disk must not lose the report
                    runner.save_report(self.ws, report)
            self.done.put(report)
            self.wake.set()

        thread = threading.Thread(target=work, name=f"agent-{task.id}", daemon=True)
        self.active[task.id] = Active(
            task.id,
            r.engine,
            task.role,
            task.touches,
            bool(role and role.session == "persistent"),
            info,
            cancel,
            thread,
            time.monotonic(),
            inbox_ids,
        )
        self.bus.emit(
            "agent_started",
            task.id,
            engine=r.engine,
            model=r.model,
            role=task.role,
            attempt=task.attempts,
            session=session,
            title=task.title,
        )
        thread.start()

    def _decompose_xl(self, snap: Snapshot) -> None:
        """`auto_decompose: true` (nexus.yaml): the oracle plans each ready XL task, inline, one
        round per task; with `auto_approve: true` the plan is approved and its parts start at
        once.  A failure is an event and the task stays ready; its waiting reason (as `nexus
        why`) says what holds it: parts running, a plan waiting for approval, a failure."""
        raw = self.ws.config.raw
        xl = [t for t in snap.tasks.values() if t.size is Size.XL and t.status is Status.READY]
        if not xl or (self.budget is not None and self.budget.paused):
            return  # asking the oracle costs money too
        created = False
        for _round in range(32 if raw.get("auto_decompose") is True else 0):
            try:
                done = self.svc.decompose_xl(
                    self.svc.current(), approve=raw.get("auto_approve") is True
                )
            except Exception as exc:  # the coordinator must outlive any planning bug
                self.bus.emit("daemon", state="error", message=f"XL decomposition: {exc}")
                break
            self.watcher.own_writes([self.ws.root / p for p in self.svc.written])
            for d in done:
                self.bus.emit("plan", d.task_id, plan=d.plan, created=len(d.created), error=d.error)
                if d.error:
                    message = f"could not decompose {d.task_id}: {d.error}"
                    self.bus.emit("daemon", state="error", message=message)
            created = created or any(d.created for d in done)
            if not done:
                break
        if created:
            self._dispatch(self.svc.current())
        tasks = self.svc.current().tasks
        xl_ids = [tid for tid, why in self.waiting.items() if why.startswith("XL") and tid in tasks]
        with contextlib.suppress(NexusError, OSError):
            self.waiting.update(self.svc.xl_reasons(xl_ids, tasks))

    # -- recovery, cancellation, idleness ----------------------------------------------------

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
        tasks = self.svc.current().tasks
        done = sum(1 for t in tasks.values() if t.status is Status.COMPLETE)
        cost = sum(float(t.cost.get("usd") or 0) for t in tasks.values() if t.cost)
        self.bus.emit(
            "progress",
            done=done,
            total=len(tasks),
            running=sorted(self.active),
            cost_usd=round(cost, 6),
            waiting=dict(self.waiting),
            paused_by_budget=sum(1 for w in self.waiting.values() if w.startswith("budget:")),
        )


def _passing(reason: str) -> bool:
    """A wait that ends by itself (a worker frees up, a pause runs out): not stuck."""
    if reason.startswith("budget:"):
        return False  # only a person raising the budget ends it (whatever the task is named)
    return any(w in reason for w in ("paused", "busy", "at its limit", "overlap",
                                      "persistent session"))  # fmt: skip


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


def _owner(lock: Path) -> str:
    try:
        data = json.loads(lock.with_name("daemon.owner").read_text())
        return f"pid {data['pid']} on {data['host']}"
    except (OSError, ValueError, KeyError):
        return "another process"

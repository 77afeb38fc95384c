"""Ready tasks into runs: budgets checked, what may start planned, claimed in one commit, each
run started in a worker thread; XL tasks decomposed."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from nexus import agents, budgets, dispatch, results, runner, sessions
from nexus.changes import Batch
from nexus.daemon.finishing import Finishing
from nexus.daemon.state import Active
from nexus.engines.base import get_engine
from nexus.errors import EngineError, NexusError, TransitionError
from nexus.service import Snapshot
from nexus.task import Size, Status, Task


class Starting(Finishing):
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
        wave = time.monotonic()  # the runs of this wave share one `git status` before they start

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
            self._start(task, roles.get(task.role or ""), r, session, batch.tasks, wave)

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
        wave: float,
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
                    self.ws,
                    self.svc.repo,
                    assignment(),
                    cancel=cancel,
                    on_progress=progress,
                    status=self.status,
                    wave=wave,
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

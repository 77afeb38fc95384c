"""Questions the surfaces ask: why a task is where it is, its progress, the running daemon,
costs."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from nexus import budgets, dag, promote
from nexus.changes import iso
from nexus.errors import GitError, ValidationError
from nexus.service.core import Snapshot, _write_json
from nexus.service.planning import PlanningOps
from nexus.task import Size, Status, Task


class ViewOps(PlanningOps):
    def why(self, task: Task, snap: Snapshot) -> list[str]:
        """Why a task is where it is, in sentences."""
        tasks = snap.tasks
        out: list[str] = []
        errors = [p for p in snap.problems if p.task_id == task.id]
        out += [f"{p.message} — {p.fix}" for p in errors]
        st = task.status
        if st is Status.PENDING:
            waiting = dag.blockers(task, tasks)
            for dep, owner, dep_status in waiting:
                whose = "" if owner == task.id else f" (a dep of its parent {owner})"
                if dep_status is None:
                    out.append(f"waits for {dep}{whose}, which does not exist")
                elif dep_status is Status.CANCELLED:
                    out.append(
                        f"waits for {dep}{whose}, which is cancelled: it will never "
                        f"complete — remove the dep or `nexus retry {dep}`"
                    )
                elif dep_status is Status.FAILED:
                    out.append(
                        f"waits for {dep}{whose}, which failed: {tasks[dep].error} — "
                        f"see `nexus why {dep}`"
                    )
                else:
                    out.append(
                        f"waits for {dep}{whose} ({tasks[dep].title}), which is {dep_status}"
                    )
            if not waiting and not errors:
                out.append("all deps are complete: the next nexus run promotes it to ready")
        elif st is Status.READY:
            if task.size is Size.XL:
                out.append(self.xl_reason(task, tasks))
            elif any(t.parent == task.id for t in tasks.values()):
                out.append("it has children: it completes when they do")
            else:
                held = self._budget_hold(task)
                daemon = self._daemon_reason(task.id)
                if held and "budget:" not in daemon:
                    out.append(f"ready, paused: {held}")
                out.append(daemon)
        elif st.active:
            who = f" by {task.assignee}" if task.assignee else ""
            since = f" since {task.started}" if task.started else ""
            out.append(f"{st}{who}{since}")
        elif st is Status.FAILED:
            policy = self.policy()
            allowed = policy.retries_for(task)
            at = promote.retry_at(task, policy)
            line = f"failed (attempt {task.attempts} of {allowed + 1}): {task.error}"
            if at is None:
                line += f" — no retries left; `nexus retry {task.id}` starts it again"
            else:
                line += f" — retried automatically after {iso(at)}"
                if held := self._budget_hold(task):
                    line += f", then paused: {held}"
            out.append(line)
        elif st is Status.COMPLETE:
            out.append(f"complete{' since ' + task.finished if task.finished else ''}")
        elif st is Status.CANCELLED:
            out.append(f"cancelled — `nexus retry {task.id}` reopens it")
        return out

    def _daemon_reason(self, task_id: str) -> str:
        """Why a ready task waits, as the running daemon last saw it."""
        try:
            state = json.loads((self.ws.runtime / "daemon-state.json").read_text())
        except (OSError, ValueError):
            return "ready: no `nexus watch` is running (start one, or run it from Claude Code)"
        reason = (state.get("waiting") or {}).get(task_id)
        if task_id in (state.get("running") or []):
            return "starting: the daemon has just claimed it"
        if reason:
            return f"ready, waiting: {reason}"
        if state.get("waiting_for_a_worker"):
            return "ready, waiting: all workers are busy (it starts by priority, then age)"
        return "ready: the daemon starts it next"

    def cost(self, by: Sequence[str] | None = None) -> dict[str, Any]:
        """Recorded cost and tokens from the journal's trailers, in total and broken down by
        task, role, engine, model and day (or the dimensions in `by`)."""
        from nexus import costs

        dims = list(by) if by else list(costs.DIMENSIONS)
        for dim in dims:
            if dim not in costs.DIMENSIONS:
                raise ValidationError(
                    f"cannot break costs down by {dim!r}",
                    fix=f"use some of: {', '.join(costs.DIMENSIONS)}",
                )
        titles = {tid: t.title for tid, t in self.current().tasks.items()}
        return costs.summarize(costs.charges(self.log()), dims, titles)

    def spending(self) -> budgets.Spending:
        """Dollars recorded in the journal (what `nexus cost` sums), in total and per task.
        Kept in `.nexus/spend.json` with the commit it was read at: a later call reads only
        the commits since (or everything again when history was rewritten)."""
        from nexus import costs

        head = self.repo.head()
        if head is None:
            return budgets.Spending()
        cache = self.ws.runtime / "spend.json"
        try:
            data = json.loads(cache.read_text())
            since, known = str(data["head"]), budgets.Spending.from_json(data)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            since, known = "", budgets.Spending()
        if since == head[0]:
            return known
        try:
            self.repo.git(["merge-base", "--is-ancestor", since, head[0]])
            entries, base = self.log(None, [f"{since}..{head[0]}"]), known
        except GitError:  # no cache, or history rewritten: read it all
            entries, base = self.log(None, [head[0]]), budgets.Spending()
        found = base.add(costs.charges(entries))
        _write_json(cache, {"head": head[0], **found.to_json()})
        return found

    def _budget_hold(self, task: Task) -> str | None:
        """Why a budget keeps this task from starting (the journal is read only when the
        project or the task has a budget)."""
        project = self.ws.config.project_budget
        if project is None and task.budget_usd is None:
            return None
        spent = self.spending()
        return budgets.project_reason(spent.total_usd, project) or budgets.task_reason(
            task, spent.of(task.id)
        )

    def budget(self, snap: Snapshot | None = None) -> budgets.Verdict:
        """Which budgets pause dispatch now (nexus.yaml `budgets.project_usd`, tasks'
        `budget_usd`), from the journal's recorded costs."""
        snap = snap or self.current()
        return budgets.check(snap.tasks.values(), self.spending(), self.ws.config.project_budget)

    # -- web --------------------------------------------------------------------------------
    # Read-only views the dashboards show (the web server first); nothing here is web-specific.

    def daemon_state(self) -> dict[str, Any] | None:
        """What the running `nexus watch` last published (`.nexus/daemon-state.json`: running,
        waiting, paused), or None when no daemon runs (a file left by a killed one included)."""
        try:
            state = json.loads((self.ws.runtime / "daemon-state.json").read_text())
            os.kill(int(state["pid"]), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, but another user's
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return state if isinstance(state, dict) else None

    def progress(self, task: Task, snap: Snapshot) -> dict[str, Any]:
        """Where a task stands: status, attempts, times, whether an agent runs it now, why a
        ready task waits (as the daemon sees it) and how many of its children are complete."""
        state = self.daemon_state() or {}
        kids = [t for t in snap.tasks.values() if t.parent == task.id]
        done = sum(1 for t in kids if t.status is Status.COMPLETE)
        if task.status is Status.COMPLETE:
            fraction = 1.0
        else:
            fraction = round(done / len(kids), 4) if kids else 0.0
        waiting = (state.get("waiting") or {}).get(task.id)
        return {
            "task_id": task.id,
            "status": str(task.status),
            "attempts": task.attempts,
            "max_retries": self.policy().retries_for(task),
            "started": task.started,
            "finished": task.finished,
            "assignee": task.assignee,
            "running": task.id in (state.get("running") or []) and task.status.active,
            "daemon": bool(state),
            "waiting": str(waiting) if waiting and task.status is Status.READY else None,
            "children": {"complete": done, "total": len(kids)},
            "progress": fraction,
            "error": task.error,
        }

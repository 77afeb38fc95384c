"""Budgets: `budget_usd` per task and `budgets.project_usd` in nexus.yaml.

Pure: spending and tasks in, a verdict out (which scopes are paused, and the sentence that
says so).  What was spent is read from the journal, the same `Nexus-Cost-USD` trailers
`nexus cost` sums (`nexus.costs.charges`), so the figure that pauses dispatch is the figure
`nexus cost` shows: a task's spending is the sum of all its recorded runs (every attempt), the
project's is every recorded run, including those of tasks deleted since and the oracle's.

The rule is "spent ≥ budget": a run's cost is known only when it ends, so nexus cannot refuse
the one run that *would* pass a budget; it stops starting runs once the budget is reached.
A scope can therefore overshoot by the runs already under way when it was reached (at most
one per worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nexus.costs import Charge
from nexus.task import Status, Task

PROJECT_FIELD = "budgets.project_usd"


@dataclass(frozen=True)
class Spending:
    """Dollars recorded in the journal, in total and per task."""

    total_usd: float = 0.0
    by_task: Mapping[str, float] = field(default_factory=dict)

    def add(self, charges: Iterable[Charge]) -> Spending:
        by_task = dict(self.by_task)
        total = self.total_usd
        for c in charges:
            total += c.usd
            by_task[c.task] = round(by_task.get(c.task, 0.0) + c.usd, 6)
        return Spending(round(total, 6), by_task)

    def of(self, task_id: str) -> float:
        return self.by_task.get(task_id, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {"total_usd": self.total_usd, "by_task": dict(self.by_task)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Spending:
        by_task = data.get("by_task") or {}
        return cls(
            float(data.get("total_usd") or 0.0),
            {str(k): float(v) for k, v in by_task.items()},
        )


@dataclass(frozen=True)
class Verdict:
    """Which scopes are paused by their budget, and why (the sentences every surface shows)."""

    project_usd: float | None
    spent_usd: float
    reason: str | None = None  # set when the whole project is paused
    paused_tasks: Mapping[str, str] = field(default_factory=dict)  # task id → reason

    @property
    def paused(self) -> bool:
        return self.reason is not None

    def holds(self, task_id: str) -> str | None:
        """Why this task may not start now because of a budget (None: no budget holds it).
        The project's pause comes first: raising the task's own budget would not help."""
        return self.reason or self.paused_tasks.get(task_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "project_usd": self.project_usd,
            "spent_usd": self.spent_usd,
            "paused": self.paused,
            "reason": self.reason,
            "paused_tasks": dict(self.paused_tasks),
        }


def usd(amount: float) -> str:
    """$0.0125, $0.05, $5.00: four decimals at most, two at least."""
    text = f"{amount:.4f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents:0<2}"


def task_reason(task: Task, spent: float) -> str | None:
    """Why the task's own budget holds it, or None."""
    budget = task.budget_usd
    if budget is None or spent < budget:
        return None
    return (
        f"budget: task {task.id} spent {usd(spent)} of {usd(budget)} budget_usd; "
        f"raise budget_usd in {task.path} to resume"
    )


def project_reason(spent: float, budget: float | None) -> str | None:
    """Why the project's budget holds every task, or None."""
    if budget is None or spent < budget:
        return None
    return (
        f"budget: project spent {usd(spent)} of {usd(budget)} (nexus.yaml {PROJECT_FIELD}); "
        "raise it to resume"
    )


def check(tasks: Iterable[Task], spending: Spending, project_usd: float | None) -> Verdict:
    """The budget verdict for the ready tasks among `tasks` (the ones dispatch would start)."""
    paused_tasks = {}
    for t in tasks:
        if t.status is Status.READY and (why := task_reason(t, spending.of(t.id))):
            paused_tasks[t.id] = why
    return Verdict(
        project_usd=project_usd,
        spent_usd=spending.total_usd,
        reason=project_reason(spending.total_usd, project_usd),
        paused_tasks=paused_tasks,
    )


def configured(tasks: Iterable[Task], project_usd: float | None) -> bool:
    """Is there any budget to check?  (Without one, dispatch need not read the journal.)"""
    return project_usd is not None or any(
        t.budget_usd is not None and t.status is Status.READY for t in tasks
    )


def changes(before: Verdict | None, after: Verdict) -> list[tuple[str, str, str]]:
    """What paused and what resumed between two verdicts, as (state, scope, message) with
    state "paused" or "resumed" and scope "project" or a task id — the daemon says each once."""
    out: list[tuple[str, str, str]] = []
    old_reason = before.reason if before else None
    old_tasks = before.paused_tasks if before else {}
    if after.reason and not old_reason:
        out.append(("paused", "project", after.reason))
    elif old_reason and not after.reason:
        limit = "no project budget" if after.project_usd is None else usd(after.project_usd)
        message = f"budget: project resumed (spent {usd(after.spent_usd)} of {limit})"
        out.append(("resumed", "project", message))
    for tid, reason in after.paused_tasks.items():
        if tid not in old_tasks:
            out.append(("paused", tid, reason))
    for tid in old_tasks:
        if tid not in after.paused_tasks:
            out.append(("resumed", tid, f"budget: task {tid} resumed"))
    return out


def render(verdict: Verdict) -> list[str]:
    """The lines `nexus status` shows (none when no budget is set and nothing is paused)."""
    lines = []
    if verdict.project_usd is not None:
        lines.append(
            f"budget: {usd(verdict.spent_usd)} of {usd(verdict.project_usd)} spent "
            f"(nexus.yaml {PROJECT_FIELD})"
        )
    if verdict.reason:
        lines.append(f"PAUSED — {verdict.reason}")
    lines += [f"paused {tid} — {why}" for tid, why in sorted(verdict.paused_tasks.items())]
    return lines

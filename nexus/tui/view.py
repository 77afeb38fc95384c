"""What the terminal views show, as values.

Pure: tasks, the running agents, journal lines and cost summaries in; progress figures,
elapsed times and the dashboard's board out.  Drawing them (plain text, rich, Textual) is the
callers' business.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nexus import dag
from nexus.task import Status, Task

# The board's columns, as on the web page: an `assigned` task shows under in progress.
COLUMNS = (
    Status.PENDING,
    Status.READY,
    Status.IN_PROGRESS,
    Status.COMPLETE,
    Status.FAILED,
    Status.CANCELLED,
)
COLUMN_OF = {Status.ASSIGNED: Status.IN_PROGRESS}


def subtree_progress(tasks: Mapping[str, Task]) -> dict[str, tuple[int, int]]:
    """For every task with children: (complete, counted) over its whole subtree below it.
    Cancelled tasks are not counted, as in the project's progress.  Iterative, so a hierarchy
    thousands of levels deep is fine; a parent cycle (reported by `nexus validate`) is cut."""
    children = dag.children_of(tasks)
    totals: dict[str, tuple[int, int]] = {}
    seen: set[str] = set()
    for start in children:
        stack = [(start, False)]
        while stack:
            tid, expanded = stack.pop()
            if expanded:
                done = counted = 0
                for kid in children.get(tid, ()):
                    if kid not in totals and kid in children:
                        continue  # still on the stack: a parent cycle
                    below_done, below_counted = totals.get(kid, (0, 0))
                    status = tasks[kid].status
                    done += below_done + (status is Status.COMPLETE)
                    counted += below_counted + (status is not Status.CANCELLED)
                totals[tid] = (done, counted)
            elif tid not in seen and tid in children:  # leaves have no totals of their own
                seen.add(tid)
                stack.append((tid, True))
                stack += [(k, False) for k in children[tid] if k not in seen]
    return totals


def fraction(done: int, counted: int) -> float:
    return done / counted if counted else 0.0


def seconds_since(stamp: str | None, now: dt.datetime) -> float | None:
    """Seconds from an ISO timestamp (a task's `started`) to `now`; None if there is none or it
    cannot be read (a person may have written anything there)."""
    if not stamp:
        return None
    try:
        then = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.UTC)
    return max(0.0, (now - then).total_seconds())


def elapsed(seconds: float | None) -> str:
    """42s, 3m05s, 2h07m; `-` when unknown."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


@dataclass(frozen=True)
class Column:
    status: Status
    count: int
    cards: tuple[Task, ...]  # the first `limit`, in dispatch order (priority, then age)

    @property
    def more(self) -> int:
        return self.count - len(self.cards)

    @property
    def title(self) -> str:
        return str(self.status).replace("_", " ")


def columns(tasks: Mapping[str, Task], limit: int = 50) -> list[Column]:
    groups: dict[Status, list[Task]] = {s: [] for s in COLUMNS}
    for t in tasks.values():
        groups[COLUMN_OF.get(t.status, t.status)].append(t)
    out = []
    for status, members in groups.items():
        members.sort(key=lambda t: (t.priority.rank, t.created or "", t.id))
        out.append(Column(status, len(members), tuple(members[:limit])))
    return out


@dataclass(frozen=True)
class Board:
    """Everything the dashboard shows at one moment (elapsed times are computed when drawn)."""

    name: str
    goal: str
    counts: Mapping[str, int]
    progress: float
    columns: Sequence[Column]
    agents: Sequence[Mapping[str, Any]]  # Service.running_agents()
    daemon: Mapping[str, Any] | None  # what the running `nexus watch` published; None: none runs
    recent: Sequence[str]  # journal lines, newest first
    cost: Mapping[str, Any]  # Service.cost(by=["role"])
    budget: Mapping[str, Any] | None = None  # the status JSON's "budget", when there is one
    broken: Sequence[str] = field(default_factory=tuple)  # files that could not be read

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def budget_banner(self) -> str | None:
        """The line to show when a budget pauses dispatch (None when nothing is paused); the
        reasons are the budgets' own sentences ("budget: project spent $X of $Y ...")."""
        b = self.budget or {}
        if b.get("paused"):
            return f"dispatch paused — {b.get('reason') or 'the project budget is spent'}"
        held = b.get("paused_tasks") or {}
        if held:
            more = f" (and {len(held) - 1} more)" if len(held) > 1 else ""
            return f"{len(held)} task(s) held — {next(iter(held.values()))}{more}"
        return None

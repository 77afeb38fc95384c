"""Which ready tasks start now, and why the others wait.

Pure: given the ready tasks, the routes chosen for them, what is running, the limits, the
paused engines, the tasks a budget holds (`nexus.budgets`) and `now`, return the tasks to
start (priority, then age) and, for every ready task that does not start, the reason — shown
by `nexus why`, the daemon and the dashboards.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from nexus.task import Size, Status, Task


@dataclass(frozen=True)
class Running:
    task_id: str
    engine: str
    role: str | None
    touches: tuple[str, ...]
    persistent: bool  # the run uses its role's one persistent session


@dataclass(frozen=True)
class Candidate:
    """A ready task with the engine it would run on (or why it cannot run at all)."""

    task: Task
    engine: str | None
    persistent: bool = False
    problem: str | None = None  # e.g. the engine is unknown or its binary is missing


@dataclass(frozen=True)
class Plan:
    start: tuple[Candidate, ...]
    waiting: Mapping[str, str]  # task id → why it does not start now


def order_key(task: Task) -> tuple[int, str, str]:
    return (task.priority.rank, task.created or "", task.id)


def globs_overlap(a: str, b: str) -> bool:
    """Could some path match both globs?  Conservative: when unsure, say yes."""
    if fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a):
        return True
    pa, pb = _literal_prefix(a), _literal_prefix(b)
    return pa.startswith(pb) or pb.startswith(pa)


def _literal_prefix(glob: str) -> str:
    for i, ch in enumerate(glob):
        if ch in "*?[":
            return glob[:i]
    return glob


def touches_conflict(a: Iterable[str], b: Iterable[str]) -> str | None:
    for x in a:
        for y in b:
            if globs_overlap(x, y):
                return f"{x} ~ {y}"
    return None


def static_reason(task: Task, containers: set[str], held: Mapping[str, str]) -> str | None:
    """Why a ready task cannot start whatever else runs: it is XL, it has children, or a
    budget holds it (`held`: task id → reason, see `nexus.budgets`)."""
    if task.size is Size.XL:
        return "XL: decompose first (XL tasks are never given to an agent)"
    if task.id in containers:
        return "it has children: it completes when they do"
    return held.get(task.id)


def plan(
    candidates: Sequence[Candidate],
    running: Sequence[Running],
    *,
    workers: int,
    engine_limits: Mapping[str, int],
    paused: Mapping[str, float],
    containers: set[str],
    now: float,
    stopping: bool = False,
    held: Mapping[str, str] | None = None,
) -> Plan:
    """`held`: task id → why a budget keeps it from starting (see `nexus.budgets`)."""
    start: list[Candidate] = []
    waiting: dict[str, str] = {}
    busy = list(running)
    per_engine: dict[str, int] = {}
    for r in busy:
        per_engine[r.engine] = per_engine.get(r.engine, 0) + 1
    for cand in sorted(candidates, key=lambda c: order_key(c.task)):
        task = cand.task
        if task.status is not Status.READY:
            continue
        why = _why_not(
            cand, busy, per_engine, workers, engine_limits, paused, containers, now, stopping,
            held or {},
        )  # fmt: skip
        if why is not None:
            waiting[task.id] = why
            continue
        assert cand.engine is not None
        start.append(cand)
        busy.append(Running(task.id, cand.engine, task.role, task.touches, cand.persistent))
        per_engine[cand.engine] = per_engine.get(cand.engine, 0) + 1
    return Plan(tuple(start), waiting)


def _why_not(
    cand: Candidate,
    busy: Sequence[Running],
    per_engine: Mapping[str, int],
    workers: int,
    engine_limits: Mapping[str, int],
    paused: Mapping[str, float],
    containers: set[str],
    now: float,
    stopping: bool,
    held: Mapping[str, str],
) -> str | None:
    task = cand.task
    if why := static_reason(task, containers, held):
        return why
    if cand.problem is not None or cand.engine is None:
        return cand.problem or "no engine"
    if stopping:
        return "the daemon is stopping"
    if any(r.task_id == task.id for r in busy):
        return "already running"
    until = paused.get(cand.engine)
    if until is not None and until > now:
        return f"engine {cand.engine} is paused for {until - now:.0f}s after a rate limit"
    if len(busy) >= workers:
        return f"all {workers} workers are busy"
    limit = engine_limits.get(cand.engine)
    if limit is not None and per_engine.get(cand.engine, 0) >= limit:
        return f"engine {cand.engine} is at its limit of {limit} runs"
    if cand.persistent:
        for r in busy:
            if r.persistent and r.role == task.role and r.engine == cand.engine:
                return f"role {task.role} keeps one persistent session, busy with {r.task_id}"
    if task.touches:
        for r in busy:
            clash = touches_conflict(task.touches, r.touches)
            if clash:
                return f"touches overlap with running {r.task_id} ({clash})"
    return None

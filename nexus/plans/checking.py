"""Checking a plan against the workspace: keys, roles, references, hierarchy, cycles; the order
its tasks are created in."""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from nexus import dag
from nexus.plans.adapting import check_changes
from nexus.plans.fields import _Fields, _read_task
from nexus.plans.model import MAX_TASKS, Plan, PlanTask, Problem, Rejected
from nexus.task import Status, Task


def check_plan(
    data: Mapping[str, Any],
    *,
    roles: Collection[str],
    tasks: Mapping[str, Task],
    parent: str | None = None,
) -> tuple[Plan, list[Problem]]:
    """Validate a plan (or, with `kind: adapt`, a change list) against the workspace: its
    roles and live tasks.  `parent` (else the mapping's own) is the task being decomposed."""
    problems: list[Problem] = []
    top = _Fields(data, None, problems)
    if data.get("kind") == "adapt" or ("changes" in data and "tasks" not in data):
        if "changes" not in data:
            top.bad("changes", "is missing (answer `changes: []` when nothing needs to change)")
        changes, more = check_changes(data.get("changes"), tasks=tasks, roles=roles)
        plan = Plan(top.text("goal") or "", kind="adapt", changes=tuple(changes))
        plan = replace(plan, feedback=top.text("feedback") or "")
        return _approval(plan, data), problems + more
    goal = top.text("goal", required=True) or ""
    parent = parent or top.text("parent", line=True)
    if parent is not None and parent not in tasks:
        top.bad("parent", f"task {parent} does not exist")
    raw = data.get("tasks")
    if not isinstance(raw, list) or not raw:
        top.bad("tasks", "must be a non-empty list of tasks")
        return Plan(goal, parent=parent), problems
    if len(raw) > MAX_TASKS:
        top.bad("tasks", f"has {len(raw):,} tasks; a plan holds at most {MAX_TASKS:,}")
        return Plan(goal, parent=parent), problems
    read = [_read_task(item, i, problems, roles) for i, item in enumerate(raw)]
    by_key: dict[str, PlanTask] = {}
    for t in read:
        if t.key.startswith("#"):
            continue
        if t.key in by_key:
            problems.append(Problem(t.key, "key", "is used by more than one task"))
        elif t.key in tasks:
            problems.append(
                Problem(t.key, "key", "is also the id of an existing task; choose another key")
            )
        else:
            by_key[t.key] = t
    outer: list[str] = []
    if parent is not None and parent in tasks:
        outer = [parent, *(a.id for a in dag.ancestors(tasks[parent], tasks))]
    problems += _check_graph(by_key, tasks, outer)
    plan = Plan(goal, tuple(read), parent=parent)
    return _approval(plan, data), problems


def _approval(plan: Plan, data: Mapping[str, Any]) -> Plan:
    approved = data.get("approved")
    ids = data.get("task_ids")
    mapping = {str(k): str(v) for k, v in ids.items()} if isinstance(ids, Mapping) else {}
    return replace(plan, approved=str(approved) if approved else None, task_ids=mapping)


def _check_graph(
    by_key: Mapping[str, PlanTask], tasks: Mapping[str, Task], outer: Sequence[str]
) -> list[Problem]:
    """References, hierarchy and cycles of the plan's tasks.  `outer` is the task being
    decomposed and its ancestors: its parts may not wait for them."""
    problems: list[Problem] = []
    parents: dict[str, str] = {}
    for t in by_key.values():
        if t.parent is None:
            continue
        if t.parent == t.key:
            problems.append(Problem(t.key, "parent", "a task cannot be its own parent"))
        elif t.parent in by_key:
            parents[t.key] = t.parent
        elif t.parent not in tasks:
            problems.append(
                Problem(
                    t.key, "parent", f"{t.parent!r} is neither a key of this plan nor a task id"
                )
            )
    ancestors: dict[str, list[str]] = {}
    for key in by_key:
        chain, cur = [], key
        while cur in parents:
            cur = parents[cur]
            if cur == key or cur in chain:
                problems.append(Problem(key, "parent", "the parent chain loops back to this task"))
                break
            chain.append(cur)
        ancestors[key] = chain
    for t in by_key.values():
        for dep in t.deps:
            if dep == t.key:
                problems.append(Problem(t.key, "deps", "a task cannot depend on itself"))
            elif dep in outer:
                problems.append(
                    Problem(
                        t.key,
                        "deps",
                        f"depends on {dep}, which contains this plan: it completes only when "
                        "its parts do, so neither could ever start",
                    )
                )
            elif dep in by_key:
                if dep in ancestors[t.key]:
                    problems.append(
                        Problem(t.key, "deps", f"depends on {dep!r}, its own parent (a deadlock)")
                    )
                elif t.key in ancestors[dep]:
                    problems.append(
                        Problem(t.key, "deps", f"depends on {dep!r}, one of its own parts")
                    )
            elif dep not in tasks:
                problems.append(
                    Problem(
                        t.key,
                        "deps",
                        f"{dep!r} is neither a key of this plan nor the id of an existing task",
                    )
                )
            elif tasks[dep].status is Status.CANCELLED:
                message = f"depends on {dep}, which is cancelled: it would never start"
                problems.append(Problem(t.key, "deps", message))
    graph = {
        k: Task(id=k, title=t.title, path="", deps=tuple(d for d in t.deps if d in by_key))
        for k, t in by_key.items()
    }
    for cycle in dag.find_cycles(graph):
        problems.append(Problem(cycle[0], "deps", f"dependency cycle: {' → '.join(cycle)}"))
    return problems


def validated(
    data: Mapping[str, Any],
    *,
    roles: Collection[str],
    tasks: Mapping[str, Task],
    parent: str | None = None,
) -> Plan:
    """`check_plan`, raising `Rejected` with every problem."""
    plan, problems = check_plan(data, roles=roles, tasks=tasks, parent=parent)
    if problems:
        raise Rejected(problems, "the change list" if plan.kind == "adapt" else "the plan")
    return plan


def creation_order(tasks: Sequence[PlanTask]) -> list[PlanTask]:
    """The plan's tasks with every dep and parent (within the plan) before the task itself."""
    by_key = {t.key: t for t in tasks}
    before = {
        t.key: {d for d in (*t.deps, t.parent) if d is not None and d in by_key} for t in tasks
    }
    after: dict[str, list[str]] = {}
    for key, needs in before.items():
        for need in needs:
            after.setdefault(need, []).append(key)
    waiting = {k: len(v) for k, v in before.items()}
    index = {t.key: i for i, t in enumerate(tasks)}
    ready = [index[t.key] for t in tasks if not waiting[t.key]]  # in plan order where possible
    heapq.heapify(ready)
    out: list[PlanTask] = []
    while ready:
        task = tasks[heapq.heappop(ready)]
        out.append(task)
        for nxt in after.get(task.key, ()):
            waiting[nxt] -= 1
            if not waiting[nxt]:
                heapq.heappush(ready, index[nxt])
    return out

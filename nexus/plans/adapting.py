"""Change lists (`kind: adapt`): checked against the live DAG, described for a person."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from nexus import dag
from nexus.plans.fields import _Fields, _kind, _read_task
from nexus.plans.model import MAX_TASKS, OP_FIELDS, OPS, SIZES, Change, Plan, PlanTask, Problem
from nexus.task import Status, Task

EDITABLE = (Status.PENDING, Status.READY, Status.FAILED)


def check_changes(
    raw: Any, *, tasks: Mapping[str, Task], roles: Collection[str]
) -> tuple[list[Change], list[Problem]]:
    """Validate a change list against the live tasks."""
    problems: list[Problem] = []
    if raw is None or raw == []:
        return [], problems
    if not isinstance(raw, list):
        return [], [Problem(None, "changes", f"must be a list of changes, not {_kind(raw)}")]
    if len(raw) > MAX_TASKS:
        return [], [Problem(None, "changes", f"has {len(raw):,} changes; at most {MAX_TASKS:,}")]
    changes: list[Change] = []
    adds: dict[str, PlanTask] = {}
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(raw):
        op = item.get("op") if isinstance(item, Mapping) else None
        if op not in OPS:
            problems.append(Problem(f"#{i + 1}", "op", f"{op!r} is not one of {' | '.join(OPS)}"))
            continue
        if op == "add":
            task = _read_task({k: v for k, v in item.items() if k != "op"}, i, problems, roles)
            if task.key in adds or task.key in tasks:
                problems.append(Problem(task.key, "key", "is already used; choose another key"))
            adds[task.key] = task
            changes.append(Change("add", task.key, task=task))
            continue
        change = _read_change(item, i, tasks, problems)
        if change is None:
            continue
        if (op, change.target) in seen:
            problems.append(Problem(change.target, "op", f"more than one {op} of this task"))
        seen.add((op, change.target))
        changes.append(change)
    problems += _check_change_graph(changes, adds, tasks)
    return changes, problems


def _read_change(
    item: Mapping[str, Any], index: int, tasks: Mapping[str, Task], problems: list[Problem]
) -> Change | None:
    op = str(item["op"])
    tid = item.get("id")
    if not isinstance(tid, str) or tid not in tasks:
        problems.append(Problem(f"#{index + 1}", "id", f"{op}: no task has the id {tid!r}"))
        return None
    f = _Fields(item, tid, problems)
    for name in item:
        if name not in OP_FIELDS[op]:
            f.bad(str(name), f"is not a field of {op} (it takes: {', '.join(OP_FIELDS[op])})")
    status = tasks[tid].status
    if status.terminal:
        f.bad("op", f"{op}: the task is {status}; leave it alone")
        return None
    if op != "cancel" and status not in EDITABLE:
        f.bad("op", f"{op}: the task is {status} (an agent runs it); only cancel may stop it")
        return None
    if op == "cancel":
        return Change(op, tid, reason=f.text("reason", line=True) or "cancelled by a plan change")
    if op == "resize":
        return Change(op, tid, size=f.choice("size", SIZES, None))
    if op == "rewire":
        if "deps" not in item:
            f.bad("deps", "is missing (give the complete new list; [] for none)")
        return Change(op, tid, deps=f.words("deps"))
    edit = Change(
        op,
        tid,
        title=f.text("title", line=True),
        body=f.text("body"),
        acceptance=f.words("acceptance") if "acceptance" in item else None,
    )
    if edit.title is None and edit.body is None and edit.acceptance is None:
        f.bad("op", "edit: give at least one of title, body, acceptance")
    return edit


def _check_change_graph(
    changes: Sequence[Change], adds: Mapping[str, PlanTask], tasks: Mapping[str, Task]
) -> list[Problem]:
    problems: list[Problem] = []
    cancelled = {c.target for c in changes if c.op == "cancel"}
    graph = dict(tasks)
    for c in changes:
        deps = c.task.deps if c.task is not None else c.deps
        if deps is None:
            continue
        for dep in deps:
            if dep == c.target:
                problems.append(Problem(c.target, "deps", "a task cannot depend on itself"))
            elif dep not in adds and dep not in tasks:
                problems.append(
                    Problem(c.target, "deps", f"{dep!r} is neither an added key nor a task id")
                )
            elif dep in cancelled or (dep in tasks and tasks[dep].status is Status.CANCELLED):
                problems.append(
                    Problem(c.target, "deps", f"depends on {dep}, which is (to be) cancelled")
                )
        if c.task is not None:
            parent = c.task.parent
            if parent is not None and parent not in adds and parent not in tasks:
                problems.append(
                    Problem(c.target, "parent", f"{parent!r} is neither an added key nor a task id")
                )
            graph[c.target] = Task(id=c.target, title=c.task.title, path="", deps=deps)
        else:
            graph[c.target] = replace(graph[c.target], deps=deps)
    for cycle in dag.find_cycles(graph):
        if any(c.target in cycle for c in changes if c.deps is not None or c.task is not None):
            problems.append(Problem(cycle[0], "deps", f"dependency cycle: {' → '.join(cycle)}"))
    return problems


def describe_changes(plan: Plan, tasks: Mapping[str, Task]) -> list[str]:
    """The change list as diff lines: `+` added, `-` cancelled, `~` changed."""
    out: list[str] = []
    for c in plan.changes:
        t = tasks.get(c.target)
        name = f"{c.target} ({t.title})" if t is not None else c.target
        if c.op == "add" and c.task is not None:
            n = c.task
            deps = f"  ← {', '.join(n.deps)}" if n.deps else ""
            out.append(f"+ {n.key}  [{n.size} {n.role or n.kind}]  {n.title}{deps}")
        elif c.op == "cancel":
            out.append(f"- {name}: {c.reason}")
        elif c.op == "resize" and t is not None:
            out.append(f"~ {name}: size {t.size} → {c.size}")
        elif c.op == "rewire" and t is not None:
            old, new = ", ".join(t.deps) or "none", ", ".join(c.deps or ()) or "none"
            out.append(f"~ {name}: deps [{old}] → [{new}]")
        elif c.op == "edit" and t is not None:
            parts = []
            if c.title is not None:
                parts.append(f"title {t.title!r} → {c.title!r}")
            if c.body is not None:
                parts.append("description replaced")
            if c.acceptance is not None:
                parts.append(f"acceptance → {list(c.acceptance)}")
            out.append(f"~ {name}: {'; '.join(parts)}")
    return out or ["(no changes)"]

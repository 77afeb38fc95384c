"""The dependency graph: problems (cycles, missing and self deps), blockers, order.

Pure.  A task waits for its own `deps` and for the deps of every ancestor (`parent` chain):
the tasks of milestone 2 do not start before milestone 2's dependencies are complete.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from nexus.task import Status, Task


@dataclass(frozen=True)
class Problem:
    task_id: str
    path: str
    field: str
    message: str
    fix: str
    severity: str = "error"  # "error" blocks the task; "warning" is reported only

    def __str__(self) -> str:
        return f"{self.path} (field {self.field}): {self.message}\n  fix: {self.fix}"

    def to_json(self) -> dict[str, object]:
        return {"task": self.task_id, "path": self.path, "field": self.field,
                "message": self.message, "fix": self.fix, "severity": self.severity}  # fmt: skip


@dataclass(frozen=True)
class Graph:
    """The reverse edges of a task map: who depends on whom, who is whose child."""

    dependents: Mapping[str, list[str]]
    children: Mapping[str, list[str]]


def graph(tasks: Mapping[str, Task]) -> Graph:
    return Graph(dependents_of(tasks), children_of(tasks))


def children_of(tasks: Mapping[str, Task]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for t in tasks.values():
        if t.parent is not None and t.parent in tasks:
            out[t.parent].append(t.id)
    return out


def dependents_of(tasks: Mapping[str, Task]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for t in tasks.values():
        for d in t.deps:
            out[d].append(t.id)
    return out


def ancestors(task: Task, tasks: Mapping[str, Task]) -> list[Task]:
    """Parent, grandparent, ... (stops at a missing parent or a parent cycle)."""
    out: list[Task] = []
    seen = {task.id}
    cur = task
    while cur.parent is not None and cur.parent in tasks and cur.parent not in seen:
        cur = tasks[cur.parent]
        seen.add(cur.id)
        out.append(cur)
    return out


def find_cycles(tasks: Mapping[str, Task]) -> list[list[str]]:
    """Every dependency cycle, each as a path that starts and ends at the same id
    (`[a, b, c, a]`), found with Tarjan's algorithm (iterative: 10,000-task chains are fine)
    over the tasks that can reach a cycle at all."""
    tasks = _cyclic_part(tasks)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    sccs: list[list[str]] = []
    counter = 0
    for root in sorted(tasks):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            deps = [d for d in tasks[node].deps if d in tasks]
            if i < len(deps):
                work.append((node, i + 1))
                nxt = deps[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    sccs.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return [_cycle_path(comp, tasks) for comp in sccs]


def _cyclic_part(tasks: Mapping[str, Task]) -> Mapping[str, Task]:
    """The tasks left after repeatedly removing every task whose deps are all removed (Kahn's
    algorithm): those on a cycle or depending on one.  Usually none, found in a fraction of
    Tarjan's time (~10 vs ~70 ms for 10,000 tasks)."""
    waiting: dict[str, int] = {}
    dependents: dict[str, list[str]] = {}
    free: list[str] = []
    for tid, t in tasks.items():
        n = 0
        for d in t.deps:
            if d in tasks:
                n += 1
                dependents.setdefault(d, []).append(tid)
        waiting[tid] = n
        if not n:
            free.append(tid)
    while free:
        for dependent in dependents.get(free.pop(), ()):
            waiting[dependent] -= 1
            if not waiting[dependent]:
                free.append(dependent)
    return {tid: tasks[tid] for tid, n in waiting.items() if n}


def _cycle_path(component: list[str], tasks: Mapping[str, Task]) -> list[str]:
    members = set(component)
    start = min(component)
    path = [start]
    seen = {start}
    cur = start
    while True:
        nxt = min(d for d in tasks[cur].deps if d in members)
        if nxt in seen:
            return [*path[path.index(nxt) :], nxt]
        path.append(nxt)
        seen.add(nxt)
        cur = nxt


def problems(tasks: Mapping[str, Task]) -> list[Problem]:
    """Every structural problem of the graph, errors first."""
    out: list[Problem] = []
    for t in sorted(tasks.values(), key=lambda t: t.id):
        for d in t.deps:
            if d == t.id:
                out.append(
                    Problem(
                        t.id,
                        t.path,
                        "deps",
                        f"task {t.id} depends on itself",
                        f"remove {t.id} from its deps",
                    )
                )
            elif d not in tasks:
                out.append(
                    Problem(
                        t.id,
                        t.path,
                        "deps",
                        f"task {t.id} depends on {d}, which does not exist",
                        f"remove {d} from deps, or create task {d}",
                    )
                )
            elif tasks[d].status is Status.CANCELLED and not t.status.terminal:
                out.append(
                    Problem(
                        t.id,
                        t.path,
                        "deps",
                        f"task {t.id} depends on {d}, which is cancelled, so it will never start",
                        f"remove {d} from deps, or reopen it with `nexus retry {d}`",
                        severity="warning",
                    )
                )
        if t.parent is not None:
            if t.parent == t.id:
                out.append(
                    Problem(
                        t.id,
                        t.path,
                        "parent",
                        f"task {t.id} is its own parent",
                        "remove the parent field",
                    )
                )
            elif t.parent not in tasks:
                out.append(
                    Problem(
                        t.id,
                        t.path,
                        "parent",
                        f"parent {t.parent} of task {t.id} does not exist",
                        f"remove the parent field, or create task {t.parent}",
                    )
                )
    for cycle in find_cycles(tasks):
        arrow = " → ".join(cycle)
        for tid in cycle[:-1]:
            out.append(
                Problem(
                    tid,
                    tasks[tid].path,
                    "deps",
                    f"dependency cycle: {arrow}",
                    "remove one of these deps to break the cycle",
                )
            )
    out.sort(key=lambda p: (p.severity != "error", p.path))
    return out


def blockers(task: Task, tasks: Mapping[str, Task]) -> list[tuple[str, str, Status | None]]:
    """What `task` still waits for: (dep id, whose dep — the task itself or an ancestor, status or
    None when missing) for every dep that is not complete."""
    out = []
    for owner in (task, *ancestors(task, tasks)):
        for d in owner.deps:
            dep = tasks.get(d)
            if dep is None or dep.status is not Status.COMPLETE:
                out.append((d, owner.id, None if dep is None else dep.status))
    return out


def topological_order(tasks: Mapping[str, Task]) -> list[str]:
    """Ids with every dep before its dependents (cycle members last, in id order)."""
    indeg = {tid: sum(1 for d in t.deps if d in tasks) for tid, t in tasks.items()}
    deps_of = dependents_of(tasks)
    ready = sorted(tid for tid, n in indeg.items() if n == 0)
    order: list[str] = []
    while ready:
        tid = ready.pop()
        order.append(tid)
        for nxt in deps_of.get(tid, ()):
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                ready.append(nxt)
    rest = sorted(set(tasks) - set(order))
    return order + rest

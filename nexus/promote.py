"""Decide which tasks change status on their own, and why.

Pure: takes tasks, the retry policy and `now`; returns transitions with reasons.  Rules, applied
until nothing changes:

* failed → pending   when attempts ≤ max_retries and the backoff since it finished has passed;
* pending → ready    when every dep (and every ancestor's dep) is complete and the task has no
                     dependency error (cycle, missing or self dep);
* ready → pending    when a dep is no longer complete (reopened, or a dep was added);
* ready → complete   for a container (a task with children) once all its children are complete
                     or cancelled and at least one is complete.  Containers are never run.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from nexus import dag
from nexus.task import Status, Task, Transition


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    backoff: float = 5.0  # seconds before the first retry; doubled for each further attempt

    def retries_for(self, task: Task) -> int:
        return self.max_retries if task.max_retries is None else task.max_retries

    def delay(self, attempts: int) -> float:
        return float(self.backoff * (2 ** max(attempts - 1, 0)))


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def retry_at(task: Task, policy: RetryPolicy) -> dt.datetime | None:
    """When a failed task may be retried, or None when it has no retries left."""
    if task.attempts > policy.retries_for(task):
        return None
    finished = parse_time(task.finished) or dt.datetime.min.replace(tzinfo=dt.UTC)
    return finished + dt.timedelta(seconds=policy.delay(task.attempts))


def _with_status(task: Task, status: Status) -> Task:
    return replace(task, status=status)


def promote(
    tasks: Mapping[str, Task],
    now: dt.datetime,
    policy: RetryPolicy = RetryPolicy(),
    *,
    seeds: Iterable[str] | None = None,
    graph: dag.Graph | None = None,
) -> list[Transition]:
    """Transitions to apply, with reasons.  With `seeds`, only what those tasks' changes can
    affect is examined (the incremental path after a mutation); otherwise every task."""
    # No cycle or missing-dep analysis is needed here: a task in a cycle, or waiting for a task
    # that does not exist, never has all its deps complete, so it simply stays pending.
    current = dict(tasks)
    graph = graph or dag.graph(current)
    children, dependents = graph.children, graph.dependents
    out: list[Transition] = []
    queue = deque(sorted(current) if seeds is None else [])
    queued = set(queue)

    def touch(tid: str) -> None:
        """Re-examine what may change because `tid` changed."""
        for nxt in (*dependents.get(tid, ()), current[tid].parent):
            if nxt is not None and nxt in current and nxt not in queued:
                queue.append(nxt)
                queued.add(nxt)
        # A container's children wait on the container's deps: when it moves, look at them.
        stack = list(dependents.get(tid, ()))
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in queued:
                    queue.append(child)
                    queued.add(child)
                stack.append(child)

    if seeds is not None:
        for tid in seeds:
            if tid in current and tid not in queued:
                queue.append(tid)
                queued.add(tid)
            if tid in current:
                touch(tid)

    def move(task: Task, dst: Status, reason: str) -> None:
        out.append(Transition(task.id, task.status, dst, reason))
        current[task.id] = _with_status(task, dst)
        queue.append(task.id)
        queued.add(task.id)
        touch(task.id)

    while queue:
        tid = queue.popleft()
        queued.discard(tid)
        task = current[tid]
        if task.status is Status.FAILED:
            at = retry_at(task, policy)
            if at is not None and now >= at:
                n = policy.retries_for(task)
                move(task, Status.PENDING, f"retry {task.attempts} of {n} after: {task.error}")
        elif task.status is Status.PENDING:
            waiting = dag.blockers(task, current)
            if not waiting:
                deps = len(task.deps)
                why = f"all {deps} deps complete" if deps else "no dependencies"
                move(task, Status.READY, why)
        elif task.status is Status.READY:
            waiting = dag.blockers(task, current)
            if waiting:
                dep, owner, st = waiting[0]
                whose = "" if owner == tid else f" (a dep of parent {owner})"
                move(task, Status.PENDING, f"dep {dep}{whose} is {st or 'missing'} again")
            elif kids := children.get(tid):
                states = [current[k].status for k in kids]
                done = all(s in (Status.COMPLETE, Status.CANCELLED) for s in states)
                if done and Status.COMPLETE in states:
                    move(task, Status.COMPLETE, f"all {len(kids)} children complete")
    return out

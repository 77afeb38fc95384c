"""A batch of task-file changes that becomes one commit.

Shell-light: a `Batch` collects new file texts in memory (reading the current text from disk
when first touched), keeps the in-memory task map in step, checks every status change against
the lifecycle table, and runs promotion over the result.  `Service` writes and commits it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nexus import dag, promote, taskfile
from nexus.errors import TransitionError
from nexus.store import Workspace
from nexus.task import Status, Task, Transition, can_transition


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Fields a status change sets, beyond `status` and `updated`.
def _stamps(task: Task, dst: Status, now: str) -> dict[str, Any]:
    if dst is Status.IN_PROGRESS:
        return {"started": now, "attempts": task.attempts + 1, "error": None}
    if dst in (Status.COMPLETE, Status.FAILED):
        return {"finished": now}
    if dst in (Status.READY, Status.PENDING) and task.status.active:
        return {"assignee": None}
    return {}


class Batch:
    def __init__(
        self,
        ws: Workspace,
        tasks: Mapping[str, Task],
        now: dt.datetime,
        graph: dag.Graph | None = None,
    ) -> None:
        self.ws = ws
        self._graph = graph  # the reverse edges of `tasks`, when the caller has them
        self.tasks = dict(tasks)
        self.now = now
        self.texts: dict[str, str] = {}  # workspace-relative path → new text
        self.read: dict[str, str] = {}  # path → its text when this batch read it (see _commit)
        self.transitions: list[Transition] = []
        self.created: list[str] = []
        self.deps_changed = False
        self._ids: set[str] = set()  # tasks whose files this batch read or wrote
        self.extra_paths: list[str] = []  # repo-relative files an agent changed, committed too

    @property
    def stamp(self) -> str:
        return iso(self.now)

    def text_of(self, task: Task) -> str:
        """The task file's text: as this batch left it, else as it is on disk now.  The first
        read also refreshes the task from the file, so decisions use what is on disk."""
        if task.path not in self.texts:
            text = self.ws.read_text(self.ws.root / task.path)
            self.texts[task.path] = self.read[task.path] = text
            new = taskfile.parse(text, task.path, Path(task.path).stem).task
            if new.deps != task.deps or new.parent != task.parent:
                self.deps_changed = True  # edited on disk since the snapshot was taken
            self.tasks[task.id] = new
            self._ids.add(task.id)
        return self.texts[task.path]

    def current(self, task_id: str) -> Task:
        """The task as it is on disk (or in this batch), with its fields and body."""
        self.text_of(self.tasks[task_id])
        return self.tasks[task_id]

    def update(self, task_id: str, changes: Mapping[str, Any], append: str | None = None) -> Task:
        """Set fields of a task file (None removes a field) and keep the task map in step."""
        task = self.tasks[task_id]
        if "deps" in changes or "parent" in changes:
            self.deps_changed = True
        text = taskfile.update(self.text_of(task), {**changes, "updated": self.stamp}, append)
        new = taskfile.parse(text, task.path, Path(task.path).stem).task
        self.texts[task.path] = text
        self.tasks[task_id] = new
        return new

    def put(self, path: str, text: str) -> None:
        """Write any other owned file (a scratchpad, sessions, a plan) in this batch's commit.
        `path` is relative to the workspace."""
        self.texts[path] = text

    def create(self, path: str, text: str) -> Task:
        new = taskfile.parse(text, path, Path(path).stem).task
        self.texts[path] = text
        self.tasks[new.id] = new
        self._ids.add(new.id)
        self.created.append(new.id)
        self.deps_changed = True
        return new

    def move(
        self,
        task_id: str,
        dst: Status,
        reason: str,
        changes: Mapping[str, Any] | None = None,
        append: str | None = None,
    ) -> Task:
        """Change a task's status, refusing moves the lifecycle table does not allow."""
        task = self.current(task_id)
        if task.status is dst:
            return self.update(task_id, dict(changes or {}), append) if changes or append else task
        if not can_transition(task.status, dst):
            raise TransitionError(
                f"task {task_id} cannot go from {task.status} to {dst}",
                fix=_transition_fix(task, dst),
            )
        fields = {"status": str(dst), **_stamps(task, dst, self.stamp), **(changes or {})}
        self.transitions.append(Transition(task_id, task.status, dst, reason))
        return self.update(task_id, fields, append)

    @property
    def touched(self) -> set[str]:
        """Ids of the tasks this batch changed or created."""
        return {tid for tid in self._ids if tid in self.tasks}

    @property
    def graph(self) -> dag.Graph | None:
        """The reverse edges of the tasks as this batch leaves them, when known without
        recomputing them: no dep or parent changed."""
        return None if self.deps_changed else self._graph

    def promote(self, policy: promote.RetryPolicy, *, seeds: Iterable[str] | None = ()) -> None:
        """Apply promotions: from `seeds` plus what this batch touched, or (seeds=None) over
        every task."""
        if seeds is not None:
            seeds = self.touched | set(seeds)
        for t in promote.promote(self.tasks, self.now, policy, seeds=seeds, graph=self.graph):
            changes: dict[str, Any] = {}
            if t.src is Status.FAILED:
                changes["error"] = self.tasks[t.task_id].error  # keep the last reason visible
            self.move(t.task_id, t.dst, t.reason, changes)


def _transition_fix(task: Task, dst: Status) -> str:
    if task.status is Status.PENDING and dst is Status.COMPLETE:
        return (
            f"it still waits for its deps (see `nexus why {task.id}`); to override, set "
            f"'status: complete' in {task.path} with an editor"
        )
    if task.status is Status.COMPLETE:
        return f"reopen it first with `nexus retry {task.id}`"
    if task.status is Status.CANCELLED:
        return f"reopen it with `nexus retry {task.id}`"
    if task.status is Status.FAILED and dst is Status.COMPLETE:
        return f"reopen it with `nexus retry {task.id}`, or set the status in {task.path}"
    return "see the lifecycle in `nexus --help` or docs/lifecycle.md"

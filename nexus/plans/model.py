"""The values of planning: plan tasks, changes, plans, reviews, decompositions, and the
problems a check reports (`Rejected` carries them)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nexus.errors import ValidationError
from nexus.task import Size

MAX_TASKS = 10_000
MAX_ANSWER_CHARS = 20_000_000
KINDS = ("milestone", "task", "subtask")
SIZES = tuple(str(s) for s in Size)
OPS = ("add", "cancel", "resize", "rewire", "edit")
# Task-file fields a plan task may also set; they are validated like a task file's.
EXTRA_FIELDS = (
    "priority",
    "touches",
    "context",
    "verify",
    "timeout",
    "max_retries",
    "engine",
    "model",
    "budget_usd",
)
TASK_KEYS = ("key", "title", "kind", "size", "role", "deps", "acceptance", "body", "parent")
OP_FIELDS: Mapping[str, tuple[str, ...]] = {
    "cancel": ("op", "id", "reason"),
    "resize": ("op", "id", "size"),
    "rewire": ("op", "id", "deps"),
    "edit": ("op", "id", "title", "body", "acceptance"),
}
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan: which task (its key, a task id, or None for the plan as a
    whole), which field, and what is wrong."""

    key: str | None
    field: str
    message: str

    def __str__(self) -> str:
        if self.key is None:
            who = "the plan"
        else:  # "#3": the third entry, whose own key is missing or unusable
            who = f"entry {self.key}" if self.key.startswith("#") else f"task {self.key!r}"
        return f"{who} (field {self.field}): {self.message}"


class Rejected(ValidationError):
    """A plan, change list or review that cannot be used; `problems` lists every reason and
    `saved` says where the rejected text was kept for inspection (if it was)."""

    def __init__(
        self,
        problems: Sequence[Problem],
        what: str = "the plan",
        *,
        saved: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problems = list(problems)
        self.what = what
        self.saved = saved
        n = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  … and {n - 50} more" if n > 50 else ""
        where = f"\n  the text was saved to {saved}" if saved else ""
        super().__init__(
            f"{what} has {n} problem{'s' if n != 1 else ''}:\n{lines}{more}{where}",
            fix=fix or "correct those fields and try again (docs/planning.md has the schema)",
        )


class Refused(Rejected):
    """YAML that parses but is refused (a tag such as !!python/object, an alias bomb): an
    answer holding it is rejected at once rather than searched for another mapping."""


@dataclass(frozen=True)
class PlanTask:
    key: str
    title: str
    size: str
    kind: str = "task"
    role: str | None = None
    deps: tuple[str, ...] = ()
    acceptance: tuple[str, ...] = ()
    body: str = ""
    parent: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One proposed change to the live DAG.  `target` is the new key (add) or the task id."""

    op: str
    target: str
    task: PlanTask | None = None
    reason: str = ""
    size: str | None = None
    deps: tuple[str, ...] | None = None
    title: str | None = None
    body: str | None = None
    acceptance: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Plan:
    goal: str
    tasks: tuple[PlanTask, ...] = ()
    kind: str = "plan"  # plan | adapt
    parent: str | None = None  # the task this plan decomposes
    changes: tuple[Change, ...] = ()
    feedback: str = ""
    approved: str | None = None
    task_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanFile:
    path: str  # relative to the workspace: plans/<name>.yaml
    plan: Plan

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1].removesuffix(".yaml")


@dataclass(frozen=True)
class Criterion:
    criterion: str
    met: bool
    evidence: str = ""


@dataclass(frozen=True)
class Review:
    task_id: str
    verdict: str  # accepted | reopen
    reasons: tuple[str, ...]
    criteria: tuple[Criterion, ...]
    status: str = ""  # the task's status once the verdict is recorded


@dataclass(frozen=True)
class Decomposition:
    """What the daemon's auto-decomposition did for one XL task."""

    task_id: str
    plan: str | None = None  # path of the plan written
    created: tuple[str, ...] = ()  # ids, when it was approved at once
    error: str | None = None

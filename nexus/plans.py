"""Plans: the oracle's decomposition of a goal, and its proposed changes to a live DAG.

Pure: text and values in, values out (no files, clock or network).  A plan file
(`plans/<name>.yaml`, schema in docs/planning.md) is YAML:

    kind: plan                 # or `adapt` (then `changes:` instead of `tasks:`)
    goal: Migrate our auth service to OAuth2
    parent: k7q2mx4p           # only when it decomposes that (XL) task
    tasks:
      - {key: auth-spec, title: Specify the flow, size: M, role: aria, deps: [], ...}
    approved: '2025-01-01T12:00:00Z'    # written by `nexus approve`, with
    task_ids: {auth-spec: p3zq8d1a}     # the id each key became

`extract` finds the YAML or JSON mapping in an oracle's answer (a fenced block inside prose,
the bare text, or the first `{...}` object); `check_plan` and `check_changes` validate it and
report *every* problem with the key and field it concerns; `Rejected` carries them.
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nexus import dag, taskfile
from nexus.errors import TaskFileError, ValidationError
from nexus.task import Size, Status, Task

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
# Top-level keys that start the YAML of a plan, a change list or a review in unfenced prose.
_TOP_LINE = re.compile(r"^(goal|tasks|changes|verdict|kind)\s*:", re.MULTILINE)
_KEY_LINE = re.compile(r"^[\w-]+\s*:(\s|$)")
_HEADER = re.compile(r"^(parent|approved|created)[ \t]*:.*$", re.MULTILINE)
_APPENDED = re.compile(r"^## (Result|Attempts|Review)\b", re.MULTILINE)
_FENCE = re.compile(
    r"^(?P<ind>[ \t]*)(?P<f>```|~~~)[ \t]*(?P<lang>[\w-]*)[^\n]*\n"
    r"(?P<body>.*?)^(?P=ind)(?P=f)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


# -- values ----------------------------------------------------------------------------------


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


# -- extraction ------------------------------------------------------------------------------


def load_yaml(text: str) -> Any:
    """YAML through nexus's safe loader (duplicate keys refused); errors name the line."""
    import yaml

    from nexus.frontmatter import FrontmatterError, check_shape, safe_loader

    try:
        data = yaml.load(text, Loader=safe_loader())  # a safe loader subclass
        check_shape(data, max_values=2_000_000)  # a plan of 10,000 tasks holds ~200,000
        return data
    except FrontmatterError as exc:
        raise Refused([Problem(None, "yaml", f"{exc.message}; {exc.fix}")]) from None
    except RecursionError:
        raise Refused([Problem(None, "yaml", "nested too deeply")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f" on line {mark.line + 1}" if mark is not None else ""
        refused = Refused if isinstance(exc, yaml.constructor.ConstructorError) else Rejected
        raise refused(
            [Problem(None, "yaml", f"not valid YAML{line}: {exc.problem or exc.context}")]
        ) from None
    except yaml.YAMLError as exc:
        raise Rejected([Problem(None, "yaml", f"not valid YAML: {exc}")]) from None


def extract(text: str) -> dict[str, Any]:
    """The mapping an answer holds: the first ```yaml/```json fenced block, else the whole text
    as YAML, else the YAML that starts at a top-level `goal:`/`tasks:`/... line inside prose,
    else the first `{...}` JSON object.  Raises `Rejected` saying what was found instead."""
    if len(text) > MAX_ANSWER_CHARS:
        raise Rejected([Problem(None, "answer", f"longer than {MAX_ANSWER_CHARS:,} characters")])
    fences = list(_FENCE.finditer(text))
    for m in fences:
        if m.group("lang").lower() in ("yaml", "yml", "json"):
            return _mapping(load_yaml(m.group("body")))
    candidates = [text]
    if start := _TOP_LINE.search(text):
        candidates.append(_yaml_run(text[start.start() :]))
    candidates += [m.group("body") for m in fences]
    for candidate in candidates:
        try:
            found = load_yaml(candidate)
        except Refused:
            raise
        except Rejected:
            continue
        if isinstance(found, dict):
            return _unwrap(found)
    decoder = json.JSONDecoder()
    for m in itertools.islice(re.finditer(r"\{", text), 200):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(obj, dict):
            return _unwrap(obj)
    raise Rejected(
        [Problem(None, "answer", "no YAML or JSON mapping was found in the answer")],
        "the answer",
        fix="answer with one fenced ```yaml block holding the whole mapping",
    )


def _yaml_run(text: str) -> str:
    """The lines from the start of `text` that look like YAML (up to the first line of prose
    or a fence after them)."""
    kept = []
    for line in text.splitlines():
        prose = line.strip() and line[0] not in " \t-#" and not _KEY_LINE.match(line)
        if prose or line.startswith(("```", "~~~")):
            break
        kept.append(line)
    return "\n".join(kept)


def _unwrap(data: dict[str, Any]) -> dict[str, Any]:
    """`{plan: {...}}` (one key holding the real mapping) is taken as the mapping itself."""
    if len(data) == 1:
        ((key, value),) = data.items()
        if key in ("plan", "review", "adapt") and isinstance(value, dict):
            return value
    return data


def _mapping(found: Any) -> dict[str, Any]:
    if not isinstance(found, dict):
        kind = "nothing" if found is None else type(found).__name__
        raise Rejected([Problem(None, "answer", f"holds {kind}, not a mapping of fields")])
    return _unwrap(found)


# -- field readers ---------------------------------------------------------------------------


class _Fields:
    """Reads one task mapping's fields, collecting problems instead of stopping at the first."""

    def __init__(self, data: Mapping[str, Any], key: str | None, problems: list[Problem]):
        self.data, self.key, self.problems = data, key, problems

    def bad(self, name: str, message: str) -> None:
        self.problems.append(Problem(self.key, name, message))

    def text(self, name: str, *, required: bool = False, line: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.bad(name, "is missing")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.bad(name, f"must be text, not {_kind(value)}")
            return None
        text = str(value).strip()
        if line and "\n" in text:
            self.bad(name, "must be one line")
            return None
        if line and (bad := taskfile.control_character(text)):
            self.bad(name, f"contains the control character {bad!r}")
            return None
        return text

    def words(self, name: str) -> tuple[str, ...]:
        value = self.data.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
        ):
            self.bad(name, f"must be a list of text items, not {_kind(value)}")
            return ()
        return tuple(str(v).strip() for v in value if str(v).strip())

    def choice(self, name: str, allowed: Sequence[str], default: str | None) -> str | None:
        value = self.text(name, required=default is None)
        if value is None:
            return default
        for option in allowed:
            if value.lower() == option.lower():
                return option
        self.bad(name, f"{value!r} is not one of {' | '.join(allowed)}")
        return default


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else type(value).__name__


def key_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return f"must be text, not {_kind(key)}"
    if not KEY_RE.match(key):
        shown = key if len(key) <= 40 else key[:40] + "…"
        return (
            f"{shown!r} is not a valid key: use 1-64 lowercase letters, digits and dashes, "
            "starting with a letter or digit (no '/', '.', spaces or line breaks)"
        )
    return None


def _read_task(data: Any, index: int, problems: list[Problem], roles: Collection[str]) -> PlanTask:
    """One plan task with its local problems (graph-wide ones are checked by the caller)."""
    if not isinstance(data, Mapping):
        problems.append(Problem(f"#{index + 1}", "tasks", f"must be a mapping, not {_kind(data)}"))
        return PlanTask(f"#{index + 1}", "", "M")
    raw_key = data.get("key")
    key = raw_key if isinstance(raw_key, str) and not key_problem(raw_key) else f"#{index + 1}"
    f = _Fields(data, key, problems)
    if raw_key is None:
        f.bad("key", "is missing")
    elif problem := key_problem(raw_key):
        f.bad("key", problem)
    for name in data:
        if name not in TASK_KEYS and name not in EXTRA_FIELDS:
            f.bad(str(name), f"unknown field (known: {', '.join((*TASK_KEYS, *EXTRA_FIELDS))})")
    kind = f.choice("kind", KINDS, "task") or "task"
    role = f.text("role", required=kind != "milestone", line=True)
    if role is not None and role not in roles:
        f.bad("role", f"unknown role {role!r}; use one of: {', '.join(sorted(roles)) or 'none'}")
    parent = f.text("parent", line=True)
    extra = {k: data[k] for k in EXTRA_FIELDS if data.get(k) is not None}
    task = PlanTask(
        key=key,
        title=f.text("title", required=True, line=True) or "",
        size=f.choice("size", SIZES, None) or "M",
        kind=kind,
        role=role,
        deps=f.words("deps"),
        acceptance=f.words("acceptance"),
        body=f.text("body") or "",
        parent=parent,
        extra=extra,
    )
    if extra:
        try:  # the same rules as a task file's fields
            taskfile.fields_to_task({"title": "t", **extra}, "", key, "x")
        except TaskFileError as exc:
            f.bad(exc.field or "fields", exc.detail)
    return task


# -- plans -----------------------------------------------------------------------------------


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


def read_file(text: str) -> dict[str, Any]:
    """The mapping of a plan file (plain YAML; no tolerance for prose)."""
    return _mapping(load_yaml(text))


def header(text: str) -> tuple[str | None, bool, str]:
    """(parent, approved?, created) of a plan file, read from its top-level lines without
    parsing the whole file (the daemon asks every pass)."""
    values: dict[str, Any] = {}
    for m in _HEADER.finditer(text):
        try:
            found = load_yaml(m.group(0))
        except Rejected:
            continue
        if isinstance(found, dict):
            values.update(found)
    parent = values.get("parent")
    return (
        (str(parent) if parent else None),
        bool(values.get("approved")),
        str(values.get("created") or ""),
    )


def description(body: str) -> str:
    """A task body without the sections nexus appends (result, attempts, reviews)."""
    m = _APPENDED.search(body)
    return body[: m.start()] if m else body


def replace_description(body: str, new: str) -> str:
    m = _APPENDED.search(body)
    rest = body[m.start() :] if m else ""
    return new.strip() + "\n" + (f"\n{rest}" if rest else "")


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


# -- changes (adapt) -------------------------------------------------------------------------

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


# -- reviews ---------------------------------------------------------------------------------


def check_review(data: Mapping[str, Any], task_id: str) -> Review:
    """A review verdict mapping (`verdict`, `reasons`, `criteria`); raises `Rejected`."""
    problems: list[Problem] = []
    f = _Fields(data, None, problems)
    verdict = f.choice("verdict", ("accepted", "reopen"), None)
    reasons = f.words("reasons")
    if verdict == "reopen" and not reasons:
        f.bad("reasons", "a reopen verdict needs at least one reason the agent can act on")
    criteria: list[Criterion] = []
    raw = data.get("criteria") or []
    if not isinstance(raw, list):
        f.bad("criteria", f"must be a list, not {_kind(raw)}")
        raw = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or not isinstance(item.get("met"), bool):
            f.bad("criteria", f"entry {i + 1} needs `criterion`, `met: true|false`, `evidence`")
            continue
        c = _Fields(item, None, problems)
        criteria.append(
            Criterion(c.text("criterion") or "", bool(item["met"]), c.text("evidence") or "")
        )
    if problems or verdict is None:
        raise Rejected(problems, "the review", fix="answer with verdict, reasons and criteria")
    return Review(task_id, verdict, reasons, tuple(criteria))


def review_section(review: Review, stamp: str, heading: str = "## Review") -> str:
    lines = [heading, "", f"Verdict: {review.verdict} ({stamp})", ""]
    lines += [f"- {taskfile.safe_block(r)}" for r in review.reasons]
    if review.criteria:
        lines += ["", "Criteria:", ""]
        for c in review.criteria:
            evidence = f" — {c.evidence}" if c.evidence else ""
            lines.append(
                f"- [{'x' if c.met else ' '}] {taskfile.safe_block(c.criterion)}{evidence}"
            )
    return "\n".join(lines)


# -- writing ---------------------------------------------------------------------------------


def task_mapping(t: PlanTask) -> dict[str, Any]:
    """A plan task as the mapping a plan file holds (defaults left out)."""
    out: dict[str, Any] = {"key": t.key, "title": t.title}
    if t.kind != "task":
        out["kind"] = t.kind
    out["size"] = t.size
    if t.role:
        out["role"] = t.role
    out["deps"] = _Flow(t.deps)
    if t.parent:
        out["parent"] = t.parent
    if t.acceptance:
        out["acceptance"] = list(t.acceptance)
    out.update(t.extra)
    if t.body:
        out["body"] = t.body.strip() + "\n"
    return out


def change_mapping(c: Change) -> dict[str, Any]:
    if c.task is not None:
        return {"op": "add", **task_mapping(c.task)}
    out: dict[str, Any] = {"op": c.op, "id": c.target}
    values = {"reason": c.reason or None, "size": c.size, "title": c.title, "body": c.body}
    out.update({k: v for k, v in values.items() if v})
    if c.deps is not None:
        out["deps"] = _Flow(c.deps)
    if c.acceptance is not None:
        out["acceptance"] = list(c.acceptance)
    return out


def render(plan: Plan, name: str, meta: Mapping[str, Any]) -> str:
    """The text of `plans/<name>.yaml`: a comment saying what to do, then the plan."""
    data: dict[str, Any] = {"kind": plan.kind, "goal": plan.goal}
    if plan.parent:
        data["parent"] = plan.parent
    if plan.feedback:
        data["feedback"] = plan.feedback
    data.update(meta)
    if plan.kind == "adapt":
        data["changes"] = [change_mapping(c) for c in plan.changes]
    else:
        data["tasks"] = [task_mapping(t) for t in plan.tasks]
    head = (
        f"# A nexus {'change list' if plan.kind == 'adapt' else 'plan'}: review it (edit it if "
        f"you like), then run `nexus approve {name}`.\n"
    )
    return head + dump(data)


def mark_approved(text: str, stamp: str, task_ids: Mapping[str, str]) -> str:
    """The plan file's text with `approved` and `task_ids` added at its end (the rest, with a
    person's comments and edits, is left as it is)."""
    block = dump({"approved": stamp, "task_ids": dict(task_ids) or {}})
    sep = "" if text.endswith("\n") else "\n"
    return f"{text}{sep}{block}"


class _Flow(list[str]):
    """A list written in flow style (`deps: [a, b]`)."""


def dump(data: Any) -> str:
    import yaml

    base: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    def text(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    def flow(dumper: Any, value: _Flow) -> Any:
        return dumper.represent_sequence("tag:yaml.org,2002:seq", list(value), flow_style=True)

    dumper: Any = type("PlanDumper", (base,), {})
    dumper.add_representer(str, text)
    dumper.add_representer(_Flow, flow)
    out: str = yaml.dump(
        data, Dumper=dumper, sort_keys=False, allow_unicode=True, width=100, indent=2
    )
    return out


# -- prompt sections -------------------------------------------------------------------------


def task_lines(tasks: Iterable[Task], limit: int = 200) -> tuple[list[str], int]:
    """One line per task for a prompt (open work first, cancelled ones left out) and how many
    were left out beyond `limit`."""
    order = {Status.IN_PROGRESS: 0, Status.ASSIGNED: 0, Status.READY: 1, Status.PENDING: 2,
             Status.FAILED: 1, Status.COMPLETE: 3}  # fmt: skip
    shown = sorted(
        (t for t in tasks if t.status is not Status.CANCELLED),
        key=lambda t: (order.get(t.status, 4), t.created or "", t.id),
    )
    lines = []
    for t in shown[:limit]:
        extra = [f"deps: {', '.join(t.deps)}"] if t.deps else []
        extra += [f"parent: {t.parent}"] if t.parent else []
        tail = f" ({'; '.join(extra)})" if extra else ""
        lines.append(f"- {t.id} [{t.status}, {t.size}, {t.role or t.kind}] {t.title}{tail}")
    return lines, max(len(shown) - limit, 0)

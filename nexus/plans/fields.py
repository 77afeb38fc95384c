"""Reading one plan task field by field, every problem noted with its key and field."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from nexus import taskfile
from nexus.errors import TaskFileError
from nexus.plans.model import EXTRA_FIELDS, KEY_RE, KINDS, SIZES, TASK_KEYS, PlanTask, Problem


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

"""Task file text ⇄ `Task`, with precise errors.

Pure.  `parse` reads a task file; `fields_to_task` validates an already-parsed mapping (the
cache stores mappings, so both paths share one validator).  Unknown fields are kept and
reported as warnings, never dropped.  `update` changes fields in place through
`frontmatter.set_fields`, so a person's layout survives.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nexus import frontmatter
from nexus.errors import TaskFileError
from nexus.task import Kind, Priority, Size, Status, Task, id_problem

ROW_FIELDS = tuple(
    f.name for f in dataclasses.fields(Task) if f.name not in ("path", "fields", "body")
)
"""The validated fields of a task (DESIGN.md §3), in the order the scan cache stores them."""
KNOWN_FIELDS = (*ROW_FIELDS, "script", "engine_settings")
"""Plus `script` (steps for the script engine) and `engine_settings` (per-task engine options)."""


@dataclass(frozen=True)
class Parsed:
    task: Task
    warnings: tuple[str, ...]


def parse(text: str, path: str, default_id: str) -> Parsed:
    """Parse a task file.  Raises TaskFileError naming the file, line, field and the fix."""
    if "\0" in text:
        raise TaskFileError(
            "the file contains NUL bytes", path=path, fix="remove them; task files are text"
        )
    try:
        sp = frontmatter.split(text)
        fields = frontmatter.load(sp)
    except frontmatter.FrontmatterError as exc:
        raise TaskFileError(exc.message, path=path, line=exc.line, fix=exc.fix) from None
    return fields_to_task(fields, sp.body, path, default_id)


def _fail(path: str, field: str, message: str, fix: str) -> TaskFileError:
    return TaskFileError(message, path=path, field=field, fix=fix)


def _enum(fields: Mapping[str, Any], key: str, enum: Any, default: Any, path: str) -> Any:
    value = fields.get(key)
    if value is None:
        return default
    try:
        return enum(str(value))
    except ValueError:
        allowed = " | ".join(str(m) for m in enum)
        raise _fail(
            path, key, f"{value!r} is not a valid {key}", f"use one of: {allowed}"
        ) from None


def text_field(fields: Mapping[str, Any], key: str, path: str) -> str | None:
    value = fields.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(path, key, f"must be text, not {type(value).__name__}", f"write '{key}: text'")
    return str(value)


def _number(fields: Mapping[str, Any], key: str, path: str, *, integer: bool) -> Any:
    value = fields.get(key)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or value < 0:
        kind = "a whole number" if integer else "a number"
        raise _fail(path, key, f"must be {kind} ≥ 0, not {value!r}", f"write '{key}: 3'")
    return value


def list_field(fields: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    value = fields.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        # `deps: a, b` is a common hand-written form; accept it.
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, list) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    ):
        raise _fail(path, key, "must be a list of text items", f"write '{key}: [a, b]'")
    return tuple(str(v) for v in value)


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def control_character(text: str) -> str | None:
    """The first character of `text` that has no place in a one-line value: NUL (git refuses
    it in commit messages), terminal escapes, line separators.  Tabs are fine."""
    found = _CONTROL.search(text)
    return found.group() if found else None


def fields_to_task(fields: Mapping[str, Any], body: str, path: str, default_id: str) -> Parsed:
    """Validate a frontmatter mapping and build the Task."""
    warnings = [
        f"{path}: unknown field {k!r} (kept as is; known fields: see `nexus validate --help`)"
        for k in fields
        if k not in KNOWN_FIELDS
    ]
    raw_id = fields.get("id", default_id)
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    problem = id_problem(raw_id)
    if problem:
        src = "field id" if "id" in fields else "the file name"
        raise _fail(path, "id", f"{problem} (from {src})", "rename it to something like 'auth-42'")
    title = text_field(fields, "title", path)
    if not title or not title.strip():
        raise _fail(path, "title", "a task needs a title", "add a line 'title: what to do'")
    if "\n" in title:
        raise _fail(path, "title", "the title must be one line", "move details into the body")
    if bad := control_character(title):
        raise _fail(
            path, "title", f"the title contains the control character {bad!r}", "retype the title"
        )
    deps = list_field(fields, "deps", path)
    for dep in deps:
        if p := id_problem(dep):
            raise _fail(path, "deps", p, "list task ids, e.g. 'deps: [auth-1, auth-2]'")
    parent = text_field(fields, "parent", path)
    if parent is not None and (p := id_problem(parent)):
        raise _fail(path, "parent", p, "name the id of the enclosing task")
    role = text_field(fields, "role", path)
    if role is not None and (p := id_problem(role, "role name")):
        raise _fail(path, "role", p, "name a file in agents/")
    cost = fields.get("cost") or {}
    if not isinstance(cost, dict):
        raise _fail(path, "cost", "must be a mapping", "remove it; nexus records costs itself")
    task = Task(
        id=str(raw_id),
        title=title.strip(),
        path=path,
        kind=_enum(fields, "kind", Kind, Kind.TASK, path),
        status=_enum(fields, "status", Status, Status.PENDING, path),
        size=_enum(fields, "size", Size, Size.M, path),
        role=role,
        deps=deps,
        parent=parent,
        priority=_enum(fields, "priority", Priority, Priority.NORMAL, path),
        engine=text_field(fields, "engine", path),
        model=text_field(fields, "model", path),
        max_retries=_number(fields, "max_retries", path, integer=True),
        attempts=_number(fields, "attempts", path, integer=True) or 0,
        timeout=_number(fields, "timeout", path, integer=False),
        acceptance=list_field(fields, "acceptance", path),
        context=list_field(fields, "context", path),
        touches=list_field(fields, "touches", path),
        verify=text_field(fields, "verify", path),
        budget_usd=_number(fields, "budget_usd", path, integer=False),
        session=text_field(fields, "session", path),
        assignee=text_field(fields, "assignee", path),
        created=text_field(fields, "created", path),
        updated=text_field(fields, "updated", path),
        started=text_field(fields, "started", path),
        finished=text_field(fields, "finished", path),
        error=text_field(fields, "error", path),
        cost=cost,
        fields=dict(fields),
        body=body,
    )
    return Parsed(task, tuple(warnings))


_KINDS = {str(k): k for k in Kind}
_STATUSES = {str(k): k for k in Status}
_SIZES = {str(k): k for k in Size}
_PRIORITIES = {str(k): k for k in Priority}


def task_row(task: Task) -> list[Any]:
    """The validated task as a flat list of plain values (for the scan cache; tuples stay
    tuples, which marshal keeps)."""
    return [
        str(v) if name in ("kind", "status", "size", "priority") else v
        for name in ROW_FIELDS
        for v in (getattr(task, name),)
    ]


def task_from_row(row: list[Any], path: str) -> Task:
    """Rebuild a task from `task_row` output without validating again.  Such tasks carry no
    `fields` or `body`: `Workspace.load_task` reads those from the file."""
    values = dict(zip(ROW_FIELDS, row, strict=True))
    values["kind"] = _KINDS[values["kind"]]
    values["status"] = _STATUSES[values["status"]]
    values["size"] = _SIZES[values["size"]]
    values["priority"] = _PRIORITIES[values["priority"]]
    values.update(path=path, fields={}, body="")
    # Filling __dict__ directly skips the frozen dataclass's per-field __setattr__ calls: the
    # values were validated when the row was made, and this is 10x faster for 10,000 tasks.
    task = object.__new__(Task)
    task.__dict__.update(values)
    return task


def update(text: str, changes: Mapping[str, Any], append: str | None = None) -> str:
    """Set fields (None or frontmatter.DELETE removes one) and optionally append markdown to the
    body.  Everything else in the file stays as it was."""
    updates = {k: (frontmatter.DELETE if v is None else v) for k, v in changes.items()}
    out = frontmatter.set_fields(text, updates)
    if append:
        nl = "\r\n" if "\r\n" in text else "\n"
        if not out.endswith(("\n", "\r\n")):
            out += nl
        out += nl + append.rstrip().replace("\n", nl) + nl
    return out


def new_file(fields: Mapping[str, Any], body: str = "") -> str:
    """Text of a new task file; fields are written in the given order, None values omitted."""
    return frontmatter.new_document({k: v for k, v in fields.items() if v is not None}, body)


_UNPRINTABLE = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f]")  # NUL, terminal escapes; not line breaks


def safe_block(text: str) -> str:
    """Agent output made safe to paste under a markdown heading in a task file: it can never
    end the frontmatter (that is only looked for at the top) but a line of `---` could confuse
    other tools, so such lines are indented.  NUL bytes and terminal escapes are dropped."""
    lines = []
    for line in _UNPRINTABLE.sub("", text).splitlines():
        stripped = line.strip()
        lines.append("    " + line if stripped in ("---", "...") else line)
    return "\n".join(lines)


def _three_ways(
    base: str, ours: str, theirs: str
) -> tuple[tuple[Any, ...], tuple[Any, ...]] | None:
    """The split texts and the loaded fields of a three-way merge; None if one is broken."""
    try:
        splits = tuple(frontmatter.split(text) for text in (base, ours, theirs))
        return splits, tuple(frontmatter.load(sp) for sp in splits)
    except frontmatter.FrontmatterError:
        return None


def merge_save(base: str, ours: str, theirs: str) -> str | None:
    """`ours` (nexus's change of `base`) applied on top of `theirs`, a person's save that landed
    after nexus read `base`; None when they collide: both changed one field to different
    values, or nexus rewrote the body (not only appended to it) and the person edited it."""
    three = _three_ways(base, ours, theirs)
    if three is None:
        return None
    (sb, so, _st), (b, o, t) = three
    missing = object()
    for key in (o.keys() | b.keys()) - {"updated"}:
        mine, was, now = o.get(key, missing), b.get(key, missing), t.get(key, missing)
        if mine != was and now != was and now != mine:
            return None
    if not so.body.startswith(sb.body):
        return None  # nexus rewrote the body (not only appended to it)
    restored = restore_lost(base, ours, theirs)
    return restored[0] if restored else theirs


def restore_lost(base: str, ours: str, theirs: str) -> tuple[str, list[str]] | None:
    """`theirs` with the changes `base` → `ours` that it lacks, or None when it lacks none.

    For a person's editor that saved a buffer loaded before nexus wrote `ours`: the fields
    nexus changed that the save still has at their `base` values get nexus's values back, and
    a section nexus appended to the body is appended again.  A field the save changed to
    something else keeps the person's value.  Returns the merged text and what was restored.
    """
    three = _three_ways(base, ours, theirs)
    if three is None:
        return None
    (sb, so, st), (b, o, t) = three
    missing = object()
    lost = {
        k: o.get(k, frontmatter.DELETE)
        for k in o.keys() | b.keys()
        if o.get(k, missing) != b.get(k, missing) and t.get(k, missing) == b.get(k, missing)
    }
    appended = so.body[len(sb.body) :] if so.body.startswith(sb.body) else ""
    body_lost = bool(appended.strip()) and appended.strip() not in st.body
    if not body_lost and set(lost) <= {"updated"}:
        return None  # nothing but nexus's timestamp: the save is the newer truth
    merged = frontmatter.set_fields(theirs, lost) if lost else theirs
    restored = [f"{k} → {o[k]}" if k in o else f"{k} removed" for k in sorted(lost)]
    if body_lost:
        if not merged.endswith(("\n", "\r")):
            merged += st.newline
        merged += appended
        restored.append(appended.strip().splitlines()[0])
    return merged, restored

"""Text rendering for the terminal.  Pure: values in, strings out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from nexus import dag, journal
from nexus.errors import TaskFileError
from nexus.task import Status, Task

MARK = {
    Status.PENDING: "·",
    Status.READY: "○",
    Status.ASSIGNED: "◔",
    Status.IN_PROGRESS: "◑",
    Status.COMPLETE: "●",
    Status.FAILED: "✗",
    Status.CANCELLED: "–",
}
COLOR = {
    Status.READY: "cyan",
    Status.ASSIGNED: "yellow",
    Status.IN_PROGRESS: "yellow",
    Status.COMPLETE: "green",
    Status.FAILED: "red",
    Status.CANCELLED: "bright_black",
}


def _style(text: str, status: Status, color: bool) -> str:
    if not color or status not in COLOR:
        return text
    import click

    return click.style(text, fg=COLOR[status])


def bar(fraction: float, width: int = 20) -> str:
    full = round(fraction * width)
    return "█" * full + "░" * (width - full)


def task_line(t: Task, color: bool, indent: int = 0) -> str:
    meta = " ".join(x for x in (str(t.size), t.role or "") if x)
    status = _style(f"{MARK[t.status]} {t.status:<11}", t.status, color)
    return f"{'  ' * indent}{status} {t.id:<10} {t.title}  [{meta}]"


def status_tree(
    name: str,
    goal: str,
    tasks: Mapping[str, Task],
    counts: Mapping[str, int],
    progress: float,
    broken: Sequence[TaskFileError],
    color: bool = False,
) -> str:
    lines = [f"{name}" + (f" — {goal}" if goal else "")]
    total = len(tasks)
    summary = " · ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines.append(
        f"{bar(progress)} {progress * 100:.0f}%  {counts['complete']}/{total} complete"
        + (f"  ({summary})" if summary else "")
    )
    children = dag.children_of(tasks)
    order = {tid: i for i, tid in enumerate(dag.topological_order(tasks))}
    roots = [t for t in tasks.values() if t.parent is None or t.parent not in tasks]

    def key(t: Task) -> tuple[int, str]:
        return (order.get(t.id, 0), t.id)

    def walk(t: Task, depth: int, seen: set[str]) -> None:
        line = task_line(t, color, depth + 1)
        kids = children.get(t.id, [])
        if kids:
            done = sum(1 for k in kids if tasks[k].status is Status.COMPLETE)
            line += f"  {done}/{len(kids)}"
        lines.append(line)
        for k in sorted((tasks[k] for k in kids if k not in seen), key=key):
            seen.add(k.id)
            walk(k, depth + 1, seen)

    if tasks:
        lines.append("")
    seen: set[str] = set()
    for t in sorted(roots, key=key):
        seen.add(t.id)
        walk(t, 0, seen)
    if broken:
        lines += ["", f"{len(broken)} file(s) could not be read (fix them; the rest works):"]
        lines += [f"  {e}" for e in broken]
    return "\n".join(lines)


def task_detail(t: Task, body: str, why: Sequence[str]) -> str:
    rows = [
        ("id", t.id),
        ("title", t.title),
        ("status", str(t.status)),
        ("kind", str(t.kind)),
        ("size", str(t.size)),
        ("role", t.role or "-"),
        ("priority", str(t.priority)),
        ("deps", ", ".join(t.deps) or "-"),
        ("parent", t.parent or "-"),
        ("attempts", str(t.attempts)),
        ("path", t.path),
    ]
    for key in ("engine", "model", "session", "assignee", "error", "created", "updated"):
        value = getattr(t, key)
        if value:
            rows.append((key, str(value)))
    width = max(len(k) for k, _ in rows)
    out = [f"{k:<{width}}  {v}" for k, v in rows]
    if t.acceptance:
        out += ["", "acceptance:"] + [f"  - {a}" for a in t.acceptance]
    if why:
        out += ["", "why:"] + [f"  {w}" for w in why]
    if body.strip():
        out += ["", body.rstrip()]
    return "\n".join(out)


def log_lines(entries: Sequence[journal.Entry]) -> list[str]:
    out = []
    for e in entries:
        when = dt.datetime.fromtimestamp(e.time, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        actor = e.actor or "?"
        for tid in e.created:
            out.append(f"{when}  {e.commit[:8]}  {actor:<7} {tid:<10} created")
        if e.transitions:
            for tid, src, dst in e.transitions:
                out.append(f"{when}  {e.commit[:8]}  {actor:<7} {tid:<10} {src} -> {dst}")
        elif not e.created:
            out.append(f"{when}  {e.commit[:8]}  {actor:<7} {e.subject}")
    return out

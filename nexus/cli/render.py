"""Text rendering for the terminal.  Pure: values in, strings out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from nexus import dag, journal
from nexus.errors import TaskFileError
from nexus.task import Status, Task
from nexus.tui.view import elapsed, fraction, seconds_since, subtree_progress

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
    subtree = subtree_progress(tasks)
    if tasks:
        lines.append("")
    for depth, t in tree_rows(tasks):
        line = task_line(t, color, depth + 1)
        if t.id in subtree:
            done, counted = subtree[t.id]
            line += f"  {bar(fraction(done, counted), 10)} {done}/{counted}"
        lines.append(line)
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


# -- the status tree's progress bars and running agents (plain text and rich) -------------------


def tree_rows(tasks: Mapping[str, Task]) -> Iterator[tuple[int, Task]]:
    """(depth, task) in tree order: roots, then each task's children below it, siblings in
    dependency order.  Iterative, so a hierarchy thousands deep prints."""
    children = dag.children_of(tasks)
    order = {tid: i for i, tid in enumerate(dag.topological_order(tasks))}

    def ordered(items: Iterator[Task]) -> list[Task]:
        return sorted(items, key=lambda t: (order.get(t.id, 0), t.id))

    roots = ordered(t for t in tasks.values() if t.parent is None or t.parent not in tasks)
    seen = {t.id for t in roots}
    stack = [(0, t) for t in reversed(roots)]
    while stack:
        depth, t = stack.pop()
        yield depth, t
        kids = ordered(tasks[k] for k in children.get(t.id, ()) if k not in seen)
        seen.update(k.id for k in kids)
        stack += [(depth + 1, k) for k in reversed(kids)]


def running_block(
    agents: Sequence[Mapping[str, Any]], daemon: Mapping[str, Any] | None, now: dt.datetime
) -> str:
    """The running agents (role, engine, task, elapsed), or one line saying no daemon runs."""
    if daemon is None:
        return "no `nexus watch` is running: no agent runs (start one with `nexus watch`)"
    if not agents:
        return f"`nexus watch` is running (pid {daemon.get('pid')}): no agent runs right now"
    rows = [agent_row(a, now) for a in agents]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    out = [f"running agents ({len(rows)}):"]
    for role, engine, task_id, title, took in rows:
        cells = (f"{role:<{widths[0]}}", f"{engine:<{widths[1]}}", f"{task_id:<{widths[2]}}")
        out.append(f"  {'  '.join(cells)}  {title}  {took}")
    return "\n".join(out)


def agent_row(agent: Mapping[str, Any], now: dt.datetime) -> tuple[str, str, str, str, str]:
    """role, engine[/model], task id, title, elapsed: one running agent's cells."""
    engine = str(agent.get("engine") or "?")
    if agent.get("model"):
        engine += f"/{agent['model']}"
    return (
        str(agent.get("role") or "-"),
        engine,
        str(agent["task_id"]),
        str(agent.get("title") or ""),
        elapsed(seconds_since(agent.get("started"), now)),
    )


def status_rich(
    name: str,
    goal: str,
    tasks: Mapping[str, Task],
    counts: Mapping[str, int],
    progress: float,
    broken: Sequence[TaskFileError],
) -> Any:
    """`nexus status` for a terminal: the same tree as `status_tree`, drawn with rich (colours,
    tree guides, a bar for the project and for every task with children)."""
    from rich.console import Group
    from rich.text import Text
    from rich.tree import Tree

    summary = " · ".join(f"{n} {s}" for s, n in counts.items() if n)
    head = Text.assemble(
        (name, "bold"),
        (f" — {goal}" if goal else "", ""),
        "\n",
        rich_bar(progress, 30),
        f" {progress * 100:.0f}%  {counts['complete']}/{len(tasks)} complete",
        (f"  ({summary})" if summary else "", "dim"),
    )
    tree = Tree(head, guide_style="bright_black")
    subtree = subtree_progress(tasks)
    nodes: list[Tree] = [tree]
    for depth, t in tree_rows(tasks):
        label = Text.assemble(
            (f"{MARK[t.status]} {t.status:<11}", COLOR.get(t.status, "")),
            f" {t.id}  ",
            (t.title, "bold" if t.id in subtree else ""),
            (f"  [{' '.join(x for x in (str(t.size), t.role or '') if x)}]", "dim"),
        )
        if t.id in subtree:
            done, counted = subtree[t.id]
            label.append("  ")
            label.append_text(rich_bar(fraction(done, counted), 10))
            label.append(f" {done}/{counted}")
        del nodes[depth + 1 :]
        nodes.append(nodes[depth].add(label))
    parts: list[Any] = [tree]
    if broken:
        parts.append(
            Text(f"\n{len(broken)} file(s) could not be read (fix them; the rest works):", "red")
        )
        parts += [Text(f"  {e}") for e in broken]
    return Group(*parts)


def rich_bar(value: float, width: int) -> Any:
    from rich.text import Text

    full = round(value * width)
    return Text.assemble(("━" * full, "green"), ("━" * (width - full), "bright_black"))


def running_rich(
    agents: Sequence[Mapping[str, Any]], daemon: Mapping[str, Any] | None, now: dt.datetime
) -> Any:
    """The running agents as a rich table (or the one line of `running_block`)."""
    from rich.table import Table
    from rich.text import Text

    if daemon is None or not agents:
        return Text(running_block(agents, daemon, now), "dim")
    table = Table(title=f"running agents ({len(agents)})", title_justify="left", box=None)
    for column in ("role", "engine", "task", "title", "elapsed"):
        table.add_column(column, style="cyan" if column == "task" else "")
    for a in agents:
        table.add_row(*agent_row(a, now))
    return table

"""Workspace and task commands: init, add, list, show, status, complete, fail, cancel, retry,
edit, validate, why, resume, log."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nexus.cli.main import cli

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nexus.service import Service, Snapshot, SyncReport
    from nexus.task import Task


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def emit_json(data: Any, tasks: Snapshot | None = None, order: Sequence[Task] = ()) -> None:
    """Print `data` as JSON: indented for a person at a terminal, compact (C encoder, ~20x
    faster) for programs.  With `tasks`, the summaries of `order` are added (as a list, or
    as the key "tasks" of a `data` dict) from the encodings the scan cached."""
    if tasks is None or sys.stdout.isatty():
        if tasks is not None:
            listed = [t.summary() for t in order]
            data = listed if data is None else {**data, "tasks": listed}
        click.echo(json.dumps(data, indent=2 if sys.stdout.isatty() else None, ensure_ascii=False))
        return
    from nexus.store import json_summaries

    listed_text = json_summaries(order, tasks.encoded)
    if data is None:
        click.echo(listed_text)
    else:
        head = json.dumps({**data, "tasks": None}, ensure_ascii=False)
        click.echo(head[: -len("null}")] + listed_text + "}")


def service(ctx: click.Context, actor: str = "cli") -> Service:
    from nexus.service import Service
    from nexus.store import Workspace

    ws = Workspace.find(ctx.obj.get("workspace"))
    for w in ws.config.warnings:
        warn(w)
    return Service(ws, actor=actor, warn=warn)


def synced(ctx: click.Context) -> tuple[Service, SyncReport]:
    """A service whose workspace has been brought up to date (and said what it did)."""
    svc = service(ctx)
    report = svc.sync()
    tell(report)
    return svc, report


def tell(report: SyncReport) -> None:
    if report.person_edits:
        click.echo(f"committed your edits: {', '.join(report.person_edits)}", err=True)
    for t in report.transitions:
        click.echo(f"{t.task_id}: {t.src} -> {t.dst} ({t.reason})", err=True)


def split_ids(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for raw in values for v in raw.split(",") if v.strip()]


@cli.command()
@click.argument("folder", required=False, default=".", type=click.Path(path_type=Path))
@click.option("--name", help="Project name (default: the folder's name).")
@click.option("--goal", default="", help="One line: what the project is for.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def init(folder: Path, name: str | None, goal: str, as_json: bool) -> None:
    """Create a workspace in FOLDER (default: here): a new git repo, or a subfolder of one."""
    from nexus.scaffold import init as do_init

    ws = do_init(folder, name=name, goal=goal)
    if as_json:
        emit_json({"workspace": str(ws.root), "name": ws.config.name})
    else:
        click.echo(f"created workspace {ws.config.name} in {ws.root}")
        click.echo('next: `nexus add "a task" --role aria`, then `nexus status`', err=True)


@cli.command()
@click.argument("title")
@click.option(
    "--kind",
    default="task",
    show_default=True,
    type=click.Choice(["project", "milestone", "task", "subtask"]),
)
@click.option(
    "--size",
    default="M",
    show_default=True,
    type=click.Choice(["S", "M", "L", "XL"], case_sensitive=False),
)
@click.option("--role", help="Agent role (a file in agents/).")
@click.option("--deps", multiple=True, help="Ids this task waits for (comma-separated).")
@click.option("--parent", help="Id of the enclosing task.")
@click.option(
    "--priority",
    default="normal",
    show_default=True,
    type=click.Choice(["low", "normal", "high", "critical"]),
)
@click.option("--acceptance", multiple=True, help="An acceptance criterion (repeatable).")
@click.option("--body", default="", help="Description (markdown).")
@click.option("--engine", help="Engine override (else routed by size).")
@click.option("--model", help="Model override.")
@click.option("--id", "task_id", help="Choose the id yourself (default: 8 random characters).")
@click.option("--json", "as_json", is_flag=True, help="Print the new task as JSON.")
@click.pass_context
def add(
    ctx: click.Context,
    title: str,
    kind: str,
    size: str,
    role: str | None,
    deps: tuple[str, ...],
    parent: str | None,
    priority: str,
    acceptance: tuple[str, ...],
    body: str,
    engine: str | None,
    model: str | None,
    task_id: str | None,
    as_json: bool,
) -> None:
    """Add a task; prints its id."""
    svc = service(ctx)
    task = svc.add(
        title,
        kind=kind,
        size=size.upper(),
        role=role,
        deps=split_ids(deps),
        parent=parent,
        priority=priority,
        acceptance=list(acceptance),
        body=body,
        engine=engine,
        model=model,
        task_id=task_id,
    )
    if as_json:
        emit_json(task.summary())
    else:
        click.echo(task.id)
        click.echo(f"created {task.path} ({task.status})", err=True)


@cli.command(name="list")
@click.option("--status", "statuses", multiple=True, help="Only these statuses (repeatable).")
@click.option("--role", help="Only this role.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, statuses: tuple[str, ...], role: str | None, as_json: bool) -> None:
    """List tasks."""
    svc, _ = synced(ctx)
    snap = svc.current()
    wanted = set(split_ids(statuses))
    tasks = [
        t
        for t in snap.tasks.values()
        if (not wanted or str(t.status) in wanted) and (role is None or t.role == role)
    ]
    tasks.sort(key=lambda t: (t.created or "", t.id))
    if as_json:
        emit_json(None, snap, tasks)
        return
    from nexus.cli.render import task_line

    color = sys.stdout.isatty()
    for t in tasks:
        click.echo(task_line(t, color))
    for e in snap.broken:
        warn(str(e))


@cli.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Show one task: fields, why it is where it is, and its description."""
    from nexus.cli.render import task_detail

    svc, _ = synced(ctx)
    snap = svc.current()
    task, _text = svc.ws.load_task(svc.resolve(snap.tasks, task_id))
    why = svc.why(task, snap)
    if as_json:
        emit_json({**task.summary(), "body": task.body, "why": why, "fields": dict(task.fields)})
    else:
        click.echo(task_detail(task, task.body, why))


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """The task tree with counts and progress bars, the agents running now (and any files that
    could not be read)."""
    from nexus.cli.render import running_block, status_tree
    from nexus.service import status_counts

    svc, _ = synced(ctx)
    snap = svc.current()
    counts, progress = status_counts(snap.tasks)
    daemon = svc.daemon_state()
    running = svc.running_agents(daemon, snap)
    if as_json:
        emit_json(
            {
                "name": svc.ws.config.name,
                "goal": svc.ws.config.goal,
                "counts": counts,
                "progress": progress,
                "broken": [e.to_json() for e in snap.broken],
                "problems": [p.to_json() for p in snap.problems],
                "running": running,
                "budget": svc.budget(snap).to_json(),
            },
            snap,
            list(snap.tasks.values()),
        )
        return
    cfg = svc.ws.config
    if sys.stdout.isatty():
        from rich.console import Console

        from nexus.cli.render import running_rich, status_rich

        console = Console(highlight=False)
        console.print(status_rich(cfg.name, cfg.goal, snap.tasks, counts, progress, snap.broken))
        console.print(running_rich(running, daemon, svc.now()))
    else:
        click.echo(status_tree(cfg.name, cfg.goal, snap.tasks, counts, progress, snap.broken))
        click.echo("\n" + running_block(running, daemon, svc.now()))
    _budget_lines(svc, snap)
    for p in snap.problems:
        warn(str(p))


def _budget_lines(svc: Service, snap: Snapshot) -> None:
    from nexus import budgets

    if not budgets.configured(snap.tasks.values(), svc.ws.config.project_budget):
        return  # no budget set: nothing to show, and the journal need not be read
    lines = budgets.render(svc.budget(snap))
    if lines:
        click.echo("")
    for line in lines:
        click.echo(click.style(line, fg="yellow") if sys.stdout.isatty() else line)


def _move(ctx: click.Context, task_id: str, dst: str, reason: str, **kw: Any) -> None:
    from nexus.task import Status

    before: list[Status] = []  # read inside the change: a scan of its own cost ~0.3 s at 10,000
    task = service(ctx).set_status(task_id, Status(dst), reason=reason, moved_from=before, **kw)
    click.echo(f"{task.id}: {before[0]} -> {task.status}")


@cli.command()
@click.argument("task_id")
@click.option("--result", help="What was done (appended to the task under '## Result').")
@click.pass_context
def complete(ctx: click.Context, task_id: str, result: str | None) -> None:
    """Mark a task complete; its dependents are promoted."""
    _move(ctx, task_id, "complete", "completed from the CLI", result=result)


@cli.command()
@click.argument("task_id")
@click.option("--reason", required=True, help="Why it failed.")
@click.pass_context
def fail(ctx: click.Context, task_id: str, reason: str) -> None:
    """Mark a task failed (retried automatically while it has retries left)."""
    _move(ctx, task_id, "failed", "failed from the CLI", error=reason)


@cli.command()
@click.argument("task_id")
@click.pass_context
def cancel(ctx: click.Context, task_id: str) -> None:
    """Cancel a task (its dependents stay pending)."""
    _move(ctx, task_id, "cancelled", "cancelled from the CLI")


@cli.command()
@click.argument("task_id")
@click.pass_context
def retry(ctx: click.Context, task_id: str) -> None:
    """Reopen a failed, cancelled or complete task (attempts start again from 0)."""
    _move(ctx, task_id, "pending", "reopened from the CLI")


@cli.command()
@click.argument("task_id")
@click.argument("assignments", nargs=-1)
@click.pass_context
def edit(ctx: click.Context, task_id: str, assignments: tuple[str, ...]) -> None:
    """Set fields: `nexus edit ID size=L deps=[a,b]`.  Without FIELD=VALUE, opens $EDITOR."""
    svc = service(ctx)
    if not assignments:
        task = svc.resolve(svc.snapshot().tasks, task_id)
        click.edit(filename=str(svc.ws.root / task.path))
        tell(svc.sync())
        return
    pairs: dict[str, str] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"{item!r} is not FIELD=VALUE")
        pairs[key.strip()] = value
    task = svc.edit(task_id, pairs)
    click.echo(f"{task.id}: set {', '.join(pairs)}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def validate(ctx: click.Context, as_json: bool) -> None:
    """Check every file; list each problem (file, field, message, fix).  Exit 1 if any."""
    svc = service(ctx)
    snap = svc.current()
    errors = [e.to_json() | {"severity": "error"} for e in snap.broken]
    errors += [p.to_json() for p in snap.problems]
    warnings = [*svc.ws.config.warnings, *snap.warnings]
    if as_json:
        emit_json({"problems": errors, "warnings": warnings, "tasks": len(snap.tasks)})
    else:
        for e in snap.broken:
            click.echo(f"error: {e}")
        for p in snap.problems:
            click.echo(f"{p.severity}: {p}")
        for w in warnings:
            click.echo(f"warning: {w}")
        n = sum(1 for e in errors if e["severity"] == "error")
        click.echo(
            f"{len(snap.tasks)} tasks, {n} error(s), {len(errors) - n + len(warnings)} warning(s)",
            err=True,
        )
    if any(e["severity"] == "error" for e in errors):
        ctx.exit(1)


@cli.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def why(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Why a task is not running (what it waits for, or why it failed)."""
    svc, _ = synced(ctx)
    snap = svc.current()
    task = svc.resolve(snap.tasks, task_id)
    reasons = svc.why(task, snap)
    if as_json:
        emit_json({"id": task.id, "status": str(task.status), "reasons": reasons})
    else:
        click.echo(f"{task.id} ({task.title}) is {task.status}")
        for r in reasons:
            click.echo(f"  {r}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def resume(ctx: click.Context, as_json: bool) -> None:
    """Reconcile (repair a crashed run, commit edits, promote), then show what is ready."""
    svc, report = synced(ctx)
    snap = svc.current()
    ready = sorted(
        (t for t in snap.tasks.values() if str(t.status) == "ready"),
        key=lambda t: (t.priority.rank, t.created or "", t.id),
    )
    if as_json:
        emit_json(
            {
                "repaired": report.repaired,
                "person_edits": report.person_edits,
                "transitions": [
                    {"task": t.task_id, "from": str(t.src), "to": str(t.dst), "reason": t.reason}
                    for t in report.transitions
                ],
                "ready": [t.summary() for t in ready],
            }
        )
        return
    if report.repaired:
        click.echo(f"repaired: committed {len(report.repaired)} file(s) an interrupted run wrote")
    from nexus.cli.render import task_line

    click.echo(f"{len(ready)} ready:" if ready else "nothing is ready")
    for t in ready:
        click.echo(task_line(t, sys.stdout.isatty(), 1))


@cli.command()
@click.argument("task_id", required=False)
@click.option("--since", help="Only commits since then (git's syntax: '2 hours ago', a date).")
@click.option("--actor", help="Only this actor (daemon, cli, mcp, web, user, ...).")
@click.option("--role", help="Only runs of this agent role (the Nexus-Agent trailer).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def log(ctx: click.Context, task_id: str | None, since: str | None, actor: str | None,
        role: str | None, as_json: bool) -> None:  # fmt: skip
    """Transitions from the git history (time, commit, actor, task, from, to)."""
    from nexus.cli.render import log_lines

    svc = service(ctx)
    tid = svc.resolve(svc.snapshot().tasks, task_id).id if task_id else None
    entries = svc.log(tid, [f"--since={since}"] if since else ())
    entries = [e for e in entries if (actor is None or e.actor == actor)
               and (role is None or e.trailers.get("Agent") == role)]  # fmt: skip
    if as_json:
        emit_json([e.to_json(tid) for e in entries])
        return
    for line in log_lines(entries):
        click.echo(line)

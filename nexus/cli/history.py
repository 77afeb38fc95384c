"""History from the journal: `nexus cost` and `nexus trace`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from nexus.cli.main import cli
from nexus.cli.tasks import emit_json, synced


@cli.command()
@click.option("--by", "by", multiple=True,
              type=click.Choice(["task", "role", "engine", "model", "day"]),
              help="Break the totals down by this (repeatable; default: all).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cost(ctx: click.Context, by: tuple[str, ...], as_json: bool) -> None:
    """What the agents cost: read back from the git journal's Nexus-Cost-USD and Nexus-Tokens
    trailers (so it covers every run ever committed, on any machine)."""
    from nexus import costs

    svc, _ = synced(ctx)
    summary = svc.cost(list(by) or None)
    if as_json:
        emit_json(summary)
    else:
        click.echo(costs.render(summary))


def trace_rows(entries: list[Any], task_id: str) -> list[dict[str, Any]]:
    """The task's timeline, oldest first: one row per commit that touched it, with the time
    spent since the previous one."""
    rows: list[dict[str, Any]] = []
    previous: int | None = None
    for e in reversed(entries):  # git log's order, newest first (times tie within a second)
        moves = [f"{src} -> {dst}" for tid, src, dst in e.transitions if tid == task_id]
        if task_id in e.created:
            moves.insert(0, "created")
        t = e.trailers
        rows.append({
            "time": dt.datetime.fromtimestamp(e.time, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": e.commit, "actor": e.actor, "transitions": moves,
            "engine": t.get("Engine"), "model": t.get("Model"), "agent": t.get("Agent"),
            "session": t.get("Session"), "attempt": t.get("Attempt"),
            "cost_usd": e.cost_usd() if "Cost-USD" in t else None, "tokens": t.get("Tokens"),
            "seconds_since_previous": None if previous is None else e.time - previous,
        })  # fmt: skip
        previous = e.time
    return rows


@cli.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def trace(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """A task's timeline from the journal: each transition with its actor, engine, session,
    attempt, cost, the time since the step before, and the commit."""
    svc, _ = synced(ctx)
    task = svc.resolve(svc.current().tasks, task_id)
    rows = trace_rows(svc.log(task.id), task.id)
    if as_json:
        emit_json(
            {"id": task.id, "title": task.title, "status": str(task.status), "timeline": rows}
        )
        return
    click.echo(f"{task.id}  {task.title}  ({task.status})")
    for r in rows:
        extra = " ".join(f"{k}={r[k]}" for k in ("engine", "model", "session", "attempt", "tokens")
                         if r.get(k))  # fmt: skip
        cost = f" ${r['cost_usd']:.4f}" if r["cost_usd"] is not None else ""
        wait = "" if r["seconds_since_previous"] is None else f" +{r['seconds_since_previous']}s"
        click.echo(f"  {r['time']} {r['commit'][:8]} {r['actor']:<7} {', '.join(r['transitions'])}"
                   f"{wait}{cost} {extra}".rstrip())  # fmt: skip

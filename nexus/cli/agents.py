"""Roles: `nexus agents`."""

from __future__ import annotations

import click

from nexus.cli.main import cli
from nexus.cli.tasks import emit_json, synced


@cli.command(name="agents")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def agents_(ctx: click.Context, as_json: bool) -> None:
    """The roles in agents/: engine, model, session, and what each is working on."""
    svc, _ = synced(ctx)
    rows = svc.agents_status()
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        engine = r.get("engine") or "(default)"
        session = r["session_id"] or "-"
        doing = ", ".join(r["current_tasks"]) or "idle"
        click.echo(
            f"{r['role']:<8} {r['name']:<12} {r.get('title') or '':<15} "
            f"engine {engine:<12} session {r['session']:<10} {session:<38} {doing}"
        )

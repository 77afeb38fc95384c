"""`nexus dashboard`: the live full-screen terminal view (Textual is imported only here, when
the command runs, so every other command starts without it)."""

from __future__ import annotations

import sys

import click

from nexus.cli.main import cli


@cli.command()
@click.option(
    "--interval",
    type=click.FloatRange(0.2, 60),
    default=0.5,
    show_default=True,
    help="Seconds between looks at the workspace for changes.",
)
@click.pass_context
def dashboard(ctx: click.Context, interval: float) -> None:
    """A live full-screen view: the board by status, running agents with elapsed time, recent
    transitions, costs and budget pauses.  Updates as files change; `q` quits."""
    from nexus.cli.tasks import service
    from nexus.errors import NexusError

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise NexusError(
            "nexus dashboard needs a terminal (its input and output are not one)",
            fix="run it in a terminal (over SSH too); from scripts use `nexus status --json`",
        )
    svc = service(ctx)
    from nexus.tui.app import run

    ctx.exit(run(svc, interval))

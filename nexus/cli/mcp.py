"""The MCP surface: `nexus mcp` (the stdio server) and `nexus setup` (register it with Claude
Code)."""

from __future__ import annotations

from pathlib import Path

import click

from nexus.cli.main import cli


@cli.command()
@click.option(
    "--workspace",
    "workspace",
    metavar="DIR",
    help="The project used when a call names none (same as `nexus --workspace DIR mcp`).",
)
@click.option(
    "--projects-root",
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where projects (workspaces) are created and listed (default: the working directory).",
)
@click.option(
    "--tools",
    "tool_set",
    type=click.Choice(["core", "all"]),
    default="core",
    show_default=True,
    help="core: the lifecycle (10 tools); all: also adapt, review, add_context, cost, task "
    "and message tools (18).",
)
@click.pass_context
def mcp(
    ctx: click.Context, workspace: str | None, projects_root: Path | None, tool_set: str
) -> None:
    """Serve nexus to an MCP client (Claude Code, ...) over stdio.

    Tools act on projects: workspaces under --projects-root.  A call without a project uses the
    one last created or resumed, else --workspace, else the workspace around the working
    directory.  Logs go to stderr; stdout carries only the protocol.
    """
    from nexus.mcp.projects import Projects
    from nexus.mcp.server import serve

    explicit = workspace or ctx.obj.get("workspace")
    projects = Projects(
        projects_root or Path.cwd(),
        Path(explicit) if explicit else None,
        warn=lambda m: click.echo(f"warning: {m}", err=True),
    )
    serve(projects, tool_set)


@cli.command()
@click.option(
    "--scope",
    type=click.Choice(["project", "user"]),
    default="project",
    show_default=True,
    help="project: .mcp.json at the repository's root (shared with the repo); "
    "user: `claude mcp add --scope user` (every project of yours).",
)
@click.option("--remove", is_flag=True, help="Undo what `nexus setup` did (only that).")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
def setup(scope: str, remove: bool, dry_run: bool) -> None:
    """Register `nexus mcp` with Claude Code (or, with --remove, unregister it)."""
    from nexus import setup as do

    report = (do.remove if remove else do.register)(scope, Path.cwd(), dry_run=dry_run)
    for line in report:
        click.echo(line)

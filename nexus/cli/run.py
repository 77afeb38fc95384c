"""Running agents: watch, pipeline, demo, doctor."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from nexus import warm
from nexus.cli.main import cli
from nexus.cli.tasks import emit_json, service, warn

if TYPE_CHECKING:
    from nexus.daemon import Daemon


def make_daemon(
    ctx: click.Context,
    workers: int | None,
    engine: str | None,
    until_idle: bool,
    grace: float,
    verbose: bool,
    quiet: bool,
) -> Daemon:
    from nexus.console import ConsoleSink
    from nexus.daemon import Daemon
    from nexus.events import Bus, JsonlSink

    svc = service(ctx, actor="daemon")
    bus = Bus()
    bus.subscribe(JsonlSink(svc.ws.runtime / "events.jsonl"))
    if not quiet:
        bus.subscribe(ConsoleSink(verbose=verbose))
    return Daemon(svc, bus=bus, workers=workers, engine=engine, until_idle=until_idle, grace=grace)


@cli.command()
@click.option(
    "--workers", type=click.IntRange(1, 256), help="Agents at once (default: limits.workers)."
)
@click.option(
    "--until-idle",
    is_flag=True,
    help="Exit when nothing runs or can run (1: a task failed for good, or a budget holds one).",
)
@click.option("--engine", help="Run every task on this engine (overrides routing).")
@click.option(
    "--grace", default=10.0, show_default=True, help="Seconds running agents get on SIGTERM/Ctrl-C."
)
@click.option("-v", "--verbose", is_flag=True, help="Also show the agents' output lines.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def watch(
    ctx: click.Context,
    workers: int | None,
    until_idle: bool,
    engine: str | None,
    grace: float,
    verbose: bool,
    quiet: bool,
) -> None:
    """Run ready tasks as they become ready, until stopped (Ctrl-C, SIGTERM)."""
    daemon = make_daemon(ctx, workers, engine, until_idle, grace, verbose, quiet)
    ctx.exit(daemon.run())


@cli.command()
@click.argument("description")
@click.option("--parent", help="Put the pipeline under this task.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def pipeline(ctx: click.Context, description: str, parent: str | None, as_json: bool) -> None:
    """Create the NEXUS pipeline: analysis (aria) → implementation (code) → tests (alpha) →
    validation (beta), under one milestone."""
    from nexus import pipeline as pl

    tasks = pl.create(service(ctx), description, parent)
    if as_json:
        emit_json([t.summary() for t in tasks])
        return
    for t in tasks:
        click.echo(f"{t.id}  {t.title}  [{t.role or t.kind}]")


@cli.command()
@click.argument("folder", required=False, default="nexus-demo", type=click.Path(path_type=Path))
@click.option(
    "--engine",
    default="script",
    show_default=True,
    help="script (offline, deterministic) or a real engine such as claude-code.",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.pass_context
def demo(ctx: click.Context, folder: Path, engine: str, workers: int) -> None:
    """Create a workspace and run the four-role pipeline in it, start to finish."""
    from nexus import demo as demo_mod
    from nexus import pipeline as pl
    from nexus.cli.render import log_lines, status_tree
    from nexus.scaffold import init
    from nexus.service import Service, status_counts

    started = time.monotonic()
    ws = init(
        folder,
        name=folder.name,
        goal="Build a small calculator with tests (nexus demo)",
        standalone=True,
    )
    demo_mod.configure(ws.root, engine)
    svc = Service(ws, warn=warn)
    svc.sync()  # commits the demo's nexus.yaml as the person's edit
    tasks = pl.create(svc, "a small calculator module with tests")
    click.echo(f"demo workspace: {ws.root}")
    click.echo(f"pipeline {tasks[0].id}: " + " → ".join(f"{t.role} {t.id}" for t in tasks[1:]))
    ctx.obj["workspace"] = str(ws.root)
    code = make_daemon(ctx, workers, None, True, 10.0, False, False).run()
    svc = Service(ws, warn=warn)
    snap = svc.snapshot()
    counts, progress = status_counts(snap.tasks)
    click.echo("")
    click.echo(
        status_tree(
            ws.config.name,
            ws.config.goal,
            snap.tasks,
            counts,
            progress,
            snap.broken,
            color=sys.stdout.isatty(),
        )
    )
    click.echo("\njournal (git log):")
    for line in log_lines(svc.log())[:14]:
        click.echo(f"  {line}")
    beta = tasks[-1]
    loaded, _ = ws.load_task(snap.tasks[beta.id])
    if "## Result" in loaded.body:
        click.echo("\nBeta's result:\n" + loaded.body.split("## Result", 1)[1].strip())
    click.echo(
        f"\ndone in {time.monotonic() - started:.1f}s — look around: cd {folder} && "
        "nexus status, git log, cat scratchpads/*_to_*.md"
    )
    ctx.exit(code)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Which engines can run here, and how to fix the ones that cannot."""
    from nexus.engines.base import engine_names, get_engine
    from nexus.errors import NexusError

    settings: dict[str, dict[str, object]] = {}
    warm_state: dict[str, object] | None = None
    try:
        ws = service(ctx).ws
        settings = {name: ws.config.engine_settings(name) for name in engine_names()}
        warm_state = {
            "serving": warm.serving(str(ws.root)),
            "socket": warm.socket_path(str(ws.root)),
        }
    except NexusError:
        pass  # outside a workspace: check with default settings
    rows = []
    for name in engine_names():
        try:
            eng = get_engine(name)
            problem = eng.check(settings.get(name, {}), os.environ)
            caps = eng.capabilities
            rows.append(
                {
                    "engine": name,
                    "ok": problem is None,
                    "problem": problem,
                    "binary": caps.binary,
                    "needs_env": list(caps.needs_env),
                    "can_resume": caps.can_resume,
                }
            )
        except Exception as exc:  # a broken plugin is a finding, not a crash
            rows.append({"engine": name, "ok": False, "problem": str(exc)})
    git = shutil.which("git")
    if as_json:
        emit_json({"engines": rows, "git": git, "warm": warm_state})
        return
    click.echo(f"git: {git or 'MISSING — install git'}")
    if warm_state is not None:
        click.echo(
            "commands: served warm by `nexus watch` (NEXUS_WARM=0 runs them cold)"
            if warm_state["serving"]
            else "commands: run cold (no `nexus watch` serves this workspace)"
        )
    for r in rows:
        mark = click.style("ok ", fg="green") if r["ok"] else click.style("no ", fg="red")
        click.echo(f"{mark} {r['engine']:<12} {r['problem'] or ''}")

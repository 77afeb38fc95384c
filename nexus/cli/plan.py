"""Planning commands: plan, approve, adapt, review, run, quickstart."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from nexus.cli.main import cli
from nexus.cli.run import make_daemon
from nexus.cli.tasks import emit_json, service, warn

if TYPE_CHECKING:
    from nexus.plans import Plan, PlanFile


def plan_json(pf: PlanFile) -> dict[str, Any]:
    return {"path": pf.path, "name": pf.name, **asdict(pf.plan)}


def tree_lines(plan: Plan) -> list[str]:
    """The plan's tasks as a tree (parts under their parent key): key, size, role, title and
    what each waits for."""
    keys = {t.key for t in plan.tasks}
    children: dict[str | None, list[Any]] = {}
    for t in plan.tasks:
        children.setdefault(t.parent if t.parent in keys else None, []).append(t)
    width = max((len(t.key) for t in plan.tasks), default=0)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for t in children.get(parent, []):
            deps = f"  ← {', '.join(t.deps)}" if t.deps else ""
            pad = max(width - 2 * depth, 1)
            lines.append(
                f"  {'  ' * depth}{t.key:<{pad}}  {t.size:<2} {t.role or t.kind:<9} {t.title}{deps}"
            )
            walk(t.key, depth + 1)

    walk(None, 0)
    return lines


def show_plan(pf: PlanFile) -> None:
    p = pf.plan
    part = f", the parts of task {p.parent}" if p.parent else ""
    click.echo(f"plan {pf.path}: {p.goal} ({len(p.tasks)} tasks{part})")
    for line in tree_lines(p):
        click.echo(line)


@cli.command()
@click.argument("goal", required=False)
@click.option("--engine", help="Engine of the oracle (default: role prime's routing).")
@click.option("--parent", help="Decompose this task (an XL task) instead of a goal.")
@click.option("--attempts", default=3, show_default=True, type=click.IntRange(1, 10),
              help="Questions to the oracle at most (an invalid plan is sent back).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def plan(
    ctx: click.Context,
    goal: str | None,
    engine: str | None,
    parent: str | None,
    attempts: int,
    as_json: bool,
) -> None:
    """Ask the oracle to decompose GOAL (default: nexus.yaml's goal) into plans/<name>.yaml."""
    pf = service(ctx).plan(goal, engine=engine, parent=parent, attempts=attempts)
    if as_json:
        emit_json(plan_json(pf))
        return
    show_plan(pf)
    click.echo(f"next: review {pf.path} (edit it freely), then `nexus approve {pf.name}`", err=True)


@cli.command()
@click.argument("plan_name", metavar="[PLAN]", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def approve(ctx: click.Context, plan_name: str | None, as_json: bool) -> None:
    """Turn a plan into tasks (or apply a change list), in one commit.  PLAN is a name or a
    path under plans/; default: the newest plan not yet approved."""
    from nexus.cli.render import task_line

    tasks = service(ctx).approve(plan_name)
    if as_json:
        emit_json([t.summary() for t in tasks])
        return
    click.echo(f"approved: {len(tasks)} task(s) created or changed")
    for t in tasks:
        click.echo(task_line(t, sys.stdout.isatty(), 1))


@cli.command()
@click.argument("feedback")
@click.option("--engine", help="Engine of the oracle (default: role prime's routing).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def adapt(ctx: click.Context, feedback: str, engine: str | None, as_json: bool) -> None:
    """Ask the oracle how to change the live plan given FEEDBACK; prints the changes as a
    diff (+ added, - cancelled, ~ changed) to approve with `nexus approve`."""
    from nexus.plans import describe_changes

    svc = service(ctx)
    pf = svc.adapt(feedback, engine=engine)
    if as_json:
        emit_json(plan_json(pf))
        return
    click.echo(f"changes {pf.path}:")
    for line in describe_changes(pf.plan, svc.current().tasks):
        click.echo(f"  {line}")
    click.echo(f"next: `nexus approve {pf.name}` applies them", err=True)


@cli.command()
@click.argument("task_id")
@click.option("--engine", help="Engine of the reviewer (default: role prime's routing).")
@click.option("--prompt", "prompt_only", is_flag=True, help="Only print the review prompt.")
@click.option("--verdict", type=click.File("r"),
              help="Record the verdict in this file ('-': stdin); no engine is asked.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def review(
    ctx: click.Context,
    task_id: str,
    engine: str | None,
    prompt_only: bool,
    verdict: IO[str] | None,
    as_json: bool,
) -> None:
    """Review a complete task against its acceptance criteria: accepted, or reopened with
    the reasons.  Without a usable engine, prints the review prompt instead."""
    svc = service(ctx)
    if verdict is not None:
        result = svc.record_review(task_id, verdict.read())
    else:
        problem = None if prompt_only else svc.oracle_problem(engine)
        if prompt_only or problem:
            prompt = svc.review_prompt(task_id)
            if problem:
                warn(
                    f"no engine can review here ({problem}); the prompt follows: give it to a "
                    f"model and record its answer with `nexus review {task_id} --verdict FILE`"
                )
            click.echo(prompt, nl=False)
            return
        result = svc.review(task_id, engine=engine)
    if as_json:
        emit_json(asdict(result))
        return
    click.echo(f"{result.task_id}: {result.verdict} (now {result.status})")
    for reason in result.reasons:
        click.echo(f"  - {reason}")


@cli.command(name="run")
@click.argument("plan_file", metavar="PLAN.yaml", type=click.Path(path_type=Path))
@click.option("--workers", type=click.IntRange(1, 256), help="Agents at once.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def run_plan(ctx: click.Context, plan_file: Path, workers: int | None, quiet: bool) -> None:
    """Approve a plan (a file under plans/, or any plan file: it is saved there first), then
    run it: `nexus watch --until-idle`."""
    svc = service(ctx)
    plans_dir = svc.ws.root / "plans"
    found = next(
        (
            p
            for p in (plan_file, svc.ws.root / plan_file, plans_dir / plan_file.name)
            if p.is_file()
        ),
        None,
    )
    if found is None:
        raise click.BadParameter(f"there is no file {plan_file}", param_hint="PLAN.yaml")
    if found.resolve().parent == plans_dir.resolve():
        name = found.stem
    else:
        name = svc.save_plan(found.read_text(encoding="utf-8")).name
    if (f"plans/{name}.yaml", True) in svc.plans():
        warn(f"plans/{name}.yaml was approved already; running its tasks")
    else:
        click.echo(f"approved plans/{name}.yaml: {len(svc.approve(name))} task(s)")
    ctx.exit(make_daemon(ctx, workers, None, True, 10.0, False, quiet).run())


@cli.command()
@click.argument("prompt")
@click.option("-w", "--workers", type=click.IntRange(1, 256), help="Agents at once.")
@click.option("--dir", "folder", type=click.Path(path_type=Path),
              help="Workspace folder (default: a name made from PROMPT, here).")  # fmt: skip
@click.option("--engine",
              help="Engine of the oracle and the agents; `script` runs offline (see "
                   "docs/planning.md).")  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def quickstart(
    ctx: click.Context,
    prompt: str,
    workers: int | None,
    folder: Path | None,
    engine: str | None,
    quiet: bool,
) -> None:
    """From one line to running agents: init a workspace, plan PROMPT, approve, watch until
    idle."""
    import re

    from nexus.errors import NexusError
    from nexus.locate import CONFIG_FILE
    from nexus.scaffold import init
    from nexus.service import Service, status_counts
    from nexus.store import Workspace

    goal = " ".join(prompt.split())
    if not goal:
        raise click.BadParameter("say what to build", param_hint="PROMPT")
    folder = folder or Path(re.sub(r"[^a-z0-9]+", "-", goal.lower())[:40].strip("-") or "project")
    if (folder / CONFIG_FILE).is_file():
        ws = Workspace(folder)
        click.echo(f"using the workspace in {ws.root}", err=True)
    else:
        ws = init(folder, goal=goal)
        if engine == "script":
            _configure_offline(ws.root / CONFIG_FILE, goal)
            ws.reload_config()
        click.echo(f"created workspace {ws.root}", err=True)
    svc = Service(ws, warn=warn)
    svc.sync()
    problem = svc.oracle_problem(engine)
    if problem:
        raise NexusError(
            f"the oracle cannot answer here: {problem}",
            fix="`--engine script` runs offline (a scripted plan and agents); or set "
            "ANTHROPIC_API_KEY and pass `--engine anthropic`",
        )
    pf = svc.plan(goal, engine=engine)
    show_plan(pf)
    click.echo(f"approved: {len(svc.approve(pf.name))} task(s)")
    ctx.obj["workspace"] = str(ws.root)
    override = engine if engine not in (None, "script") else None
    code = make_daemon(ctx, workers, override, True, 10.0, False, quiet).run()
    counts, progress = status_counts(Service(ws, warn=warn).snapshot().tasks)
    done = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    click.echo(f"{ws.root}: {done} ({progress:.0%} complete)")
    ctx.exit(code)


def _configure_offline(config: Path, goal: str) -> None:
    """Make prime and the team scripted agents (nexus.oracle.offline_roles)."""
    import yaml

    from nexus.oracle import offline_roles

    block = yaml.safe_dump(
        {"roles": offline_roles(goal)}, sort_keys=False, allow_unicode=True, width=100
    )
    text = config.read_text(encoding="utf-8").rstrip("\n")
    note = "# Added by `nexus quickstart --engine script`: a scripted oracle and team, offline."
    config.write_text(f"{text}\n\n{note}\n{block}", encoding="utf-8")

"""The lifecycle tools: projects (create, list, resume), running (execute, complete, fail)
and reading (status, result).  `nexus_execute` claims ready tasks for the caller and hands back
spawn instructions; with `run` it starts nexus's own daemon instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from nexus import agents, budgets, dag
from nexus.mcp.base import (
    Base,
    Project,
    Reply,
    TaskId,
    brief,
    line,
    order,
    progress_line,
    section,
    transition,
)
from nexus.service import Service, status_counts
from nexus.task import Status, Task

SPAWN_HOWTO = (
    "For each task, start a subagent (in Claude Code: the Task tool) with the task's model and "
    "its prompt, unchanged. The tasks claimed together do not depend on each other: run them in "
    "parallel. When a subagent returns, record its outcome: nexus_complete(task_id, result=<its "
    "final answer>) — dependents become ready — or nexus_fail(task_id, reason=<what blocked "
    "it>) — retried while retries remain. Then call nexus_execute again for what became ready."
)
NOTHING_CLAIMED = (
    "no task was claimed: nothing is ready to run (see `waiting`, nexus_status, or nexus_result "
    "for why a task waits)"
)


class Lifecycle(Base):
    """Projects, running and reading."""

    def nexus_create_project(
        self,
        name: Annotated[
            str,
            Field(description="Folder name: letters, digits, '-' or '_' (e.g. auth-migration)."),
        ],
        goal: Annotated[str, Field(description="One line: what the project is for.")] = "",
    ) -> Reply:
        """Create a project: a nexus workspace (a folder of markdown task files, every change a
        git commit) under the projects root, and make it the current project. Next: nexus_plan
        to decompose the goal into tasks."""
        svc = self.projects.create(name, goal)
        root = svc.ws.root
        after = "nexus_plan to decompose the goal into tasks"
        return Reply(
            f"created project {name} in {root} (now the current project).\nnext: {after}",
            {"project": name, "path": str(root), "goal": goal.strip(), "next": after},
        )

    def nexus_list_projects(self) -> Reply:
        """List the projects under the projects root with their goal, task counts and progress
        (read only)."""
        rows = self.projects.listing()
        lines = [f"projects under {self.projects.root}:" if rows else "no projects yet"]
        for r in rows:
            if "error" in r:
                lines.append(f"  {r['project']}: cannot be read ({r['error']})")
                continue
            mark = "*" if r["current"] else " "
            counts = ", ".join(f"{n} {s}" for s, n in r["counts"].items())
            lines.append(
                f"{mark} {r['project']}: {r['progress'] * 100:.0f}% of {r['tasks']} task(s)"
                + (f" ({counts})" if counts else "")
                + (f" — {r['goal']}" if r["goal"] else "")
            )
        if not rows:
            lines.append("create one with nexus_create_project")
        return Reply("\n".join(lines), {"root": str(self.projects.root), "projects": rows})

    def nexus_resume(self, project: Project = None) -> Reply:
        """Open a project and bring it up to date: finish any change an interrupted run left
        half-done, commit edits people made to task files, promote tasks whose dependencies are
        complete. Makes it the current project and shows where it stands and what is ready."""
        svc = self.projects.service(project)
        report = svc.sync()
        self.projects.select(svc)
        snap = svc.current()
        tasks = list(snap.tasks.values())
        counts, progress = status_counts(snap.tasks)
        ready = sorted((t for t in tasks if t.status is Status.READY), key=order)
        active = [t for t in tasks if t.status.active]
        failed = [t for t in tasks if t.status is Status.FAILED]
        cfg = svc.ws.config
        data = {
            "project": self.projects.name_of(svc.ws.root),
            "path": str(svc.ws.root),
            "name": cfg.name,
            "goal": cfg.goal,
            "counts": counts,
            "progress": progress,
            "repaired": report.repaired,
            "person_edits": report.person_edits,
            "transitions": [transition(t) for t in report.transitions],
            "ready": [brief(t) for t in ready],
            "in_progress": [brief(t) for t in active],
            "failed": [brief(t) for t in failed],
            "unreadable": [str(e) for e in snap.broken],
        }
        out = [
            f"{cfg.name}" + (f" — {cfg.goal}" if cfg.goal else ""),
            progress_line(counts, progress),
        ]
        if report.repaired:
            out.append(f"repaired: committed {len(report.repaired)} file(s) of an interrupted run")
        if report.person_edits:
            out.append(f"committed people's edits: {', '.join(report.person_edits)}")
        out += [f"{t.task_id}: {t.src} -> {t.dst} ({t.reason})" for t in report.transitions]
        out += section(f"ready ({len(ready)})", [line(t) for t in ready])
        out += section("in progress", [f"{line(t)} by {t.assignee or '?'}" for t in active])
        out += section("failed", [f"{line(t)}: {t.error}" for t in failed])
        out += section("unreadable files (fix them; the rest works)", [str(e) for e in snap.broken])
        if ready:
            data["next"] = "nexus_execute to claim the ready tasks"
        elif tasks:
            data["next"] = "nothing is ready: see nexus_status"
        else:
            data["next"] = "no tasks yet: nexus_plan"
        out.append(f"\nnext: {data['next']}")
        return Reply("\n".join(out), data)

    def nexus_execute(
        self,
        count: Annotated[
            int | None,
            Field(
                ge=1,
                le=64,
                description="How many ready tasks to claim (default: limits.workers in "
                "nexus.yaml).",
            ),
        ] = None,
        task_ids: Annotated[
            list[str] | None,
            Field(description="Claim exactly these ready tasks (ids or prefixes)."),
        ] = None,
        role: Annotated[str | None, Field(description="Only tasks of this role.")] = None,
        run: Annotated[
            bool,
            Field(
                description="Instead of claiming tasks for you, start `nexus watch "
                "--until-idle` in the background so nexus's own engines run every ready task."
            ),
        ] = False,
        project: Project = None,
    ) -> Reply:
        """Claim ready tasks for you to run, and return spawn instructions for each: task id,
        title, role, model (routed by size: S haiku, M sonnet, L opus), and the full prompt.
        Run each as a subagent with that model and prompt, then report with nexus_complete or
        nexus_fail. Claimed tasks are in_progress with you as assignee. With `run: true`,
        nexus's daemon runs them instead."""
        svc = self.projects.service(project)
        if run:
            return _start_daemon(svc, self.projects.name_of(svc.ws.root))
        n = count or (len(task_ids) if task_ids else svc.ws.config.limits.workers)
        claimed, waiting = svc.claim_for_caller(
            self.assignee, count=n, refs=task_ids or (), role=role
        )
        roles, _problems = agents.load_roles(svc.ws.root, svc.ws.config)
        tasks = svc.current().tasks
        spawns = [self._spawn(svc, t, roles, tasks) for t in claimed]
        data: dict[str, Any] = {
            "instructions": SPAWN_HOWTO if spawns else NOTHING_CLAIMED,
            "project": self.projects.name_of(svc.ws.root),
            "assignee": self.assignee,
            "tasks": spawns,
            "waiting": waiting,
        }
        return Reply(_spawn_text(spawns, waiting, tasks, self.assignee), data)

    def _spawn(
        self,
        svc: Service,
        task: Task,
        roles: Mapping[str, agents.Role],
        tasks: Mapping[str, Task],
    ) -> dict[str, Any]:
        loaded, _ = svc.ws.load_task(task)
        role = roles.get(loaded.role or "")
        shown: list[str] = []
        prompt = svc.task_prompt(loaded, role, tasks, shown, sorted(roles))
        if shown and loaded.role:
            self.shown[(svc.ws.root, loaded.id)] = (loaded.role, shown)
        # The caller is a Claude-style session: route as the claude-code engine would.
        r = agents.route(loaded, role, svc.ws.config, "claude-code")
        return {
            "task_id": loaded.id,
            "title": loaded.title,
            "role": loaded.role,
            "agent": role.name if role else None,
            "size": str(loaded.size),
            "model": r.model,
            "model_reason": r.reason.split("; ", 1)[-1],
            "prompt": prompt,
            "report": {
                "done": {"tool": "nexus_complete", "task_id": loaded.id, "result": "..."},
                "blocked": {"tool": "nexus_fail", "task_id": loaded.id, "reason": "..."},
            },
        }

    def nexus_complete(
        self,
        task_id: TaskId,
        result: Annotated[
            str,
            Field(
                description="What was done: files changed, how it was checked, anything left "
                "open (at most ~15 lines; it is appended to the task under '## Result')."
            ),
        ],
        cost_usd: Annotated[
            float | None, Field(ge=0, description="What the run cost, if known.")
        ] = None,
        input_tokens: Annotated[int | None, Field(ge=0, description="Tokens read.")] = None,
        output_tokens: Annotated[int | None, Field(ge=0, description="Tokens written.")] = None,
        model: Annotated[str | None, Field(description="The model that did the work.")] = None,
        project: Project = None,
    ) -> Reply:
        """Mark a task complete with its result. Tasks that were waiting only for it become
        ready (they are listed). Cost and tokens, when given, are recorded in the journal and
        show in nexus_cost."""
        from nexus import results
        from nexus.engines.base import EngineResult, Usage

        svc = self.projects.service(project)
        before = svc.resolve(svc.snapshot().tasks, task_id)
        changes: dict[str, Any] = {"assignee": None}
        facts: dict[str, str] = {}
        if cost_usd is not None or input_tokens or output_tokens or model:
            run = EngineResult(
                ok=True,
                usage=Usage(input_tokens or 0, output_tokens or 0),
                cost_usd=cost_usd,
                model=model,
            )
            info = results.RunInfo("mcp", model, before.role, max(before.attempts, 1))
            facts = results.facts(run, info)
            if cost_usd is not None or input_tokens or output_tokens:
                changes["cost"] = results.add_cost(before.cost, run)
        task = svc.set_status(
            task_id,
            Status.COMPLETE,
            reason=f"completed by {self.assignee}",
            result=result,
            facts=facts,
            changes=changes,
        )
        shown = self.shown.pop((svc.ws.root, task.id), None)
        if shown is not None:
            svc.mark_read(*shown)
        tasks = svc.current().tasks
        now_ready = [
            tasks[d]
            for d in dag.dependents_of(tasks).get(task.id, [])
            if tasks[d].status is Status.READY
        ]
        counts, progress = status_counts(tasks)
        out = [f"{task.id} ({task.title}): {before.status} -> complete"]
        out += section("now ready", [line(t) for t in now_ready])
        out.append(progress_line(counts, progress))
        after = "nexus_execute to claim them" if now_ready else "nexus_status to see what is left"
        out.append(f"next: {after}")
        return Reply(
            "\n".join(out),
            {
                "task": brief(task),
                "now_ready": [brief(t) for t in now_ready],
                "counts": counts,
                "progress": progress,
                "next": after,
            },
        )

    def nexus_fail(
        self,
        task_id: TaskId,
        reason: Annotated[
            str, Field(description="What went wrong or blocks the task, specific enough to act.")
        ],
        project: Project = None,
    ) -> Reply:
        """Mark a task failed with the reason. It is retried automatically (back to pending,
        then ready after a backoff) while it has retries left (limits.max_retries)."""
        svc = self.projects.service(project)
        before = svc.resolve(svc.snapshot().tasks, task_id).status
        task = svc.set_status(
            task_id,
            Status.FAILED,
            reason=f"failed for {self.assignee}",
            error=reason,
            changes={"assignee": None},
        )
        snap = svc.current()
        why = svc.why(task, snap)
        return Reply(
            f"{task.id} ({task.title}): {before} -> failed\n" + "\n".join(why),
            {"task": brief(task), "attempts": task.attempts, "why": why},
        )

    def nexus_status(
        self,
        project: Project = None,
        limit: Annotated[
            int, Field(ge=1, le=10_000, description="Most tasks to list (counts cover all).")
        ] = 200,
    ) -> Reply:
        """The project's task tree (hierarchy, status, size, role) with counts per status and
        progress, plus files that cannot be read and problems in the graph."""
        from nexus.cli.render import status_tree

        svc = self.projects.service(project)
        svc.sync()
        snap = svc.current()
        cfg = svc.ws.config
        counts, progress = status_counts(snap.tasks)
        tree, shown = _tree(snap.tasks, limit)
        text = status_tree(cfg.name, cfg.goal, snap.tasks, counts, progress, snap.broken)
        lines = text.splitlines()
        if shown < len(snap.tasks):
            keep = next((i for i, s in enumerate(lines) if s == ""), 1) + 1 + shown
            lines = [*lines[:keep], f"… {len(snap.tasks) - shown} more (pass a larger limit)"]
        lines += [f"problem: {p}" for p in snap.problems]
        budget = svc.budget(snap)
        lines += budgets.render(budget)
        return Reply(
            "\n".join(lines),
            {
                "project": self.projects.name_of(svc.ws.root),
                "name": cfg.name,
                "goal": cfg.goal,
                "counts": counts,
                "progress": progress,
                "total": len(snap.tasks),
                "tree": tree,
                "truncated": len(snap.tasks) - shown,
                "broken": [e.to_json() for e in snap.broken],
                "problems": [p.to_json() for p in snap.problems],
                "budget": budget.to_json(),
            },
        )

    def nexus_result(self, task_id: TaskId, project: Project = None) -> Reply:
        """A task's status and result (its last '## Result' section), with why it is where it
        is when it has no result yet."""
        svc = self.projects.service(project)
        task, result = svc.result(task_id)
        why = svc.why(task, svc.current())
        text = f"{task.id} ({task.title}) is {task.status}\n"
        text += (f"\n{result}" if result else "no result yet") + "".join(
            f"\n{w}" for w in ([] if result else why)
        )
        return Reply(text, {"task": brief(task), "result": result, "why": why})


def _tree(tasks: Mapping[str, Task], limit: int) -> tuple[list[dict[str, Any]], int]:
    """The hierarchy as nested nodes (roots in dependency order), at most `limit` of them."""
    children = dag.children_of(tasks)
    order = {tid: i for i, tid in enumerate(dag.topological_order(tasks))}
    shown = 0

    def node(t: Task, seen: set[str]) -> dict[str, Any]:
        nonlocal shown
        shown += 1
        out = {**brief(t), "kind": str(t.kind), "deps": list(t.deps), "children": []}
        for kid in sorted(children.get(t.id, []), key=lambda k: (order.get(k, 0), k)):
            if kid not in seen and shown < limit:
                seen.add(kid)
                out["children"].append(node(tasks[kid], seen))
        return out

    roots = [t for t in tasks.values() if t.parent is None or t.parent not in tasks]
    seen: set[str] = set()
    tree = []
    for t in sorted(roots, key=lambda t: (order.get(t.id, 0), t.id)):
        if shown >= limit:
            break
        seen.add(t.id)
        tree.append(node(t, seen))
    return tree, shown


def _spawn_text(
    spawns: Sequence[Mapping[str, Any]],
    waiting: Mapping[str, str],
    tasks: Mapping[str, Task],
    assignee: str,
) -> str:
    if not spawns:
        counts, progress = status_counts(tasks)
        out = [NOTHING_CLAIMED, progress_line(counts, progress)]
        out += section("ready but not claimed", [f"- {tid}: {w}" for tid, w in waiting.items()])
        return "\n".join(out)
    out = [
        f"claimed {len(spawns)} task(s) for {assignee}; they are in_progress and yours to run.",
        SPAWN_HOWTO,
    ]
    for s in spawns:
        who = f"{s['role']} ({s['agent']})" if s["agent"] else (s["role"] or "-")
        out += [
            f"\n## Task {s['task_id']}: {s['title']}",
            f"role: {who} · size: {s['size']} · model: {s['model'] or 'your default'}",
            f"----- prompt {s['task_id']} (begin) -----",
            s["prompt"].rstrip(),
            f"----- prompt {s['task_id']} (end) -----",
        ]
    out += section("also ready, not claimed", [f"- {tid}: {w}" for tid, w in waiting.items()])
    return "\n".join(out)


def _start_daemon(svc: Service, project: str) -> Reply:
    """Start `nexus watch --until-idle` for the workspace unless a daemon already holds it."""
    from nexus.store import try_lock

    lock = svc.ws.runtime / "daemon.lock"
    fd = try_lock(lock)
    if fd is None:
        owner = _read_json(lock.with_name("daemon.owner"))
        who = f"pid {owner['pid']}" if "pid" in owner else "another process"
        return Reply(
            f"a daemon already runs project {project} ({who}); it runs ready tasks as they "
            "become ready — follow along with nexus_status",
            {"started": False, "running": True, "owner": owner},
        )
    os.close(fd)
    log = svc.ws.runtime / "mcp-watch.log"
    argv = [sys.executable, "-m", "nexus", "--workspace", str(svc.ws.root), "watch"]
    argv.append("--until-idle")
    with open(log, "ab") as out:
        child = subprocess.Popen(
            argv,
            cwd=svc.ws.root,
            env=dict(os.environ),  # the daemon is nexus itself: it needs the engines' keys
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    threading.Thread(target=child.wait, daemon=True).start()  # reap it when it exits
    return Reply(
        f"started `nexus watch --until-idle` for project {project} (pid {child.pid}); it runs "
        f"every ready task on nexus's engines and stops when nothing is left. Log: {log}. "
        "Follow along with nexus_status.",
        {"started": True, "pid": child.pid, "log": str(log)},
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

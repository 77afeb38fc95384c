"""The planning tools: plan, approve, adapt, review.  Without an oracle engine (the usual case
inside Claude Code) each returns its prompt for the calling session's own model to answer, and
takes the answer back (`nexus_approve` with `plan_text`, `nexus_review` with `verdict`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from nexus import agents
from nexus.errors import EngineError, ValidationError
from nexus.mcp.base import Base, EngineName, Mode, Project, Reply, TaskId, brief, line
from nexus.service import Service
from nexus.task import Status

if TYPE_CHECKING:
    from nexus.plans import PlanFile, Review


class Planning(Base):
    """The oracle's work: plans, changes to the plan, reviews."""

    def nexus_plan(
        self,
        goal: Annotated[
            str | None,
            Field(description="What to plan. Default: the project's goal (nexus.yaml)."),
        ] = None,
        parent: Annotated[
            str | None,
            Field(description="Decompose this existing (XL) task instead: its id or prefix."),
        ] = None,
        mode: Mode = "auto",
        engine: EngineName = None,
        project: Project = None,
    ) -> Reply:
        """Decompose a goal (or an XL task) into a plan of sized, dependency-ordered tasks.
        Without an oracle engine this returns the planning prompt: answer it yourself with the
        plan (a YAML block) and pass that text to nexus_approve as `plan_text`. With an engine,
        nexus asks the oracle and saves the plan under plans/ for review; approve it with
        nexus_approve."""
        svc = self.projects.service(project)
        use, note = _oracle(svc, mode, engine)
        if use is None:
            prompt = svc.plan_prompt(goal=goal, parent=parent)
            return _ask_caller(
                "planning",
                note,
                "Answer the prompt below yourself: write the plan exactly in the format it "
                "asks for, then call nexus_approve with the whole answer as `plan_text` "
                "(it is validated; errors come back with what to fix).",
                prompt,
            )
        planned = svc.plan(goal, engine=use, parent=parent)
        return _plan_reply(svc, planned, use, "review it, then approve with nexus_approve")

    def nexus_approve(
        self,
        plan: Annotated[
            str | None,
            Field(description="A saved plan's name (under plans/). Default: the newest one."),
        ] = None,
        plan_text: Annotated[
            str | None,
            Field(
                description="A plan you wrote (the YAML answer to nexus_plan's or "
                "nexus_adapt's prompt): saved under plans/, then approved."
            ),
        ] = None,
        name: Annotated[
            str | None, Field(description="File name for `plan_text` (default: derived).")
        ] = None,
        parent: Annotated[
            str | None,
            Field(
                description="With `plan_text` decomposing an XL task (nexus_plan with "
                "`parent`): that task's id; the plan's tasks become its parts."
            ),
        ] = None,
        project: Project = None,
    ) -> Reply:
        """Approve a plan: its tasks become task files (ids assigned, dependencies wired) in
        one commit, and those without unfinished dependencies become ready. Pass `plan_text`
        (a plan you wrote) or `plan` (a saved plan's name), or neither for the newest plan not
        yet approved."""
        if plan is not None and plan_text is not None:
            raise ValidationError(
                "pass either `plan` or `plan_text`, not both",
                fix="`plan_text` for a plan you wrote, `plan` for one saved under plans/",
            )
        svc = self.projects.service(project)
        saved = None
        if plan_text is not None:
            saved = svc.save_plan(plan_text, name=name, parent=parent)
            plan = saved.name
        if plan is None:
            waiting = [rel for rel, approved in svc.plans() if not approved]
            plan = waiting[0].rsplit("/", 1)[-1].removesuffix(".yaml") if waiting else None
        created = svc.approve(plan)
        snap = svc.current()
        now = [snap.tasks.get(t.id, t) for t in created]
        ready = [t for t in now if t.status is Status.READY]
        after = (
            f"nexus_execute to claim the {len(ready)} ready task(s)"
            if ready
            else "nothing is ready yet: see nexus_status"
        )
        data = {
            "plan": plan,
            "tasks": [brief(t) for t in now],
            "ready": [t.id for t in ready],
            "next": after,
        }
        if saved is not None:
            data["path"] = saved.path
        out = [f"approved {plan}: {len(now)} task(s) created or changed"]
        out += [line(t) + f" ({t.status})" for t in now]
        out.append(f"\nnext: {after}")
        return Reply("\n".join(out), data)

    def nexus_adapt(
        self,
        feedback: Annotated[
            str, Field(description="What changed or went wrong, and what the plan should do.")
        ],
        mode: Mode = "auto",
        engine: EngineName = None,
        project: Project = None,
    ) -> Reply:
        """Adapt the live plan to feedback: add, cancel, re-size or re-wire tasks given their
        current state. Without an oracle engine this returns the prompt: answer it yourself and
        pass the answer to nexus_approve as `plan_text`. With one, the proposed changes are
        saved under plans/; apply them with nexus_approve."""
        svc = self.projects.service(project)
        use, note = _oracle(svc, mode, engine)
        if use is None:
            prompt = svc.adapt_prompt(feedback)
            return _ask_caller(
                "adapting",
                note,
                "Answer the prompt below yourself, then call nexus_approve with the whole "
                "answer as `plan_text` to apply the changes.",
                prompt,
            )
        planned = svc.adapt(feedback, engine=use)
        return _plan_reply(svc, planned, use, "apply the changes with nexus_approve")

    def nexus_review(
        self,
        task_id: TaskId,
        verdict: Annotated[
            str | None,
            Field(
                description="Your verdict, answering the review prompt this tool returned "
                "earlier: it is recorded (accepted, or the task reopened with the reasons)."
            ),
        ] = None,
        mode: Mode = "auto",
        engine: EngineName = None,
        project: Project = None,
    ) -> Reply:
        """Review a finished task against its acceptance criteria. Without an oracle engine
        this returns the review prompt; answer it and call nexus_review again with `verdict`.
        With an engine, nexus asks the oracle and records its verdict."""
        svc = self.projects.service(project)
        if verdict is not None:
            return _review_reply(svc.record_review(task_id, verdict))
        use, note = _oracle(svc, mode, engine)
        if use is None:
            prompt = svc.review_prompt(task_id)
            return _ask_caller(
                "review",
                note,
                "Answer the prompt below yourself, then call nexus_review again with the "
                "same task_id and your whole answer as `verdict`.",
                prompt,
            )
        return _review_reply(svc.review(task_id, engine=use))


def _oracle(svc: Service, mode: str, engine: str | None) -> tuple[str | None, str]:
    """The engine the oracle runs on, or None to hand the prompt to the caller; and a note
    saying why when `auto` fell back to the prompt."""
    from nexus.engines.base import engine_names

    if mode == "prompt":
        return None, ""
    name = engine
    if name is None:
        roles, _ = agents.load_roles(svc.ws.root, svc.ws.config)
        prime = roles.get("prime")
        name = prime.engine if prime is not None else None
        if name is None and mode == "engine":
            name = svc.ws.config.default_engine
    if name is None:
        return None, ""
    if name not in engine_names():
        raise ValidationError(
            f"unknown engine {name!r}", fix=f"use one of: {', '.join(engine_names())}"
        )
    problem = svc.oracle_problem(name)
    if problem is None:
        return name, ""
    if mode == "engine" or engine is not None:
        raise EngineError(f"the oracle cannot run on {name} here: {problem}")
    return None, f"(the oracle's engine {name} cannot run here: {problem}; the prompt is for you)"


def _ask_caller(what: str, note: str, how: str, prompt: str) -> Reply:
    """A prompt for the calling session's own model, with what to do with the answer."""
    how = f"{note} {how}" if note else how
    text = (
        f"{how}\n\n----- {what} prompt (begin) -----\n{prompt.rstrip()}\n"
        f"----- {what} prompt (end) -----"
    )
    return Reply(text, {"mode": "prompt", "instructions": how, "prompt": prompt})


def _plan_reply(svc: Service, planned: PlanFile, engine: str, next_step: str) -> Reply:
    """What an oracle wrote, for review."""
    text = (svc.ws.root / planned.path).read_text(encoding="utf-8")
    return Reply(
        f"the oracle ({engine}) wrote {planned.path}:\n\n{text.rstrip()}\n\n"
        f"next: {next_step} (plan {planned.name!r})",
        {
            "mode": "engine",
            "engine": engine,
            "plan": planned.name,
            "path": planned.path,
            "next": f"{next_step} (plan {planned.name!r})",
        },
    )


def _review_reply(review: Review) -> Reply:
    data = dataclasses.asdict(review)
    said = "accepted" if review.verdict == "accepted" else f"reopened ({review.status})"
    reasons = "".join(f"\n- {r}" for r in review.reasons)
    return Reply(f"{review.task_id}: {said}{reasons}", data)

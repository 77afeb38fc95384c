"""The NEXUS pipeline: analysis (aria) → implementation (code) → tests (alpha) → validation
(beta), each phase reading the previous phase's scratchpad and writing to the next.

Service-level: every surface (CLI, MCP, web) creates a pipeline through `create`.
"""

from __future__ import annotations

from dataclasses import dataclass

from nexus import taskfile
from nexus.changes import Batch
from nexus.errors import ValidationError
from nexus.service import Service, Snapshot
from nexus.task import Task


@dataclass(frozen=True)
class Phase:
    role: str
    name: str
    size: str
    reads: str | None  # scratchpad this phase reads
    writes: str  # scratchpad this phase writes
    goal: str
    acceptance: tuple[str, ...]


PHASES = (
    Phase(
        "aria",
        "Analysis",
        "M",
        None,
        "aria_to_code",
        "Analyse the requirements, risks and the approach; write a short specification.",
        (
            "the specification names inputs, outputs and edge cases",
            "risks and open questions are listed",
        ),
    ),
    Phase(
        "code",
        "Implementation",
        "M",
        "aria_to_code",
        "code_to_alpha",
        "Implement the specification in the working directory.",
        ("the code does what the specification says", "edge cases are handled"),
    ),
    Phase(
        "alpha",
        "Tests",
        "M",
        "code_to_alpha",
        "alpha_to_beta",
        "Write automated tests for the implementation, edge cases included.",
        ("every behaviour in the specification has a test",),
    ),
    Phase(
        "beta",
        "Validation",
        "S",
        "alpha_to_beta",
        "beta_to_aria",
        "Run the tests for real, analyse any failure, and report the results.",
        ("the tests were run and their output is in the result",),
    ),
)


def _body(description: str, phase: Phase) -> str:
    lines = [f"Part of the pipeline for: {description}", "", phase.goal, ""]
    if phase.reads:
        lines.append(f"Read `scratchpads/{phase.reads}.md` first: the previous phase wrote there.")
    lines.append(
        f"When you are done, write what the next phase needs to `scratchpads/{phase.writes}.md` "
        f'(or run `nexus send {phase.role} {phase.writes.split("_to_")[1]} "..."`).'
    )
    return "\n".join(lines) + "\n"


def create(svc: Service, description: str, parent: str | None = None) -> list[Task]:
    """Four chained tasks (plus a milestone that holds them) in one commit."""
    description = " ".join(description.split())
    if not description:
        raise ValidationError(
            "a pipeline needs a description", fix='nexus pipeline "what to build"'
        )
    missing = [p.role for p in PHASES if p.role not in svc.roles()]
    if missing:
        raise ValidationError(
            f"the pipeline needs the roles {', '.join(missing)} (agents/<role>.md)",
            fix="copy them from a fresh `nexus init` workspace",
        )
    created: list[str] = []

    def build(batch: Batch, snap: Snapshot) -> str:
        milestone = svc.ws.new_id(batch.tasks)
        fields = svc.new_task_fields(
            batch,
            milestone,
            f"Pipeline: {description[:80]}",
            kind="milestone",
            size="L",
            role=None,
            deps=(),
            parent=parent,
            priority="normal",
            acceptance=(),
            engine=None,
            model=None,
        )
        path = svc.ws.rel(svc.ws.new_task_path(milestone))
        batch.create(path, taskfile.new_file(fields, description + "\n"))
        previous: str | None = None
        for phase in PHASES:
            tid = svc.ws.new_id(batch.tasks)
            fields = svc.new_task_fields(
                batch,
                tid,
                f"{phase.name}: {description[:80]}",
                kind="task",
                size=phase.size,
                role=phase.role,
                deps=(previous,) if previous else (),
                parent=milestone,
                priority="normal",
                acceptance=phase.acceptance,
                engine=None,
                model=None,
            )
            path = svc.ws.rel(svc.ws.new_task_path(tid))
            batch.create(path, taskfile.new_file(fields, _body(description, phase)))
            created.append(tid)
            previous = tid
        created.insert(0, milestone)
        return f"pipeline {milestone} ({description[:60]})"

    batch = svc.mutate(build)
    return [batch.tasks[t] for t in created]

"""What every MCP tool module shares: the `Reply` value, the argument types (their schemas
and descriptions), short task views, and `Base`, which holds the projects and the caller's
identity."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from nexus.mcp.projects import Projects
from nexus.task import Status, Task, Transition

Project = Annotated[
    str | None,
    Field(
        description="Project folder under the projects root (see nexus_list_projects). "
        "Default: the current project — the one last created or resumed in this session."
    ),
]
TaskId = Annotated[str, Field(description="Task id, or a unique prefix of one.")]
Mode = Annotated[
    Literal["auto", "prompt", "engine"],
    Field(
        description="`prompt`: return the prompt for you (the calling session) to answer. "
        "`engine`: have nexus ask its oracle (role `prime`) on an engine. `auto` (default): "
        "the engine when you name one or agents/prime.md names one and it can run here, "
        "otherwise the prompt."
    ),
]
EngineName = Annotated[
    str | None,
    Field(description="Engine for the oracle (anthropic, openai, claude-code, codex, ...)."),
]
Size = Literal["S", "M", "L", "XL"]


@dataclass(frozen=True)
class Reply:
    """What a tool returns: text for the model to read, data for programs."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)


class Base:
    def __init__(self, projects: Projects, host: str | None = None) -> None:
        self.projects = projects
        self.assignee = f"mcp@{host or socket.gethostname()}"
        # Messages shown in a claimed task's prompt, marked read when it completes.
        self.shown: dict[tuple[Path, str], tuple[str, list[str]]] = {}


def brief(t: Task) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": t.id,
        "title": t.title,
        "status": str(t.status),
        "size": str(t.size),
        "role": t.role,
    }
    if t.assignee:
        out["assignee"] = t.assignee
    if t.error and t.status is Status.FAILED:
        out["error"] = t.error
    return out


def line(t: Task) -> str:
    meta = " ".join(x for x in (str(t.size), t.role or "") if x)
    return f"- {t.id}  {t.title}  [{meta}]"


def order(t: Task) -> tuple[int, str, str]:
    return (t.priority.rank, t.created or "", t.id)


def transition(t: Transition) -> dict[str, str]:
    return {"task": t.task_id, "from": str(t.src), "to": str(t.dst), "reason": t.reason}


def progress_line(counts: Mapping[str, int], fraction: float) -> str:
    total = sum(counts.values())
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"{fraction * 100:.0f}% — {counts['complete']}/{total} complete" + (
        f" ({summary})" if summary else ""
    )


def section(title: str, items: Sequence[str]) -> list[str]:
    return [f"\n{title}:", *items] if items else []

"""Writing plans: the plan file's YAML (flow lists, key order), approval marks, the task lines
prompts show."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nexus.plans.model import Change, Plan, PlanTask
from nexus.task import Status, Task


def task_mapping(t: PlanTask) -> dict[str, Any]:
    """A plan task as the mapping a plan file holds (defaults left out)."""
    out: dict[str, Any] = {"key": t.key, "title": t.title}
    if t.kind != "task":
        out["kind"] = t.kind
    out["size"] = t.size
    if t.role:
        out["role"] = t.role
    out["deps"] = _Flow(t.deps)
    if t.parent:
        out["parent"] = t.parent
    if t.acceptance:
        out["acceptance"] = list(t.acceptance)
    out.update(t.extra)
    if t.body:
        out["body"] = t.body.strip() + "\n"
    return out


def change_mapping(c: Change) -> dict[str, Any]:
    if c.task is not None:
        return {"op": "add", **task_mapping(c.task)}
    out: dict[str, Any] = {"op": c.op, "id": c.target}
    values = {"reason": c.reason or None, "size": c.size, "title": c.title, "body": c.body}
    out.update({k: v for k, v in values.items() if v})
    if c.deps is not None:
        out["deps"] = _Flow(c.deps)
    if c.acceptance is not None:
        out["acceptance"] = list(c.acceptance)
    return out


def render(plan: Plan, name: str, meta: Mapping[str, Any]) -> str:
    """The text of `plans/<name>.yaml`: a comment saying what to do, then the plan."""
    data: dict[str, Any] = {"kind": plan.kind, "goal": plan.goal}
    if plan.parent:
        data["parent"] = plan.parent
    if plan.feedback:
        data["feedback"] = plan.feedback
    data.update(meta)
    if plan.kind == "adapt":
        data["changes"] = [change_mapping(c) for c in plan.changes]
    else:
        data["tasks"] = [task_mapping(t) for t in plan.tasks]
    head = (
        f"# A nexus {'change list' if plan.kind == 'adapt' else 'plan'}: review it (edit it if "
        f"you like), then run `nexus approve {name}`.\n"
    )
    return head + dump(data)


def mark_approved(text: str, stamp: str, task_ids: Mapping[str, str]) -> str:
    """The plan file's text with `approved` and `task_ids` added at its end (the rest, with a
    person's comments and edits, is left as it is)."""
    block = dump({"approved": stamp, "task_ids": dict(task_ids) or {}})
    sep = "" if text.endswith("\n") else "\n"
    return f"{text}{sep}{block}"


class _Flow(list[str]):
    """A list written in flow style (`deps: [a, b]`)."""


def dump(data: Any) -> str:
    import yaml

    base: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    def text(dumper: Any, value: str) -> Any:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    def flow(dumper: Any, value: _Flow) -> Any:
        return dumper.represent_sequence("tag:yaml.org,2002:seq", list(value), flow_style=True)

    dumper: Any = type("PlanDumper", (base,), {})
    dumper.add_representer(str, text)
    dumper.add_representer(_Flow, flow)
    out: str = yaml.dump(
        data, Dumper=dumper, sort_keys=False, allow_unicode=True, width=100, indent=2
    )
    return out


# -- prompt sections -------------------------------------------------------------------------


def task_lines(tasks: Iterable[Task], limit: int = 200) -> tuple[list[str], int]:
    """One line per task for a prompt (open work first, cancelled ones left out) and how many
    were left out beyond `limit`."""
    order = {Status.IN_PROGRESS: 0, Status.ASSIGNED: 0, Status.READY: 1, Status.PENDING: 2,
             Status.FAILED: 1, Status.COMPLETE: 3}  # fmt: skip
    shown = sorted(
        (t for t in tasks if t.status is not Status.CANCELLED),
        key=lambda t: (order.get(t.status, 4), t.created or "", t.id),
    )
    lines = []
    for t in shown[:limit]:
        extra = [f"deps: {', '.join(t.deps)}"] if t.deps else []
        extra += [f"parent: {t.parent}"] if t.parent else []
        tail = f" ({'; '.join(extra)})" if extra else ""
        lines.append(f"- {t.id} [{t.status}, {t.size}, {t.role or t.kind}] {t.title}{tail}")
    return lines, max(len(shown) - limit, 0)

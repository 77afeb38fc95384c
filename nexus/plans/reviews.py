"""Reviews of complete tasks: the oracle's verdict checked, and the section it adds to the task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nexus import taskfile
from nexus.plans.fields import _Fields, _kind
from nexus.plans.model import Criterion, Problem, Rejected, Review


def check_review(data: Mapping[str, Any], task_id: str) -> Review:
    """A review verdict mapping (`verdict`, `reasons`, `criteria`); raises `Rejected`."""
    problems: list[Problem] = []
    f = _Fields(data, None, problems)
    verdict = f.choice("verdict", ("accepted", "reopen"), None)
    reasons = f.words("reasons")
    if verdict == "reopen" and not reasons:
        f.bad("reasons", "a reopen verdict needs at least one reason the agent can act on")
    criteria: list[Criterion] = []
    raw = data.get("criteria") or []
    if not isinstance(raw, list):
        f.bad("criteria", f"must be a list, not {_kind(raw)}")
        raw = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping) or not isinstance(item.get("met"), bool):
            f.bad("criteria", f"entry {i + 1} needs `criterion`, `met: true|false`, `evidence`")
            continue
        c = _Fields(item, None, problems)
        criteria.append(
            Criterion(c.text("criterion") or "", bool(item["met"]), c.text("evidence") or "")
        )
    if problems or verdict is None:
        raise Rejected(problems, "the review", fix="answer with verdict, reasons and criteria")
    return Review(task_id, verdict, reasons, tuple(criteria))


def review_section(review: Review, stamp: str, heading: str = "## Review") -> str:
    lines = [heading, "", f"Verdict: {review.verdict} ({stamp})", ""]
    lines += [f"- {taskfile.safe_block(r)}" for r in review.reasons]
    if review.criteria:
        lines += ["", "Criteria:", ""]
        for c in review.criteria:
            evidence = f" — {c.evidence}" if c.evidence else ""
            lines.append(
                f"- [{'x' if c.met else ' '}] {taskfile.safe_block(c.criterion)}{evidence}"
            )
    return "\n".join(lines)

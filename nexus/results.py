"""An engine's result → the task change, the commit facts, and what the daemon does next.

Pure.  Four outcomes:

* ok (and `verify` passed)   → complete; the result text is appended under `## Result`;
* rate-limited               → back to ready, the attempt is given back, the engine pauses;
* interrupted (shutdown)     → back to ready, the attempt is given back;
* anything else              → failed with the reason (promotion retries it with backoff).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nexus import taskfile
from nexus.engines.base import EngineResult
from nexus.task import Status, Task

MAX_RESULT_CHARS = 20_000


@dataclass(frozen=True)
class Outcome:
    dst: Status
    reason: str
    changes: Mapping[str, Any]
    append: str | None
    facts: Mapping[str, str]
    pause_seconds: float | None = None  # pause the engine this long (rate limit)
    resume_session: bool = False


@dataclass(frozen=True)
class RunInfo:
    """What the daemon knew when it started the run."""

    engine: str
    model: str | None
    role: str | None
    attempt: int


def add_cost(previous: Mapping[str, Any], result: EngineResult) -> dict[str, Any]:
    """The task's running totals with this run's usage and cost added."""
    total = dict(previous)
    u = result.usage
    for key, value in (
        ("input_tokens", u.input_tokens),
        ("output_tokens", u.output_tokens),
        ("cache_read_tokens", u.cache_read_tokens),
        ("cache_write_tokens", u.cache_write_tokens),
    ):
        if value:
            total[key] = int(total.get(key) or 0) + value
    if result.cost_usd is not None:
        total["usd"] = round(float(total.get("usd") or 0) + result.cost_usd, 6)
    total["runs"] = int(total.get("runs") or 0) + 1
    return total


def facts(result: EngineResult, info: RunInfo) -> dict[str, str]:
    out = {"Engine": info.engine, "Attempt": str(info.attempt)}
    if info.role:
        out["Agent"] = info.role
    model = result.model or info.model
    if model:
        out["Model"] = model
    if result.session:
        out["Session"] = result.session
    if result.cost_usd is not None:
        out["Cost-USD"] = f"{result.cost_usd:.6f}"
    if result.usage.input_tokens or result.usage.output_tokens:
        out["Tokens"] = f"{result.usage.input_tokens}/{result.usage.output_tokens}"
    return out


def outcome(
    task: Task,
    result: EngineResult,
    info: RunInfo,
    *,
    stamp: str,
    interrupted: bool = False,
    verify_error: str | None = None,
    rate_limit_backoff: float = 30.0,
) -> Outcome:
    base: dict[str, Any] = {"assignee": None}
    if _spent(result):
        base["cost"] = add_cost(task.cost, result)
    if result.session:
        base["session"] = result.session
    run_facts = facts(result, info)
    seconds = f"{result.duration:.1f}s"
    if result.rate_limited:
        wait = result.retry_after if result.retry_after is not None else rate_limit_backoff
        return Outcome(
            Status.READY,
            f"rate limited ({result.reason}); engine {info.engine} paused for {wait:.0f}s, "
            "the attempt does not count",
            {**base, "attempts": max(task.attempts - 1, 0)},
            None,
            run_facts,
            pause_seconds=wait,
        )
    if interrupted:
        return Outcome(
            Status.READY,
            "interrupted: the daemon stopped before the agent finished; the attempt does not "
            "count" + (f"; session {result.session} will be resumed" if result.session else ""),
            {**base, "attempts": max(task.attempts - 1, 0)},
            f"## Attempts\n\n- {stamp}: interrupted by shutdown after {seconds}",
            run_facts,
            resume_session=bool(result.session),
        )
    if result.ok and verify_error is None:
        text = result.text.strip() or "(the agent reported no result text)"
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + f"\n\n[… {len(text) - MAX_RESULT_CHARS} more "
            text += "characters cut; the full output is in the run log]"
        heading = "## Result" if "\n## Result" not in "\n" + task.body else f"## Result ({stamp})"
        return Outcome(
            Status.COMPLETE,
            f"engine {info.engine} succeeded in {seconds}",
            {**base, "error": None},
            f"{heading}\n\n{taskfile.safe_block(text)}",
            run_facts,
        )
    reason = verify_error or result.reason or "the engine reported a failure without a reason"
    reason = " ".join(reason.split())[:500]
    return Outcome(
        Status.FAILED,
        f"attempt {info.attempt} failed: {reason}",
        {**base, "error": reason},
        f"## Attempts\n\n- {stamp}: attempt {info.attempt} on {info.engine} failed after "
        f"{seconds}: {reason}",
        run_facts,
    )


def _spent(result: EngineResult) -> bool:
    u = result.usage
    return result.cost_usd is not None or bool(u.input_tokens or u.output_tokens)

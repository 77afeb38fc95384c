"""What the work cost, read from the journal: every commit that records an agent run carries
`Nexus-Cost-USD` and `Nexus-Tokens: <input>/<output>` trailers beside `Nexus-Agent`,
`Nexus-Engine` and `Nexus-Model`.

Pure: journal entries in, summaries out.  A run's commit belongs to one task (the daemon gives
every run that spent something its own commit): the task that left `in_progress`, else the only
task the commit moved.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nexus.journal import Entry

DIMENSIONS = ("task", "role", "engine", "model", "day")
UNKNOWN = "(none)"


@dataclass(frozen=True)
class Charge:
    """One recorded run's cost."""

    commit: str
    time: int  # unix seconds
    task: str
    role: str
    engine: str
    model: str
    usd: float
    input_tokens: int
    output_tokens: int

    @property
    def day(self) -> str:
        return dt.datetime.fromtimestamp(self.time, dt.UTC).strftime("%Y-%m-%d")

    def key(self, dimension: str) -> str:
        value: str = self.day if dimension == "day" else getattr(self, dimension)
        return value


def charges(entries: Iterable[Entry]) -> list[Charge]:
    """The entries that record a cost or tokens, as charges (oldest first)."""
    out = []
    for e in entries:
        if "Cost-USD" not in e.trailers and "Tokens" not in e.trailers:
            continue
        tokens_in, tokens_out = _tokens(e.trailers.get("Tokens", ""))
        out.append(
            Charge(
                commit=e.commit,
                time=e.time,
                task=_task_of(e),
                role=e.trailers.get("Agent") or UNKNOWN,
                engine=e.trailers.get("Engine") or UNKNOWN,
                model=e.trailers.get("Model") or UNKNOWN,
                usd=e.cost_usd(),
                input_tokens=tokens_in,
                output_tokens=tokens_out,
            )
        )
    out.sort(key=lambda c: (c.time, c.commit))
    return out


def summarize(
    found: Sequence[Charge],
    by: Sequence[str] = DIMENSIONS,
    titles: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Totals, and per dimension the rows sorted by cost (largest first).  Unknown dimensions
    are refused by the caller; `titles` names tasks in the task rows."""
    summary: dict[str, Any] = {**_totals(found), "by": {}}
    for dim in by:
        groups: dict[str, list[Charge]] = {}
        for c in found:
            groups.setdefault(c.key(dim), []).append(c)
        rows = []
        for key, group in groups.items():
            row: dict[str, Any] = {"key": key, **_totals(group)}
            if dim == "task" and titles and key in titles:
                row["title"] = titles[key]
            rows.append(row)
        rows.sort(key=lambda r: (-r["usd"], r["key"]) if dim != "day" else ("", r["key"]))
        summary["by"][dim] = rows
    return summary


def render(summary: Mapping[str, Any]) -> str:
    """A plain-text report of `summarize`'s result."""
    lines = [
        f"total ${summary['usd']:.4f} over {summary['runs']} run(s), "
        f"{summary['input_tokens']} input / {summary['output_tokens']} output tokens"
    ]
    if not summary["runs"]:
        lines.append("(no run has recorded a cost yet)")
        return "\n".join(lines)
    for dim, rows in summary["by"].items():
        lines += ["", f"by {dim}:"]
        width = max((len(r["key"]) for r in rows), default=0)
        for r in rows:
            title = f"  {r['title']}" if r.get("title") else ""
            lines.append(
                f"  {r['key']:<{width}}  ${r['usd']:>9.4f}  {r['runs']:>3} run(s)  "
                f"{r['input_tokens']}/{r['output_tokens']} tokens{title}"
            )
    return "\n".join(lines)


def _totals(found: Iterable[Charge]) -> dict[str, Any]:
    usd = 0.0
    tokens_in = tokens_out = runs = 0
    for c in found:
        usd += c.usd
        tokens_in += c.input_tokens
        tokens_out += c.output_tokens
        runs += 1
    return {
        "usd": round(usd, 6),
        "runs": runs,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
    }


def _task_of(e: Entry) -> str:
    ran = [tid for tid, src, _dst in e.transitions if src == "in_progress"]
    if ran:
        return ran[0]
    ids = {tid for tid, _src, _dst in e.transitions}
    return ids.pop() if len(ids) == 1 else UNKNOWN


def _tokens(text: str) -> tuple[int, int]:
    first, _, second = text.partition("/")
    try:
        return int(first or 0), int(second or 0)
    except ValueError:
        return 0, 0

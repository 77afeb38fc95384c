"""Costs, traces and log filters read back from the git journal."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_nexus
from tests.test_daemon import watch, write_task

RUNS = {"a": (0.0125, 1000, 200), "b": (0.5, 30000, 4000), "c": (0.25, 12000, 900)}


def test_cost_equals_the_sum_of_the_recorded_runs(workspace: Path) -> None:
    for tid, (usd, tin, tout) in RUNS.items():
        write_task(workspace, tid, role="aria" if tid != "b" else "code",
                   steps=[{"usage": {"input_tokens": tin, "output_tokens": tout, "cost_usd": usd}},
                          {"result": "ok"}])  # fmt: skip
    assert watch(workspace).returncode == 0
    summary = json.loads(run_nexus("cost", "--json", cwd=workspace).stdout)
    assert round(summary["usd"], 6) == round(sum(u for u, _, _ in RUNS.values()), 6)
    assert summary["input_tokens"] == sum(i for _, i, _ in RUNS.values())
    assert summary["runs"] == 3
    by_task = {r["key"]: r["usd"] for r in summary["by"]["task"]}
    assert by_task == {tid: usd for tid, (usd, _, _) in RUNS.items()}
    by_role = {r["key"]: r["usd"] for r in summary["by"]["role"]}
    assert by_role == {"aria": 0.2625, "code": 0.5}
    text = run_nexus("cost", "--by", "engine", cwd=workspace).stdout
    assert "total $0.7625 over 3 run(s)" in text and "script" in text


def test_trace_shows_a_tasks_timeline_with_engine_attempt_and_cost(workspace: Path) -> None:
    usage = {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.01}
    write_task(workspace, "t", role="aria", steps=[{"usage": usage}])
    assert watch(workspace).returncode == 0
    data = json.loads(run_nexus("trace", "t", "--json", cwd=workspace).stdout)
    moves = [m for row in data["timeline"] for m in row["transitions"]]
    assert moves == ["pending -> ready", "ready -> assigned", "assigned -> in_progress",
                     "in_progress -> complete"]  # fmt: skip
    last = data["timeline"][-1]
    assert (last["engine"], last["agent"], last["attempt"], last["cost_usd"]) == (
        "script", "aria", "1", 0.01)  # fmt: skip
    assert "in_progress -> complete" in run_nexus("trace", "t", cwd=workspace).stdout


def test_log_filters_by_actor_and_role(workspace: Path) -> None:
    write_task(workspace, "x", role="aria")
    assert watch(workspace).returncode == 0
    by_daemon = json.loads(run_nexus("log", "--actor", "daemon", "--json", cwd=workspace).stdout)
    assert by_daemon and all(e["actor"] == "daemon" for e in by_daemon)
    aria = json.loads(run_nexus("log", "--role", "aria", "--json", cwd=workspace).stdout)
    assert aria and all(e["trailers"]["Agent"] == "aria" for e in aria)
    assert json.loads(run_nexus("log", "--since", "1 hour ago", "--json", cwd=workspace).stdout)

"""`nexus status` as a tree with progress bars and the running agents: the pure figures, the
plain text for pipes, rich in a real terminal (tmux), and a real daemon running a slow agent."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nexus.task import Status, Task
from nexus.tui.view import columns, elapsed, seconds_since, subtree_progress
from tests.conftest import run_nexus
from tests.test_daemon import write_task
from tests.test_dashboard import Tmux, nexus_cmd


def task(tid: str, status: str = "ready", parent: str | None = None) -> Task:
    return Task(id=tid, title=f"task {tid}", path=f"tasks/{tid}.md", status=Status(status),
                parent=parent)  # fmt: skip


def test_subtree_progress_counts_every_level_below_and_leaves_out_cancelled() -> None:
    tasks = {t.id: t for t in [
        task("p"),
        task("a", "complete", "p"),
        task("b", "cancelled", "p"),
        task("c", "in_progress", "p"),
        task("c1", "complete", "c"),
        task("c2", "ready", "c"),
        task("lonely", "complete"),
    ]}  # fmt: skip
    assert subtree_progress(tasks) == {"p": (2, 4), "c": (1, 2)}


def test_subtree_progress_survives_a_deep_hierarchy_and_a_parent_cycle() -> None:
    deep = {"t0": task("t0")}
    for i in range(1, 5000):
        deep[f"t{i}"] = task(f"t{i}", "complete", f"t{i - 1}")
    progress = subtree_progress(deep)
    assert progress["t0"] == (4999, 4999) and progress["t4998"] == (1, 1)
    loop = {"x": task("x", "complete", "y"), "y": task("y", "ready", "x")}
    assert set(subtree_progress(loop)) == {"x", "y"}  # ends, whatever it says of a cycle


def test_elapsed_times_read_like_a_clock_and_odd_stamps_are_unknown() -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert seconds_since("2026-01-02T03:03:00Z", now) == 65
    assert seconds_since("2026-01-02T03:03:00", now) == 65  # no zone: UTC, as nexus writes
    assert seconds_since("next tuesday", now) is None and seconds_since(None, now) is None
    assert seconds_since("2026-01-02T04:00:00Z", now) == 0  # a clock ahead is not negative
    assert [elapsed(s) for s in (None, 0, 42.9, 65, 3600 + 125)] == ["-", "0s", "42s", "1m05s",
                                                                     "1h02m"]  # fmt: skip


def test_the_board_puts_assigned_under_in_progress_in_dispatch_order() -> None:
    tasks = {t.id: t for t in [task("z"), task("a"), task("b", "assigned"), task("c", "failed")]}
    board = {c.status: c for c in columns(tasks, limit=1)}
    assert [t.id for t in board[Status.READY].cards] == ["a"] and board[Status.READY].more == 1
    assert board[Status.IN_PROGRESS].count == 1 and board[Status.FAILED].title == "failed"


def tree_workspace(ws: Path) -> dict[str, str]:
    ids = {"m": run_nexus("add", "Milestone", "--kind", "milestone", cwd=ws).stdout.strip()}
    for name in ("one", "two", "three"):
        ids[name] = run_nexus("add", f"Part {name}", "--parent", ids["m"], cwd=ws).stdout.strip()
    ids["deep"] = run_nexus("add", "Deep part", "--parent", ids["one"], cwd=ws).stdout.strip()
    run_nexus("complete", ids["two"], cwd=ws)
    run_nexus("complete", ids["deep"], cwd=ws)
    return ids


def test_status_text_has_a_bar_per_parent_and_says_no_daemon_runs(workspace: Path) -> None:
    ids = tree_workspace(workspace)
    text = run_nexus("status", cwd=workspace).stdout
    lines = {line.split()[2]: line for line in text.splitlines() if line.startswith("  ")}
    # one (a container whose only child is complete), two, deep: 3 of one, two, three, deep
    assert lines[ids["m"]].endswith("  ████████░░ 3/4")
    assert lines[ids["one"]].endswith("  ██████████ 1/1")
    assert "░" not in lines[ids["three"]] and "█" not in lines[ids["three"]]  # a leaf
    assert "████████████░░░░░░░░ 60%  3/5 complete" in text  # the project's bar on top
    assert text.rstrip().endswith(
        "no `nexus watch` is running: no agent runs (start one with `nexus watch`)"
    )
    data = json.loads(run_nexus("status", "--json", cwd=workspace).stdout)
    assert data["running"] == []


@pytest.fixture
def term(workspace: Path) -> Iterator[Tmux]:
    t = Tmux(workspace)
    yield t
    t.kill()


def test_status_in_a_terminal_is_a_rich_tree_with_bars(workspace: Path, term: Tmux) -> None:
    ids = tree_workspace(workspace)
    term.type(nexus_cmd("status") + "; echo EXIT=$?")
    screen = term.wait_for(lambda s: "EXIT=0" in s, "status finishing")
    rows = {w: line for line in screen.splitlines() for w in line.split() if w in ids.values()}
    assert "└── " in rows[ids["m"]] or "├── " in rows[ids["m"]]  # tree guides
    assert rows[ids["m"]].endswith("━━━━━━━━━━ 3/4")
    assert "│   └── " in rows[ids["deep"]] or "    └── " in rows[ids["deep"]]  # one level deeper
    assert "60%  3/5 complete" in screen and "no `nexus watch` is running" in screen


def wait_until(check: Callable[[], Any], what: str, deadline: float = 60) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.1)


def test_status_shows_the_agents_a_running_daemon_runs(workspace: Path) -> None:
    """A slow scripted agent under `nexus watch --engine script`: the task names no engine and
    its role routes to claude-code, so the engine shown is the one the daemon really used."""
    m = run_nexus("add", "Milestone", "--kind", "milestone", cwd=workspace).stdout.strip()
    data = {"id": "slowone", "title": "Slow agent work", "role": "code", "parent": m,
            "script": [{"sleep": 120}]}  # fmt: skip
    (workspace / "tasks" / "slowone.md").write_text(f"---\n{yaml.safe_dump(data)}---\nBody.\n")
    write_task(workspace, "quick", parent=m, role="aria", status="complete")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", "-q", "--engine", "script", "--grace", "0"],
        cwd=workspace,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def running() -> list[dict[str, Any]]:
            return list(json.loads(run_nexus("status", "--json", cwd=workspace).stdout)["running"])

        [agent] = wait_until(running, "the slow agent running")
        assert (agent["task_id"], agent["title"], agent["role"]) == (
            "slowone",
            "Slow agent work",
            "code",
        )
        assert agent["engine"] == "script" and agent["status"] == "in_progress"
        assert agent["started"] and agent["attempt"] == 1
        text = run_nexus("status", cwd=workspace).stdout
        block = text[text.index("running agents (1):") :].splitlines()
        assert block[1].split()[:4] == ["code", "script", "slowone", "Slow"]
        assert block[1].split()[-1][-1] in "sm"  # elapsed, e.g. 3s or 1m05s
        line = next(x for x in text.splitlines() if m in x)
        assert line.endswith("█████░░░░░ 1/2")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    text = run_nexus("status", cwd=workspace).stdout
    assert "no `nexus watch` is running" in text

"""The side-by-side benchmark (issue 7) keeps working: its CI quick mode runs end to end, and
the Backlog.md adapter writes task files in Backlog.md's own format — checked without npm,
since Backlog.md is never a test dependency."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import backlog, report
from tests.conftest import REPO_ROOT, git, run_nexus

# Written by the real `backlog task create "Benchmark task 0" -d "Task 0."` (backlog.md
# 1.52.0), and `--dep TASK-1` for the dependencies block; only created_date differs.
CREATED_BY_BACKLOG_CLI = """---
id: TASK-1
title: Benchmark task 0
status: To Do
assignee: []
created_date: '2026-01-01 00:00'
labels: []
dependencies: []
ordinal: 1000
---

## Description

<!-- SECTION:DESCRIPTION:BEGIN -->
Task 0.
<!-- SECTION:DESCRIPTION:END -->
"""
DEPENDENCIES_BY_BACKLOG_CLI = "dependencies:\n  - TASK-1\n  - TASK-2\nordinal:"


def test_backlog_task_file_matches_what_its_cli_writes() -> None:
    name, text = backlog.task_file(1, "Benchmark task 0", "To Do", [], "Task 0.")
    assert name == "task-1 - Benchmark-task-0.md"
    assert text == CREATED_BY_BACKLOG_CLI
    _, text = backlog.task_file(9, "Benchmark task 8", "To Do", [1, 2], "x")
    assert DEPENDENCIES_BY_BACKLOG_CLI in text


def test_backlog_workspace_mirrors_the_nexus_benchmark_shape(tmp_path: Path) -> None:
    git("init", "-q", cwd=tmp_path)
    (tmp_path / "backlog" / "tasks").mkdir(parents=True)
    ids = backlog.write_tasks(tmp_path, 20)
    files = sorted((tmp_path / "backlog" / "tasks").iterdir())
    assert len(files) == len(ids) == 20
    texts = {f.name: f.read_text() for f in files}
    assert sum("status: Done" in t for t in texts.values()) == 2  # a tenth, as in nexus's
    assert "dependencies:\n  - TASK-8\n  - TASK-2\n" not in texts["task-9 - Benchmark-task-8.md"]
    assert "dependencies:\n  - TASK-2\n  - TASK-8\n" in texts["task-9 - Benchmark-task-8.md"]
    assert git("status", "--porcelain", cwd=tmp_path) == ""  # committed


def test_report_ratios_table_and_flags() -> None:
    rec = report.Record({"sizes": [100, 1000], "many": 1000, "loop": 1000, "load": []})
    rec.add("list", 100, "nexus", [0.2, 0.1, 0.3])
    rec.add("list", 100, "backlog", [0.8])
    rec.add("list", 1000, "nexus", [4.0])
    rec.add("list", 1000, "floor", [1.0])
    table = report.markdown(rec)
    assert "| list all tasks (`list --json`) | 100 | 200 ms (100 ms–300 ms) | – | 800 ms |" in table
    assert "| 0.25 | – | – |" in table
    rec.add("list", 100, "warm", [0.04])
    assert "| 0.25 | 0.05 | – |" in report.markdown(rec)
    found = report.flags(rec)
    assert any(f.startswith("list: grows as n^1.30") for f in found)
    assert "list: 4.00× its floor at 1000 tasks" in found
    with pytest.raises(ValueError, match="bad figure"):
        rec.add("list", 100, "nexus", [])


@pytest.mark.slow
@pytest.mark.timeout(600)  # ~30 s on a quiet 2-core machine; 113 s seen with load average 11
def test_quick_mode_measures_every_operation_and_draws_plots(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Its own session, so a timeout also ends the daemons it started (not left orphaned).
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-backlog", "--out", str(out)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=540)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    data = json.loads((out / "benchmarks.json").read_text())
    assert data["meta"]["sizes"] == [100] and data["meta"]["runs"] == 1
    for op in report.OPS:
        figure = data["ops"][op.key]["100"]["nexus"]
        assert figure["median"] > 0, op.key
        if op.floor:
            assert data["ops"][op.key]["100"]["floor"]["median"] > 0, op.key
    for op in ("list", "status", "create_one", "state_change"):  # also served by `nexus watch`
        assert data["ops"][op]["100"]["warm"]["median"] > 0, op
    for png in ("bench_times.png", "bench_space.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG"), png
    assert "| list all tasks (`list --json`) | 100 |" in stdout


def test_xl_reasons_read_the_plans_once_for_every_waiting_xl_task(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the side-by-side run: the daemon asked `xl_reason` per waiting XL task, each
    scanning every task and globbing plans/, so an editor save took ~10-50 s at 10,000 tasks."""
    from nexus.service import Service
    from nexus.store import Workspace

    for tid in ("bigaaaa1", "bigaaaa2", "bigaaaa3"):
        run_nexus("add", f"Big {tid}", "--size", "xl", "--id", tid, cwd=workspace)
    run_nexus("add", "A part", "--parent", "bigaaaa2", "--role", "code", cwd=workspace)
    svc = Service(Workspace(workspace))
    tasks = svc.snapshot().tasks
    reads = []
    waiting_plans = Service._waiting_plans
    monkeypatch.setattr(Service, "_waiting_plans", lambda s: reads.append(1) or waiting_plans(s))
    reasons = svc.xl_reasons(["bigaaaa1", "bigaaaa2", "bigaaaa3"], tasks)
    assert len(reads) == 1
    assert reasons["bigaaaa2"] == "it has children: it completes when they do"
    assert reasons["bigaaaa1"].startswith("XL: decompose first — `nexus plan --parent bigaaaa1`")
    assert reasons == {tid: svc.xl_reason(tasks[tid], tasks) for tid in reasons}


def test_complete_reports_the_status_it_moved_from_without_a_scan_of_its_own(
    workspace: Path,
) -> None:
    """Found by the side-by-side run: `nexus complete` scanned every task once to print the old
    status, then again to change it.  The status is now read inside the change, so it is the
    one the journal records even when the sync before it promoted the task."""
    run_nexus("add", "First", "--id", "firstaa1", "--role", "code", cwd=workspace)
    run_nexus("add", "Second", "--id", "secondb2", "--deps", "firstaa1", cwd=workspace)
    path = next(workspace.glob("tasks/**/firstaa1.md"))
    path.write_text(path.read_text().replace("status: ready", "status: complete"))  # a person
    out = run_nexus("complete", "secondb2", cwd=workspace).stdout
    assert out.strip() == "secondb2: ready -> complete"
    trailers = git("log", "-1", "--format=%(trailers)", cwd=workspace)
    assert "Nexus-Transition: secondb2 ready -> complete" in trailers

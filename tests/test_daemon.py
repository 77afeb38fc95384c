"""`nexus watch` on real workspaces: real processes, real git, scripted agents doing real work."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import git, run_nexus, start_daemon

# An agent that records when it really ran: start and end times, then sleeps a little.
LEDGER_AGENT = """
import sys, time, os
ledger, tid, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(ledger, "a") as f:
    f.write(f"start {tid} {time.time()}\\n")
time.sleep(pause)
with open(ledger, "a") as f:
    f.write(f"end {tid} {time.time()}\\n")
"""


def write_task(
    ws: Path, tid: str, *, deps: tuple[str, ...] = (), steps: list[Any] | None = None, **fields: Any
) -> Path:
    data: dict[str, Any] = {
        "id": tid,
        "title": f"Task {tid}",
        "engine": "script",
        "deps": list(deps),
        **fields,
    }
    if steps != []:  # [] = no script field: the role's steps (or another engine) apply
        data["script"] = steps if steps is not None else [{"result": f"{tid} done"}]
    path = ws / "tasks" / f"{tid}.md"
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False) + "---\nBody.\n")
    return path


def configure(ws: Path, **limits: Any) -> None:
    cfg = ws / "nexus.yaml"
    data = yaml.safe_load(cfg.read_text())
    data["limits"] = {**(data.get("limits") or {}), **limits}
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))


def watch(ws: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_nexus("watch", "--until-idle", *args, cwd=ws, check=False, timeout=timeout)


def tasks(ws: Path) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in json.loads(run_nexus("list", "--json", cwd=ws).stdout)}


def ledger_spans(ledger: Path) -> dict[str, tuple[float, float]]:
    starts: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for line in ledger.read_text().splitlines():
        kind, tid, t = line.split()
        if kind == "start":
            starts[tid] = float(t)
        else:
            spans[tid] = (starts[tid], float(t))
    return spans


def max_overlap(spans: dict[str, tuple[float, float]]) -> int:
    points = sorted([(s, 1) for s, _ in spans.values()] + [(e, -1) for _, e in spans.values()])
    best = cur = 0
    for _, d in points:
        cur += d
        best = max(best, cur)
    return best


def ledger_step(ws: Path, tid: str, pause: float = 0.05) -> dict[str, Any]:
    agent = ws.parent / "ledger_agent.py"
    if not agent.exists():
        agent.write_text(LEDGER_AGENT)
    return {"run": ["{python}", str(agent), str(ws.parent / "ledger.txt"), tid, str(pause)]}


def test_a_chain_and_a_diamond_run_to_completion_in_order(workspace: Path) -> None:
    write_task(workspace, "a", steps=[ledger_step(workspace, "a")])
    write_task(workspace, "b", deps=("a",), steps=[ledger_step(workspace, "b")])
    write_task(workspace, "c", deps=("a",), steps=[ledger_step(workspace, "c")])
    write_task(
        workspace, "d", deps=("b", "c"), steps=[ledger_step(workspace, "d"), {"result": "joined"}]
    )
    out = watch(workspace, "--workers", "2")
    assert out.returncode == 0, out.stderr
    assert {t["status"] for t in tasks(workspace).values()} == {"complete"}
    spans = ledger_spans(workspace.parent / "ledger.txt")
    assert spans["a"][1] <= min(spans["b"][0], spans["c"][0])
    assert max(spans["b"][1], spans["c"][1]) <= spans["d"][0]
    assert "## Result\n\njoined" in (workspace / "tasks" / "d.md").read_text()
    assert git("status", "--porcelain", cwd=workspace) == ""
    log = git("log", "--format=%B", cwd=workspace)
    assert "Nexus-Transition: d in_progress -> complete" in log
    assert "Nexus-Engine: script" in log and "Nexus-Actor: daemon" in log


@pytest.mark.slow
def test_fan_out_of_50_never_runs_more_than_4_at_once(workspace: Path) -> None:
    for i in range(50):
        write_task(workspace, f"f{i:02d}", steps=[ledger_step(workspace, f"f{i:02d}", 0.15)])
    out = watch(workspace, "--workers", "4", timeout=300)
    assert out.returncode == 0, out.stderr
    spans = ledger_spans(workspace.parent / "ledger.txt")
    assert len(spans) == 50
    assert max_overlap(spans) == 4  # never more, and the parallelism is real


def test_tasks_whose_touches_overlap_never_run_together(workspace: Path) -> None:
    write_task(workspace, "t1", touches=["src/api/*.py"], steps=[ledger_step(workspace, "t1", 0.4)])
    write_task(
        workspace, "t2", touches=["src/api/auth.py"], steps=[ledger_step(workspace, "t2", 0.4)]
    )
    write_task(workspace, "t3", touches=["docs/**"], steps=[ledger_step(workspace, "t3", 0.4)])
    out = watch(workspace, "--workers", "3")
    assert out.returncode == 0, out.stderr
    spans = ledger_spans(workspace.parent / "ledger.txt")
    (s1, e1), (s2, e2) = spans["t1"], spans["t2"]
    assert e1 <= s2 or e2 <= s1
    s3, e3 = spans["t3"]
    assert s3 < max(e1, e2) and min(s1, s2) < e3  # the unrelated task did run alongside


def test_a_failing_agent_is_retried_with_backoff_then_succeeds(workspace: Path) -> None:
    configure(workspace, max_retries=2, retry_backoff=0.2)
    write_task(
        workspace, "r", engine_settings={"fail_attempts": 3}, steps=[{"result": "third time lucky"}]
    )
    out = watch(workspace)
    assert out.returncode == 0, out.stderr
    t = tasks(workspace)["r"]
    assert (t["status"], t["attempts"]) == ("complete", 3)
    text = (workspace / "tasks" / "r.md").read_text()
    assert text.count("failed after") == 2 and "third time lucky" in text
    history = run_nexus("log", "r", cwd=workspace).stdout
    assert history.count("in_progress -> failed") == 2
    assert history.count("failed -> pending") == 2


def test_retries_exhausted_leave_the_task_failed_and_exit_1(workspace: Path) -> None:
    configure(workspace, max_retries=1, retry_backoff=0.1)
    write_task(workspace, "x", steps=[{"fail": "the build is broken"}])
    write_task(workspace, "after", deps=("x",))
    out = watch(workspace)
    assert out.returncode == 1
    t = tasks(workspace)
    assert (t["x"]["status"], t["x"]["attempts"], t["x"]["error"]) == (
        "failed",
        2,
        "the build is broken",
    )
    assert t["after"]["status"] == "pending"
    why = run_nexus("why", "after", cwd=workspace).stdout
    assert "which failed: the build is broken" in why


def test_a_hanging_agent_is_killed_at_its_timeout_with_its_children(workspace: Path) -> None:
    pidfile = workspace.parent / "child.pid"
    hang = (
        f"import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        f"time.sleep(600)\n"
    )
    configure(workspace, max_retries=0)
    write_task(workspace, "h", timeout=1.5, steps=[{"run": ["{python}", "-c", hang]}])
    t0 = time.monotonic()
    out = watch(workspace)
    assert time.monotonic() - t0 < 30
    assert out.returncode == 1
    t = tasks(workspace)["h"]
    assert t["status"] == "failed" and "timed out" in t["error"]
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not alive(child)


def test_an_agent_that_crashes_fails_the_task_with_the_signal(workspace: Path) -> None:
    configure(workspace, max_retries=0)
    write_task(workspace, "c", steps=[{"run": ["{python}", "-c", "import os; os.abort()"]}])
    out = watch(workspace)
    assert out.returncode == 1
    t = tasks(workspace)["c"]
    assert t["status"] == "failed" and "signal 6" in t["error"]


def test_a_429_storm_pauses_the_engine_and_does_not_burn_retries(workspace: Path) -> None:
    counter = workspace.parent / "calls"
    agent = workspace.parent / "limited.py"
    agent.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))\n"
        "if n < 3:\n    print('429 Too Many Requests'); sys.exit(75)\n"
        "print('finally through')\n"
    )
    configure(workspace, max_retries=0, rate_limit_backoff=0.2)
    (workspace / "tasks" / "q.md").write_text(
        "---\n"
        + yaml.safe_dump(
            {
                "id": "q",
                "title": "Rate limited",
                "engine": "command",
                "engine_settings": {
                    "argv": [sys.executable, str(agent)],
                    "rate_limit_exit_code": 75,
                },
            }
        )
        + "---\n"
    )
    out = watch(workspace)
    assert out.returncode == 0, out.stderr
    t = tasks(workspace)["q"]
    assert (t["status"], t["attempts"]) == ("complete", 1)
    assert counter.read_text() == "4"
    history = run_nexus("log", "q", cwd=workspace).stdout
    assert history.count("in_progress -> ready") == 3
    assert "finally through" in (workspace / "tasks" / "q.md").read_text()


@pytest.mark.slow
def test_sigkill_of_the_daemon_loses_nothing_and_reruns_nothing_complete(workspace: Path) -> None:
    for i in range(12):
        write_task(workspace, f"k{i:02d}", steps=[ledger_step(workspace, f"k{i:02d}", 0.3)])
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", "--workers", "3", "-q"],
        cwd=workspace,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ledger = workspace.parent / "ledger.txt"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = ledger.read_text().count("end ") if ledger.exists() else 0
        if done >= 4:
            break
        time.sleep(0.05)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait()
    completed_before = {tid for tid, t in tasks(workspace).items() if t["status"] == "complete"}
    out = watch(workspace, "--workers", "3")
    assert out.returncode == 0, out.stderr
    final = tasks(workspace)
    assert {t["status"] for t in final.values()} == {"complete"}
    ends = [line.split()[1] for line in ledger.read_text().splitlines() if line.startswith("end")]
    for tid in completed_before:
        assert ends.count(tid) == 1, f"{tid} was completed, then run again"
    assert all(ends.count(tid) >= 1 for tid in final)
    log = git("log", "--format=%B", cwd=workspace)
    interrupted = [t for t in final if f"{t}: in_progress -> ready (interrupted" in log]
    for tid in interrupted:
        assert "interrupted" in (workspace / "tasks" / f"{tid}.md").read_text()
    git("fsck", "--no-progress", cwd=workspace)
    assert git("status", "--porcelain", cwd=workspace) == ""


def test_a_person_editing_a_task_while_the_daemon_runs_is_taken_as_the_truth(
    workspace: Path,
) -> None:
    write_task(workspace, "slow", steps=[{"sleep": 30}])
    write_task(workspace, "later", deps=("slow",))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", "-q"],
        cwd=workspace,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: tasks(workspace)["slow"]["status"] == "in_progress")
        # The person cancels the running task and adds a new one, in an editor.
        f = workspace / "tasks" / "slow.md"
        f.write_text(f.read_text().replace("status: in_progress", "status: cancelled"))
        write_task(workspace, "fresh", steps=[{"result": "made by hand"}])
        _wait_for(lambda: tasks(workspace).get("fresh", {}).get("status") == "complete")
        assert tasks(workspace)["slow"]["status"] == "cancelled"
    finally:
        daemon.send_signal(signal.SIGTERM)
        err = daemon.communicate(timeout=30)[1]
    assert daemon.returncode == 0, err
    subjects = git("log", "--format=%an|%B", cwd=workspace)
    assert "Nexus-Transition: slow in_progress -> cancelled" in subjects
    assert "Pat Person|nexus:" in subjects


def test_a_second_daemon_says_who_holds_the_workspace(workspace: Path) -> None:
    write_task(workspace, "s", steps=[{"sleep": 30}])
    first = subprocess.Popen([sys.executable, "-m", "nexus", "watch", "-q"], cwd=workspace)
    try:
        _wait_for(lambda: (workspace / ".nexus" / "daemon.owner").exists())
        out = run_nexus("watch", cwd=workspace, check=False)
        assert out.returncode == 1
        assert f"another `nexus watch` runs this workspace (pid {first.pid}" in out.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)


def test_sigterm_lets_running_agents_finish_within_the_grace_period(workspace: Path) -> None:
    write_task(workspace, "g", steps=[{"sleep": 0.8}, {"result": "finished in grace"}])
    write_task(workspace, "n", deps=("g",))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", "-q", "--grace", "5"], cwd=workspace
    )
    _wait_for(lambda: tasks(workspace)["g"]["status"] == "in_progress")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    t = tasks(workspace)
    assert t["g"]["status"] == "complete"
    assert t["n"]["status"] == "ready"  # promoted, but not started after the stop


def test_sigterm_after_the_grace_period_interrupts_without_burning_an_attempt(
    workspace: Path,
) -> None:
    write_task(workspace, "long", steps=[{"sleep": 60}])
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", "-q", "--grace", "0.3"], cwd=workspace
    )
    _wait_for(lambda: tasks(workspace)["long"]["status"] == "in_progress")
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0
    t = tasks(workspace)["long"]
    assert (t["status"], t["attempts"]) == ("ready", 0)
    assert "interrupted by shutdown" in (workspace / "tasks" / "long.md").read_text()


def test_a_burst_of_signals_stops_the_daemon_instead_of_hanging_it(workspace: Path) -> None:
    """Found by hand: `timeout` and a process manager both sent SIGTERM, the second arrived
    while the first one's "stopping" event was being written, and the handler, writing again,
    waited forever for the lock it interrupted; the daemon hung holding the workspace.  Signals
    now only set a flag and wake the loop, which does the stopping."""
    write_task(workspace, "long", steps=[{"sleep": 60}])
    for attempt in range(3):
        daemon = start_daemon(workspace, "-q", "--grace", "0.3")
        _wait_for(lambda: tasks(workspace)["long"]["status"] == "in_progress")
        for _ in range(200):  # some land while the first one's events are being written
            daemon.send_signal(signal.SIGTERM if attempt % 2 else signal.SIGINT)
        try:
            code = daemon.wait(timeout=30)
        finally:
            daemon.kill()
        assert code == 0, code
        assert not (workspace / ".nexus" / "daemon.owner").exists()
        t = tasks(workspace)["long"]
        assert (t["status"], t["attempts"]) == ("ready", 0)


def test_xl_tasks_are_never_dispatched(workspace: Path) -> None:
    write_task(workspace, "big", size="XL")
    out = watch(workspace)
    assert tasks(workspace)["big"]["status"] == "ready"
    assert "XL: decompose first" in run_nexus("why", "big", cwd=workspace).stdout
    assert out.returncode == 0


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by this container's init, is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _wait_for(cond: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (KeyError, AssertionError, json.JSONDecodeError):
            pass
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_why_tells_what_a_ready_task_waits_for_while_the_daemon_runs(workspace: Path) -> None:
    write_task(workspace, "busy", steps=[{"sleep": 30}])
    write_task(workspace, "queued", steps=[{"sleep": 30}])
    assert "no `nexus watch` is running" in run_nexus("why", "queued", cwd=workspace).stdout
    daemon = subprocess.Popen([sys.executable, "-m", "nexus", "watch", "-q", "--workers", "1",
                               "--grace", "0"], cwd=workspace)  # fmt: skip
    try:
        _wait_for(lambda: "all workers are busy"
                  in run_nexus("why", "queued", cwd=workspace).stdout)  # fmt: skip
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)


def test_progress_events_carry_counts_and_only_when_a_figure_changes(workspace: Path) -> None:
    """Found at 10,000 ready tasks: every pass wrote a progress event holding the reason each
    ready task waited (~500 KB a line; 40 MB of events.jsonl in three minutes)."""
    for i in range(30):
        write_task(workspace, f"p{i:02d}")
    assert watch(workspace, "--workers", "2").returncode == 0
    events = [
        json.loads(line)
        for line in (workspace / ".nexus" / "events.jsonl").read_text().splitlines()
    ]
    progress = [
        {k: v for k, v in e.items() if k not in ("time", "task")}
        for e in events
        if e["kind"] == "progress"
    ]
    assert progress and progress[-1]["done"] == 30 and progress[-1]["total"] == 30
    assert all(isinstance(p["waiting"], int) for p in progress)
    assert max(p["waiting"] for p in progress) > 0  # ready tasks waited for a worker
    assert all(a != b for a, b in itertools.pairwise(progress))


def test_a_result_for_a_task_file_that_does_not_read_just_then_is_kept_not_dropped(
    workspace: Path,
) -> None:
    """Found by the editor stress test: a run ending while its task file was half-written
    was recorded as "task no longer exists" and dropped, leaving the task in_progress with
    nothing running."""
    path = write_task(workspace, "half", steps=[{"sleep": 1.5}, {"result": "kept for later"}])
    daemon = start_daemon(workspace, "-q")
    events = workspace / ".nexus" / "events.jsonl"
    try:
        _wait_for(lambda: tasks(workspace)["half"]["status"] == "in_progress")
        good = path.read_text()
        path.write_text("---\ntitle: [a person's save, half done\n")  # does not parse
        _wait_for(lambda: "could not record the results of half" in events.read_text())
        assert "in_progress" in git("show", "HEAD:tasks/half.md", cwd=workspace)
        path.write_text(good)  # the save completes
        _wait_for(lambda: tasks(workspace)["half"]["status"] == "complete")
    finally:
        daemon.send_signal(signal.SIGTERM)
        err = daemon.communicate(timeout=30)[1]
    assert daemon.returncode == 0, err
    assert "kept for later" in path.read_text()

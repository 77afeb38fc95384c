"""The crash harness, CI-sized (the long run is `python -m benchmarks.crash`, see
docs/reliability.md), and regression tests for the bugs it found.

Every harness test runs the real `nexus watch --workers 8` in a subprocess over a real git
repository, with agents that append to a ledger outside the workspace, and ends with
`benchmarks.crash.check`: all complete, side effects once (or covered by a recorded
interruption), the journal replays to the files, `git fsck` clean, no stray temp files.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks import crash
from nexus.changes import Batch
from nexus.engines.base import EngineResult
from nexus.errors import WorkspaceError
from nexus.gitrepo import Repo
from nexus.runner import RunReport, save_report
from nexus.service import Service, Snapshot
from nexus.store import FAULT_ENV, Workspace
from nexus.task import Status
from tests.conftest import git, run_nexus


@pytest.mark.slow
def test_300_tasks_survive_random_sigkills_of_the_daemon_and_of_agents(tmp_path: Path) -> None:
    h = crash.build(tmp_path, 300, seed=11)
    crash.run_with_kills(h, kills=5, seed=11, agent_kills=2)
    v = crash.check(h)
    assert v.problems == []
    assert h.kills == 5 and len(h.ids) >= 300 and h.exit_code == 0
    assert v.tasks == len(h.ids)

    # The checks are not vacuous: a side effect repeated without a recorded interruption,
    # and a status changed behind the journal's back, are both caught.
    clean = next(t for t in h.ids if _runs(h, t) == 1 and not _was_cut(h.root, t))
    with h.ledger.open("a") as fh:
        fh.write(f"end {clean} 1 1\n")
    path = next((h.root / "tasks").rglob(f"{clean}.md"))
    path.write_text(path.read_text().replace("status: complete", "status: cancelled"))
    problems = "\n".join(crash.check(h).problems)
    assert f"{clean}'s side effect happened 2 times" in problems
    assert f"journal replays {clean} to complete, its file says cancelled" in problems


@pytest.mark.slow
def test_a_killed_agent_fails_its_task_which_is_retried_and_the_journal_says_so(
    tmp_path: Path,
) -> None:
    h = crash.build(tmp_path, 30, seed=5, pause=(0.6, 1.0))
    crash.run_with_kills(h, kills=0, seed=5, agent_kills=3)
    assert crash.check(h).problems == []
    assert len(h.agent_kills) == 3
    log = git("log", "--format=%B", cwd=h.root)
    for tid in h.agent_kills:
        failed = [
            line for line in log.splitlines() if line.startswith(f"{tid}: in_progress -> failed")
        ]
        assert failed and all("killed by signal 9" in line for line in failed), failed
        assert f"{tid}: in_progress -> complete" in log


@pytest.mark.slow
def test_write_errors_at_the_storage_layer_are_reported_lose_nothing_and_pass(
    tmp_path: Path,
) -> None:
    h = crash.build(tmp_path, 60, seed=3, pause=(0.05, 0.2))
    flag = tmp_path / "disk-full"
    h.env[FAULT_ENV] = str(flag)
    window: dict[str, float] = {}

    def disk() -> None:  # full once a third has run, for 2.5 seconds
        if "on" not in window and crash.done_count(h) >= 20:
            flag.touch()
            window["on"] = time.monotonic()
        elif "on" in window and flag.exists() and time.monotonic() - window["on"] > 2.5:
            flag.unlink()

    crash.run_with_kills(h, kills=0, during=disk)
    assert "on" in window and not flag.exists()
    assert h.exit_code == 0  # the same daemon rode out the full disk
    assert crash.check(h).problems == []
    assert any("No space left on device" in e and "nothing was changed" in e for e in h.errors)


@pytest.mark.slow
def test_a_person_committing_and_running_git_gc_meanwhile_loses_nothing(tmp_path: Path) -> None:
    h = crash.build(tmp_path, 60, seed=4, pause=(0.1, 0.3))
    commits: list[str] = []
    with crash.person_at_work(h.root, commits, seed=4):
        crash.run_with_kills(h, kills=2, seed=4)
    assert crash.check(h).problems == []
    assert crash.person_commits_kept(h.root, commits) == []
    assert len([c for c in commits if c.startswith("person's note")]) >= 3
    notes = git("show", "HEAD:notes/person.txt", cwd=h.root)
    assert notes.count("note") == len(commits)


# -- regressions found by the harness ---------------------------------------------------------


def test_a_commit_killed_after_staging_leaks_nothing_into_the_next_commit(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the harness: nexus's private index kept the paths of a commit killed after
    `update-index`, and the next commit swept them in under its own message."""
    repo = Repo.discover(workspace)
    assert repo is not None
    index = workspace / ".nexus" / "git-index"
    (workspace / "a.txt").write_text("a1\n")
    (workspace / "b.txt").write_text("b1\n")
    repo.commit_paths(["a.txt", "b.txt"], "first\n", private_index=index)
    (workspace / "b.txt").write_text("b2 (its commit is killed)\n")
    real = repo.git

    def killed_at_write_tree(args: Any, **kw: Any) -> str:
        if args[0] == "write-tree":
            raise KeyboardInterrupt  # the process dies here
        return real(args, **kw)

    monkeypatch.setattr(repo, "git", killed_at_write_tree)
    with pytest.raises(KeyboardInterrupt):
        repo.commit_paths(["b.txt"], "killed\n", private_index=index)
    monkeypatch.setattr(repo, "git", real)
    (workspace / "a.txt").write_text("a2\n")
    repo.commit_paths(["a.txt"], "second\n", private_index=index)
    assert git("show", "--name-only", "--format=", "HEAD", cwd=workspace).split() == ["a.txt"]
    assert git("show", "HEAD:b.txt", cwd=workspace) == "b1\n"


def test_a_result_written_but_not_committed_is_journaled_once_on_restart(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the harness: a daemon killed between writing a run's result and committing it
    left both the intent and the saved report; the restart applied the report first, so the
    transition vanished from the journal and a spurious 'late result' was appended."""
    task = workspace / "tasks" / "t.md"
    task.write_text("---\nid: t\ntitle: T\nengine: script\nscript: [{result: ok}]\n---\nBody.\n")
    git("add", "-A", cwd=workspace)
    git("commit", "-qm", "task", cwd=workspace)
    run_nexus("resume", cwd=workspace)
    svc = Service(Workspace(workspace), actor="daemon")
    dead = f"daemon@{socket.gethostname()}:999999"

    def claim(batch: Batch, snap: Snapshot) -> str:
        batch.move("t", Status.ASSIGNED, "claimed", {"assignee": dead})
        batch.move("t", Status.IN_PROGRESS, "engine script started")
        return "start t"

    svc.mutate(claim, {}, "daemon")

    def finish(batch: Batch, snap: Snapshot) -> str:
        batch.move("t", Status.COMPLETE, "engine script succeeded", None, "## Result\n\nok")
        return "complete t"

    def killed(*args: Any, **kw: Any) -> None:
        raise KeyboardInterrupt  # the daemon dies between writing and committing

    attempt = svc.current().tasks["t"].attempts
    save_report(svc.ws, RunReport("t", attempt, EngineResult(ok=True, text="ok")))
    monkeypatch.setattr(svc.repo, "commit_paths", killed)
    with pytest.raises(KeyboardInterrupt):
        svc.mutate(finish, {}, "daemon")
    monkeypatch.undo()

    out = run_nexus("watch", "--until-idle", "-q", cwd=workspace, check=False)
    assert out.returncode == 0, out.stderr
    log = git("log", "--format=%B", cwd=workspace)
    assert log.count("Nexus-Transition: t in_progress -> complete") == 1
    assert "a run finished after" not in task.read_text()
    state, jumps = crash.replay(crash.journal_entries(workspace))
    assert jumps == [] and state["t"] == "complete"
    assert not list((workspace / ".nexus" / "results").glob("*.json"))


def test_a_write_error_changes_no_file_leaves_no_temp_and_says_what_to_do(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ws = Workspace(workspace)
    a, b = workspace / "tasks" / "a.md", workspace / "tasks" / "b.md"
    a.write_text("old a\n")
    b.write_text("old b\n")
    flag = tmp_path / "full"
    flag.touch()
    monkeypatch.setenv(FAULT_ENV, str(flag))
    with pytest.raises(WorkspaceError) as err:
        ws.write_many({a: "new a\n", b: "new b\n"})
    assert "cannot write tasks/a.md: No space left on device" in str(err.value)
    assert "free disk space" in (err.value.fix or "")
    assert (a.read_text(), b.read_text()) == ("old a\n", "old b\n")
    assert crash.stray_files(workspace) == []
    flag.unlink()
    ws.write_many({a: "new a\n", b: "new b\n"})
    assert (a.read_text(), b.read_text()) == ("new a\n", "new b\n")


def test_the_daemon_keeps_running_through_a_full_disk_and_says_so(
    workspace: Path, tmp_path: Path
) -> None:
    flag = tmp_path / "full"
    flag.touch()
    task = workspace / "tasks" / "t.md"
    task.write_text("---\nid: t\ntitle: T\nengine: script\nscript: [{result: ok}]\n---\n")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", "--until-idle"],
        cwd=workspace,
        env={**_env(), FAULT_ENV: str(flag)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait(lambda: "No space left on device" in _events(workspace))
        assert daemon.poll() is None
        flag.unlink()
        out = daemon.communicate(timeout=60)[0]
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, out
    assert "status: complete" in task.read_text()
    assert "No space left on device" in out


def _was_cut(ws: Path, tid: str) -> bool:
    """Did the journal record a run of `tid` being cut off (interrupted or failed)?"""
    return any(
        t == tid and src == "in_progress" and dst != "complete"
        for e in crash.journal_entries(ws)
        for t, src, dst in e.transitions
    )


def _runs(h: crash.Harness, tid: str) -> int:
    return sum(1 for kind, t, _, _ in crash.ledger_lines(h) if kind == "end" and t == tid)


def _events(ws: Path) -> str:
    path = ws / ".nexus" / "events.jsonl"
    return path.read_text() if path.exists() else ""


def _env() -> dict[str, str]:
    return dict(os.environ)


def _wait(cond: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_temp_files_of_a_killed_write_are_removed_when_the_daemon_starts(workspace: Path) -> None:
    """Found by the harness: a daemon SIGKILLed inside an atomic write left its temp file in
    tasks/ for good (and `git status` showed it to the person)."""
    dead = workspace / "tasks" / ".t.md.999999.abcdef.tmp"
    live = workspace / "tasks" / f".u.md.{os.getpid()}.abcdef.tmp"  # a write in progress
    dead.write_text("half a file")
    live.write_text("a file being written")
    out = run_nexus("watch", "--until-idle", "-q", cwd=workspace, check=False)
    assert out.returncode == 0, out.stderr
    assert not dead.exists() and live.exists()


def test_sigterm_while_ready_tasks_wait_for_a_worker_exits_0(workspace: Path) -> None:
    """Found by the soak: a daemon stopped with SIGTERM while ready tasks waited for a free
    worker exited 1, as if those tasks could never start."""
    for tid in ("a", "b", "c"):
        (workspace / "tasks" / f"{tid}.md").write_text(
            f"---\nid: {tid}\ntitle: {tid}\nengine: script\nscript: [{{sleep: 0.5}}]\n---\n"
        )
    err = workspace.parent / "daemon.err"
    with err.open("w") as sink:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "nexus", "watch", "-q", "--workers", "1"],
            cwd=workspace,
            stderr=sink,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
    _wait(lambda: '"waiting_for_a_worker": 2' in _state(workspace))
    daemon.send_signal(signal.SIGTERM)
    try:
        code = daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:  # seen once in a full run: say where every thread was
        daemon.send_signal(signal.SIGABRT)  # faulthandler prints each thread's stack
        daemon.wait(timeout=30)
        raise AssertionError(f"no exit 30 s after SIGTERM:\n{err.read_text()[-6000:]}") from None
    assert code == 0, err.read_text()


def _state(ws: Path) -> str:
    path = ws / ".nexus" / "daemon-state.json"
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def test_runtime_temp_files_of_a_killed_daemon_are_removed_when_it_starts(workspace: Path) -> None:
    """Found by the long run: `.nexus/intent.json.<pid>.tmp` of a daemon killed while writing
    its commit intent stayed for good."""
    runtime = workspace / ".nexus"
    runtime.mkdir(exist_ok=True)
    stale = [runtime / "intent.json.999999.tmp", runtime / ".daemon-state.tmp"]
    for path in stale:
        path.write_text("{")
    out = run_nexus("watch", "--until-idle", "-q", cwd=workspace, check=False)
    assert out.returncode == 0, out.stderr
    assert not any(p.exists() for p in stale)
    assert crash.stray_files(workspace) == []


# Staging is the one step of a commit that is always a git process (the daemon builds the
# rest in-process with libgit2): it fails once, for the claim (the files it stages say
# in_progress), as when `git gc` prunes a folder under it.
GIT_THAT_FAILS_A_CLAIM = """#!{python}
import os, subprocess, sys
flag, real = {flag!r}, {real!r}
args = sys.argv[1:]
if args[:2] == ["update-index", "--add"] and os.path.exists(flag):
    paths = sys.stdin.buffer.read()
    staged = [p for p in paths.decode().split("\\0") if p.endswith(".md")]
    if staged and all("status: in_progress" in open(p).read() for p in staged):
        os.unlink(flag)
        sys.exit("error: unable to create temporary file: No such file or directory")
    sys.exit(subprocess.run([real, *args], input=paths).returncode)
os.execv(real, [real, *args])
"""


def test_a_claim_whose_commit_fails_is_released_and_run(workspace: Path, tmp_path: Path) -> None:
    """Found by the long run with a person running `git gc`: a claim written to the files
    whose commit failed left its tasks in_progress with no run, and `--until-idle` exited
    with them stuck."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    flag = tmp_path / "fail-next-claim"
    flag.touch()
    fake = bin_dir / "git"
    real = shutil.which("git")
    fake.write_text(GIT_THAT_FAILS_A_CLAIM.format(python=sys.executable, flag=str(flag), real=real))
    fake.chmod(0o755)
    for tid in ("a", "b"):
        (workspace / "tasks" / f"{tid}.md").write_text(
            f"---\nid: {tid}\ntitle: {tid}\nengine: script\nscript: [{{result: ok}}]\n---\n"
        )
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    out = run_nexus("watch", "--until-idle", cwd=workspace, check=False, env={"PATH": path})
    assert out.returncode == 0, out.stdout + out.stderr
    assert not flag.exists()  # the claim's commit did fail once
    assert "could not claim tasks" in out.stdout + out.stderr
    state, jumps = crash.replay(crash.journal_entries(workspace))
    assert jumps == [] and state["a"] == state["b"] == "complete"
    assert "its claim was written but could not be committed" in git("log", cwd=workspace)

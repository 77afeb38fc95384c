"""Several writers at once: a person's editor and the daemon on the same task files, two `nexus`
processes, the CLI beside a running daemon.  Nothing may be lost, every change is one commit,
and `git fsck` stays clean (docs/lifecycle.md, "Editing while nexus writes")."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from nexus import frontmatter, taskfile
from nexus.changes import Batch
from nexus.errors import WorkspaceError
from nexus.service import Service
from nexus.store import Workspace
from nexus.task import Status
from tests.conftest import git, run_nexus, start_daemon, stop_daemon
from tests.test_corpus import wait_for
from tests.test_daemon import tasks, write_task

NEXUS = [sys.executable, "-m", "nexus"]


def all_status(ws: Path, ids: list[str], status: str) -> bool:
    snap = Service(Workspace(ws)).snapshot()
    return all(tid in snap.tasks and str(snap.tasks[tid].status) == status for tid in ids)


def clean_and_whole(ws: Path) -> None:
    git("fsck", "--no-progress", "--strict", cwd=ws)
    assert git("status", "--porcelain", cwd=ws) == ""
    assert not [p for p in ws.rglob("*.tmp") if ".git" not in p.parts]
    assert Service(Workspace(ws)).snapshot().broken == []


def stat_key(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


class Editor(threading.Thread):
    """A person in an editor, saving task files again and again while the daemon runs them:
    each save appends a line to the body and sets a field.  Half the saves write in place
    (truncate and write, like VS Code), half by rename (like vim).  Like those editors, it
    notices when the file changed on disk after it was loaded (nexus replaces files, so the
    inode and mtime change) and reloads before saving; the last check and the save are
    microseconds apart, the window test_a_stale_buffer_... covers."""

    def __init__(self, ws: Path, ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.ws, self.ids = ws, ids
        self.lines: dict[str, list[str]] = {tid: [] for tid in ids}
        self.priority: dict[str, str] = {}
        self.stop = threading.Event()
        self.rng = random.Random(6)

    def save(self, tid: str, n: int) -> None:
        path = self.ws / "tasks" / f"{tid}.md"
        line = f"person edit {n} of {tid}"
        priority = "high" if n % 2 else "low"
        while True:
            loaded = stat_key(path)
            text = path.read_bytes().decode("utf-8")
            time.sleep(self.rng.uniform(0, 0.01))  # typing
            if stat_key(path) == loaded:
                break  # else: "the file changed on disk; reload?" - yes
        text = frontmatter.set_fields(text, {"priority": priority}) + line + "\n"
        if n % 2:
            path.write_text(text, encoding="utf-8", newline="")
        else:
            tmp = path.with_name(f".{path.name}.editor.swp")
            tmp.write_text(text, encoding="utf-8", newline="")
            os.replace(tmp, path)
        self.lines[tid].append(line)
        self.priority[tid] = priority

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            for tid in self.ids:
                self.save(tid, n)
            time.sleep(0.02)


def test_an_editor_saving_while_the_daemon_writes_loses_neither_change(workspace: Path) -> None:
    ids = [f"t{i}" for i in range(8)]
    for tid in ids:
        write_task(workspace, tid, steps=[{"sleep": 0.3}, {"result": f"result of {tid}"}])
    git("add", "-A", cwd=workspace)
    git("commit", "-qm", "tasks", cwd=workspace)
    daemon = start_daemon(workspace, "-q", "--workers", "4")
    editor = Editor(workspace, ids)
    editor.start()
    try:
        wait_for(lambda: all_status(workspace, ids, "complete"))
        time.sleep(1.0)  # and a few more saves after the last result
    except AssertionError:
        editor.stop.set()
        snap = Service(Workspace(workspace)).snapshot()
        states = {tid: str(t.status) for tid, t in snap.tasks.items()}
        # The daemon runs with -q: its own event log says what it tried and what failed.
        events = (workspace / ".nexus" / "events.jsonl").read_text().splitlines()[-40:]
        stderr = stop_daemon(daemon, check=False)
        raise AssertionError("\n".join([str(states), stderr, "last events:", *events])) from None
    finally:
        editor.stop.set()
        editor.join()
    time.sleep(1.0)  # the daemon commits the last saves
    stop_daemon(daemon)
    run_nexus("status", cwd=workspace)  # commits anything the daemon had not yet seen
    clean_and_whole(workspace)
    snap = Service(Workspace(workspace)).snapshot()
    for tid in ids:
        text = (workspace / "tasks" / f"{tid}.md").read_text()
        task = snap.tasks[tid]
        # the daemon's changes
        assert str(task.status) == "complete", (tid, task.status, text)
        assert f"## Result\n\nresult of {tid}" in text, text
        # the person's changes, every one of them
        missing = [line for line in editor.lines[tid] if line not in text]
        assert not missing, (tid, missing, text)
        assert str(task.priority) == editor.priority[tid]
    log = git("log", "--format=%B", cwd=workspace)
    for tid in ids:
        assert f"Nexus-Transition: {tid} in_progress -> complete" in log


ADD_20 = """
import subprocess, sys
for i in range(20):
    out = subprocess.run([sys.executable, "-m", "nexus", "add", f"{sys.argv[1]} {i}"],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
    print(out.stdout.strip(), flush=True)
"""
COMPLETE = """
import subprocess, sys
for tid in sys.argv[1:]:
    out = subprocess.run([sys.executable, "-m", "nexus", "complete", tid, "--result", "ok"],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
"""


def run_pair(ws: Path, script: str, args: list[list[str]]) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *a],
            cwd=ws,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for a in args
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    return [o for o, _ in outs]


def test_two_cli_processes_adding_and_completing_at_once_lose_nothing(workspace: Path) -> None:
    head = git("rev-parse", "HEAD", cwd=workspace).strip()
    outs = run_pair(workspace, ADD_20, [["first"], ["second"]])
    ids = [out.split() for out in outs]
    assert [len(i) for i in ids] == [20, 20] and len(set(ids[0] + ids[1])) == 40
    created = git("log", "--format=%(trailers:key=Nexus-Created,valueonly)", cwd=workspace)
    assert sorted(created.split()) == sorted(ids[0] + ids[1])  # each in a commit of its own
    assert git("rev-list", "--count", f"{head}..HEAD", cwd=workspace).strip() == "40"
    run_pair(workspace, COMPLETE, ids)
    assert all_status(workspace, ids[0] + ids[1], "complete")
    log = git("log", "--format=%B", cwd=workspace)
    for tid in ids[0] + ids[1]:
        assert log.count(f"Nexus-Transition: {tid} ready -> complete") == 1
    assert git("rev-list", "--count", f"{head}..HEAD", cwd=workspace).strip() == "80"
    clean_and_whole(workspace)


def test_the_cli_and_the_daemon_at_once(workspace: Path) -> None:
    for i in range(10):
        write_task(workspace, f"d{i}", steps=[{"sleep": 0.1}, {"result": f"d{i} done"}])
    daemon = start_daemon(workspace, "-q", "--workers", "4")
    try:
        added = []
        for i in range(15):
            out = run_nexus("add", f"from the CLI {i}", "--engine", "script", cwd=workspace)
            added.append(out.stdout.strip())
            if i % 5 == 0:
                run_nexus("send", "user", "code", f"note {i}", cwd=workspace)
        run_nexus("cancel", added[-1], cwd=workspace, check=False)  # may already have run
        wait_for(
            lambda: all_status(workspace, [f"d{i}" for i in range(10)] + added[:-1], "complete")
        )
    finally:
        stop_daemon(daemon)
    clean_and_whole(workspace)
    final = tasks(workspace)
    assert len(final) == 25
    assert final[added[-1]]["status"] in ("cancelled", "complete")
    created = git("log", "--format=%(trailers:key=Nexus-Created,valueonly)", cwd=workspace)
    assert set(added) <= set(created.split())
    inbox = yaml.safe_load(run_nexus("inbox", "code", "--json", cwd=workspace).stdout)
    assert len(inbox["messages"]) == 3


def test_a_stale_buffer_saved_over_nexus_s_write_gets_nexus_s_change_back(
    workspace: Path,
) -> None:
    svc = Service(Workspace(workspace))
    task = svc.add("Write the report")
    path = workspace / task.path
    buffer = path.read_text()  # the person opens the file...
    svc.set_status(task.id, Status.COMPLETE, reason="done elsewhere", result="the answer is 42")
    # ...and saves the buffer they loaded before nexus wrote, with their own edits.
    stale = frontmatter.set_fields(buffer, {"priority": "high"}) + "A line of my own.\n"
    path.write_text(stale)
    report = Service(Workspace(workspace)).sync()
    assert report.person_edits == [task.path]
    text = path.read_text()
    assert "status: complete" in text and "the answer is 42" in text  # nexus's change
    assert "priority: high" in text and "A line of my own." in text  # the person's
    message = git("log", "-1", "--format=%an|%B", cwd=workspace)
    assert message.startswith("Pat Person|")
    assert "in a buffer older than nexus's commit" in message
    assert "status → complete" in message and "## Result" in message
    # Saved again from the merged file, the person's edit is taken as it is.
    path.write_text(text.replace("status: complete", "status: cancelled"))
    Service(Workspace(workspace)).sync()
    assert "status: cancelled" in path.read_text()
    clean_and_whole(workspace)


def test_a_stale_buffer_saved_again_during_the_restore_is_not_committed_over_nexus_s_change(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the editor stress test: the restore saw the file saved again meanwhile and
    gave up, and the sync then committed the newer save, still from the stale buffer, as the
    person's: nexus's `complete` was undone for good."""
    svc = Service(Workspace(workspace))
    task = svc.add("Write the report")
    path = workspace / task.path
    buffer = path.read_text()
    svc.set_status(task.id, Status.COMPLETE, reason="done elsewhere", result="the answer is 42")
    path.write_text(buffer + "First save.\n")
    syncing = Service(Workspace(workspace))
    restore = syncing._restore_lost

    def saved_again_first(*args: object) -> object:
        path.write_text(buffer + "First save.\nSecond save.\n")  # the editor, again
        return restore(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(syncing, "_restore_lost", saved_again_first)
    syncing.sync()
    assert "status: complete" in git("show", f"HEAD:{task.path}", cwd=workspace)
    Service(Workspace(workspace)).sync()  # the next sync looks at the newer save
    text = path.read_text()
    assert "status: complete" in text and "the answer is 42" in text
    assert "Second save." in text
    assert "status: complete" in git("show", f"HEAD:{task.path}", cwd=workspace)
    clean_and_whole(workspace)


def racing_a_save(
    workspace: Path, save: Callable[[str], str]
) -> tuple[Service, Path, Callable[[Batch, object], str]]:
    """A service, a task file, and a change setting its priority while a person saves the file
    (`save`: what they make of its text) after nexus read it: the race, made certain."""
    svc = Service(Workspace(workspace))
    task = svc.add("Contended")
    path = workspace / task.path

    def build(batch: Batch, snap: object) -> str:
        batch.update(task.id, {"priority": "high"})
        path.write_text(save(path.read_text()))
        return "set priority"

    return svc, path, build


def test_a_save_made_after_nexus_read_the_file_is_committed_as_the_person_s_then_merged(
    workspace: Path,
) -> None:
    svc, path, build = racing_a_save(workspace, lambda t: t + "Saved by a person meanwhile.\n")
    svc.mutate(build)
    text = path.read_text()
    assert "priority: high" in text and text.endswith("Saved by a person meanwhile.\n")
    # Two commits: the person's save as theirs, then nexus's change on top of it.
    assert git("log", "-2", "--format=%an|%s", cwd=workspace).splitlines() == [
        "nexus|nexus: set priority",
        "Pat Person|nexus: 1 file(s) edited by a person",
    ]
    rel = path.relative_to(workspace).as_posix()
    assert "priority: high" not in git("show", f"HEAD~1:{rel}", cwd=workspace)
    clean_and_whole(workspace)


def test_a_save_that_collides_with_nexus_s_change_is_never_written_over(
    workspace: Path,
) -> None:
    svc, path, build = racing_a_save(
        workspace, lambda t: frontmatter.set_fields(t, {"priority": "low"})
    )
    with pytest.raises(WorkspaceError, match="changed on disk while nexus was updating it"):
        svc.mutate(build)
    assert "priority: low" in path.read_text()
    svc.sync()  # the save is committed as the person's; nexus's next try sees it
    svc.edit(path.stem, {"priority": "high"})
    assert "priority: high" in path.read_text()
    clean_and_whole(workspace)


def saves_before_checks(
    svc: Service, path: Path, monkeypatch: pytest.MonkeyPatch, *, limit: int | None
) -> list[int]:
    """A person saving `path` (a line "save N") just before each of nexus's last checks, the
    first `limit` times (None: every time).  The list fills with one entry a check."""
    checks: list[int] = []
    real = svc._check_unchanged

    def save_then_check(batch: Batch) -> None:
        checks.append(len(checks) + 1)
        if limit is None or len(checks) <= limit:
            path.write_text(path.read_text() + f"save {len(checks)}\n")
        real(batch)

    monkeypatch.setattr(svc, "_check_unchanged", save_then_check)
    return checks


def test_a_file_saved_before_every_try_fails_the_change_after_a_few_merges(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Service(Workspace(workspace))
    task = svc.add("Contended")
    path = workspace / task.path
    checks = saves_before_checks(svc, path, monkeypatch, limit=None)
    with pytest.raises(WorkspaceError, match="changed on disk"):
        svc.edit(task.id, {"priority": "high"})
    text = path.read_text()
    assert "priority: high" not in text
    assert all(f"save {n}\n" in text for n in range(1, len(checks) + 1)) and len(checks) > 2


def test_a_save_landing_again_during_the_merge_is_folded_into_nexus_s_commit(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = Service(Workspace(workspace))
    task = svc.add("Contended")
    path = workspace / task.path
    # Saved before the first check, and again while the first merge commits.
    saves_before_checks(svc, path, monkeypatch, limit=2)
    svc.edit(task.id, {"priority": "high"})
    text = path.read_text()
    assert "priority: high" in text and "save 1\n" in text and "save 2\n" in text
    head = git("log", "-1", "--format=%an|%B", cwd=workspace)
    assert head.startswith("nexus|") and f"holds a person's save of {task.path}" in head
    assert "save 1" in git("show", f"HEAD~1:{task.path}", cwd=workspace)  # the person's commit
    clean_and_whole(workspace)


def test_merge_save_applies_nexus_s_change_on_a_newer_save_unless_they_collide() -> None:
    body_edit = BASE.replace("Body.", "Body, edited.")
    assert taskfile.merge_save(BASE, NEXUS_WROTE, body_edit) == NEXUS_WROTE.replace(
        "Body.", "Body, edited."
    )
    assert taskfile.merge_save(BASE, NEXUS_WROTE, BASE) == NEXUS_WROTE
    collide = BASE.replace("in_progress", "cancelled")
    assert taskfile.merge_save(BASE, NEXUS_WROTE, collide) is None
    rewrote = NEXUS_WROTE.replace("Body.", "Another body.")
    assert taskfile.merge_save(BASE, rewrote, body_edit) is None
    assert taskfile.merge_save(BASE, NEXUS_WROTE, "not a task file") is None


BASE = "---\ntitle: T\nstatus: in_progress\n---\nBody.\n"
NEXUS_WROTE = "---\ntitle: T\nstatus: complete\nupdated: x\n---\nBody.\n\n## Result\n\ndone\n"


def test_restore_lost_puts_back_only_what_a_stale_save_lacks() -> None:
    stale = "---\ntitle: T\nstatus: in_progress\npriority: high\n---\nBody, edited.\n"
    merged = taskfile.restore_lost(BASE, NEXUS_WROTE, stale)
    assert merged is not None
    text, restored = merged
    assert text == (
        "---\ntitle: T\nstatus: complete\npriority: high\nupdated: x\n---\nBody, edited.\n"
        "\n## Result\n\ndone\n"
    )
    assert restored == ["status → complete", "updated → x", "## Result"]


def test_restore_lost_leaves_a_save_based_on_nexus_s_write_alone() -> None:
    # The save already holds nexus's change, or changed the same field on purpose.
    assert taskfile.restore_lost(BASE, NEXUS_WROTE, NEXUS_WROTE + "more\n") is None
    cancelled = NEXUS_WROTE.replace("status: complete", "status: cancelled")
    assert taskfile.restore_lost(BASE, NEXUS_WROTE, cancelled) is None
    # Only nexus's timestamp missing: the save is the newer truth.
    touched = "---\ntitle: T\nstatus: in_progress\n---\nBody.\n"
    assert (
        taskfile.restore_lost(touched, touched.replace("---\nB", "updated: y\n---\nB"), touched)
        is None
    )

"""The service's write path as the daemon drives it: one snapshot carried from change to
change (with its dependency graph), no rescan in between."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nexus.changes import Batch
from nexus.service import Service, Snapshot
from nexus.store import Workspace
from nexus.task import Status


def complete(svc: Service, tid: str) -> Batch:
    def build(batch: Batch, snap: Snapshot) -> str:
        batch.move(tid, Status.COMPLETE, "test")
        return f"complete {tid}"

    return svc.mutate(build, snapshot=svc.current())


def test_a_carried_snapshot_promotes_each_dependent_and_reuses_its_graph(workspace: Path) -> None:
    svc = Service(Workspace(workspace))
    a = svc.add("A")
    b = svc.add("B", deps=[a.id])
    c = svc.add("C", deps=[b.id])
    svc.sync()
    graph = svc.current().structure()
    assert graph.dependents[a.id] == [b.id]
    complete(svc, a.id)
    assert svc.current().tasks[b.id].status is Status.READY
    assert svc.current().graph is graph  # no dep changed: not computed again
    complete(svc, b.id)
    assert svc.current().tasks[c.id].status is Status.READY
    # What the carried snapshot says is what a fresh scan of the files says.
    fresh = Service(Workspace(workspace)).snapshot()
    assert {t.id: t.status for t in fresh.tasks.values()} == {
        t.id: t.status for t in svc.current().tasks.values()
    }


def test_a_dep_edited_on_disk_after_the_snapshot_is_not_promoted_by_a_stale_graph(
    workspace: Path,
) -> None:
    svc = Service(Workspace(workspace))
    a = svc.add("A")
    b = svc.add("B", deps=[a.id])
    other = svc.add("Other")
    svc.sync()
    svc.current().structure()
    # A person makes B wait for Other too; the daemon's snapshot has not seen it yet.
    path = workspace / b.path
    path.write_text(path.read_text().replace(f"deps: [{a.id}]", f"deps: [{a.id}, {other.id}]"))
    assert other.id in path.read_text()

    def build(batch: Batch, snap: Snapshot) -> str:
        batch.current(b.id)  # the batch reads B's file: its deps changed on disk
        batch.move(a.id, Status.COMPLETE, "test")
        return "complete A"

    batch = svc.mutate(build, snapshot=svc.current())
    assert batch.deps_changed and svc.current().graph is None
    assert batch.tasks[b.id].status is Status.PENDING  # Other is not complete


def test_runs_share_git_status_readings_but_never_one_older_than_asked(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from nexus import runner

    svc = Service(Workspace(workspace))
    calls: list[float] = []
    real = runner.dirty_state

    def counted(repo: Any, ws: Any) -> Any:
        calls.append(time.monotonic())
        time.sleep(0.05)  # long enough for the other threads to queue behind it
        return real(repo, ws)

    monkeypatch.setattr(runner, "dirty_state", counted)
    shared = runner.SharedStatus(svc.repo, svc.ws)
    wave = time.monotonic()
    out: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: out.append(shared.since(wave))) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(out) == 8 and len(calls) <= 2  # one reading, or two when one started late
    (workspace / "src").mkdir()
    (workspace / "src" / "changed.txt").write_text("an agent's work\n")
    after = shared.since(time.monotonic())  # asked after the change: a new reading sees it
    assert "src/changed.txt" in after and len(calls) >= 2


def test_a_commit_that_failed_is_journaled_before_the_next_change_writes_its_own(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the long crash run with a person running `git gc`: a result commit failed, the
    daemon's next commit replaced its intent, and the first change's transitions were lost."""
    from nexus.errors import GitError
    from tests.conftest import git

    svc = Service(Workspace(workspace))
    a, b = svc.add("A"), svc.add("B")
    svc.sync()
    real = svc.repo.commit_paths
    failures: list[str] = []

    def fails_once(*args: Any, **kw: Any) -> Any:
        if not failures:
            failures.append("once")
            raise GitError("unable to create temporary file: No such file or directory")
        return real(*args, **kw)

    monkeypatch.setattr(svc.repo, "commit_paths", fails_once)
    with pytest.raises(GitError):
        complete(svc, a.id)
    complete(svc, b.id)  # the daemon's path: no sync in between
    journal = git("log", "--format=%B", cwd=workspace)
    assert f"Nexus-Transition: {a.id} ready -> complete" in journal
    assert f"Nexus-Transition: {b.id} ready -> complete" in journal
    assert git("status", "--porcelain", cwd=workspace).strip() == ""


def test_a_change_killed_between_its_renames_journals_only_the_files_it_wrote(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the long crash run: a claim of 8 tasks killed after 5 renames was repaired
    with all 8 transitions, and the 3 tasks still `ready` on disk were claimed again later."""
    from tests.conftest import git

    svc = Service(Workspace(workspace))
    a, b, c = svc.add("A"), svc.add("B"), svc.add("C")
    svc.sync()
    renames: list[Path] = []
    real = svc._swap_in

    def killed_after_one(expected: Any, clobbered: Any, tmp: Path, path: Path) -> None:
        if renames:
            raise KeyboardInterrupt  # SIGKILL between two renames, as far as disk goes
        renames.append(path)
        real(expected, clobbered, tmp, path)

    monkeypatch.setattr(svc, "_swap_in", killed_after_one)

    def build(batch: Batch, snap: Snapshot) -> str:
        for tid in (a.id, b.id, c.id):
            batch.move(tid, Status.COMPLETE, "test")
        return "complete 3"

    with pytest.raises(KeyboardInterrupt):
        svc.mutate(build, snapshot=svc.current())
    monkeypatch.undo()
    written = renames[0].stem
    report = Service(Workspace(workspace)).sync()  # what the restarted daemon does first
    assert report.repaired
    message = git("log", "-1", "--format=%B", cwd=workspace)
    assert f"Nexus-Transition: {written} ready -> complete" in message
    for tid in {a.id, b.id, c.id} - {written}:
        assert tid not in message, message
    fresh = Service(Workspace(workspace)).snapshot()
    done = {t.id for t in fresh.tasks.values() if t.status is Status.COMPLETE}
    assert done == {written}
    status = git("status", "--porcelain", cwd=workspace).splitlines()
    assert [line for line in status if not line.endswith(".tmp")] == []  # the killed temps


def test_problems_are_kept_for_a_digest_and_found_again_when_a_task_file_changes(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nexus import dag, frontmatter

    svc = Service(Workspace(workspace))
    a = svc.add("A")
    path = workspace / a.path
    path.write_text(frontmatter.set_fields(path.read_text(), {"deps": ["nosuch01"]}))
    first = Service(Workspace(workspace)).snapshot().problems
    assert [p.message for p in first] == [f"task {a.id} depends on nosuch01, which does not exist"]

    def never(tasks: Any) -> Any:
        raise AssertionError("the graph was walked again")

    with monkeypatch.context() as m:
        m.setattr(dag, "problems", never)
        assert Service(Workspace(workspace)).snapshot().problems == first  # from the cache
    path.write_text(frontmatter.set_fields(path.read_text(), {"deps": []}))
    assert Service(Workspace(workspace)).snapshot().problems == []


def test_a_change_leaves_the_workspace_settled_but_never_over_a_save_made_meanwhile(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a command's own commit the next command need not ask `git status` (70 ms at
    10,000 tasks): the change records the workspace as settled, from the stat of each file
    it wrote and found holding what it wrote.  A person's save after that is seen."""
    from nexus.gitrepo import Repo

    a = Service(Workspace(workspace)).add("A")
    Service(Workspace(workspace)).sync()  # settled
    asked: list[int] = []
    real_status = Repo.status
    monkeypatch.setattr(
        Repo, "status", lambda self, specs: asked.append(1) or real_status(self, specs)
    )
    b = Service(Workspace(workspace)).add("B", deps=[a.id])  # each a new command's service
    report = Service(Workspace(workspace)).sync()
    assert asked == [] and not report.person_edits and not report.commits
    # The person saves a file nexus has just committed, before the change records it.
    c_path = Workspace(workspace).new_task_path("zzzzzzzz").relative_to(workspace).as_posix()
    real_commit = Repo.commit_paths

    def commit_then_a_save(self: Repo, paths: Any, message: str, **kw: Any) -> Any:
        out = real_commit(self, paths, message, **kw)
        saved = workspace / c_path
        if saved.exists():
            saved.write_text(saved.read_text().replace("title: C", "title: C by hand"))
        return out

    monkeypatch.setattr(Repo, "commit_paths", commit_then_a_save)
    c = Service(Workspace(workspace)).add("C", task_id="zzzzzzzz")
    assert c.path == c_path
    monkeypatch.setattr(Repo, "commit_paths", real_commit)
    report = Service(Workspace(workspace)).sync()
    assert report.person_edits == [c_path]
    assert asked  # it had to look
    assert b.id in Service(Workspace(workspace)).snapshot().tasks


def test_a_stale_save_staged_in_place_of_nexus_s_change_is_put_back_and_committed(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the editor stress test (a run ended `complete` in the journal but
    `in_progress` in the file, for good): an editor's save from a buffer loaded before nexus
    wrote the file landed between nexus's rename and git staging the file, so nexus's commit
    held the person's text instead of its change, and no later sync could tell.  The change
    is now put back on top of that save and committed."""
    from nexus.gitrepo import Repo

    svc = Service(Workspace(workspace))
    a = svc.add("A")
    svc.sync()
    path = workspace / a.path
    stale = path.read_text()  # the editor loaded the file before nexus's change
    real_commit = Repo.commit_paths
    calls: list[str] = []

    def save_before_staging(self: Repo, paths: Any, message: str, **kw: Any) -> Any:
        calls.append(message.splitlines()[0])
        if len(calls) == 1:  # the change's own commit: the stale save lands first
            path.write_text(stale + "\nthe person's line\n")
        return real_commit(self, paths, message, **kw)

    monkeypatch.setattr(Repo, "commit_paths", save_before_staging)
    svc = Service(Workspace(workspace))
    complete(svc, a.id)
    monkeypatch.setattr(Repo, "commit_paths", real_commit)
    assert len(calls) == 2 and "put back" in calls[1]
    for text in (path.read_text(), git_show(workspace, f"HEAD:{a.path}")):
        assert "status: complete" in text and "the person's line" in text, text
    report = Service(Workspace(workspace)).sync()
    assert not report.person_edits and not report.commits  # all of it is committed


def git_show(ws: Path, spec: str) -> str:
    import subprocess

    return subprocess.run(
        ["git", "show", spec], cwd=ws, capture_output=True, text=True, check=True
    ).stdout

"""The journal never sweeps in a person's work, survives hooks, locks, races and crashes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git, run_nexus


def path_of(ws: Path, tid: str) -> Path:
    return ws / json.loads(run_nexus("show", tid, "--json", cwd=ws).stdout)["path"]


def test_commits_contain_only_nexus_paths_while_the_person_has_staged_and_unstaged_work(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "app"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / "app.py").write_text("v1\n")
    git("add", "app.py", cwd=repo)
    git("commit", "-qm", "app", cwd=repo)
    run_nexus("init", "ws", cwd=repo)
    ws = repo / "ws"
    # The person stages one change and leaves another unstaged, in and out of the workspace.
    (repo / "app.py").write_text("v2 staged\n")
    git("add", "app.py", cwd=repo)
    (repo / "app.py").write_text("v3 unstaged\n")
    (repo / "notes.txt").write_text("untracked\n")
    (ws / "scratch.txt").write_text("not a nexus path\n")
    staged_before = git("diff", "--cached", "--name-status", cwd=repo)
    a = run_nexus("add", "A", cwd=ws).stdout.strip()
    run_nexus("complete", a, "--result", "ok", cwd=ws)
    for rev in ("HEAD", "HEAD~1"):
        files = git("show", "--name-only", "--format=", rev, cwd=repo).split()
        assert files == [f"ws/tasks/{a[0]}/{a}.md"]
    assert git("diff", "--cached", "--name-status", cwd=repo) == staged_before == "M\tapp.py\n"
    assert (repo / "app.py").read_text() == "v3 unstaged\n"
    assert git("show", ":app.py", cwd=repo) == "v2 staged\n"
    status = git("status", "--porcelain", cwd=repo).splitlines()
    assert sorted(status) == ["?? notes.txt", "?? ws/scratch.txt", "MM app.py"]
    msg = git("log", "-1", "--format=%B", cwd=repo)
    assert f"Nexus-Transition: {a} ready -> complete" in msg and "Nexus-Actor: cli" in msg


def test_a_failing_pre_commit_hook_does_not_block_state_commits(workspace: Path) -> None:
    hooks = workspace / ".git" / "hooks"
    for name in ("pre-commit", "commit-msg", "prepare-commit-msg", "post-commit"):
        hook = hooks / name
        hook.write_text("#!/bin/sh\necho hook ran >> hook.log\nexit 1\n")
        hook.chmod(0o755)
    a = run_nexus("add", "A", cwd=workspace).stdout.strip()
    run_nexus("complete", a, cwd=workspace)
    assert "complete" in git("log", "-1", "--format=%s", cwd=workspace)
    assert not (workspace / "hook.log").exists()
    # The person's own commits still go through their hooks.
    (workspace / "x.txt").write_text("x")
    git("add", "x.txt", cwd=workspace)
    assert subprocess.run(["git", "commit", "-qm", "mine"], cwd=workspace).returncode != 0


def test_a_leftover_index_lock_from_a_dead_process_is_cleared(workspace: Path) -> None:
    lock = workspace / ".git" / "index.lock"
    lock.write_text("")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    a = run_nexus("add", "A", cwd=workspace)
    tid = a.stdout.strip()
    assert "removed" in a.stderr and "index.lock" in a.stderr
    assert not lock.exists()
    assert f"add {tid}" in git("log", "-1", "--format=%s", cwd=workspace)
    assert git("status", "--porcelain", cwd=workspace) == ""


def test_a_fresh_index_lock_held_by_a_live_git_is_waited_for_not_removed(workspace: Path) -> None:
    lock = workspace / ".git" / "index.lock"
    lock.write_text("")
    # Another git command "finishes" after half a second.
    remover = subprocess.Popen(
        [sys.executable, "-c", f"import time,os; time.sleep(0.5); os.remove({str(lock)!r})"]
    )
    tid = run_nexus("add", "A", cwd=workspace).stdout.strip()
    remover.wait()
    assert f"add {tid}" in git("log", "-1", "--format=%s", cwd=workspace)
    assert git("status", "--porcelain", cwd=workspace) == ""


def test_a_crash_between_writing_and_committing_is_repaired_by_resume(workspace: Path) -> None:
    a = run_nexus("add", "A", cwd=workspace).stdout.strip()
    b = run_nexus("add", "B", "--deps", a, cwd=workspace).stdout.strip()
    # Run `nexus complete` in a process that dies right after the files are written.
    crash = (
        "import os, sys\n"
        "from nexus import gitrepo\n"
        "def die(*a, **k): os._exit(9)\n"
        "gitrepo.Repo.commit_paths = die\n"
        "from nexus.cli.main import main\n"
        f"sys.exit(main(['complete', {a!r}, '--result', 'done before the crash']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", crash], cwd=workspace, capture_output=True)
    assert proc.returncode == 9
    assert "status: complete" in (workspace / "tasks" / a[0] / f"{a}.md").read_text()
    assert git("status", "--porcelain", cwd=workspace) != ""
    out = run_nexus("resume", "--json", cwd=workspace)
    data = json.loads(out.stdout)
    assert sorted(data["repaired"]) == sorted([f"tasks/{a[0]}/{a}.md", f"tasks/{b[0]}/{b}.md"])
    assert [t["id"] for t in data["ready"]] == [b]
    assert git("status", "--porcelain", cwd=workspace) == ""
    msg = git("log", "-1", "--format=%B", cwd=workspace)
    assert "(recovered)" in msg and f"Nexus-Transition: {a} ready -> complete" in msg
    assert "Nexus-Actor: cli" in msg  # the crashed run's change, not a person's


def test_a_person_committing_concurrently_is_never_overwritten(workspace: Path) -> None:
    """Nexus and a person commit in a tight loop; every commit of both survives."""
    ids = []
    person = subprocess.Popen(
        [
            "sh",
            "-c",
            "for i in $(seq 1 15); do echo $i > mine.txt; git add mine.txt; "
            "git commit -qm person-$i; done",
        ],
        cwd=workspace,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for i in range(6):
        ids.append(run_nexus("add", f"T{i}", cwd=workspace).stdout.strip())
    person.wait()
    subjects = git("log", "--format=%s", cwd=workspace)
    for tid in ids:
        assert f"add {tid}" in subjects
    assert subjects.count("person-") == 15
    git("fsck", "--no-progress", cwd=workspace)
    tracked = git("ls-files", cwd=workspace).split()
    assert all(f"tasks/{tid[0]}/{tid}.md" in tracked for tid in ids)


def test_two_clones_creating_tasks_at_once_get_different_ids(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    run_nexus("init", str(origin), cwd=tmp_path)
    clones = []
    for name in ("one", "two"):
        git("clone", "-q", str(origin), name, cwd=tmp_path)
        clones.append(tmp_path / name)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from nexus.cli.main import main\nfor i in range(25): main(['add', f'task {i}'])\n",
            ],
            cwd=c,
            stdout=subprocess.PIPE,
            text=True,
        )
        for c in clones
    ]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(len(o) == 25 for o in outs)
    assert not set(outs[0]) & set(outs[1])
    # The two histories merge without a conflict: every task is its own file.
    git("pull", "-q", "--no-rebase", "--no-edit", str(clones[1]), "main", cwd=clones[0])
    data = json.loads(run_nexus("list", "--json", cwd=clones[0]).stdout)
    assert len(data) == 50


def test_untouched_task_files_are_never_rewritten(workspace: Path) -> None:
    hand = workspace / "tasks" / "hand.md"
    original = (
        "---\r\n# mine\r\ntitle: Hand   written\r\nzeta: 1\r\nstatus: ready\r\n---\r\nbody\r\n"
    )
    hand.write_bytes(original.encode())
    run_nexus("status", cwd=workspace)  # commits the person's new file
    other = run_nexus("add", "Other", cwd=workspace).stdout.strip()
    run_nexus("complete", other, cwd=workspace)
    run_nexus("status", cwd=workspace)
    assert hand.read_bytes() == original.encode()
    # And a nexus update keeps the person's keys, comments, order and line endings.
    run_nexus("complete", "hand", "--result", "done", cwd=workspace)
    text = hand.read_bytes().decode()
    assert text.startswith(
        "---\r\n# mine\r\ntitle: Hand   written\r\nzeta: 1\r\nstatus: complete\r\n"
    )
    assert text.endswith("body\r\n\r\n## Result\r\n\r\ndone\r\n")


def test_the_repository_is_found_as_git_finds_it_in_every_layout(tmp_path: Path) -> None:
    """The top of an ordinary repository is read off its `.git` folder without a git process;
    every other layout asks git.  Either way the answer is git's own."""
    from nexus.gitrepo import Repo

    plain = tmp_path / "plain"
    git("init", "-q", str(plain), cwd=tmp_path)
    git("commit", "-q", "--allow-empty", "-m", "base", cwd=plain)
    (plain / "sub").mkdir()
    linked = tmp_path / "linked"  # its .git is a file
    git("worktree", "add", "-q", str(linked), cwd=plain)
    moved = tmp_path / "moved"  # a .git folder whose work tree is set elsewhere
    git("init", "-q", str(moved), cwd=tmp_path)
    git("config", "core.worktree", str(plain / "sub"), cwd=moved)
    included = tmp_path / "included"  # the same in a file its config includes: git ignores it
    git("init", "-q", str(included), cwd=tmp_path)
    (tmp_path / "extra.gitconfig").write_text(f"[core]\n\tworktree = {plain / 'sub'}\n")
    git("config", "include.path", str(tmp_path / "extra.gitconfig"), cwd=included)
    for folder in (plain, plain / "sub", linked, moved, included):
        repo = Repo.discover(folder)
        assert repo is not None, folder
        top, git_dir = git("rev-parse", "--show-toplevel", "--absolute-git-dir", cwd=folder).split()
        assert (repo.top, repo.git_dir) == (Path(top), Path(git_dir)), folder
    bare = tmp_path / "bare"  # a .git folder that says it is bare: no work tree at all
    git("init", "-q", str(bare), cwd=tmp_path)
    git("config", "core.bare", "true", cwd=bare)
    assert Repo.discover(bare) is None
    assert Repo.discover(tmp_path) is None  # not a repository at all


# -- commits built in-process (libgit2) by long-lived processes -------------------------------


def _repo_with_history(root: Path) -> Path:
    git("init", "-q", str(root), cwd=root.parent)
    (root / "tasks" / "a").mkdir(parents=True)
    for i in range(30):
        (root / "tasks" / "a" / f"a{i}.md").write_text(f"---\nid: a{i}\n---\n")
    (root / "notes.txt").write_text("the person's own file\n")
    (root / ".gitignore").write_text(".nexus/\n")
    git("add", "-A", cwd=root)
    git("commit", "-qm", "base", cwd=root)
    (root / ".nexus").mkdir()
    return root


def _commit_traced(
    root: Path, in_process: bool, paths: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[str | None, list[str]]:
    from nexus import gitrepo

    ran: list[str] = []
    real = gitrepo._run

    def traced(args: Sequence[str], **kw: Any) -> str:
        ran.append(args[0])
        return real(args, **kw)

    monkeypatch.setattr(gitrepo, "_in_process", in_process)
    monkeypatch.setattr(gitrepo, "_run", traced)
    repo = gitrepo.Repo.discover(root)
    assert repo is not None
    commit = repo.commit_paths(
        paths,
        "nexus: complete a3\n\nNexus-Actor: cli\nNexus-Transition: a3 ready -> complete\n",
        private_index=root / ".nexus" / "git-index",
    )
    return commit, ran


def test_a_commit_built_in_process_is_the_commit_git_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same change committed by git processes and by libgit2: the same tree, message,
    parents, authorship and reflog, and `git status` clean in both, with two git processes
    instead of six."""
    twins = [_repo_with_history(tmp_path / "by_git"), tmp_path / "by_libgit2"]
    shutil.copytree(twins[0], twins[1])
    results = {}
    for root, in_process in zip(twins, (False, True), strict=True):
        # The person has work staged and unstaged; nexus changes, adds and deletes files.
        (root / "notes.txt").write_text("staged by the person\n")
        git("add", "notes.txt", cwd=root)
        (root / "tasks" / "a" / "a3.md").write_text("---\nid: a3\nstatus: complete\n---\n")
        (root / "tasks" / "b").mkdir()
        (root / "tasks" / "b" / "b1.md").write_text("---\nid: b1\n---\n")
        (root / "tasks" / "a" / "a4.md").unlink()
        paths = ["tasks/a/a3.md", "tasks/b/b1.md", "tasks/a/a4.md"]
        commit, ran = _commit_traced(root, in_process, paths, monkeypatch)
        assert commit is not None
        results[in_process] = (
            git("cat-file", "-p", commit, cwd=root).split("\n"),
            git("reflog", "-1", "--format=%gs", cwd=root).strip(),
            git("status", "--porcelain", cwd=root),
            ran,
        )
        assert "fatal" not in git("fsck", "--no-progress", cwd=root)

    def without_times(lines: list[str]) -> list[str]:
        return [" ".join(ln.split()[:-2]) if ln.startswith(("author", "committer")) else ln
                for ln in lines]  # fmt: skip

    (by_git, reflog_git, status_git, ran_git), (by_lg2, reflog_lg2, status_lg2, ran_lg2) = (
        results[False],
        results[True],
    )
    assert without_times(by_lg2) == without_times(by_git)  # tree, parent, names, message
    assert reflog_lg2 == reflog_git == "nexus: complete a3", (reflog_lg2, reflog_git)
    assert status_lg2 == status_git == "M  notes.txt\n"  # the person's staged work untouched
    assert "write-tree" in ran_git and "commit-tree" in ran_git and "update-ref" in ran_git
    assert ran_lg2 == ["rev-parse", "read-tree", "update-index", "update-index"]  # a new index


def test_an_in_process_commit_never_overwrites_a_commit_made_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _repo_with_history(tmp_path / "ws")
    (root / "tasks" / "a" / "a1.md").write_text("---\nid: a1\nstatus: ready\n---\n")
    assert _commit_traced(root, True, ["tasks/a/a1.md"], monkeypatch)[0]
    # The person commits behind nexus's back: nexus's record of HEAD is now stale.
    (root / "notes.txt").write_text("the person's commit\n")
    git("commit", "-qam", "mine", cwd=root)
    mine = git("rev-parse", "HEAD", cwd=root).strip()
    (root / "tasks" / "a" / "a2.md").write_text("---\nid: a2\nstatus: ready\n---\n")
    commit, ran = _commit_traced(root, True, ["tasks/a/a2.md"], monkeypatch)
    assert commit is not None
    assert git("rev-parse", f"{commit}^", cwd=root).strip() == mine  # rebuilt on top of it
    assert git("show", "HEAD:notes.txt", cwd=root) == "the person's commit\n"
    assert "read-tree" in ran  # the private index was rebuilt from the new HEAD
    assert git("status", "--porcelain", cwd=root) == ""
    (root / "tasks" / "a" / "a3.md").write_text("---\nid: a3\nstatus: ready\n---\n")
    commit, ran = _commit_traced(root, True, ["tasks/a/a3.md"], monkeypatch)
    assert ran == ["update-index", "update-index"]  # the usual commit: two git processes
    assert git("log", "-1", "--format=%s", commit, cwd=root) == "nexus: complete a3\n"


def test_an_in_process_commit_leaves_a_locked_branch_to_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """libgit2 cannot take a branch whose lock a dead git left; git's path clears it (it is
    an hour old) and commits."""
    root = _repo_with_history(tmp_path / "ws")
    lock = root / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    (root / "tasks" / "a" / "a1.md").write_text("---\nid: a1\nstatus: ready\n---\n")
    commit, ran = _commit_traced(root, True, ["tasks/a/a1.md"], monkeypatch)
    assert commit is not None and "update-ref" in ran
    assert git("rev-parse", "HEAD", cwd=root).strip() == commit
    assert not lock.exists()


def test_an_index_libgit2_cannot_read_is_left_to_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _repo_with_history(tmp_path / "ws")
    git("config", "core.splitIndex", "true", cwd=root)  # a "link" extension libgit2 refuses
    (root / "tasks" / "a" / "a1.md").write_text("---\nid: a1\nstatus: ready\n---\n")
    commit, ran = _commit_traced(root, True, ["tasks/a/a1.md"], monkeypatch)
    assert commit is not None
    assert git("show", f"{commit}:tasks/a/a1.md", cwd=root).endswith("status: ready\n---\n")
    assert git("status", "--porcelain", cwd=root) == ""
    assert "write-tree" in ran, ran

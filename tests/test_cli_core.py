"""The core CLI, driven as a person drives it: real processes, real git."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nexus.task import Status
from tests.conftest import git, run_nexus


def trailers(ws: Path, rev: str = "HEAD") -> list[str]:
    return git("log", "-1", "--format=%(trailers:only,unfold)", rev, cwd=ws).split("\n")


def path_of(ws: Path, tid: str) -> Path:
    return ws / json.loads(run_nexus("show", tid, "--json", cwd=ws).stdout)["path"]


def test_the_readme_session_promotes_and_commits(tmp_path: Path) -> None:
    run_nexus(
        "init", "auth-migration", "--goal", "Migrate our auth service to OAuth2", cwd=tmp_path
    )
    ws = tmp_path / "auth-migration"
    a = run_nexus(
        "add", "Research OAuth2 flows", "--size", "S", "--role", "aria", cwd=ws
    ).stdout.strip()
    b = run_nexus(
        "add", "Implement token endpoint", "--size", "M", "--role", "code", "--deps", a, cwd=ws
    ).stdout.strip()
    c = run_nexus(
        "add",
        "Write endpoint tests",
        "--size",
        "M",
        "--role",
        "alpha",
        "--deps",
        b,
        "--acceptance",
        "covers refresh",
        cwd=ws,
    ).stdout.strip()
    assert re.fullmatch(r"[0-9a-z]{8}", a)
    status = json.loads(run_nexus("status", "--json", cwd=ws).stdout)
    assert status["counts"]["ready"] == 1 and status["counts"]["pending"] == 2
    assert status["progress"] == 0
    text = run_nexus("status", cwd=ws).stdout
    assert "1 ready" in text and "2 pending" in text

    # A person marks the first task complete in an editor.
    f = path_of(ws, a)
    f.write_text(f.read_text().replace("status: ready", "status: complete"))
    out = run_nexus("status", "--json", cwd=ws)
    by_id = {t["id"]: t for t in json.loads(out.stdout)["tasks"]}
    assert by_id[a]["status"] == "complete"
    assert by_id[b]["status"] == "ready"
    assert by_id[c]["status"] == "pending" and by_id[c]["acceptance"] == ["covers refresh"]
    assert git("status", "--porcelain", cwd=ws) == ""

    subjects = git("log", "--format=%an|%s", cwd=ws).splitlines()
    assert subjects[0] == f"nexus|nexus: promote {b} (Implement token endpoint)"
    assert subjects[1] == "Pat Person|nexus: 1 file(s) edited by a person"
    assert f"Nexus-Transition: {b} pending -> ready" in trailers(ws)
    assert "Nexus-Actor: cli" in trailers(ws)
    assert f"Nexus-Transition: {a} ready -> complete" in trailers(ws, "HEAD~1")
    assert "Nexus-Actor: user" in trailers(ws, "HEAD~1")

    log = json.loads(run_nexus("log", a, "--json", cwd=ws).stdout)
    assert [(e["actor"], t["from"], t["to"]) for e in log for t in e["transitions"]] == [
        ("user", "ready", "complete"),
        ("cli", "pending", "ready"),
    ]
    assert log[-1]["created"] == [a]
    text_log = run_nexus("log", cwd=ws).stdout
    assert f"cli     {c:<10} created" in text_log


def test_edit_without_fields_opens_the_editor_and_commits_the_change_as_the_persons(
    workspace: Path,
) -> None:
    a = run_nexus("add", "A", cwd=workspace).stdout.strip()
    b = run_nexus("add", "B", "--deps", a, cwd=workspace).stdout.strip()
    editor = "sed -i -e 's/^status: ready/status: complete/'"  # stands in for a person in $EDITOR
    out = run_nexus("edit", a, cwd=workspace, env={"EDITOR": editor, "VISUAL": editor})
    assert f"{a}: ready -> complete (edited by a person)" in out.stderr
    assert json.loads(run_nexus("show", b, "--json", cwd=workspace).stdout)["status"] == "ready"
    assert "Pat Person" in git("log", "--format=%an", cwd=workspace)


def test_list_and_show_json_have_the_documented_fields(workspace: Path) -> None:
    tid = run_nexus(
        "add", "One", "--role", "aria", "--priority", "high", cwd=workspace
    ).stdout.strip()
    listed = json.loads(run_nexus("list", "--json", cwd=workspace).stdout)
    assert isinstance(listed, list) and len(listed) == 1
    for key in (
        "id",
        "title",
        "kind",
        "status",
        "size",
        "role",
        "deps",
        "parent",
        "priority",
        "path",
    ):
        assert key in listed[0]
    assert listed[0]["path"] == f"tasks/{tid[0]}/{tid}.md"
    shown = json.loads(run_nexus("show", tid[:5], "--json", cwd=workspace).stdout)
    assert shown["id"] == tid and shown["priority"] == "high"
    added = json.loads(run_nexus("add", "Two", "--json", cwd=workspace).stdout)
    assert added["title"] == "Two" and added["status"] == "ready"
    only_ready = json.loads(
        run_nexus("list", "--status", "ready", "--role", "aria", "--json", cwd=workspace).stdout
    )
    assert [t["id"] for t in only_ready] == [tid]


def test_list_json_from_the_cache_equals_encoding_every_task_afresh(workspace: Path) -> None:
    # `list --json` and `status --json` splice encodings cached by the scan; they must say
    # exactly what encoding each task now would, also after a change made in the same run.
    from nexus.service import Service
    from nexus.store import Workspace, json_summaries

    a = run_nexus("add", "Ünïcode — “quotes” \\ back", "--acceptance", "x: y", cwd=workspace)
    b = run_nexus("add", "B", "--deps", a.stdout.strip(), "--priority", "high", cwd=workspace)
    for _ in range(2):  # the first scan parses, the second reads the cache
        svc = Service(Workspace(workspace))
        snap = svc.snapshot()
        order = sorted(snap.tasks.values(), key=lambda t: t.id)
        fresh = json.loads(json.dumps([t.summary() for t in order], ensure_ascii=False))
        assert json.loads(json_summaries(order, snap.encoded)) == fresh
    svc.set_status(b.stdout.strip(), Status.CANCELLED, reason="test")  # a task changed in-process
    snap = svc.current()
    order = list(snap.tasks.values())
    fresh = json.loads(json.dumps([t.summary() for t in order], ensure_ascii=False))
    assert json.loads(json_summaries(order, snap.encoded)) == fresh
    listed = json.loads(run_nexus("list", "--json", cwd=workspace).stdout)
    status = json.loads(run_nexus("status", "--json", cwd=workspace).stdout)
    assert sorted(listed, key=lambda t: t["id"]) == sorted(status["tasks"], key=lambda t: t["id"])
    assert {t["status"] for t in listed} == {"ready", "cancelled"}


def test_complete_fail_cancel_retry_and_edit(workspace: Path) -> None:
    a = run_nexus("add", "A", cwd=workspace).stdout.strip()
    b = run_nexus("add", "B", "--deps", a, cwd=workspace).stdout.strip()
    run_nexus("complete", a, "--result", "did it\n---\nstatus: bogus", cwd=workspace)
    text = path_of(workspace, a).read_text()
    assert "## Result\n\ndid it\n    ---\nstatus: bogus" in text
    assert json.loads(run_nexus("show", b, "--json", cwd=workspace).stdout)["status"] == "ready"
    run_nexus("fail", b, "--reason", "tests broke", cwd=workspace)
    shown = json.loads(run_nexus("show", b, "--json", cwd=workspace).stdout)
    assert (shown["status"], shown["error"], shown["attempts"]) == ("failed", "tests broke", 1)
    why = json.loads(run_nexus("why", b, "--json", cwd=workspace).stdout)
    assert "failed (attempt 1 of 3): tests broke" in why["reasons"][0]
    run_nexus("retry", b, cwd=workspace)
    shown = json.loads(run_nexus("show", b, "--json", cwd=workspace).stdout)
    assert (shown["status"], shown["attempts"], shown["error"]) == ("ready", 0, None)
    run_nexus("edit", b, "size=L", "acceptance=[fast, safe]", cwd=workspace)
    shown = json.loads(run_nexus("show", b, "--json", cwd=workspace).stdout)
    assert shown["size"] == "L" and shown["acceptance"] == ["fast", "safe"]
    run_nexus("cancel", b, cwd=workspace)
    assert json.loads(run_nexus("show", b, "--json", cwd=workspace).stdout)["status"] == "cancelled"
    assert git("status", "--porcelain", cwd=workspace) == ""


def test_refused_transitions_say_why_and_change_nothing(workspace: Path) -> None:
    a = run_nexus("add", "A", cwd=workspace).stdout.strip()
    b = run_nexus("add", "B", "--deps", a, cwd=workspace).stdout.strip()
    head = git("rev-parse", "HEAD", cwd=workspace)
    before = path_of(workspace, b).read_bytes()
    out = run_nexus("complete", b, cwd=workspace, check=False)
    assert out.returncode == 1
    assert f"task {b} cannot go from pending to complete" in out.stderr
    assert "fix:" in out.stderr and "Traceback" not in out.stderr
    run_nexus("cancel", a, cwd=workspace)
    out = run_nexus("complete", a, cwd=workspace, check=False)
    assert out.returncode == 1 and "nexus retry" in out.stderr
    assert path_of(workspace, b).read_bytes() == before
    assert git("rev-parse", "HEAD~1", cwd=workspace) == head


def test_why_explains_what_a_pending_task_waits_for(workspace: Path) -> None:
    a = run_nexus("add", "Design", cwd=workspace).stdout.strip()
    b = run_nexus("add", "Build", "--deps", a, cwd=workspace).stdout.strip()
    out = run_nexus("why", b, cwd=workspace).stdout
    assert f"waits for {a} (Design), which is ready" in out
    run_nexus("cancel", a, cwd=workspace)
    out = run_nexus("why", b, cwd=workspace).stdout
    assert "cancelled: it will never complete" in out


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"---\ntitle: [unclosed\n---\n", "not valid YAML"),
        (b"---\n- a list\n---\n", "must be a mapping"),
        (b"---\ntitle: t\nattempts: lots\n---\n", "(field attempts): must be a whole number"),
        (b"---\ntitle: t\nstatus: finished\n---\n", "'finished' is not a valid status"),
        (b"---\ntitle: t\nsize: huge\n---\n", "'huge' is not a valid size"),
        (b"---\ntitle: caf\xe9\n---\n", "not UTF-8"),
        (b"", "the file is empty"),
        (b"just some notes\n", "does not start with a '---'"),
        (b"---\nid: ../escape\ntitle: t\n---\n", "not a valid id"),
        (b"---\nid: a/b\ntitle: t\n---\n", "not a valid id"),
    ],
)
def test_a_broken_file_is_reported_and_the_rest_keeps_working(
    workspace: Path, content: bytes, words: str
) -> None:
    good = run_nexus("add", "Good task", cwd=workspace).stdout.strip()
    bad = workspace / "tasks" / "broken.md"
    bad.write_bytes(content)
    out = run_nexus("status", "--json", cwd=workspace)
    data = json.loads(out.stdout)
    assert [t["id"] for t in data["tasks"]] == [good]
    [broken] = data["broken"]
    assert broken["path"] == "tasks/broken.md"
    assert words in broken["message"] + f" (field {broken['field']}): " + broken["message"]
    assert broken["fix"]
    text = run_nexus("status", cwd=workspace).stdout
    assert "1 file(s) could not be read" in text and "tasks/broken.md" in text
    v = run_nexus("validate", cwd=workspace, check=False)
    assert v.returncode == 1 and "tasks/broken.md" in v.stdout
    assert bad.read_bytes() == content  # never touched
    assert git("status", "--porcelain", "tasks/broken.md", cwd=workspace).startswith("??")
    run_nexus("complete", good, cwd=workspace)  # the rest of the workspace works


def test_a_dep_on_a_missing_task_and_a_cycle_are_reported_by_validate(workspace: Path) -> None:
    a = run_nexus("add", "A", cwd=workspace).stdout.strip()
    (workspace / "tasks" / "x.md").write_text("---\ntitle: X\ndeps: [ghost]\n---\n")
    (workspace / "tasks" / "c1.md").write_text("---\ntitle: C1\ndeps: [c2]\n---\n")
    (workspace / "tasks" / "c2.md").write_text("---\ntitle: C2\ndeps: [c1]\n---\n")
    v = run_nexus("validate", "--json", cwd=workspace, check=False)
    assert v.returncode == 1
    msgs = {(p["path"], p["message"]) for p in json.loads(v.stdout)["problems"]}
    assert ("tasks/x.md", "task x depends on ghost, which does not exist") in msgs
    assert ("tasks/c1.md", "dependency cycle: c1 → c2 → c1") in msgs
    why = run_nexus("why", "x", cwd=workspace).stdout
    assert "ghost, which does not exist" in why
    assert json.loads(run_nexus("show", a, "--json", cwd=workspace).stdout)["status"] == "ready"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--deps", "nope1234"], "dependency nope1234 does not exist"),
        (["--id", "me", "--deps", "me"], "task me cannot depend on itself"),
        (["--id", "../x"], "not a valid id"),
        (["--id", "a/b"], "not a valid id"),
        (["--role", "ghost"], "role 'ghost' has no agents/ghost.md"),
        (["--role", "../../etc"], "not a valid role name"),
        (["--parent", "nope"], "parent nope does not exist"),
        (["--engine", "nope"], "unknown engine 'nope'"),
    ],
)
def test_bad_add_arguments_are_refused_with_a_fix(
    workspace: Path, args: list[str], words: str
) -> None:
    head = git("rev-parse", "HEAD", cwd=workspace)
    out = run_nexus("add", "T", *args, cwd=workspace, check=False)
    assert out.returncode == 1, out.stderr
    assert words in out.stderr
    assert out.stdout == ""
    assert git("rev-parse", "HEAD", cwd=workspace) == head
    assert not list((workspace / "tasks").rglob("*.md"))


def test_edit_refuses_a_cycle_a_self_dep_and_unknown_fields(workspace: Path) -> None:
    a = run_nexus("add", "A", cwd=workspace).stdout.strip()
    b = run_nexus("add", "B", "--deps", a, cwd=workspace).stdout.strip()
    out = run_nexus("edit", a, f"deps=[{b}]", cwd=workspace, check=False)
    assert out.returncode == 1
    assert any(f"dependency cycle: {x} → {y} → {x}" in out.stderr for x, y in ((a, b), (b, a)))
    out = run_nexus("edit", a, f"deps=[{a}]", cwd=workspace, check=False)
    assert out.returncode == 1 and "cannot depend on itself" in out.stderr
    out = run_nexus("edit", a, "colour=blue", cwd=workspace, check=False)
    assert out.returncode == 1 and "unknown field 'colour'" in out.stderr
    out = run_nexus("edit", a, "status=done", cwd=workspace, check=False)
    assert out.returncode == 1 and "not a valid status" in out.stderr


def test_exit_codes_for_usage_errors_and_missing_workspace(tmp_path: Path) -> None:
    assert run_nexus("add", cwd=tmp_path, check=False).returncode == 2
    assert run_nexus("frobnicate", cwd=tmp_path, check=False).returncode == 2
    out = run_nexus("status", cwd=tmp_path, check=False)
    assert (
        out.returncode == 1
        and "no nexus workspace here" in out.stderr
        and "nexus init" in out.stderr
    )
    out = run_nexus("--workspace", str(tmp_path / "nope"), "status", cwd=tmp_path, check=False)
    assert out.returncode == 1 and "is not a nexus workspace" in out.stderr


def test_unexpected_errors_exit_3_with_a_redacted_crash_log(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    from nexus import service
    from nexus.cli import main as cli_main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-1234567890")
    monkeypatch.chdir(workspace)

    def boom(self: object) -> None:
        raise RuntimeError("kaboom sk-canary-1234567890")

    monkeypatch.setattr(service.Service, "sync", boom)
    assert cli_main.main(["status"]) == 3
    [log] = list((isolated_home / ".local" / "state" / "nexus" / "crashes").iterdir())
    text = log.read_text()
    assert "kaboom" in text and "sk-canary" not in text and "<OPENAI_API_KEY redacted>" in text


def test_interrupt_exits_130(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nexus import service
    from nexus.cli import main as cli_main

    monkeypatch.chdir(workspace)

    def interrupted(self: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(service.Service, "sync", interrupted)
    assert cli_main.main(["status"]) == 130


def test_workspace_is_found_from_a_subfolder_and_by_env(workspace: Path, tmp_path: Path) -> None:
    tid = run_nexus("add", "A", cwd=workspace / "tasks").stdout.strip()
    out = run_nexus("show", tid, "--json", cwd=tmp_path, env={"NEXUS_WORKSPACE": str(workspace)})
    assert json.loads(out.stdout)["id"] == tid


def test_init_refuses_to_clobber_a_workspace(workspace: Path) -> None:
    out = run_nexus("init", str(workspace), cwd=workspace.parent, check=False)
    assert out.returncode == 1 and "already a nexus workspace" in out.stderr


def test_init_in_a_subfolder_of_an_existing_repo_commits_only_its_own_files(tmp_path: Path) -> None:
    repo = tmp_path / "app"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / "main.py").write_text("print('hi')\n")
    git("add", "main.py", cwd=repo)
    git("commit", "-qm", "app", cwd=repo)
    (repo / "wip.py").write_text("unstaged work\n")
    run_nexus("init", "plan", "--goal", "ship it", cwd=repo)
    files = git("show", "--name-only", "--format=", "HEAD", cwd=repo).split()
    assert files and all(f.startswith("plan/") for f in files)
    assert "plan/agents/aria.md" in files and "plan/nexus.yaml" in files
    assert git("status", "--porcelain", cwd=repo) == "?? wip.py\n"
    tid = run_nexus("add", "Inside", cwd=repo / "plan").stdout.strip()
    assert git("show", "--name-only", "--format=", "HEAD", cwd=repo).split() == [
        f"plan/tasks/{tid[0]}/{tid}.md"
    ]


def test_subfolders_of_tasks_and_hand_written_ids_work(workspace: Path) -> None:
    folder = workspace / "tasks" / "milestone-1"
    folder.mkdir()
    (folder / "design.md").write_text("---\ntitle: Design\n---\n")
    (folder / "build.md").write_text("---\ntitle: Build\ndeps: [design]\n---\n")
    run_nexus("complete", "design", cwd=workspace)
    assert (
        json.loads(run_nexus("show", "build", "--json", cwd=workspace).stdout)["status"] == "ready"
    )

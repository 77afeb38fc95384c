"""The hostile-input corpus (tests/corpus/cases.yaml): every case gets a clear error naming the
file, the field and the fix (or is accepted safely), writes nothing outside the workspace and
leaves every other task byte for byte as it was.  The agent-output cases run through one real
`nexus watch` for the whole module, which must survive all of them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nexus import agents
from nexus.errors import NexusError, TaskFileError
from nexus.service import Service
from nexus.store import Workspace
from nexus.task import Status
from tests.conftest import SECRET_VARS, git, run_nexus

CORPUS = Path(__file__).parent / "corpus"
CASES: list[dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text())
GOOD = {
    "good-a": "---\nid: good-a\ntitle: A good task\nsize: S\n---\nMust survive every case.\n",
    "good-b": "---\nid: good-b\ntitle: Another\ndeps: [good-a]\n---\nAnd so must this.\n",
}
EDIT_TARGET = "---\nid: target\ntitle: The task the edit cases edit\n---\n"
SECRET = "---\ntitle: a file outside the workspace\n---\nsecret text\n"
OUTSIDE_PLAN = "goal: from outside\ntasks:\n  - {key: a, title: smuggled in}\n"


def laughs(levels: int = 9) -> list[str]:
    lines = ["lol1: &lol1 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(2, levels + 1):
        lines.append(f"lol{n}: &lol{n} [" + ", ".join([f"*lol{n - 1}"] * 9) + "]")
    return lines


def _plan_10001() -> str:
    return "goal: big\ntasks:\n" + "".join(f"  - {{key: t{i}, title: T}}\n" for i in range(10_001))


GENERATORS: dict[str, Callable[[], str]] = {
    # 2,000 aliases of one 1,000-item list: 2 million values once expanded.
    "alias_fan_out": lambda: (
        "---\ntitle: fan\nbig: &big ["
        + ", ".join(["x"] * 1000)
        + "]\nrefs: ["
        + ", ".join(["*big"] * 2000)
        + "]\n---\n"
    ),
    "deep_flow": lambda: "---\ntitle: deep\nx: " + "[" * 5000 + "]" * 5000 + "\n---\n",
    "deep_block": lambda: (
        "---\ntitle: deep\n" + "".join(" " * i + f"k{i}:\n" for i in range(200)) + "---\n"
    ),
    "huge_file": lambda: "---\ntitle: huge\n---\n" + "x" * 2_000_000,
    "huge_frontmatter": lambda: "---\ntitle: big\nnotes: " + "y" * 300_000 + "\n---\n",
    "long_id": lambda: "---\nid: " + "a" * 65 + "\ntitle: long\n---\n",
    "plan_10001": _plan_10001,
    "plan_laughs": lambda: "\n".join(["goal: lol", *laughs(), "tasks: [{key: a, title: A}]"]),
    "plan_deep": lambda: (
        "goal: deep\ntasks: [{key: a, title: A, body: " + "[" * 3000 + "]" * 3000 + "}]\n"
    ),
    "config_laughs": lambda: "\n".join(["name: lol", *laughs()]) + "\n",
}


def case_input(case: dict[str, Any]) -> bytes:
    if "input_file" in case:
        return (CORPUS / "inputs" / case["input_file"]).read_bytes()
    if "generate" in case:
        return GENERATORS[case["generate"]]().encode()
    return str(case.get("input", "")).encode()


def by_via(*vias: str) -> list[Any]:
    return [pytest.param(c, id=c["name"]) for c in CASES if c["via"] in vias]


def test_the_corpus_has_at_least_60_cases_with_unique_names() -> None:
    names = [c["name"] for c in CASES]
    assert len(names) >= 60 and len(set(names)) == len(names)
    for case in CASES:
        assert {"name", "kind", "via", "expect"} <= set(case), case["name"]


# -- the sandbox: a template workspace copied for each case ------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nexus.scaffold import init

    ws = init(tmp_path_factory.mktemp("template") / "ws").root
    for tid, text in GOOD.items():
        (ws / "tasks" / f"{tid}.md").write_text(text)
    (ws / "tasks" / "target.md").write_text(EDIT_TARGET)
    Service(Workspace(ws)).sync()  # committed as the person's, good-a promoted
    shutil.rmtree(ws / ".nexus")
    return ws


def tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file and link under `root` (but `skip`), with a digest of its content."""
    out: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if skip is not None and here == skip.parent:
            dirs[:] = [d for d in dirs if here / d != skip]
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            path = here / name
            if path.is_symlink():
                out[str(path)] = "link:" + os.readlink(path)
            else:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


class Sandbox:
    def __init__(self, tmp_path: Path, template: Path, home: Path) -> None:
        self.base = tmp_path
        self.ws = tmp_path / "ws"
        shutil.copytree(template, self.ws, symlinks=True)
        self.outside = tmp_path / "outside"
        self.outside.mkdir()
        (self.outside / "secret.md").write_text(SECRET)
        (self.outside / "plan.yaml").write_text(OUTSIDE_PLAN)
        self.home = home
        self.before = self.snapshot_outside()
        self.head = git("rev-parse", "HEAD", cwd=self.ws)
        self.good = {tid: self.good_path(tid).read_bytes() for tid in GOOD}

    def good_path(self, tid: str) -> Path:
        return self.ws / "tasks" / f"{tid}.md"

    def snapshot_outside(self) -> dict[str, str]:
        return {**tree(self.base, skip=self.ws), **tree(self.home)}

    def place(self, case: dict[str, Any]) -> Path:
        """Put the case's input (or its symbolic link) where it belongs."""
        at = self.ws / case.get("at", f"tasks/{case['name']}.md")
        at.parent.mkdir(parents=True, exist_ok=True)
        if "symlink" in case:
            at.symlink_to(self.outside / case["symlink"])
        elif case["via"] in ("task-file", "role-file", "approve") and (
            "input" in case or "input_file" in case or "generate" in case
        ):
            at.write_bytes(case_input(case))
        return at

    def check_nothing_escaped(self) -> None:
        assert self.snapshot_outside() == self.before, "a file outside the workspace changed"
        assert not [p for p in self.base.rglob("pwned*")], "something wrote a 'pwned' file"

    def check_others_untouched(self, svc: Service) -> None:
        for tid, content in self.good.items():
            assert self.good_path(tid).read_bytes() == content, f"{tid} changed"
        snap = svc.snapshot()
        assert set(GOOD) <= set(snap.tasks)
        assert not [b for b in snap.broken if b.path in {f"tasks/{t}.md" for t in GOOD}]


@pytest.fixture
def sandbox(tmp_path: Path, template: Path, isolated_home: Path) -> Sandbox:
    return Sandbox(tmp_path, template, isolated_home)


def check_error(err: BaseException, expect: dict[str, Any]) -> None:
    assert isinstance(err, NexusError), f"{type(err).__name__} is not a NexusError: {err}"
    text = str(err)
    for fragment in expect["error"]:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    if "fix" in expect:
        assert err.fix, f"no fix in {text!r}"
        for fragment in expect["fix"]:
            assert fragment in err.fix, f"{fragment!r} not in fix {err.fix!r}"
    if "file" in expect:
        assert expect["file"] in text, f"{expect['file']!r} not named in {text!r}"
    if "field" in expect:
        assert expect["field"] in text, f"field {expect['field']!r} not named in {text!r}"


def nexus_lines_only(data: bytes) -> list[bytes]:
    """The file without the lines promotion sets: a person's bytes, line endings included."""
    return [
        x for x in data.splitlines(keepends=True) if not x.startswith((b"status:", b"updated:"))
    ]


def broken_entry(svc: Service, path: str) -> TaskFileError:
    found = [b for b in svc.snapshot().broken if b.path == path]
    assert found, f"{path} was not reported: {[b.path for b in svc.snapshot().broken]}"
    return found[0]


# -- task files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", by_via("task-file"))
def test_a_hostile_task_file_is_reported_and_harms_nothing(
    sandbox: Sandbox, case: dict[str, Any]
) -> None:
    at = sandbox.place(case)
    content = at.read_bytes() if at.is_file() and not at.is_symlink() else None
    svc = Service(Workspace(sandbox.ws))
    svc.sync()
    expect = case["expect"]
    rel = sandbox.ws.joinpath(case.get("at", f"tasks/{case['name']}.md")).relative_to(sandbox.ws)
    if "accepted" in expect:
        [task] = [t for t in svc.snapshot().tasks.values() if t.path == rel.as_posix()]
        for key, value in expect["accepted"].items():
            assert str(getattr(task, key)) == value, (key, getattr(task, key))
        assert content is not None and nexus_lines_only(content) == nexus_lines_only(
            at.read_bytes()
        )
    else:
        err = broken_entry(svc, rel.as_posix())
        check_error(err, expect)
        if content is not None:
            assert at.read_bytes() == content, "a broken file was rewritten"
        if not case.get("committed"):
            committed = git("ls-files", "-z", cwd=sandbox.ws).split("\0")
            assert rel.as_posix() not in committed, "a broken file was committed"
            assert git("rev-parse", "HEAD", cwd=sandbox.ws) == sandbox.head
    sandbox.check_nothing_escaped()
    sandbox.check_others_untouched(svc)
    svc.set_status("good-a", Status.COMPLETE, reason="the rest of the workspace still works")
    assert svc.snapshot().tasks["good-b"].status == "ready"


def test_the_cli_reports_every_hostile_task_file_at_once(sandbox: Sandbox) -> None:
    cases = [c for c in CASES if c["via"] == "task-file" and "error" in c["expect"]]
    for case in cases:
        sandbox.place(case)
    out = run_nexus("validate", "--json", cwd=sandbox.ws, check=False, timeout=120)
    assert out.returncode == 1, out.stderr
    reported = {p["path"] for p in json.loads(out.stdout)["problems"]}
    for case in cases:
        assert case.get("at", f"tasks/{case['name']}.md") in reported, case["name"]
    status = run_nexus("status", cwd=sandbox.ws)
    assert f"{len(cases)} file(s) could not be read" in status.stdout
    sandbox.check_nothing_escaped()
    for tid, content in sandbox.good.items():
        assert sandbox.good_path(tid).read_bytes() == content


# -- operations with hostile arguments ---------------------------------------------------------


def run_operation(svc: Service, case: dict[str, Any]) -> Any:
    args = dict(case.get("args") or {})
    via = case["via"]
    if via == "add":
        title = args.pop("title")
        return svc.add(title, **args)
    if via == "edit":
        return svc.edit("target", {k: str(v) for k, v in args.items()})
    if via == "send":
        return svc.send_message(**args)
    if via == "scratchpad":
        return svc.scratchpad(args["name"])
    if via == "plan":
        return svc.save_plan(case_input(case).decode())
    if via == "approve":
        return svc.approve(args["plan"])
    if via == "role-file":
        _roles, problems = agents.load_roles(svc.ws.root, svc.ws.config)
        return problems
    if via == "config":
        svc.ws.reload_config()
        return svc.ws.config
    raise AssertionError(f"unknown via {via}")


@pytest.mark.parametrize(
    "case", by_via("add", "edit", "send", "scratchpad", "plan", "approve", "role-file", "config")
)
def test_a_hostile_argument_or_file_is_refused_and_changes_nothing(
    sandbox: Sandbox, case: dict[str, Any]
) -> None:
    sandbox.place(case)
    if case["via"] == "config":
        (sandbox.ws / "nexus.yaml").write_bytes(case_input(case))
        git("commit", "-qam", "a hostile nexus.yaml", cwd=sandbox.ws)
        sandbox.head = git("rev-parse", "HEAD", cwd=sandbox.ws)
    svc = Service(Workspace(sandbox.ws))
    expect = case["expect"]
    if case["via"] == "config":
        with pytest.raises(NexusError) as caught:
            run_operation(svc, case)
        check_error(caught.value, expect)
        sandbox.check_nothing_escaped()
        return
    svc.sync()
    head = git("rev-parse", "HEAD", cwd=sandbox.ws)
    if "none" in expect:
        assert run_operation(svc, case) is None
    elif "accepted" in expect:
        task = run_operation(svc, case)
        for key, value in expect["accepted"].items():
            assert str(getattr(task, key)) == value
        assert svc.snapshot().broken == []
    elif case["via"] == "role-file":
        problems = run_operation(svc, case)
        text = "\n".join(problems)
        for fragment in expect["error"]:
            assert fragment in text, f"{fragment!r} not in {text!r}"
        assert expect["file"] in text
    else:
        with pytest.raises(NexusError) as caught:
            run_operation(svc, case)
        check_error(caught.value, expect)
        assert git("rev-parse", "HEAD", cwd=sandbox.ws) == head, "a refused operation committed"
        assert git("status", "--porcelain", "--untracked-files=no", cwd=sandbox.ws) == ""
    sandbox.check_nothing_escaped()
    sandbox.check_others_untouched(svc)
    assert not (sandbox.ws / ".nexus" / "intent.json").exists()
    svc.set_status("good-a", Status.COMPLETE, reason="the rest of the workspace still works")


# -- agent output, through one running daemon ------------------------------------------------


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """One `nexus watch` for every daemon case of this module (with its own isolated HOME:
    module fixtures run before the per-test one)."""
    from nexus.scaffold import init

    home = tmp_path_factory.mktemp("daemon-home")
    (home / ".gitconfig").write_text("[user]\n\tname = Pat Person\n\temail = pat@example.com\n")
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    env.update(HOME=str(home), GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        ws = init(tmp_path_factory.mktemp("daemon") / "ws").root
        for tid, text in GOOD.items():
            (ws / "tasks" / f"{tid}.md").write_text(
                text.replace("\n---\n", "\nstatus: cancelled\n---\n", 1)
            )
        (ws.parent / "outside").mkdir()
        (ws.parent / "outside" / "secret.md").write_text(SECRET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", "-q", "--workers", "4"],
        cwd=ws,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield ws, proc
    assert proc.poll() is None, f"the daemon died: {proc.stderr.read() if proc.stderr else ''}"
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode in (0, 1), err  # 1: a corpus task failed for good, as it should
    assert "crashed" not in err
    git("fsck", "--no-progress", cwd=ws)


def agent_task(case: dict[str, Any]) -> str:
    steps: list[dict[str, Any]] = []
    if "session" in case:
        steps.append({"session": case["session"]})
    if "message" in case:
        steps.append({"message": case["message"]})
    if "write" in case:
        steps.append({"write": case["write"], "content": "pwned"})
    if "print_lines" in case:
        code = f"import sys; sys.stdout.write('line of output\\n' * {case['print_lines']})"
        steps.append({"run": ["{python}", "-c", code]})
    steps.append({"result": case_input(case).decode()})
    fields = {"id": case["name"], "title": f"agent case {case['name']}", "engine": "script"}
    return "---\n" + yaml.safe_dump({**fields, "max_retries": 0, "script": steps}) + "---\n"


def wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.mark.parametrize("case", by_via("daemon"))
def test_hostile_agent_output_cannot_break_its_task_file_or_any_other(
    daemon: tuple[Path, subprocess.Popen[str]], case: dict[str, Any]
) -> None:
    ws, proc = daemon
    path = ws / "tasks" / f"{case['name']}.md"
    path.write_text(agent_task(case))
    svc = Service(Workspace(ws))
    terminal = {"complete", "failed", "cancelled"}

    def done() -> bool:
        task = svc.snapshot().tasks.get(case["name"])
        return task is not None and str(task.status) in terminal and task.assignee is None

    wait_for(done)
    assert proc.poll() is None, "the daemon stopped"
    task, text = svc.ws.load_task(svc.snapshot().tasks[case["name"]])
    want = case["expect"]["accepted"]
    assert str(task.status) == want["status"], (task.status, task.error)
    body = task.body
    for fragment in want.get("result", []):
        assert fragment in body, f"{fragment!r} not in the body"
    for fragment in want.get("error", []):
        assert fragment in (task.error or ""), (fragment, task.error)
    assert "\0" not in text and "\x1b" not in text
    assert len(text.encode()) <= want.get("max_bytes", 1024 * 1024)
    assert task.id == case["name"] and task.title == f"agent case {case['name']}"
    for tid in GOOD:
        assert str(svc.snapshot().tasks[tid].status) == "cancelled"
    assert not list(ws.parent.rglob("pwned*"))
    assert (ws.parent / "outside" / "secret.md").read_text() == SECRET
    trailers = git(
        "log",
        "--format=%(trailers:key=Nexus-Transition,valueonly)",
        "--",
        f"tasks/{path.name}",
        cwd=ws,
    )
    assert "good-a" not in trailers, "an agent forged a trailer about another task"


def test_the_daemon_survives_every_hostile_task_file_dropped_into_its_workspace(
    daemon: tuple[Path, subprocess.Popen[str]],
) -> None:
    ws, proc = daemon
    cases = [c for c in CASES if c["via"] == "task-file" and "symlink" not in c]
    for case in cases:
        at = ws / case.get("at", f"tasks/{case['name']}.md")
        at.write_bytes(case_input(case))
    (ws / "tasks" / "after.md").write_text(
        "---\nid: after\ntitle: after the storm\nengine: script\n---\n"
    )
    svc = Service(Workspace(ws))

    def after_complete() -> bool:
        task = svc.snapshot().tasks.get("after")
        return task is not None and str(task.status) == "complete"

    wait_for(after_complete)
    assert proc.poll() is None

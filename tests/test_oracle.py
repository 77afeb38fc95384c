"""Planning with an oracle, end to end: the service asks real engines (the anthropic and openai
SDKs against local fake APIs, a fake `claude`, the script engine), writes and approves plans,
adapts the live DAG, reviews results; the daemon decomposes XL tasks; `nexus quickstart` runs
offline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nexus import plans
from nexus.service import Service
from nexus.store import Workspace
from nexus.task import Status
from tests.conftest import git, run_nexus
from tests.fakes import FakeAnthropic, FakeOpenAI, FakeServer
from tests.fakes.fake_cli import FakeCliRig

ENGINES = ["anthropic", "openai"]


def plan_text(*tasks: dict[str, Any], goal: str = "Ship login", fence: bool = True) -> str:
    body = yaml.safe_dump({"goal": goal, "tasks": list(tasks)}, sort_keys=False)
    return f"```yaml\n{body}```" if fence else body


def task(key: str, role: str = "code", **fields: Any) -> dict[str, Any]:
    return {"key": key, "title": f"Do {key}", "size": "S", "role": role, **fields}


GOOD = plan_text(
    task("spec", "aria", size="M", acceptance=["docs/auth.md exists"]),
    task("login", deps=["spec"], body="Implement POST /login.\n"),
)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`serve(engine, script)`: a fake API for `engine` with its key and URL in the environment."""
    servers: list[FakeServer] = []

    def start(engine: str, script: list[Any]) -> FakeServer:
        srv: FakeServer = (FakeAnthropic if engine == "anthropic" else FakeOpenAI)(script)
        srv.start()
        servers.append(srv)
        prefix = engine.upper()
        monkeypatch.setenv(f"{prefix}_API_KEY", "test")
        monkeypatch.setenv(f"{prefix}_BASE_URL", srv.url if engine == "anthropic" else srv.base_url)
        return srv

    yield start
    for srv in servers:
        srv.close()


def sent(srv: FakeServer, n: int) -> str:
    return json.dumps(srv.model_requests()[n].body, ensure_ascii=False)


def head(ws: Path) -> str:
    return git("rev-parse", "HEAD", cwd=ws).strip()


def configure(ws: Path, **top: Any) -> None:
    path = ws / "nexus.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(top)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


# -- plan and approve ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_a_plan_is_written_committed_with_the_oracles_cost_and_approved_in_one_commit(
    workspace: Path, serve: Any, engine: str
) -> None:
    configure(workspace, prices={"claude-opus-4-1": {"input_per_mtok": 3, "output_per_mtok": 15}})
    srv = serve(engine, [{"text": GOOD, "usage": {"input_tokens": 1000, "output_tokens": 200}}])
    svc = Service(Workspace(workspace))
    pf = svc.plan("Ship login", engine=engine)
    assert pf.path.startswith("plans/ship-login-") and [t.key for t in pf.plan.tasks] == [
        "spec",
        "login",
    ]
    assert "Ship login" in sent(srv, 0) and "`aria`: Aria, Coordinator" in sent(srv, 0)
    message = git("log", "-1", "--format=%B", cwd=workspace)
    assert f"nexus: plan {pf.path}" in message
    assert f"Nexus-Engine: {engine}" in message and "Nexus-Tokens: 1000/200" in message
    assert "Nexus-Agent: prime" in message and "Nexus-Model: " in message
    if engine == "anthropic":
        assert "Nexus-Cost-USD: 0.006000" in message
    created = svc.approve()
    assert [t.title for t in created] == ["Do spec", "Do login"]
    spec, login = created
    assert login.deps == (spec.id,) and spec.status is Status.READY
    assert login.status is Status.PENDING and spec.size == "M" and spec.role == "aria"
    data = plans.read_file((workspace / pf.path).read_text())
    assert data["task_ids"] == {"spec": spec.id, "login": login.id} and data["approved"]
    files = git("log", "-1", "--name-only", "--format=", cwd=workspace).split()
    assert sorted(files) == sorted([pf.path, spec.path, login.path])


@pytest.mark.parametrize("engine", ENGINES)
def test_yaml_inside_prose_is_taken(workspace: Path, serve: Any, engine: str) -> None:
    prose = f"Here is my plan.\n\n{plan_text(task('a'), fence=False)}\nGood luck!"
    serve(engine, [prose])
    pf = Service(Workspace(workspace)).plan("Do a", engine=engine)
    assert [t.key for t in pf.plan.tasks] == ["a"]


@pytest.mark.parametrize("engine", ENGINES)
def test_an_invalid_plan_is_sent_back_with_its_errors_and_the_correction_is_used(
    workspace: Path, serve: Any, engine: str
) -> None:
    bad = plan_text(task("a", role="wizard"), task("b", deps=["ghost"]))
    srv = serve(engine, [bad, GOOD])
    pf = Service(Workspace(workspace)).plan("Ship login", engine=engine)
    assert [t.key for t in pf.plan.tasks] == ["spec", "login"]
    again = sent(srv, 1)
    assert "task 'a' (field role): unknown role 'wizard'" in again
    assert "task 'b' (field deps): 'ghost' is neither" in again
    assert "# Your previous answer" in again and "Ship login" in again  # no session: all again
    assert plans.read_file((workspace / pf.path).read_text())["oracle"]["asks"] == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_a_plan_invalid_for_good_commits_nothing_and_keeps_the_last_answer(
    workspace: Path, serve: Any, engine: str
) -> None:
    bad = plan_text(task("a", size="XXL"))
    srv = serve(engine, [bad, bad])
    before = head(workspace)
    with pytest.raises(plans.Rejected) as caught:
        Service(Workspace(workspace)).plan("Ship login", engine=engine, attempts=2)
    text = str(caught.value)
    assert "task 'a' (field size): 'XXL' is not one of S | M | L | XL" in text
    assert caught.value.saved is not None and caught.value.saved in text
    assert "size: XXL" in (workspace / caught.value.saved).read_text()
    assert head(workspace) == before and list((workspace / "plans").glob("*.yaml")) == []
    assert len(srv.model_requests()) == 2


def test_the_oracle_on_claude_code_is_read_only_and_corrected_in_the_same_session(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = FakeCliRig(tmp_path, "claude", "fake_claude.py", "CLAUDE")
    rig.play(
        {
            "result": plan_text(task("a", role="wizard")),
            "session_id": "sess-1",
            "total_cost_usd": 0.01,
        },
        {"result": GOOD, "total_cost_usd": 0.02},
    )
    for key, value in rig.env.items():
        monkeypatch.setenv(key, value)
    engines = yaml.safe_load((workspace / "nexus.yaml").read_text())["engines"]
    engines["claude-code"]["env"] = ["FAKE_CLAUDE_LOG", "FAKE_CLAUDE_SCENARIO"]
    configure(workspace, engines=engines)
    pf = Service(Workspace(workspace)).plan("Ship login")
    assert len(pf.plan.tasks) == 2
    first, second = (c["argv"] for c in rig.calls())
    blocked = first[first.index("--disallowedTools") + 1 : first.index("--")]
    assert {"Write", "Edit", "Bash"} <= set(blocked)
    assert second[second.index("--resume") + 1] == "sess-1"
    assert second[-1].startswith("Your answer could not be used") and "'wizard'" in second[-1]
    assert "Nexus-Cost-USD: 0.030000" in git("log", "-1", "--format=%B", cwd=workspace)


def test_a_fifty_task_plan_is_approved_in_one_commit(workspace: Path) -> None:
    svc = Service(Workspace(workspace))
    parts = [task(f"t{i:02d}", deps=[f"t{i - 1:02d}"] if i % 5 else []) for i in range(50)]
    pf = svc.save_plan(plan_text(*parts, goal="Fifty"))
    created = svc.approve(pf.name)
    assert len(created) == 50 and sum(t.status is Status.READY for t in created) == 10
    files = git("log", "-1", "--name-only", "--format=", cwd=workspace).split()
    assert len([f for f in files if f.startswith("tasks/")]) == 50 and pf.path in files
    assert len(files) == 51
    assert git("status", "--porcelain", cwd=workspace) == ""


def test_approve_refuses_an_approved_plan_a_broken_one_and_says_when_none_waits(
    workspace: Path,
) -> None:
    svc = Service(Workspace(workspace))
    with pytest.raises(plans.ValidationError, match="no plan waits for approval"):
        svc.approve()
    pf = svc.save_plan(GOOD, name="login")
    assert pf.path == "plans/login.yaml"
    svc.approve("plans/login.yaml")
    with pytest.raises(plans.ValidationError, match="was approved already"):
        svc.approve("login")
    broken = svc.save_plan(GOOD, name="again")
    path = workspace / broken.path
    path.write_text(path.read_text().replace("role: code", "role: nobody"))
    before = head(workspace)
    with pytest.raises(plans.Rejected) as caught:
        svc.approve()
    assert "plans/again.yaml has 1 problem" in str(caught.value)
    assert "task 'login' (field role): unknown role 'nobody'" in str(caught.value)
    assert len(svc.snapshot().tasks) == 2 and head(workspace) != before  # only the edit


def test_save_plan_lists_every_problem_and_writes_nothing(workspace: Path) -> None:
    svc = Service(Workspace(workspace))
    with pytest.raises(plans.Rejected) as caught:
        svc.save_plan(plan_text(task("../x"), task("b", deps=["b"]), task("c", size="Q")))
    assert len(caught.value.problems) == 3
    assert list((workspace / "plans").glob("*.yaml")) == []


# -- adapt ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_adapt_proposes_changes_as_a_diff_and_approve_applies_them_in_one_commit(
    workspace: Path, serve: Any, engine: str
) -> None:
    svc = Service(Workspace(workspace))
    a = svc.add("Research", role="aria")
    b = svc.add("Build", role="code", deps=[a.id])
    c = svc.add("Polish", role="code", deps=[b.id], body="Old words.")
    changes = {
        "changes": [
            {"op": "add", **task("hotfix", deps=[a.id])},
            {"op": "cancel", "id": c.id, "reason": "not needed"},
            {"op": "resize", "id": b.id, "size": "L"},
            {"op": "rewire", "id": b.id, "deps": ["hotfix"]},
            {"op": "edit", "id": a.id, "title": "Research harder", "body": "New words."},
        ]
    }
    srv = serve(engine, [f"Proposed:\n```yaml\n{yaml.safe_dump(changes)}```"])
    pf = svc.adapt("the token endpoint needs a hotfix first", engine=engine)
    assert pf.plan.kind == "adapt" and "hotfix first" in sent(srv, 0) and b.id in sent(srv, 0)
    diff = plans.describe_changes(pf.plan, svc.snapshot().tasks)
    assert diff[0].startswith("+ hotfix") and diff[1] == f"- {c.id} (Polish): not needed"
    out = run_nexus("approve", "--json", cwd=workspace)
    touched = {t["id"]: t for t in json.loads(out.stdout)}
    new = next(t for t in touched.values() if t["title"] == "Do hotfix")
    tasks = svc.snapshot().tasks
    assert tasks[c.id].status is Status.CANCELLED and tasks[b.id].size == "L"
    assert tasks[b.id].deps == (new["id"],) and tasks[a.id].title == "Research harder"
    body = Workspace(workspace).load_task(tasks[a.id])[0].body
    assert body.strip() == "New words."
    log = git("log", "-1", "--format=%B", cwd=workspace)
    assert f"Nexus-Transition: {c.id} pending -> cancelled" in log and pf.path in log


# -- review --------------------------------------------------------------------------------------

ACCEPT = "```yaml\nverdict: accepted\nreasons: [all criteria met]\ncriteria: []\n```"
REOPEN = """```yaml
verdict: reopen
reasons: [the 401 case is missing]
criteria:
  - {criterion: returns 401 on a bad password, met: false, evidence: no code handles it}
```"""


def done_task(svc: Service, root: Path) -> str:
    t = svc.add("Login", role="code", acceptance=["returns 401 on a bad password"])
    (root / "login.py").write_text("def login(): ...\n")
    svc.set_status(t.id, Status.COMPLETE, reason="done", result="Implemented login.")
    return t.id


@pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")
@pytest.mark.parametrize(("engine", "answer"), [("openai", ACCEPT), ("anthropic", REOPEN)])
def test_a_review_accepts_or_reopens_with_the_reasons(
    workspace: Path, serve: Any, engine: str, answer: str
) -> None:
    svc = Service(Workspace(workspace))
    tid = done_task(svc, workspace)
    srv = serve(engine, ["no verdict here", answer])
    review = svc.review(tid, engine=engine)
    prompt = sent(srv, 0)
    assert "returns 401 on a bad password" in prompt and "Implemented login." in prompt
    assert "no verdict" in sent(srv, 1)  # the unusable answer was sent back
    text = (workspace / svc.snapshot().tasks[tid].path).read_text()
    assert "## Review" in text and f"Verdict: {review.verdict}" in text
    if engine == "openai":
        assert review.verdict == "accepted" and review.status == "complete"
    else:
        assert review.status == "ready" and "the 401 case is missing" in text
        assert "- [ ] returns 401 on a bad password — no code handles it" in text
        assert svc.snapshot().tasks[tid].error == "review: the 401 case is missing"


def test_a_review_without_an_engine_prints_the_prompt_and_a_written_verdict_is_recorded(
    workspace: Path,
) -> None:
    svc = Service(Workspace(workspace))
    tid = done_task(svc, workspace)
    out = run_nexus("review", tid, "--engine", "anthropic", cwd=workspace)
    assert "ANTHROPIC_API_KEY" in out.stderr and "Implemented login." in out.stdout
    verdict = workspace.parent / "verdict.yaml"
    verdict.write_text(REOPEN)
    out = run_nexus("review", tid, "--verdict", str(verdict), cwd=workspace)
    assert out.stdout.startswith(f"{tid}: reopen (now ready)")
    bad = run_nexus("review", tid, cwd=workspace, check=False)
    assert bad.returncode == 1 and "only a complete task has a result to review" in bad.stderr


# -- XL decomposition by the daemon ----------------------------------------------------------


def scripted(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"engine": "script", "settings": {"steps": steps}}


def xl_workspace(ws: Path, prime: list[dict[str, Any]], **top: Any) -> str:
    roles = {r: scripted([{"result": "{role} did {title}"}]) for r in ("aria", "code")}
    configure(ws, roles={"prime": scripted(prime), **roles}, auto_decompose=True, **top)
    xl = Service(Workspace(ws)).add("Rewrite auth", size="XL", role="aria")
    return xl.id


PARTS = plan_text(
    task("design", "aria"), task("build", deps=["design"]), task("check", deps=["build"])
)


def test_the_daemon_decomposes_an_xl_task_and_it_completes_when_its_parts_do(
    workspace: Path,
) -> None:
    xl = xl_workspace(workspace, [{"result": PARTS}], auto_approve=True)
    out = run_nexus("watch", "--until-idle", cwd=workspace, check=False)
    assert out.returncode == 0, out.stderr
    tasks = Service(Workspace(workspace)).snapshot().tasks
    parts = [t for t in tasks.values() if t.parent == xl]
    assert sorted(t.title for t in parts) == ["Do build", "Do check", "Do design"]
    assert all(t.status is Status.COMPLETE for t in parts)
    assert tasks[xl].status is Status.COMPLETE
    log = git("log", "--format=%s", cwd=workspace)
    assert f"Nexus-Transition: {xl} ready -> complete" in git("log", "--format=%B", cwd=workspace)
    assert "nexus: plan plans/rewrite-auth-" in log and "nexus: approve plans/" in log


def test_an_xl_plan_waits_for_approval_and_why_says_so(workspace: Path) -> None:
    xl = xl_workspace(workspace, [{"result": PARTS}])
    assert run_nexus("watch", "--until-idle", cwd=workspace, check=False).returncode == 0
    (plan,) = (workspace / "plans").glob("*.yaml")
    why = run_nexus("why", xl, cwd=workspace).stdout
    assert f"XL: plan plans/{plan.name} waits for approval" in why
    assert run_nexus("watch", "--until-idle", cwd=workspace, check=False).returncode == 0
    assert len(list((workspace / "plans").glob("*.yaml"))) == 1  # not planned twice
    run_nexus("approve", cwd=workspace)
    assert run_nexus("watch", "--until-idle", cwd=workspace, check=False).returncode == 0
    assert Service(Workspace(workspace)).snapshot().tasks[xl].status is Status.COMPLETE


def test_a_failed_decomposition_leaves_the_task_ready_with_the_reason(workspace: Path) -> None:
    xl = xl_workspace(workspace, [{"fail": "the model is down"}])
    other = Service(Workspace(workspace)).add("Small thing", role="code")
    out = run_nexus("watch", "--until-idle", cwd=workspace, check=False)
    assert "could not decompose" in out.stderr and "the model is down" in out.stderr
    tasks = Service(Workspace(workspace)).snapshot().tasks
    assert tasks[xl].status is Status.READY and tasks[other.id].status is Status.COMPLETE
    why = run_nexus("why", xl, cwd=workspace).stdout
    assert "XL: decomposition failed" in why and "the model is down" in why


# -- CLI -----------------------------------------------------------------------------------------


def test_nexus_plan_prints_a_tree_and_nexus_run_approves_and_runs_it(workspace: Path) -> None:
    nested = plan_text(
        task("m", "aria", kind="milestone"),
        task("a", parent="m"),
        task("b", parent="m", deps=["a"]),
    )
    configure(workspace, roles={"prime": scripted([{"result": nested}]),
                                "code": scripted([{"result": "ok"}])})  # fmt: skip
    out = run_nexus("plan", "Nested work", cwd=workspace)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("plan plans/nested-work-") and "(3 tasks)" in lines[0]
    assert lines[1].split()[:3] == ["m", "S", "aria"]
    assert lines[3].startswith("    b") and lines[3].endswith("Do b  ← a")
    name = lines[0].split()[1].rstrip(":")
    out = run_nexus("run", name, "-q", cwd=workspace, check=False)
    assert out.returncode == 0, out.stderr
    tasks = Service(Workspace(workspace)).snapshot().tasks
    assert len(tasks) == 3 and all(t.status is Status.COMPLETE for t in tasks.values())


def test_quickstart_runs_offline_from_one_line(tmp_path: Path) -> None:
    out = run_nexus(
        "quickstart", "Build a tiny todo CLI", "--engine", "script", "--dir", "todo", cwd=tmp_path
    )
    ws = tmp_path / "todo"
    assert "4 complete (100% complete)" in out.stdout
    assert len(list((ws / "notes").iterdir())) == 4
    assert git("status", "--porcelain", cwd=ws) == ""
    log = git("log", "--format=%s", cwd=ws)
    assert "nexus: plan plans/build-a-tiny-todo-cli-" in log

"""Budgets: `budget_usd` per task and `budgets.project_usd` per project pause dispatch when
the journal's recorded costs reach them, and raising them resumes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from nexus import budgets, dispatch
from nexus.config import parse as parse_config
from nexus.costs import Charge
from nexus.errors import ConfigError, TaskFileError
from nexus.task import Size, Status, Task
from nexus.taskfile import parse as parse_task
from tests.conftest import git, run_nexus, start_daemon, stop_daemon
from tests.test_daemon import _wait_for, tasks, watch, write_task

# -- the pure decision ----------------------------------------------------------------------


def charge(task: str, usd: float) -> Charge:
    return Charge("c0", 0, task, "code", "script", "m", usd, 0, 0)


def task(tid: str, budget: float | None = None, status: Status = Status.READY) -> Task:
    return Task(tid, f"Task {tid}", f"tasks/{tid}.md", status=status, budget_usd=budget)


def test_a_tasks_spending_is_the_sum_of_all_its_runs() -> None:
    spent = budgets.Spending().add([charge("a", 0.02), charge("b", 0.5), charge("a", 0.03)])
    assert spent.of("a") == 0.05 and spent.of("b") == 0.5 and spent.of("c") == 0.0
    assert spent.total_usd == 0.55
    assert budgets.Spending.from_json(json.loads(json.dumps(spent.to_json()))) == spent


def test_a_task_is_held_once_its_spending_reaches_its_budget() -> None:
    t = task("a", budget=0.05)
    assert budgets.task_reason(t, 0.0499) is None
    assert budgets.task_reason(t, 0.05) == (
        "budget: task a spent $0.05 of $0.05 budget_usd; raise budget_usd in tasks/a.md to resume"
    )
    assert budgets.task_reason(task("b"), 1000.0) is None  # no budget, no cap


def test_the_project_is_paused_once_its_spending_reaches_its_budget() -> None:
    assert budgets.project_reason(4.99, 5) is None
    assert budgets.project_reason(5.0, 5) == (
        "budget: project spent $5.00 of $5.00 (nexus.yaml budgets.project_usd); raise it to resume"
    )
    assert budgets.project_reason(0.0, 0) is not None  # a zero budget allows no run
    assert budgets.project_reason(1e9, None) is None


def test_dollars_are_shown_with_two_to_four_decimals() -> None:
    assert [budgets.usd(x) for x in (0, 5, 0.05, 0.0125, 0.123456, 12.5)] == [
        "$0.00", "$5.00", "$0.05", "$0.0125", "$0.1235", "$12.50"]  # fmt: skip


def test_the_verdict_holds_ready_tasks_only_and_the_project_pause_comes_first() -> None:
    spent = budgets.Spending().add([charge("a", 0.1), charge("done", 0.1), charge("b", 0.01)])
    ts = [task("a", 0.1), task("b", 0.1), task("done", 0.1, Status.COMPLETE), task("c")]
    verdict = budgets.check(ts, spent, project_usd=None)
    assert not verdict.paused and list(verdict.paused_tasks) == ["a"]
    assert verdict.holds("a") and verdict.holds("b") is None and verdict.holds("c") is None
    paused = budgets.check(ts, spent, project_usd=0.2)
    assert paused.paused and paused.holds("c") == paused.reason == paused.holds("a")
    assert paused.to_json() == {
        "project_usd": 0.2,
        "spent_usd": 0.21,
        "paused": True,
        "reason": paused.reason,
        "paused_tasks": {"a": verdict.paused_tasks["a"]},
    }


def test_pause_and_resume_are_each_reported_once() -> None:
    spent = budgets.Spending().add([charge("a", 1.0)])
    ts = [task("a", 1.0), task("b")]
    first = budgets.check(ts, spent, project_usd=1.0)
    assert [(s, scope) for s, scope, _ in budgets.changes(None, first)] == [
        ("paused", "project"), ("paused", "a")]  # fmt: skip
    assert budgets.changes(first, budgets.check(ts, spent, project_usd=1.0)) == []
    raised = budgets.check([task("a", 2.0), task("b")], spent, project_usd=3.0)
    resumed = budgets.changes(first, raised)
    assert [(s, scope) for s, scope, _ in resumed] == [("resumed", "project"), ("resumed", "a")]
    assert "spent $1.00 of $3.00" in resumed[0][2]


def test_dispatch_starts_other_tasks_while_a_budget_holds_one() -> None:
    held_task = Task("h", "held", "tasks/h.md", status=Status.READY, created="1")
    free_task = Task("f", "free", "tasks/f.md", status=Status.READY, created="2")
    xl = Task("x", "xl", "tasks/x.md", status=Status.READY, size=Size.XL)
    cands = [dispatch.Candidate(t, "script") for t in (held_task, free_task, xl)]
    plan = dispatch.plan(
        cands, [], workers=1, engine_limits={}, paused={}, containers=set(), now=0.0,
        held={"h": "budget: task h spent $1.00 of $1.00", "x": "budget: project"},
    )  # fmt: skip
    assert [c.task.id for c in plan.start] == ["f"]  # the held task takes no worker
    assert plan.waiting["h"] == "budget: task h spent $1.00 of $1.00"
    assert plan.waiting["x"].startswith("XL")  # a task that never runs says why first


def test_render_shows_the_project_budget_and_every_pause() -> None:
    spent = budgets.Spending().add([charge("a", 0.5)])
    assert budgets.render(budgets.check([task("b")], spent, None)) == []
    lines = budgets.render(budgets.check([task("a", 0.5)], spent, 0.5))
    assert lines[0] == "budget: $0.50 of $0.50 spent (nexus.yaml budgets.project_usd)"
    assert lines[1].startswith("PAUSED — budget: project spent $0.50")
    assert lines[2].startswith("paused a — budget: task a spent $0.50 of $0.50")


@pytest.mark.parametrize("value", ["-1", "lots", "true", "[1]"])
def test_a_bad_project_budget_is_refused_naming_file_and_field(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"budgets:\n  project_usd: {value}\n")
    assert "nexus.yaml: budgets.project_usd must be a number ≥ 0" in str(err.value)
    assert "null for no cap" in (err.value.fix or "")


def test_a_null_project_budget_means_no_cap_and_unknown_keys_are_warned_about() -> None:
    assert parse_config("budgets: {project_usd: null}").project_budget is None
    cfg = parse_config("budgets: {project_usd: 2.5, task_usd: 1}")
    assert cfg.project_budget == 2.5
    assert any("budgets.'task_usd'" in w for w in cfg.warnings)


@pytest.mark.parametrize("value", ["-0.5", "five"])
def test_a_bad_task_budget_is_refused_naming_file_and_field(value: str) -> None:
    with pytest.raises(TaskFileError) as err:
        parse_task(f"---\ntitle: x\nbudget_usd: {value}\n---\n", "tasks/x.md", "x")
    assert (err.value.path, err.value.field) == ("tasks/x.md", "budget_usd")
    assert "must be a number ≥ 0" in str(err.value)


# -- end to end, through the real CLI and `nexus watch` ---------------------------------------

PAID_AGENT = """
import os, sys
ledger, tid, ok_flag = sys.argv[1], sys.argv[2], sys.argv[3]
with open(ledger, "a") as f:
    f.write(tid + "\\n")
sys.exit(0 if ok_flag == "-" or os.path.exists(ok_flag) else 1)
"""


def paid_steps(ws: Path, tid: str, usd: float, ok_flag: str = "-") -> list[dict[str, Any]]:
    """A run that costs `usd`, appends its task id to the ledger, and succeeds (or, with
    `ok_flag`, fails until that file exists)."""
    agent = ws.parent / "paid_agent.py"
    agent.write_text(PAID_AGENT)
    ledger = str(ws.parent / "ledger.txt")
    return [
        {"usage": {"input_tokens": 100, "output_tokens": 10, "cost_usd": usd}},
        {"run": ["{python}", str(agent), ledger, tid, ok_flag]},
        {"result": f"{tid} done"},
    ]


def ledger(ws: Path) -> list[str]:
    path = ws.parent / "ledger.txt"
    return path.read_text().split() if path.exists() else []


def set_config(ws: Path, **sections: Any) -> None:
    cfg = ws / "nexus.yaml"
    data = yaml.safe_load(cfg.read_text())
    for key, value in sections.items():
        data[key] = {**(data.get(key) or {}), **value}
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))


def status_budget(ws: Path) -> dict[str, Any]:
    budget: dict[str, Any] = json.loads(run_nexus("status", "--json", cwd=ws).stdout)["budget"]
    return budget


def test_a_project_budget_pauses_dispatch_and_raising_it_resumes_the_running_daemon(
    workspace: Path,
) -> None:
    for tid in ("t1", "t2", "t3", "t4"):
        write_task(workspace, tid, steps=paid_steps(workspace, tid, 0.02))
    set_config(workspace, limits={"workers": 1}, budgets={"project_usd": 0.04})

    # Two runs reach the budget: the other tasks stay ready, and --until-idle says why.
    out = watch(workspace)
    assert out.returncode == 1, out.stderr
    assert "paused by budget" in out.stderr and "exiting with 1" in out.stderr
    assert ledger(workspace) == ["t1", "t2"]
    assert {t: v["status"] for t, v in tasks(workspace).items()} == {
        "t1": "complete", "t2": "complete", "t3": "ready", "t4": "ready"}  # fmt: skip
    reason = "budget: project spent $0.04 of $0.04 (nexus.yaml budgets.project_usd); raise it"
    budget = status_budget(workspace)
    assert (budget["project_usd"], budget["spent_usd"], budget["paused"]) == (0.04, 0.04, True)
    assert budget["reason"].startswith(reason) and budget["paused_tasks"] == {}
    cost = json.loads(run_nexus("cost", "--json", cwd=workspace).stdout)
    assert cost["usd"] == budget["spent_usd"]  # the same figure as `nexus cost`
    text = run_nexus("status", cwd=workspace).stdout
    assert "budget: $0.04 of $0.04 spent" in text and f"PAUSED — {reason}" in text
    why = json.loads(run_nexus("why", "t3", "--json", cwd=workspace).stdout)
    assert any(reason in r for r in why["reasons"])

    daemon = start_daemon(workspace, "--grace", "0")
    try:
        # The running daemon holds them too, and says so in `nexus why` (its own reason).
        _wait_for(lambda: f"ready, waiting: {reason}"
                  in run_nexus("why", "t4", cwd=workspace).stdout)  # fmt: skip
        assert ledger(workspace) == ["t1", "t2"]
        # A broken edit is refused (the daemon keeps its configuration), a good one resumes.
        cfg = workspace / "nexus.yaml"
        good = cfg.read_text()
        cfg.write_text(good.replace("project_usd: 0.04", "project_usd: lots"))
        broken = run_nexus("status", cwd=workspace, check=False)
        assert broken.returncode == 1
        assert "nexus.yaml: budgets.project_usd must be a number ≥ 0, not 'lots'" in broken.stderr
        cfg.write_text(good.replace("project_usd: 0.04", "project_usd: 1.5"))
        _wait_for(lambda: {v["status"] for v in tasks(workspace).values()} == {"complete"})
    finally:
        err = stop_daemon(daemon, check=False)
    assert sorted(ledger(workspace)) == ["t1", "t2", "t3", "t4"]
    assert err.count("paused: budget: project spent") == 1, err
    assert err.count("resumed: budget: project resumed (spent $0.04 of $1.50)") == 1, err
    assert "keeps its previous configuration" in err
    assert status_budget(workspace) == {
        "project_usd": 1.5, "spent_usd": 0.08, "paused": False, "reason": None,
        "paused_tasks": {}}  # fmt: skip
    assert git("status", "--porcelain", cwd=workspace) == ""


def test_a_failing_task_stops_retrying_when_its_own_budget_is_spent(workspace: Path) -> None:
    fixed = workspace.parent / "fixed"
    write_task(workspace, "r", budget_usd=0.05, max_retries=9,
               steps=paid_steps(workspace, "r", 0.02, str(fixed)))  # fmt: skip
    write_task(workspace, "other", steps=paid_steps(workspace, "other", 0.02))
    set_config(workspace, limits={"retry_backoff": 0.05})

    out = watch(workspace)
    assert out.returncode == 1, out.stderr
    # Three failed attempts spent $0.06 ≥ $0.05: no fourth; the other task was not held.
    assert sorted(ledger(workspace)) == ["other", "r", "r", "r"]
    t = tasks(workspace)
    assert (t["r"]["status"], t["other"]["status"]) == ("ready", "complete")
    reason = "budget: task r spent $0.06 of $0.05 budget_usd; raise budget_usd in tasks/r.md"
    assert reason in out.stderr
    budget = status_budget(workspace)
    assert not budget["paused"] and budget["paused_tasks"]["r"].startswith(reason)
    assert reason in run_nexus("why", "r", cwd=workspace).stdout
    assert f"paused r — {reason}" in run_nexus("status", cwd=workspace).stdout

    bad = run_nexus("edit", "r", "budget_usd=-1", cwd=workspace, check=False)
    assert bad.returncode == 1 and "budget_usd" in bad.stderr and "tasks/r.md" in bad.stderr
    daemon = start_daemon(workspace, "--grace", "0")
    try:
        _wait_for(lambda: "ready, waiting: budget: task r"
                  in run_nexus("why", "r", cwd=workspace).stdout)  # fmt: skip
        fixed.write_text("")
        run_nexus("edit", "r", "budget_usd=0.5", cwd=workspace)
        _wait_for(lambda: tasks(workspace)["r"]["status"] == "complete")
    finally:
        err = stop_daemon(daemon, check=False)
    assert ledger(workspace).count("r") == 4
    assert err.count("paused: budget: task r") == 1, err
    assert err.count("resumed: budget: task r resumed") == 1, err
    cost = json.loads(run_nexus("cost", "--by", "task", "--json", cwd=workspace).stdout)
    assert {r["key"]: r["runs"] for r in cost["by"]["task"]} == {"r": 4, "other": 1}


def test_the_mcp_status_tool_and_the_web_api_show_a_paused_project(workspace: Path) -> None:
    from tests.test_mcp import Client, serve
    from tests.test_web_api import running

    set_config(workspace, budgets={"project_usd": 0.25})
    reason = "budget: project spent $0.25 of $0.25 (nexus.yaml budgets.project_usd)"

    async def scenario(c: Client) -> None:
        first = (await c.call("nexus_add_task", title="Research", role="aria"))["task"]
        await c.call("nexus_execute")
        await c.call("nexus_complete", task_id=first["id"], result="done", cost_usd=0.25)
        await c.call("nexus_add_task", title="Implement", role="code")
        status = await c.call("nexus_status")
        assert status["budget"]["paused"] and status["budget"]["spent_usd"] == 0.25
        assert status["budget"]["reason"].startswith(reason)
        assert f"PAUSED — {reason}" in status["_text"]

    serve(workspace, scenario, "--tools", "all")
    with running(workspace) as url, httpx.Client(base_url=url, trust_env=False) as http:
        listed = http.get("/api/tasks").json()
        assert listed["budget"]["paused"] and listed["budget"]["reason"].startswith(reason)
        schema = http.get("/openapi.json").json()["components"]["schemas"]
        assert set(schema["Budget"]["required"]) == set(listed["budget"])


@pytest.mark.browser
def test_the_dashboard_shows_a_banner_while_the_project_is_paused(workspace: Path) -> None:
    from tests.test_web_api import running
    from tests.test_web_browser import CHROMIUM, FLAGS

    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (`apt-get install chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api")
    set_config(workspace, budgets={"project_usd": 0})  # a zero budget allows no run
    write_task(workspace, "w")
    with running(workspace) as url, sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = chromium.new_page()
            page.goto(url)
            banner = page.locator("#budget")
            sync_api.expect(banner).to_be_visible()
            sync_api.expect(banner).to_contain_text(
                "Paused — budget: project spent $0.00 of $0.00 (nexus.yaml budgets.project_usd)"
            )
        finally:
            chromium.close()


def test_until_idle_exits_even_when_a_held_tasks_id_reads_like_a_passing_wait(
    workspace: Path,
) -> None:
    # The daemon tells waits that end by themselves ("paused", "busy", "overlap" …) from those
    # only a person ends; a budget reason naming such a task must still count as the latter.
    write_task(workspace, "paused-busy-overlap", budget_usd=0)
    out = watch(workspace, timeout=60)
    assert out.returncode == 1, out.stderr
    assert "1 ready task(s) paused by budget" in out.stderr
    assert ledger(workspace) == []

"""`nexus mcp` driven by the official `mcp` SDK's own stdio client, the server a real subprocess
(as Claude Code runs it): tool sets, the whole lifecycle across two server processes, bad
arguments that change nothing, planning in prompt mode, resources, messages and costs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from nexus.mcp.tools import ALL, CORE
from tests.conftest import git

Scenario = Callable[["Client"], Awaitable[None]]


class Client:
    """A connected MCP session with assertions that keep the tests short."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        result = await self.session.call_tool(tool, arguments)
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        assert not result.is_error, f"{tool} failed: {text}"
        data = dict(result.structured_content or {})
        data["_text"] = text
        return data

    async def error(self, tool: str, **arguments: Any) -> str:
        result = await self.session.call_tool(tool, arguments)
        assert result.is_error, f"{tool} unexpectedly succeeded: {result.content}"
        text: str = result.content[0].text  # type: ignore[union-attr]
        return text

    async def tools(self) -> list[str]:
        return [t.name for t in (await self.session.list_tools()).tools]


@contextlib.asynccontextmanager
async def connect(cwd: Path, *args: str) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nexus", "mcp", *args],
        cwd=str(cwd),
        env=dict(os.environ),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield Client(session)


def serve(cwd: Path, scenario: Scenario, *args: str) -> None:
    async def main() -> None:
        async with connect(cwd, *args) as client:
            await scenario(client)

    anyio.run(main)


def head(repo: Path) -> str:
    return git("rev-parse", "HEAD", cwd=repo).strip()


def test_tool_sets_and_the_lifecycle_from_create_to_resume_in_a_fresh_server(
    tmp_path: Path,
) -> None:
    ids: dict[str, str] = {}

    async def first(c: Client) -> None:
        assert await c.tools() == list(ALL)
        tools = {t.name: t for t in (await c.session.list_tools()).tools}
        complete = tools["nexus_complete"]
        assert complete.input_schema["required"] == ["task_id", "result"]
        assert "unique prefix" in complete.input_schema["properties"]["task_id"]["description"]
        assert tools["nexus_status"].annotations.read_only_hint is True  # type: ignore[union-attr]
        assert all(t.description for t in tools.values())

        made = await c.call("nexus_create_project", name="auth", goal="Migrate auth to OAuth2")
        assert made["path"] == str(tmp_path / "auth")
        a = await c.call("nexus_add_task", title="Research flows", size="S", role="aria")
        ids["a"] = a["task"]["id"]
        assert a["task"]["status"] == "ready"
        b = await c.call(
            "nexus_add_task", title="Token endpoint", role="code", deps=[ids["a"]], body="Do it."
        )
        ids["b"] = b["task"]["id"]
        c_ = await c.call("nexus_add_task", title="Tests", size="L", role="alpha", deps=[ids["b"]])
        ids["c"] = c_["task"]["id"]

        run = await c.call("nexus_execute", count=5)
        assert [s["task_id"] for s in run["tasks"]] == [ids["a"]]  # the others wait for deps
        spawn = run["tasks"][0]
        assert spawn["model"] == "haiku" and spawn["role"] == "aria" and spawn["size"] == "S"
        assert f"# Task {ids['a']}: Research flows" in spawn["prompt"]
        assert "You are Aria" in spawn["prompt"]
        assert spawn["prompt"] in run["_text"] and "nexus_complete" in run["_text"]

        status = await c.call("nexus_status")
        claimed = status["tree"][0]
        assert claimed["id"] == ids["a"] and claimed["status"] == "in_progress"
        assert claimed["assignee"].startswith("mcp@")

        done = await c.call("nexus_complete", task_id=ids["a"][:5], result="Use PKCE.")
        assert [t["id"] for t in done["now_ready"]] == [ids["b"]]

        status = await c.call("nexus_status")
        assert status["counts"]["complete"] == 1
        assert status["counts"]["ready"] == 1 and status["counts"]["pending"] == 1
        assert status["progress"] == pytest.approx(1 / 3, abs=1e-3)
        assert "Token endpoint" in status["_text"] and "33%" in status["_text"]

    async def second(c: Client) -> None:
        assert await c.tools() == list(CORE)  # the default set: the lifecycle is all in it
        resumed = await c.call("nexus_resume", project="auth")
        assert [t["id"] for t in resumed["ready"]] == [ids["b"]]
        assert resumed["counts"]["complete"] == 1
        result = await c.call("nexus_result", task_id=ids["a"])  # the project is now current
        assert result["result"] == "Use PKCE." and result["task"]["status"] == "complete"
        run = await c.call("nexus_execute")
        spawn = run["tasks"][0]
        assert spawn["task_id"] == ids["b"] and spawn["model"] == "sonnet"
        assert "Use PKCE." in spawn["prompt"]  # the dependency's result reaches the prompt
        failed = await c.call("nexus_fail", task_id=ids["b"], reason="no network")
        assert failed["task"]["status"] == "failed"
        assert any("retried automatically" in w for w in failed["why"])

    serve(tmp_path, first, "--tools", "all")
    serve(tmp_path, second)
    assert len(CORE) == 10 and len(ALL) == 18

    project = tmp_path / "auth"
    log = git("log", "--format=%s%n%(trailers)%x00", cwd=project).split("\x00")
    mcp_commits = [entry for entry in log if "Nexus-Actor: mcp" in entry]
    assert any(f"Nexus-Transition: {ids['a']} ready -> assigned" in e for e in mcp_commits)
    assert any(f"Nexus-Transition: {ids['a']} in_progress -> complete" in e for e in mcp_commits)
    assert any(f"Nexus-Transition: {ids['b']} in_progress -> failed" in e for e in mcp_commits)
    assert git("status", "--porcelain", cwd=project) == ""


def test_bad_arguments_are_tool_errors_that_change_nothing(workspace: Path) -> None:
    root = workspace.parent
    task = subprocess.run(
        [sys.executable, "-m", "nexus", "add", "Only task", "--role", "code"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    before = head(workspace)
    outside = root / "secret.txt"
    outside.write_text("not yours")

    async def scenario(c: Client) -> None:
        text = await c.error("nexus_complete", task_id="zzzzzzzz", result="x")
        assert "no task 'zzzzzzzz'" in text and "fix:" in text
        text = await c.error("nexus_complete", result="no id")
        assert "required argument 'task_id' is missing" in text
        text = await c.error("nexus_update_task", task_id=task, fields={"status": "done"})
        assert "'done' is not a valid status" in text and "in_progress" in text
        text = await c.error("nexus_update_task", task_id=task, fields={"colour": "red"})
        assert "unknown field 'colour'" in text
        text = await c.error("nexus_add_context", task_id=task, paths=["../secret.txt"])
        assert "outside the repository" in text
        text = await c.error("nexus_add_context", task_id=task, paths=[str(outside)])
        assert "outside the repository" in text
        text = await c.error("nexus_add_context", task_id=task, paths=[".git/config"])
        assert ".git/" in text
        text = await c.error("nexus_add_task", title="x", size="XXL")
        assert "argument 'size'" in text and "XXL" in text
        text = await c.error("nexus_add_task", title="x", deps=["nope"])
        assert "nope does not exist" in text
        text = await c.error("nexus_create_project", name="../escape")
        assert "not a valid project name" in text
        text = await c.error("nexus_status", project="../")
        assert "not a folder under the projects root" in text
        text = await c.error("nexus_status", project="/etc")
        assert "not a folder under the projects root" in text
        text = await c.error("nexus_resume", project="nowhere")
        assert "no project 'nowhere'" in text
        text = await c.error("nexus_complete", task_id="../x", result="x")
        assert "not a valid id" in text
        await c.call("nexus_status")  # the server is still fine

    serve(root, scenario, "--workspace", str(workspace), "--tools", "all")
    assert head(workspace) == before
    assert git("status", "--porcelain", cwd=workspace) == ""
    assert not (root / "escape").exists()


def test_plan_approve_and_review_in_prompt_mode_with_answers_the_caller_writes(
    workspace: Path,
) -> None:
    plan = """Here is the plan.

```yaml
goal: Migrate auth to OAuth2
tasks:
  - key: spec
    title: Write the OAuth2 spec
    kind: task
    size: S
    role: aria
    acceptance: [docs/oauth.md exists]
    body: Describe the flows.
  - key: build
    title: Build the token endpoint
    kind: task
    size: M
    role: code
    deps: [spec]
    acceptance: [tests pass]
    body: Implement it.
```
"""

    async def scenario(c: Client) -> None:
        asked = await c.call("nexus_plan", mode="prompt")
        assert asked["mode"] == "prompt" and "Migrate our auth service" in asked["prompt"]
        assert "nexus_approve" in asked["_text"]
        approved = await c.call("nexus_approve", plan_text=plan)
        titles = {t["title"]: t for t in approved["tasks"]}
        assert set(titles) == {"Write the OAuth2 spec", "Build the token endpoint"}
        assert approved["ready"] == [titles["Write the OAuth2 spec"]["id"]]
        run = await c.call("nexus_execute")
        assert [s["title"] for s in run["tasks"]] == ["Write the OAuth2 spec"]
        again = await c.error("nexus_approve", plan=approved["plan"])
        assert "approved" in again

        spec = run["tasks"][0]["task_id"]
        await c.call("nexus_complete", task_id=spec, result="docs/oauth.md written")
        review = await c.call("nexus_review", task_id=spec)  # no oracle engine: the prompt
        assert review["mode"] == "prompt" and "docs/oauth.md exists" in review["prompt"]
        verdict = (
            "verdict: accepted\nreasons: [the spec exists]\ncriteria:\n"
            "  - criterion: docs/oauth.md exists\n    met: true\n    evidence: it is there\n"
        )
        recorded = await c.call("nexus_review", task_id=spec, verdict=verdict)
        assert recorded["verdict"] == "accepted" and recorded["status"] == "complete"

    serve(workspace.parent, scenario, "--workspace", str(workspace), "--tools", "all")
    log = git("log", "--format=%(trailers)", cwd=workspace)
    assert "Nexus-Actor: mcp" in log


def test_projects_resources_messages_context_and_costs(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("x")

    async def scenario(c: Client) -> None:
        empty = await c.call("nexus_list_projects")
        assert empty["projects"] == []
        await c.call("nexus_create_project", name="one", goal="First")
        await c.call("nexus_create_project", name="two", goal="Second")
        task = (await c.call("nexus_add_task", title="Work", role="code", project="one"))["task"]
        listed = await c.call("nexus_list_projects")
        rows = {r["project"]: r for r in listed["projects"]}
        assert rows["one"]["tasks"] == 1 and rows["one"]["counts"] == {"ready": 1}
        assert rows["two"]["current"] and rows["two"]["goal"] == "Second"

        await c.call("nexus_resume", project="one")
        added = await c.call("nexus_add_context", task_id=task["id"], paths=["src/app.py"])
        assert added["context"] == ["src/app.py"] and added["missing"] == ["src/app.py"]

        sent = await c.call("nexus_send_message", sender="aria", to="code", text="use PKCE")
        inbox = await c.call("nexus_read_messages", role="code")
        assert [m["id"] for m in inbox["messages"]] == [sent["id"]]

        run = await c.call("nexus_execute")
        prompt = run["tasks"][0]["prompt"]
        assert "src/app.py" in prompt and "use PKCE" in prompt
        await c.call(
            "nexus_complete",
            task_id=task["id"],
            result="done",
            cost_usd=0.25,
            input_tokens=1000,
            output_tokens=200,
            model="sonnet",
        )
        inbox = await c.call("nexus_read_messages", role="code")
        assert inbox["messages"] == []  # shown in the prompt, read once the task completed
        cost = await c.call("nexus_cost", by=["task", "model"])
        assert cost["usd"] == 0.25 and cost["input_tokens"] == 1000
        assert cost["by"]["task"][0]["key"] == task["id"]
        assert cost["by"]["model"][0]["key"] == "sonnet"
        assert "$" in cost["_text"]

        page = await c.session.read_resource(f"nexus://tasks/{task['id'][:4]}")
        text = page.contents[0].text  # type: ignore[union-attr]
        assert "## Result" in text and "done" in text
        pad = await c.session.read_resource("nexus://scratchpads/aria_to_code")
        assert "use PKCE" in pad.contents[0].text  # type: ignore[union-attr]

    serve(tmp_path, scenario, "--tools", "all")


def test_run_true_starts_the_daemon_unless_one_already_runs(workspace: Path) -> None:
    from nexus.store import try_lock

    fd = try_lock(workspace / ".nexus" / "daemon.lock")  # as a running `nexus watch` would
    assert fd is not None

    async def scenario(c: Client) -> None:
        said = await c.call("nexus_execute", run=True)
        assert said["started"] is False and "already runs" in said["_text"]
        os.close(fd)
        said = await c.call("nexus_execute", run=True)
        assert said["started"] is True and said["pid"] > 0
        deadline = time.monotonic() + 30
        events = workspace / ".nexus" / "events.jsonl"
        while '"stopped"' not in (events.read_text() if events.exists() else ""):
            assert time.monotonic() < deadline, "the daemon did not finish"
            await anyio.sleep(0.1)

    serve(workspace, scenario, "--workspace", str(workspace))


def test_a_bug_in_a_tool_is_a_tool_error_pointing_at_a_crash_log() -> None:
    import threading

    from nexus.mcp.server import _guarded
    from nexus.mcp.tools import Reply

    def nexus_broken() -> Reply:
        raise RuntimeError("kaput")

    result = _guarded(nexus_broken, threading.Lock())()
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert "RuntimeError: kaput" in text and "bug in nexus" in text
    crash_log = Path(text.split("details are in ", 1)[1].split(" —", 1)[0])
    assert "kaput" in crash_log.read_text()


def test_the_cli_imports_the_mcp_sdk_only_for_nexus_mcp() -> None:
    code = (
        "import contextlib, io, sys\n"
        "from nexus.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help']); main(['setup', '--help']); main(['mcp', '--help'])\n"
        "print(sorted(m for m in ('mcp', 'pydantic', 'anyio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_costs_are_charged_to_the_task_that_ran_and_summed_by_dimension() -> None:
    from nexus import costs
    from nexus.journal import Entry

    def run(commit: str, day: int, task: str, usd: str, tokens: str, **facts: str) -> Entry:
        moves = ((task, "in_progress", "complete"), ("dep", "pending", "ready"))
        trailers = {"Cost-USD": usd, "Tokens": tokens, "Actor": "daemon", **facts}
        return Entry(commit, 86_400 * day, "nexus", "s", moves, trailers)

    entries = [
        run("c1", 1, "t1", "0.5", "100/10", Agent="code", Engine="claude-code", Model="sonnet"),
        run("c2", 1, "t2", "0.25", "50/5", Agent="aria", Engine="anthropic", Model="haiku"),
        run("c3", 2, "t1", "1.0", "bad", Agent="code", Engine="claude-code", Model="sonnet"),
        Entry("c4", 0, "nexus", "claim", (("t1", "ready", "assigned"),), {"Actor": "daemon"}),
    ]
    found = costs.charges(entries)
    assert [c.task for c in found] == ["t1", "t2", "t1"]  # never the promoted dependent
    summary = costs.summarize(found, titles={"t1": "First"})
    assert summary["usd"] == 1.75 and summary["runs"] == 3
    assert summary["input_tokens"] == 150 and summary["output_tokens"] == 15
    by_task = summary["by"]["task"]
    assert [(r["key"], r["usd"], r["runs"]) for r in by_task] == [("t1", 1.5, 2), ("t2", 0.25, 1)]
    assert by_task[0]["title"] == "First"
    assert [r["key"] for r in summary["by"]["day"]] == ["1970-01-02", "1970-01-03"]
    assert [r["key"] for r in summary["by"]["engine"]] == ["claude-code", "anthropic"]
    assert "by model:" in costs.render(summary)
    assert "no run has recorded a cost" in costs.render(costs.summarize([]))

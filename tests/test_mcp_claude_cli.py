"""The real, pinned Claude Code CLI drives `nexus mcp`: `claude -p` with `--mcp-config` pointing at
the server, its model a fake Anthropic API on 127.0.0.1 that calls `nexus_status`, reads the
ready task from the result, and calls `nexus_complete` for it.  Afterwards the task is complete
in the workspace, its dependent ready, and the commit says `Nexus-Actor: mcp`.

Needs the CLI (see tests/test_claude_cli_contract.py): `NEXUS_TEST_CLAUDE_BIN` or `claude` on
PATH; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests import test_claude_cli_contract as contract
from tests.conftest import git, run_nexus
from tests.fakes import FakeAnthropic

pytestmark = contract.pytestmark  # marker claude_cli; skipped with the reason without the CLI
CLAUDE = contract.CLAUDE

STATUS = "mcp__nexus__nexus_status"
COMPLETE = "mcp__nexus__nexus_complete"


def _tool_results(body: Any) -> list[tuple[str, str]]:
    """(tool name, result text) of every tool call answered so far in the conversation."""
    names: dict[str, str] = {}
    out: list[tuple[str, str]] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if block.get("type") == "tool_use":
                names[block["id"]] = block["name"]
            elif block.get("type") == "tool_result":
                inner = block.get("content")
                text = (
                    inner
                    if isinstance(inner, str)
                    else "".join(b.get("text", "") for b in inner or [] if isinstance(b, dict))
                )
                out.append((names.get(block.get("tool_use_id", ""), "?"), text))
    return out


def _first_ready(text: str) -> str | None:
    """The first ready task in nexus_status's result: Claude Code hands the model the tool's
    structured content (JSON) when there is one, else its text."""
    try:
        pending = list(json.loads(text)["tree"])
    except (ValueError, KeyError, TypeError):
        found = re.search(r"○ ready\s+(\S+)", text)
        return found.group(1) if found else None
    while pending:
        node = pending.pop(0)
        if node["status"] == "ready":
            return str(node["id"])
        pending += node["children"]
    return None


class Model:
    """Calls nexus_status, then nexus_complete for the first ready task it read there."""

    def __init__(self) -> None:
        self.status_text = ""
        self.completed: str | None = None

    def __call__(self, body: Any) -> Any:
        done = _tool_results(body)
        if not done:
            return {"tool_calls": [{"name": STATUS, "input": {}}]}
        name, text = done[-1]
        if name == STATUS:
            self.status_text = text
            self.completed = _first_ready(text)
            if self.completed is None:
                return f"No ready task in: {text[:200]}"
            result = {"task_id": self.completed, "result": "Greeting written by Claude Code."}
            return {"tool_calls": [{"name": COMPLETE, "input": result}]}
        return f"Finished: {text.splitlines()[0] if text else name}"


def test_real_claude_code_completes_a_ready_task_through_nexus_mcp(
    workspace: Path, tmp_path: Path
) -> None:
    first = run_nexus("add", "Write the greeting", "--role", "code", cwd=workspace).stdout.strip()
    second = run_nexus(
        "add", "Check the greeting", "--role", "beta", "--deps", first, cwd=workspace
    ).stdout.strip()
    config = tmp_path / "mcp.json"
    server_entry = {
        "type": "stdio",
        "command": sys.executable,
        "args": ["-m", "nexus", "mcp", "--workspace", str(workspace)],
    }
    config.write_text(json.dumps({"mcpServers": {"nexus": server_entry}}))
    model = Model()
    assert CLAUDE is not None
    with FakeAnthropic(responder=model) as server:
        proc = subprocess.run(
            [
                CLAUDE,
                "-p",
                "Complete the ready nexus task.",
                "--mcp-config",
                str(config),
                "--strict-mcp-config",
                "--allowedTools",
                f"{STATUS},{COMPLETE}",
                "--output-format",
                "json",
            ],
            cwd=workspace,
            env=contract.cli_env(server, tmp_path),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert proc.returncode == 0, proc.stderr or proc.stdout
    out = json.loads(proc.stdout)
    assert out["is_error"] is False, out
    assert out["permission_denials"] == [], out["permission_denials"]
    assert model.completed == first, model.status_text
    assert out["result"].startswith("Finished: "), out["result"]

    shown = json.loads(run_nexus("show", first, "--json", cwd=workspace).stdout)
    assert shown["status"] == "complete"
    assert "Greeting written by Claude Code." in shown["body"]
    dependent = json.loads(run_nexus("show", second, "--json", cwd=workspace).stdout)
    assert dependent["status"] == "ready"
    last = git("log", "-1", "--format=%(trailers)", cwd=workspace)
    assert f"Nexus-Transition: {first} ready -> complete" in last
    assert f"Nexus-Transition: {second} pending -> ready" in last
    assert "Nexus-Actor: mcp" in last

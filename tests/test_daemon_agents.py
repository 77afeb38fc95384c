"""Roles, sessions and real agent CLIs driven by `nexus watch`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import git, run_nexus
from tests.test_claude_cli_contract import CLAUDE, FIRST_PROMPT, Model, cli_env
from tests.test_daemon import configure, tasks, watch, write_task


def set_role(ws: Path, role: str, **fields: Any) -> None:
    cfg = ws / "nexus.yaml"
    data = yaml.safe_load(cfg.read_text())
    data.setdefault("roles", {})[role] = fields
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_persistent_roles_second_task_resumes_the_first_ones_session(workspace: Path) -> None:
    set_role(workspace, "aria", engine="script", settings={"steps": [
        {"session": "{session}"}, {"result": "ran with session [{session}]"}]})  # fmt: skip
    write_task(workspace, "one", role="aria", engine=None,
               steps=[{"session": "sess-aria-1"}, {"result": "first"}])  # fmt: skip
    write_task(workspace, "two", role="aria", engine=None, deps=("one",), steps=[])
    out = watch(workspace)
    assert out.returncode == 0, out.stderr
    assert "ran with session [sess-aria-1]" in (workspace / "tasks" / "two.md").read_text()
    stored = yaml.safe_load((workspace / "agents" / "sessions.yaml").read_text())
    assert stored["aria"]["session"] == "sess-aria-1"
    assert tasks(workspace)["two"]["session"] == "sess-aria-1"
    log = git("log", "--format=%B", cwd=workspace)
    assert "Nexus-Session: sess-aria-1" in log and "Nexus-Agent: aria" in log


def test_messages_reach_the_next_prompt_of_their_recipient(workspace: Path) -> None:
    set_role(workspace, "code", engine="script")
    message = {"to": "code", "text": "use PKCE", "type": "task_assignment"}
    write_task(workspace, "send", role="aria", steps=[{"message": message}])
    # The command engine gives the prompt on stdin: `cat` echoes it back as the result.
    write_task(
        workspace,
        "recv",
        role="code",
        deps=("send",),
        engine="command",
        steps=[],
        engine_settings={"argv": ["cat"]},
    )
    out = watch(workspace)
    assert out.returncode == 0, out.stderr
    result = (workspace / "tasks" / "recv.md").read_text()
    assert "## Messages for you" in result and "use PKCE" in result
    inbox = json.loads(run_nexus("inbox", "code", "--json", cwd=workspace).stdout)
    assert inbox["messages"] == []  # read once the run that saw it succeeded


@pytest.mark.claude_cli
@pytest.mark.skipif(CLAUDE is None, reason="the real Claude Code CLI is not installed "
                    "(set NEXUS_TEST_CLAUDE_BIN; .ci/run installs it)")  # fmt: skip
def test_the_real_claude_cli_writes_a_file_and_the_role_resumes_its_session(
    workspace: Path, tmp_path: Path
) -> None:
    from tests.fakes import FakeAnthropic

    set_role(workspace, "code", engine="claude-code",
             settings={"binary": CLAUDE, "permission_mode": "acceptEdits"})  # fmt: skip
    configure(workspace, max_retries=0, timeout=120)
    for tid, title, deps in (
        ("first", FIRST_PROMPT, []),
        ("second", "Say something else", ["first"]),
    ):
        (workspace / "tasks" / f"{tid}.md").write_text(
            "---\n" + yaml.safe_dump({"id": tid, "title": title, "role": "code", "deps": deps})
            + "---\n"
        )  # fmt: skip
    with FakeAnthropic(responder=Model(workspace)) as server:
        env = cli_env(server, tmp_path)
        env.pop("HOME")
        out = run_nexus("watch", "--until-idle", cwd=workspace, check=False, timeout=240,
                        env={**env, "PATH": os.environ["PATH"]})  # fmt: skip
        requests = server.model_requests()
    assert out.returncode == 0, out.stderr
    assert (workspace / "hello.txt").read_text() == "hi from the real CLI\n"
    assert "hello.txt" in git("show", "--name-only", "--format=", "HEAD~2", cwd=workspace) + git(
        "log", "--name-only", "--format=", cwd=workspace
    )
    final = tasks(workspace)
    assert final["first"]["status"] == final["second"]["status"] == "complete"
    session = final["first"]["session"]
    assert session and final["second"]["session"] == session
    stored = yaml.safe_load((workspace / "agents" / "sessions.yaml").read_text())
    assert stored["code"]["session"] == session
    assert "hi from the real CLI" in json.dumps(requests[-1].body["messages"])

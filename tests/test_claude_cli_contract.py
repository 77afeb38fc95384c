"""The claude-code engine against the real, pinned Claude Code CLI, talking to a fake Anthropic
Messages API on 127.0.0.1 (tests/fakes/anthropic_server.py).  Proves that what AGENT_CLIS.md says
and what the engine assumes still hold: flags, stream-json, the Write tool, sessions and resume.

Needs the CLI: `NEXUS_TEST_CLAUDE_BIN=/path/to/claude`, or `claude` on PATH.  CI installs it with
`npm install --prefix <dir> @anthropic-ai/claude-code@2.1.330`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nexus.engines.base import EngineResult, Job
from nexus.engines.claude_code import ClaudeCodeEngine
from tests.fakes import FakeAnthropic


def _find_claude() -> str | None:
    explicit = os.environ.get("NEXUS_TEST_CLAUDE_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("claude")


CLAUDE = _find_claude()

pytestmark = [
    pytest.mark.claude_cli,
    pytest.mark.skipif(
        CLAUDE is None,
        reason="the real Claude Code CLI is not installed: set NEXUS_TEST_CLAUDE_BIN or put "
        "`claude` on PATH (npm install --prefix DIR @anthropic-ai/claude-code@2.1.330)",
    ),
]

FIRST_PROMPT = "Create hello.txt saying hi"


def _has_tool_result(body: dict[str, Any]) -> bool:
    last = (body.get("messages") or [{}])[-1]
    content = last.get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


class Model:
    """The fake model: asked to create a file in a new conversation, it calls Write with an
    absolute path in the workdir; once it sees the tool result, or for anything else, it answers
    in words.  (The prompt is not the last message: the CLI appends a system one.)"""

    def __init__(self, workdir: Path) -> None:
        self.target = workdir / "hello.txt"

    def __call__(self, body: Any) -> Any:
        if _has_tool_result(body):
            return "I created hello.txt."
        messages = body.get("messages") or []
        fresh = not any(m.get("role") == "assistant" for m in messages)
        if fresh and FIRST_PROMPT in json.dumps(messages):
            return {
                "tool_calls": [
                    {
                        "name": "Write",
                        "input": {
                            "file_path": str(self.target),
                            "content": "hi from the real CLI\n",
                        },
                    }
                ]
            }
        return "Second answer, same session."


def cli_env(server: FakeAnthropic, tmp_path: Path, retries: int = 1) -> dict[str, str]:
    """The environment AGENT_CLIS.md prescribes for a CLI pointed at a local server."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(tmp_path / "home"),
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_API_KEY": "test",
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude-config"),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(retries),
        "API_TIMEOUT_MS": "20000",
    }


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[FakeAnthropic, Path, dict[str, str]]]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    with FakeAnthropic(responder=Model(workdir)) as server:
        yield server, workdir, cli_env(server, tmp_path)


def run(
    workdir: Path,
    env: dict[str, str],
    prompt: str,
    settings: dict[str, Any] | None = None,
    **kw: Any,
) -> EngineResult:
    job = Job(
        task_id="T-1",
        prompt=prompt,
        workdir=workdir,
        workspace=workdir,
        role="code",
        system_prompt="You are Code, the developer.",
        timeout=90,
        settings={"binary": CLAUDE, **(settings or {})},
        env=env,
        **kw,
    )
    return ClaudeCodeEngine().run(job)


@pytest.mark.parametrize("output_format", ["stream-json", "json"])
def test_real_cli_writes_a_file_through_its_write_tool_and_reports_session_and_usage(
    rig: tuple[FakeAnthropic, Path, dict[str, str]], output_format: str
) -> None:
    server, workdir, env = rig
    progress: list[str] = []
    # Variadic flags before the prompt: the engine's `--` must keep them from eating it.
    settings = {"output_format": output_format, "allowed_tools": ["Read", "Write"]}
    result = run(workdir, env, FIRST_PROMPT, settings, on_progress=progress.append)
    assert result.ok, result.reason
    assert (workdir / "hello.txt").read_text() == "hi from the real CLI\n"
    assert result.text == "I created hello.txt."
    assert result.session
    assert result.usage.input_tokens > 0 and result.usage.output_tokens > 0
    assert result.cost_usd is not None
    if output_format == "stream-json":
        assert any("Write" in line for line in progress)
    first = server.model_requests()[0].body
    assert "You are Code, the developer." in json.dumps(first.get("system"))
    assert f"Primary working directory: {workdir}" in json.dumps(first)


def test_real_cli_resumes_the_session_with_the_first_conversation(
    rig: tuple[FakeAnthropic, Path, dict[str, str]],
) -> None:
    server, workdir, env = rig
    first = run(workdir, env, FIRST_PROMPT)
    assert first.ok, first.reason
    second = run(workdir, env, "What did you do?", session=first.session)
    assert second.ok, second.reason
    assert second.session == first.session
    assert second.session_replaced is None
    assert second.text == "Second answer, same session."
    resumed = json.dumps(server.model_requests()[-1].body["messages"])
    assert FIRST_PROMPT in resumed
    assert '"name": "Write"' in resumed  # the first run's tool call is in the history
    assert "I created hello.txt." in resumed
    assert "What did you do?" in resumed


def test_real_cli_unknown_session_is_replaced_by_a_new_one(
    rig: tuple[FakeAnthropic, Path, dict[str, str]],
) -> None:
    _, workdir, env = rig
    missing = str(uuid.uuid4())
    result = run(workdir, env, "Hello again", session=missing)
    assert result.ok, result.reason
    assert result.session_replaced == missing
    assert result.session and result.session != missing


def test_real_cli_turn_limit_is_a_failure(rig: tuple[FakeAnthropic, Path, dict[str, str]]) -> None:
    _, workdir, env = rig
    result = run(workdir, env, FIRST_PROMPT, {"max_turns": 1})
    assert not result.ok
    assert "turn limit" in (result.reason or ""), result.reason
    assert not result.rate_limited


def test_real_cli_rate_limit_is_reported_as_rate_limited(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    script = [{"error": 429, "retry_after": 0}] * 4
    with FakeAnthropic(script) as server:
        result = run(workdir, cli_env(server, tmp_path, retries=0), "anything")
    assert not result.ok
    assert result.rate_limited, result.reason
    assert "429" in (result.reason or "")

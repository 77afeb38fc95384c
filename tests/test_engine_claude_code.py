"""The claude-code engine against a fake `claude` on PATH (tests/fakes/fake_claude.py)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from nexus.engines.base import Engine, get_engine
from nexus.engines.claude_code import ClaudeCodeEngine
from tests.fakes.fake_cli import FakeCliRig


@pytest.fixture
def rig(tmp_path: Path) -> FakeCliRig:
    return FakeCliRig(tmp_path, "claude", "fake_claude.py", "CLAUDE")


def run(rig: FakeCliRig, **kw: object):  # type: ignore[no-untyped-def]
    return ClaudeCodeEngine().run(rig.job(**kw))


def flag_values(argv: list[str], flag: str) -> list[str]:
    """The values after `flag` up to the next option."""
    start = argv.index(flag) + 1
    values = []
    for arg in argv[start:]:
        if arg.startswith("-"):
            break
        values.append(arg)
    return values


def process_gone(pid: int) -> bool:
    """True once `pid` is dead (a zombie waiting for its new parent to reap it counts)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat")
            if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def test_registry_returns_the_claude_code_engine() -> None:
    engine = get_engine("claude-code")
    assert isinstance(engine, ClaudeCodeEngine)
    assert isinstance(engine, Engine)
    assert engine.capabilities.binary == "claude"
    assert engine.capabilities.can_resume


def test_success_reports_text_session_usage_cost_and_model(rig: FakeCliRig) -> None:
    rig.play({"result": "all done", "session_id": "sess-1", "total_cost_usd": 0.5})
    result = run(rig, model="claude-haiku-4-5")
    assert result.ok, result.reason
    assert result.text == "all done"
    assert result.session == "sess-1"
    assert result.cost_usd == 0.5
    assert result.usage.input_tokens == 100
    assert result.usage.output_tokens == 20
    assert result.usage.cache_read_tokens == 5
    assert result.usage.cache_write_tokens == 7
    assert result.model == "claude-haiku-4-5"
    assert result.duration > 0


def test_default_command_is_headless_stream_json_with_accept_edits(rig: FakeCliRig) -> None:
    run(rig)
    (call,) = rig.calls()
    argv = call["argv"]
    assert argv[0] == "-p"
    assert flag_values(argv, "--output-format") == ["stream-json"]
    assert "--verbose" in argv
    assert flag_values(argv, "--permission-mode") == ["acceptEdits"]
    assert argv[-2:] == ["--", "do the task"]
    for absent in ("--model", "--resume", "--append-system-prompt", "--max-turns"):
        assert absent not in argv
    assert "--dangerously-skip-permissions" not in argv
    assert call["stdin"] == "devnull"
    assert Path(call["cwd"]) == rig.work.resolve()


def test_json_output_format_is_parsed_even_after_a_stray_line(rig: FakeCliRig) -> None:
    rig.play({"result": "json result", "noise": "Warning: something chatty"})
    result = run(rig, settings={"output_format": "json"})
    assert result.ok, result.reason
    assert result.text == "json result"
    (call,) = rig.calls()
    assert flag_values(call["argv"], "--output-format") == ["json"]
    assert "--verbose" not in call["argv"]


def test_settings_and_job_fields_become_flags(rig: FakeCliRig) -> None:
    (rig.work / "mcp.json").write_text("{}")
    settings = {
        "permission_mode": "plan",
        "allowed_tools": ["Read", "Bash(git *)"],
        "disallowed_tools": "WebFetch",
        "max_turns": 7,
        "mcp_config": "mcp.json",
        "add_dirs": ["../shared", "/opt/data"],
    }
    result = run(rig, model="opus", system_prompt="You are Code.", settings=settings)
    assert result.ok, result.reason
    argv = rig.calls()[0]["argv"]
    assert flag_values(argv, "--model") == ["opus"]
    assert argv[argv.index("--append-system-prompt") + 1] == "You are Code."
    assert flag_values(argv, "--permission-mode") == ["plan"]
    assert flag_values(argv, "--allowedTools") == ["Read", "Bash(git *)"]
    assert flag_values(argv, "--disallowedTools") == ["WebFetch"]
    assert flag_values(argv, "--max-turns") == ["7"]
    assert flag_values(argv, "--mcp-config") == [str(rig.work / "mcp.json")]
    assert flag_values(argv, "--add-dir") == [str(rig.work / "../shared"), "/opt/data"]
    assert argv[-1] == "do the task"


def test_bypass_permissions_is_used_only_when_settings_ask_for_it(rig: FakeCliRig) -> None:
    run(rig, settings={"permission_mode": "bypassPermissions"})
    assert flag_values(rig.calls()[0]["argv"], "--permission-mode") == ["bypassPermissions"]


def test_a_prompt_starting_with_a_dash_still_arrives_as_the_prompt(rig: FakeCliRig) -> None:
    rig.play({"result": "ok"})
    result = run(rig, prompt="--help me", settings={"allowed_tools": ["Read"]})
    assert result.ok, result.reason
    assert rig.calls()[0]["argv"][-1] == "--help me"


def test_child_gets_exactly_the_jobs_environment(
    rig: FakeCliRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_TEST_SECRET", "must-not-leak")
    run(rig, env={**rig.env, "ANTHROPIC_API_KEY": "k-1"})
    env = rig.calls()[0]["env"]
    assert env["ANTHROPIC_API_KEY"] == "k-1"
    assert "NEXUS_TEST_SECRET" not in env


def test_agent_edits_files_in_the_job_workdir(rig: FakeCliRig) -> None:
    rig.play({"write": {"src/hello.py": "print('hi')\n"}, "result": "wrote it"})
    result = run(rig)
    assert result.ok, result.reason
    assert (rig.work / "src" / "hello.py").read_text() == "print('hi')\n"


def test_resume_passes_the_session_and_keeps_its_id(rig: FakeCliRig) -> None:
    first = run(rig)
    second = run(rig, session=first.session, system_prompt="persona")
    assert second.ok, second.reason
    assert second.session == first.session
    assert second.session_replaced is None
    assert flag_values(rig.calls()[1]["argv"], "--resume") == [first.session]


def test_unknown_session_is_replaced_by_a_fresh_one_and_reported(rig: FakeCliRig) -> None:
    progress: list[str] = []
    result = run(rig, session="expired-123", on_progress=progress.append)
    assert result.ok, result.reason
    assert result.session_replaced == "expired-123"
    assert result.session and result.session != "expired-123"
    first, second = rig.calls()
    assert flag_values(first["argv"], "--resume") == ["expired-123"]
    assert "--resume" not in second["argv"]
    assert any("expired-123" in line for line in progress)


@pytest.mark.parametrize("status", [429, 529])
def test_overloaded_or_rate_limited_api_pauses_instead_of_failing(
    rig: FakeCliRig, status: int
) -> None:
    rig.play({"is_error": True, "api_error_status": status, "result": "API Error: slow down"})
    result = run(rig)
    assert not result.ok
    assert result.rate_limited
    assert str(status) in (result.reason or "")
    assert result.session is not None


def test_usage_limit_message_is_rate_limited_with_time_until_reset(rig: FakeCliRig) -> None:
    reset = int(time.time()) + 3600
    rig.play({"is_error": True, "result": f"Claude AI usage limit reached|{reset}"})
    result = run(rig)
    assert result.rate_limited
    assert result.retry_after is not None and 3500 < result.retry_after <= 3600


def test_server_error_fails_with_the_status_and_is_not_a_rate_limit(rig: FakeCliRig) -> None:
    rig.play({"is_error": True, "api_error_status": 500, "result": "API Error: 500 boom"})
    result = run(rig)
    assert not result.ok
    assert not result.rate_limited
    assert "500" in (result.reason or "") and "boom" in (result.reason or "")


def test_rejected_api_key_says_how_to_fix_it(rig: FakeCliRig) -> None:
    rig.play({"is_error": True, "api_error_status": 401, "result": "Invalid API key"})
    result = run(rig)
    assert not result.ok and not result.rate_limited
    assert "ANTHROPIC_API_KEY" in (result.reason or "")


def test_max_turns_stop_is_a_failure_that_names_the_limit(rig: FakeCliRig) -> None:
    rig.play({"subtype": "error_max_turns", "is_error": True, "no_result": True, "rc": 1})
    result = run(rig, settings={"max_turns": 3})
    assert not result.ok
    assert "turn limit" in (result.reason or "") and "3" in (result.reason or "")
    assert result.usage.input_tokens == 100  # what was spent is still reported


def test_is_error_wins_over_a_success_subtype_and_exit_code_0(rig: FakeCliRig) -> None:
    rig.play({"is_error": True, "subtype": "success", "result": "Request timed out", "rc": 0})
    result = run(rig)
    assert not result.ok
    assert "Request timed out" in (result.reason or "")


def test_nonzero_exit_fails_even_when_the_json_says_no_error(rig: FakeCliRig) -> None:
    rig.play({"is_error": False, "result": "looks fine", "rc": 2})
    result = run(rig)
    assert not result.ok
    assert "code 2" in (result.reason or "")


def test_stderr_only_failure_puts_stderr_in_the_reason(rig: FakeCliRig) -> None:
    rig.play({"stderr_only": True, "stderr": "error: unknown option '--frobnicate'"})
    result = run(rig)
    assert not result.ok
    assert "unknown option '--frobnicate'" in (result.reason or "")
    assert not result.rate_limited


def test_no_output_at_all_is_a_failure(rig: FakeCliRig) -> None:
    rig.play({"stderr_only": True, "stderr": "", "rc": 0})
    result = run(rig)
    assert not result.ok
    assert "no result" in (result.reason or "")


def test_timeout_kills_claude_and_everything_it_started(rig: FakeCliRig, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    rig.play({"hang": True, "hang_pid_file": str(pid_file), "session_id": "sess-hang"})
    started = time.monotonic()
    result = run(rig, timeout=1.5)
    assert time.monotonic() - started < 6
    assert not result.ok
    assert "timed out after 1.5s" in (result.reason or "")
    assert result.session == "sess-hang"  # known from the init line, so it can be resumed
    leader, child = (int(p) for p in pid_file.read_text().split())
    assert process_gone(leader)
    assert process_gone(child)


def test_cancel_stops_a_running_claude(rig: FakeCliRig, tmp_path: Path) -> None:
    rig.play({"hang": True, "hang_pid_file": str(tmp_path / "pids")})
    job = rig.job(timeout=None)
    threading.Timer(0.5, job.cancel.set).start()
    result = ClaudeCodeEngine().run(job)
    assert not result.ok
    assert "cancelled" in (result.reason or "")


def test_progress_shows_tool_uses_and_assistant_text(rig: FakeCliRig) -> None:
    rig.play(
        {
            "tool_uses": [{"name": "Bash", "input": {"command": "pytest -q"}}],
            "write": {"notes.md": "x"},
            "api_retries": 1,
            "result": "Finished the work",
        }
    )
    progress: list[str] = []
    result = run(rig, on_progress=progress.append)
    assert result.ok, result.reason
    joined = "\n".join(progress)
    assert "Bash pytest -q" in joined
    assert "Write" in joined and "notes.md" in joined
    assert "Finished the work" in joined
    assert "API retry 1/10" in joined


def test_a_progress_sink_that_raises_does_not_break_the_run(rig: FakeCliRig) -> None:
    def broken(line: str) -> None:
        raise RuntimeError("sink down")

    assert run(rig, on_progress=broken).ok


def test_check_explains_how_to_install_a_missing_claude(tmp_path: Path) -> None:
    message = ClaudeCodeEngine().check({}, {"PATH": str(tmp_path)})
    assert message is not None
    assert "npm install -g @anthropic-ai/claude-code@2.1.330" in message
    assert "engines.claude-code.binary" in message


def test_run_without_claude_fails_as_a_value(tmp_path: Path) -> None:
    engine = ClaudeCodeEngine()
    from nexus.engines.base import Job

    result = engine.run(Job("T-1", "hi", tmp_path, tmp_path, env={"PATH": str(tmp_path)}))
    assert not result.ok
    assert "claude" in (result.reason or "")


def test_binary_setting_points_at_an_executable_off_path(rig: FakeCliRig) -> None:
    env = {**rig.env, "PATH": os.defpath}
    settings = {"binary": str(rig.exe)}
    assert ClaudeCodeEngine().check(settings, env) is None
    assert run(rig, env=env, settings=settings).ok

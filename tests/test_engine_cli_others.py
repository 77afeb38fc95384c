"""The codex and gemini engines against fake executables that print the documented output."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus.engines.base import get_engine
from nexus.engines.cli_common import iter_json_lines, parse_json_object
from nexus.engines.codex import CodexEngine
from nexus.engines.gemini import GeminiEngine
from tests.fakes.fake_cli import FakeCliRig


@pytest.fixture
def codex(tmp_path: Path) -> FakeCliRig:
    return FakeCliRig(tmp_path, "codex", "fake_codex.py", "CODEX")


@pytest.fixture
def gemini(tmp_path: Path) -> FakeCliRig:
    return FakeCliRig(tmp_path, "gemini", "fake_gemini.py", "GEMINI")


def test_registry_returns_the_codex_and_gemini_engines() -> None:
    assert isinstance(get_engine("codex"), CodexEngine)
    assert isinstance(get_engine("gemini"), GeminiEngine)


# -- codex --------------------------------------------------------------------------------------


def test_codex_success_reports_last_message_thread_and_usage(codex: FakeCliRig) -> None:
    codex.play({"text": "patched it", "thread_id": "th-1"})
    result = CodexEngine().run(codex.job(model="gpt-5-codex"))
    assert result.ok, result.reason
    assert result.text == "patched it"
    assert result.session == "th-1"
    assert result.usage.input_tokens == 600  # uncached input
    assert result.usage.cache_read_tokens == 400
    assert result.usage.output_tokens == 50
    assert result.cost_usd is None
    assert result.model == "gpt-5-codex"


def test_codex_command_line_is_exec_json_with_a_workspace_sandbox(codex: FakeCliRig) -> None:
    CodexEngine().run(codex.job(model="o4", system_prompt="You are Code."))
    (call,) = codex.calls()
    argv = call["argv"]
    assert argv[:2] == ["exec", "--json"]
    assert argv[argv.index("--sandbox") + 1] == "workspace-write"
    assert argv[argv.index("-m") + 1] == "o4"
    assert "--skip-git-repo-check" not in argv
    assert argv[-1].startswith("You are Code.") and argv[-1].endswith("do the task")
    assert call["stdin"] == "devnull"
    assert Path(call["cwd"]) == codex.work.resolve()


def test_codex_resume_continues_the_thread_without_repeating_the_persona(
    codex: FakeCliRig,
) -> None:
    first = CodexEngine().run(codex.job(system_prompt="persona"))
    second = CodexEngine().run(
        codex.job(session=first.session, prompt="next", system_prompt="persona")
    )
    assert second.ok, second.reason
    assert second.session == first.session
    argv = codex.calls()[1]["argv"]
    assert argv[-3:] == ["resume", first.session, "next"]


def test_codex_settings_choose_sandbox_and_git_check(codex: FakeCliRig) -> None:
    settings = {"sandbox": "read-only", "skip_git_repo_check": True}
    CodexEngine().run(codex.job(settings=settings, prompt="-x starts with a dash"))
    argv = codex.calls()[0]["argv"]
    assert argv[argv.index("--sandbox") + 1] == "read-only"
    assert "--skip-git-repo-check" in argv
    assert argv[-2:] == ["--", "-x starts with a dash"]


def test_codex_failed_turn_is_a_failure_with_its_message(codex: FakeCliRig) -> None:
    codex.play({"fail": "model refused the patch"})
    result = CodexEngine().run(codex.job())
    assert not result.ok
    assert "model refused the patch" in (result.reason or "")
    assert not result.rate_limited
    assert result.session is not None


def test_codex_rate_limit_error_pauses_the_engine(codex: FakeCliRig) -> None:
    codex.play({"fail": "exceeded retry limit, last status: 429 Too Many Requests"})
    result = CodexEngine().run(codex.job())
    assert result.rate_limited


def test_codex_stderr_only_failure_carries_stderr(codex: FakeCliRig) -> None:
    codex.play({"stderr_only": True, "stderr": "Error: Not inside a trusted directory"})
    result = CodexEngine().run(codex.job())
    assert not result.ok
    assert "Not inside a trusted directory" in (result.reason or "")


def test_codex_progress_shows_commands_file_changes_and_messages(codex: FakeCliRig) -> None:
    codex.play({"commands": ["pytest -q"], "write": {"a.py": "x = 1\n"}, "text": "done!"})
    progress: list[str] = []
    result = CodexEngine().run(codex.job(on_progress=progress.append))
    assert result.ok, result.reason
    assert (codex.work / "a.py").exists()
    joined = "\n".join(progress)
    assert "$ pytest -q" in joined
    assert "a.py" in joined
    assert "done!" in joined


def test_codex_timeout_is_reported(codex: FakeCliRig, tmp_path: Path) -> None:
    codex.play({"hang": True, "hang_pid_file": str(tmp_path / "pids")})
    result = CodexEngine().run(codex.job(timeout=1))
    assert not result.ok
    assert "timed out after 1s" in (result.reason or "")
    assert result.session is not None


def test_codex_check_explains_the_install(tmp_path: Path) -> None:
    message = CodexEngine().check({}, {"PATH": str(tmp_path)})
    assert message is not None and "@openai/codex" in message


# -- gemini -------------------------------------------------------------------------------------


def test_gemini_success_reports_response_session_and_tokens(gemini: FakeCliRig) -> None:
    gemini.play({"response": "answered", "session_id": "g-1", "model": "gemini-2.5-flash"})
    result = GeminiEngine().run(gemini.job())
    assert result.ok, result.reason
    assert result.text == "answered"
    assert result.session == "g-1"
    assert result.model == "gemini-2.5-flash"
    assert result.usage.input_tokens == 600
    assert result.usage.cache_read_tokens == 300
    assert result.usage.output_tokens == 50  # candidates + thoughts


def test_gemini_command_line_is_headless_json_with_auto_edit(gemini: FakeCliRig) -> None:
    GeminiEngine().run(gemini.job(model="gemini-2.5-pro", system_prompt="Be Aria."))
    (call,) = gemini.calls()
    argv = call["argv"]
    assert argv[0] == "-p" and argv[1].startswith("Be Aria.")
    assert argv[argv.index("--output-format") + 1] == "json"
    assert argv[argv.index("--approval-mode") + 1] == "auto_edit"
    assert "--skip-trust" in argv
    assert argv[argv.index("-m") + 1] == "gemini-2.5-pro"
    assert "--yolo" not in argv and "yolo" not in argv
    assert call["stdin"] == "devnull"


def test_gemini_resume_passes_the_session(gemini: FakeCliRig) -> None:
    first = GeminiEngine().run(gemini.job())
    second = GeminiEngine().run(gemini.job(session=first.session))
    assert second.ok, second.reason
    assert second.session == first.session
    argv = gemini.calls()[1]["argv"]
    assert argv[argv.index("-r") + 1] == first.session


def test_gemini_settings_choose_approval_mode_and_trust(gemini: FakeCliRig) -> None:
    settings = {"approval_mode": "default", "skip_trust": False}
    GeminiEngine().run(gemini.job(settings=settings, prompt="-dash first"))
    argv = gemini.calls()[0]["argv"]
    assert argv[0] == "--prompt=-dash first"
    assert argv[argv.index("--approval-mode") + 1] == "default"
    assert "--skip-trust" not in argv


@pytest.mark.parametrize(
    ("rc", "words"), [(1, "exit code 1"), (42, "rejected the input"), (53, "turn limit")]
)
def test_gemini_error_exit_codes_become_failures(gemini: FakeCliRig, rc: int, words: str) -> None:
    gemini.play({"error": {"message": "it went wrong", "code": rc}, "rc": rc})
    result = GeminiEngine().run(gemini.job())
    assert not result.ok
    assert words in (result.reason or "") and "it went wrong" in (result.reason or "")
    assert not result.rate_limited


def test_gemini_quota_error_pauses_the_engine(gemini: FakeCliRig) -> None:
    gemini.play({"error": {"message": "429 RESOURCE_EXHAUSTED: quota exceeded"}, "rc": 1})
    result = GeminiEngine().run(gemini.job())
    assert result.rate_limited


def test_gemini_unknown_flag_failure_carries_stderr(gemini: FakeCliRig) -> None:
    gemini.play({"stderr_only": True, "stderr": "Unknown argument: skip-trust", "rc": 42})
    result = GeminiEngine().run(gemini.job())
    assert not result.ok
    assert "Unknown argument: skip-trust" in (result.reason or "")


def test_gemini_check_explains_the_install(tmp_path: Path) -> None:
    message = GeminiEngine().check({}, {"PATH": str(tmp_path)})
    assert message is not None and "@google/gemini-cli" in message


# -- shared parsing -----------------------------------------------------------------------------


def test_ndjson_reader_skips_lines_that_are_not_json_objects() -> None:
    text = 'banner\n{"a": 1}\n[1, 2]\n{"b": \n{"c": 3}\n'
    assert list(iter_json_lines(text)) == [{"a": 1}, {"c": 3}]


def test_json_object_reader_finds_the_object_after_a_warning() -> None:
    assert parse_json_object('Warning: deprecated\n{"response": "x"}') == {"response": "x"}
    assert parse_json_object("") is None
    assert parse_json_object("not json") is None

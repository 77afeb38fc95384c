"""The command engine (any executable) and the script engine (a deterministic scripted agent)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from nexus.engines.base import EngineResult, Job, OutgoingMessage, get_engine
from nexus.engines.command import CommandEngine
from nexus.engines.script import ScriptEngine

PY = sys.executable


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def job(work: Path, **kw: Any) -> Job:
    values: dict[str, Any] = {
        "task_id": "T-7",
        "prompt": "please fix the bug",
        "workdir": work,
        "workspace": work,
        "role": "code",
        "env": {"PATH": os.defpath, "HOME": str(work.parent)},
        "timeout": 20,
        "task_fields": {"title": "Fix the bug", "attempts": 0},
    }
    values.update(kw)
    return Job(**values)


def command(work: Path, argv: list[str], **kw: Any) -> EngineResult:
    settings = {"argv": argv, **kw.pop("settings", {})}
    return CommandEngine().run(job(work, settings=settings, **kw))


def script(work: Path, steps: list[Any], **kw: Any) -> EngineResult:
    settings = {"steps": steps, **kw.pop("settings", {})}
    return ScriptEngine().run(job(work, settings=settings, **kw))


def test_registry_returns_the_command_and_script_engines() -> None:
    assert isinstance(get_engine("command"), CommandEngine)
    assert isinstance(get_engine("script"), ScriptEngine)
    assert get_engine("script").capabilities.binary is None
    assert get_engine("script").capabilities.needs_env == ()


# -- command ------------------------------------------------------------------------------------


def test_command_reads_the_prompt_on_stdin_and_returns_stdout(work: Path) -> None:
    result = command(work, [PY, "-c", "import sys; print(sys.stdin.read().upper())"])
    assert result.ok, result.reason
    assert result.text == "PLEASE FIX THE BUG"


def test_command_placeholders_are_filled_per_argument_without_a_shell(work: Path) -> None:
    code = "import json, sys; a = sys.argv[1:]; print(json.dumps(a + [open(a[1]).read()]))"
    placeholders = ["{task_id}", "{prompt_file}", "{workdir}", "$HOME; rm -rf x", "{'a': 1}"]
    argv = [PY, "-c", code, *placeholders]
    result = command(work, argv)
    assert result.ok, result.reason
    task_id, prompt_file, workdir, shellish, braces, prompt = json.loads(result.text)
    assert task_id == "T-7"
    assert workdir == str(work)
    assert shellish == "$HOME; rm -rf x"
    assert braces == "{'a': 1}"
    assert prompt == "please fix the bug"
    assert not Path(prompt_file).exists()  # removed after the run


def test_command_gets_the_task_in_nexus_variables(work: Path) -> None:
    code = "import json, os; print(json.dumps({k: v for k, v in os.environ.items()}))"
    fields = {
        "title": "Fix the bug",
        "size": "S",
        "deps": ["T-1", "T-2"],
        "attempts": 1,
        "script": [{"write": "x"}],
    }
    result = command(work, [PY, "-c", code], task_fields=fields, model="m-1", session="s-1")
    env = json.loads(result.text)
    assert env["NEXUS_TASK_ID"] == "T-7"
    assert env["NEXUS_TASK_TITLE"] == "Fix the bug"
    assert env["NEXUS_ROLE"] == "code"
    assert env["NEXUS_WORKSPACE"] == str(work)
    assert env["NEXUS_MODEL"] == "m-1"
    assert env["NEXUS_SESSION"] == "s-1"
    assert env["NEXUS_SIZE"] == "S"
    assert env["NEXUS_DEPS"] == "T-1,T-2"
    assert env["NEXUS_ATTEMPTS"] == "1"
    assert env["NEXUS_PROMPT_FILE"].endswith("prompt.md")
    assert "NEXUS_SCRIPT" not in env


def test_command_child_environment_is_the_jobs_not_the_daemons(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_TEST_SECRET", "nope")
    code = "import os; print(os.environ.get('NEXUS_TEST_SECRET', 'absent'))"
    assert command(work, [PY, "-c", code]).text == "absent"


def test_command_nonzero_exit_fails_with_stderr_in_the_reason(work: Path) -> None:
    code = "import sys; print('partial'); sys.exit('compiler exploded')"
    result = command(work, [PY, "-c", code])
    assert not result.ok
    assert "compiler exploded" in (result.reason or "")
    assert not result.rate_limited


def test_command_rate_limit_exit_code_pauses_the_engine(work: Path) -> None:
    code = "import sys; sys.stderr.write('quota'); sys.exit(75)"
    result = command(work, [PY, "-c", code], settings={"rate_limit_exit_code": 75})
    assert result.rate_limited
    assert "75" in (result.reason or "")


def test_command_timeout_kills_it(work: Path) -> None:
    started = time.monotonic()
    result = command(work, [PY, "-c", "import time; time.sleep(60)"], timeout=0.5)
    assert time.monotonic() - started < 5
    assert not result.ok
    assert "timed out after 0.5s" in (result.reason or "")


def test_command_relative_program_is_found_in_the_workspace(tmp_path: Path, work: Path) -> None:
    workspace = tmp_path / "workspace"
    (workspace / "tools").mkdir(parents=True)
    agent = workspace / "tools" / "agent.py"
    agent.write_text(f"#!{PY}\nimport os\nprint('agent in', os.getcwd())\n")
    agent.chmod(0o755)
    assert CommandEngine().check({"argv": ["tools/agent.py"]}, {"PATH": os.defpath}) is None
    result = command(work, ["tools/agent.py"], workspace=workspace)
    assert result.ok, result.reason
    assert result.text == f"agent in {work}"


def test_command_check_asks_for_argv_and_an_executable(work: Path) -> None:
    engine = CommandEngine()
    env = {"PATH": str(work)}
    assert "argv" in (engine.check({}, env) or "")
    assert "argv" in (engine.check({"argv": "my-agent --go"}, env) or "")
    assert "not on PATH" in (engine.check({"argv": ["no-such-agent-xyz"]}, env) or "")
    assert engine.check({"argv": [PY]}, env) is None
    failed = engine.run(job(work, env=env, settings={"argv": ["no-such-agent-xyz"]}))
    assert not failed.ok and "not on PATH" in (failed.reason or "")


# -- script -------------------------------------------------------------------------------------


def test_script_writes_and_appends_files_and_returns_its_result(work: Path) -> None:
    steps = [
        {"write": "out/{task_id}.md", "content": "# {title}\n"},
        {"append": "out/{task_id}.md", "content": "by {role} on attempt {attempt}\n"},
        {"result": "wrote {task_id}"},
    ]
    result = script(work, steps)
    assert result.ok, result.reason
    assert result.text == "wrote T-7"
    assert (work / "out" / "T-7.md").read_text() == "# Fix the bug\nby code on attempt 0\n"


def test_script_default_result_is_done_and_records_no_cost(work: Path) -> None:
    result = script(work, [])
    assert result.ok
    assert result.text == "done"
    assert result.cost_usd is None
    assert result.usage.input_tokens == 0


def test_script_messages_go_to_the_result(work: Path) -> None:
    steps = [
        {"message": {"to": "beta", "text": "please test {task_id}", "type": "task_assignment"}},
        {"message": {"to": "aria", "text": "done"}},
    ]
    result = script(work, steps)
    assert result.messages == (
        OutgoingMessage("beta", "please test T-7", "task_assignment"),
        OutgoingMessage("aria", "done", "response"),
    )


def test_script_usage_step_records_tokens_and_cost(work: Path) -> None:
    steps = [
        {"usage": {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.25}},
        {"usage": {"input_tokens": 1, "output_tokens": 1, "cost_usd": 0.5}},
    ]
    result = script(work, steps)
    assert result.usage.input_tokens == 11 and result.usage.output_tokens == 6
    assert result.cost_usd == 0.75


def test_script_run_step_runs_a_program_in_the_workdir(work: Path) -> None:
    code = "import os; open('ran.txt', 'w').write(os.getcwd())"
    progress: list[str] = []
    result = script(work, [{"run": [PY, "-c", code]}], on_progress=progress.append)
    assert result.ok, result.reason
    assert (work / "ran.txt").read_text() == str(work)
    assert any(PY in line for line in progress)


def test_script_run_string_is_split_but_never_given_to_a_shell(work: Path) -> None:
    result = script(work, [{"run": f"{PY} -c 'import sys; print(sys.argv)' a;touch pwned"}])
    assert result.ok, result.reason
    assert not (work / "pwned").exists()


def test_script_failing_run_fails_the_script_with_its_output(work: Path) -> None:
    steps = [
        {"run": [PY, "-c", "print('3 tests failed'); raise SystemExit(1)"]},
        {"write": "never.txt", "content": ""},
    ]
    result = script(work, steps)
    assert not result.ok
    assert "3 tests failed" in (result.reason or "")
    assert "step 1" in (result.reason or "")
    assert not (work / "never.txt").exists()


def test_script_run_with_check_false_carries_on(work: Path) -> None:
    steps = [{"run": [PY, "-c", "raise SystemExit(3)"], "check": False}, {"result": "fine"}]
    assert script(work, steps).text == "fine"


@pytest.mark.parametrize("path", ["/etc/passwd-nexus", "../escape.txt", "a/../../escape.txt"])
def test_script_refuses_to_write_outside_the_workdir(work: Path, path: str) -> None:
    result = script(work, [{"write": path, "content": "x"}])
    assert not result.ok
    assert "working dir" in (result.reason or "")
    assert not (work.parent / "escape.txt").exists()


def test_script_refuses_to_write_through_a_symlink_that_leads_out(work: Path) -> None:
    outside = work.parent / "outside"
    outside.mkdir()
    (work / "link").symlink_to(outside)
    result = script(work, [{"append": "link/file.txt", "content": "x"}])
    assert not result.ok
    assert not (outside / "file.txt").exists()


def test_script_fail_step_fails_with_its_reason(work: Path) -> None:
    result = script(work, [{"fail": "cannot do {task_id}"}])
    assert not result.ok
    assert result.reason == "cannot do T-7"
    assert not result.rate_limited


def test_script_rate_limit_step_asks_to_retry_later(work: Path) -> None:
    result = script(work, [{"rate_limit": 30}])
    assert not result.ok
    assert result.rate_limited
    assert result.retry_after == 30


def test_script_sleep_is_cut_short_by_cancel(work: Path) -> None:
    j = job(work, settings={"steps": [{"sleep": 30}]})
    threading.Timer(0.2, j.cancel.set).start()
    started = time.monotonic()
    result = ScriptEngine().run(j)
    assert time.monotonic() - started < 5
    assert not result.ok and "cancelled" in (result.reason or "")


def test_script_sleep_past_the_timeout_times_out(work: Path) -> None:
    started = time.monotonic()
    result = script(work, [{"sleep": 30}], timeout=0.3)
    assert time.monotonic() - started < 5
    assert not result.ok
    assert "timed out after 0.3s" in (result.reason or "")


def test_script_fail_attempts_fails_until_enough_attempts(work: Path) -> None:
    settings = {"fail_attempts": 2}
    first = script(work, [], settings=settings, task_fields={"attempts": 1})
    assert not first.ok and "fail_attempts" in (first.reason or "")
    third = script(work, [], settings=settings, task_fields={"attempts": 2})
    assert third.ok


def test_script_from_the_task_overrides_the_settings(work: Path) -> None:
    fields = {"title": "t", "script": [{"result": "from the task"}]}
    result = script(work, [{"result": "from settings"}], task_fields=fields)
    assert result.text == "from the task"


def test_script_session_step_sets_the_session_else_the_job_session_is_kept(work: Path) -> None:
    assert script(work, [{"session": "s-{task_id}"}]).session == "s-T-7"
    assert script(work, [], session="kept").session == "kept"


def test_script_with_an_unknown_step_fails_and_check_says_why(work: Path) -> None:
    steps = [{"explode": True}]
    result = script(work, steps)
    assert not result.ok
    assert "step 1" in (result.reason or "")
    assert "write" in (ScriptEngine().check({"steps": steps}, {}) or "")
    assert ScriptEngine().check({"steps": [{"result": "x"}]}, {}) is None
    assert ScriptEngine().check({"steps": "write things"}, {}) is not None

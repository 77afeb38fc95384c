"""The `anthropic` engine through the real SDK against the fake Messages API, and the shared
workspace toolbox it hands to the model."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from nexus.engines.anthropic_api import AnthropicEngine
from nexus.engines.base import Engine, Job, OutgoingMessage, Usage, get_engine
from nexus.engines.toolbox import Refused, Toolbox, confine, cost_usd, retry_after
from tests.fakes import FakeAnthropic, Turn, error, tool_call

PRICES = {"claude-test": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def job_for(srv: FakeAnthropic | None, workdir: Path, **settings: Any) -> Job:
    env = {"ANTHROPIC_API_KEY": "test-key"}
    if srv is not None:
        env["ANTHROPIC_BASE_URL"] = srv.url
    settings = {"max_retries": 0, "model": "claude-test", **settings}
    timeout = settings.pop("timeout", 5.0)
    return Job("T-1", "do the task", workdir, workdir, settings=settings, env=env, timeout=timeout)


def tool_results(srv: FakeAnthropic, index: int) -> list[dict[str, Any]]:
    """The tool_result blocks the engine sent in request `index`."""
    last = srv.model_requests()[index].body["messages"][-1]
    return [b for b in last["content"] if b["type"] == "tool_result"]


def test_engine_is_registered_and_fits_the_protocol() -> None:
    engine = get_engine("anthropic")
    assert isinstance(engine, AnthropicEngine) and isinstance(engine, Engine)
    assert engine.capabilities.needs_env == ("ANTHROPIC_API_KEY",)
    assert not engine.capabilities.can_resume and engine.capabilities.edits_files


def test_importing_the_engine_does_not_import_the_sdk() -> None:
    code = "import sys, nexus.engines.anthropic_api; print('anthropic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_check_names_the_missing_key_and_the_fix() -> None:
    engine = AnthropicEngine()
    problem = engine.check({}, {})
    assert problem is not None and "ANTHROPIC_API_KEY" in problem and "nexus doctor" in problem
    assert engine.check({}, {"ANTHROPIC_API_KEY": "k"}) is None


def test_run_without_key_fails_before_any_request(workdir: Path) -> None:
    with FakeAnthropic(["never"]) as srv:
        job = job_for(srv, workdir)
        result = AnthropicEngine().run(replace(job, env={}))
        assert srv.requests == []
    assert not result.ok and "ANTHROPIC_API_KEY" in (result.reason or "")


def test_text_only_answer_is_the_result(workdir: Path) -> None:
    with FakeAnthropic(["All done."]) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir))
        (req,) = srv.requests
    assert result.ok and result.text == "All done."
    assert result.model == "claude-test" and result.session is None
    assert req.body["model"] == "claude-test"
    assert req.body["messages"][0] == {"role": "user", "content": "do the task"}
    assert {t["name"] for t in req.body["tools"]} == {
        "read_file",
        "write_file",
        "list_files",
        "post_message",
        "finish",
    }


def test_key_and_base_url_come_from_the_job_env_not_the_process(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-the-process")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    with FakeAnthropic(["ok"]) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir))
        headers = srv.requests[0].headers
    assert result.ok
    sent = headers.get("x-api-key", "") + headers.get("authorization", "")
    assert "test-key" in sent and "from-the-process" not in sent


def test_model_comes_from_the_job_then_settings_then_the_default(workdir: Path) -> None:
    with FakeAnthropic(["a", "b"]) as srv:
        AnthropicEngine().run(replace(job_for(srv, workdir), model="claude-job"))
        result = AnthropicEngine().run(replace(job_for(srv, workdir), settings={}))
        models = [r.body["model"] for r in srv.requests]
    assert models == ["claude-job", AnthropicEngine.default_model]
    assert result.model == AnthropicEngine.default_model


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_write_file_round_trip_creates_the_file_and_finishes(workdir: Path, stream: bool) -> None:
    script = [
        tool_call("write_file", {"path": "src/hello.py", "content": "print('hi')\n"}),
        tool_call("read_file", {"path": "src/hello.py"}),
        tool_call("finish", {"result": "wrote hello.py"}),
    ]
    with FakeAnthropic(script) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir, stream=stream))
        assert all(bool(r.body.get("stream")) == stream for r in srv.requests)
        written, read = tool_results(srv, 1), tool_results(srv, 2)
    assert result.ok and result.text == "wrote hello.py"
    assert (workdir / "src" / "hello.py").read_text() == "print('hi')\n"
    assert not written[0]["is_error"] and read[0]["content"] == "print('hi')\n"


def test_list_files_shows_the_folder(workdir: Path) -> None:
    (workdir / "docs").mkdir()
    (workdir / "docs" / "a.md").write_text("a")
    (workdir / ".git").mkdir()
    (workdir / ".git" / "HEAD").write_text("ref")
    with FakeAnthropic([tool_call("list_files"), "seen"]) as srv:
        assert AnthropicEngine().run(job_for(srv, workdir)).ok
        (listing,) = tool_results(srv, 1)
    assert listing["content"].splitlines() == ["docs/", "docs/a.md"]


def escape_paths(workdir: Path) -> dict[str, str]:
    outside = workdir.parent / "outside"
    outside.mkdir()
    (workdir / "link_dir").symlink_to(outside, target_is_directory=True)
    (outside / "victim.txt").write_text("original")
    (workdir / "link_file").symlink_to(outside / "victim.txt")
    return {
        "dotdot": "../escape.txt",
        "absolute": str(workdir.parent / "escape.txt"),
        "symlinked folder": "link_dir/escape.txt",
        "symlinked file": "link_file",
    }


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlinked folder", "symlinked file"])
def test_write_outside_the_folder_is_refused_and_the_run_goes_on(workdir: Path, case: str) -> None:
    path = escape_paths(workdir)[case]
    script = [
        tool_call("write_file", {"path": path, "content": "pwned"}),
        tool_call("write_file", {"path": "inside.txt", "content": "fine"}),
        tool_call("finish", {"result": "finished anyway"}),
    ]
    with FakeAnthropic(script) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir))
        (refusal,) = tool_results(srv, 1)
    assert result.ok and result.text == "finished anyway"
    assert refusal["is_error"] and refusal["content"].startswith("refused:")
    assert not (workdir.parent / "escape.txt").exists()
    assert not (workdir.parent / "outside" / "escape.txt").exists()
    assert (workdir.parent / "outside" / "victim.txt").read_text() == "original"
    assert (workdir / "inside.txt").read_text() == "fine"


def test_post_message_is_collected_in_the_result(workdir: Path) -> None:
    script = [
        tool_call("post_message", {"to": "beta", "text": "please review", "type": "feedback"}),
        tool_call("post_message", {"to": "aria", "text": "done"}),
        "Reported.",
    ]
    with FakeAnthropic(script) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir))
    assert result.ok and result.text == "Reported."
    assert result.messages == (
        OutgoingMessage("beta", "please review", "feedback"),
        OutgoingMessage("aria", "done", "response"),
    )


def test_usage_and_cost_are_summed_over_turns(workdir: Path) -> None:
    script = [
        Turn(
            tool_calls=tool_call("list_files").tool_calls,
            usage={"input_tokens": 1000, "output_tokens": 100, "cache_read_input_tokens": 50},
        ),
        Turn(text="done", usage={"input_tokens": 2000, "output_tokens": 300}),
    ]
    with FakeAnthropic(script) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir, prices=PRICES))
    assert result.usage == Usage(3000, 400, cache_read_tokens=50)
    assert result.cost_usd == pytest.approx((3050 * 3.0 + 400 * 15.0) / 1e6)


def test_cost_is_unknown_without_a_price_for_the_model(workdir: Path) -> None:
    with FakeAnthropic(["ok"]) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir, prices={"other": {}}))
    assert result.ok and result.cost_usd is None and result.usage.output_tokens > 0


def test_a_429_with_retry_after_is_retried_by_the_sdk(workdir: Path) -> None:
    with FakeAnthropic([error(429, retry_after=0.05), "made it"]) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir, max_retries=2))
        assert len(srv.model_requests()) == 2
    assert result.ok and result.text == "made it"


def test_a_429_storm_is_a_rate_limited_result(workdir: Path) -> None:
    with FakeAnthropic([error(429, retry_after=0.05)] * 3) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir, max_retries=1))
        assert len(srv.model_requests()) == 2
    assert not result.ok and result.rate_limited and result.retry_after == 0.05
    assert (result.reason or "").startswith("anthropic API rate limited (429):")


def test_overloaded_529_is_rate_limited(workdir: Path) -> None:
    with FakeAnthropic([error(529)]) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir))
    assert not result.ok and result.rate_limited and result.retry_after is None
    assert "overloaded (529)" in (result.reason or "")


def test_a_500_fails_with_the_status_in_the_reason(workdir: Path) -> None:
    with FakeAnthropic([error(500, "internal trouble")]) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir))
    assert not result.ok and not result.rate_limited
    assert "500" in (result.reason or "") and "internal trouble" in (result.reason or "")


def test_a_401_says_to_check_the_key(workdir: Path) -> None:
    with FakeAnthropic([error(401)]) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir))
    assert not result.ok and not result.rate_limited
    assert "401" in (result.reason or "") and "ANTHROPIC_API_KEY" in (result.reason or "")


def test_connection_refused_is_a_clear_failure(workdir: Path) -> None:
    job = job_for(None, workdir, base_url="http://127.0.0.1:9")
    result = AnthropicEngine().run(job)
    assert not result.ok and "cannot reach the anthropic API at http://127.0.0.1:9" in (
        result.reason or ""
    )


def test_a_hung_server_times_out(workdir: Path) -> None:
    with FakeAnthropic([Turn(text="too late", delay=3)]) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir, timeout=0.4))
    assert not result.ok and "did not answer in time" in (result.reason or "")


def test_cancel_stops_the_run_between_turns(workdir: Path) -> None:
    job = job_for(None, workdir)

    def cancel_after_first(body: Any) -> Turn:
        job.cancel.set()
        return tool_call("list_files")

    with FakeAnthropic([cancel_after_first, "never asked"]) as srv:
        result = AnthropicEngine().run(replace(job, settings={"base_url": srv.url}))
        assert len(srv.requests) == 1
    assert not result.ok and "cancelled" in (result.reason or "")


def test_turn_limit_ends_a_run_that_never_finishes(workdir: Path) -> None:
    with FakeAnthropic([tool_call("list_files")] * 5) as srv:
        result = AnthropicEngine().run(job_for(srv, workdir, max_turns=3))
        assert len(srv.requests) == 3
    assert not result.ok and "max_turns" in (result.reason or "")
    assert result.usage.input_tokens > 0


def test_progress_reports_text_and_tool_calls(workdir: Path) -> None:
    lines: list[str] = []
    with FakeAnthropic([tool_call("list_files", text="looking"), "done"]) as srv:
        job = job_for(srv, workdir)
        AnthropicEngine().run(replace(job, on_progress=lines.append))
    assert lines == ["looking", "[list_files]", "done"]


# -- the shared toolbox (pure parts) -----------------------------------------------------------


def test_confine_keeps_paths_inside_and_refuses_the_rest(workdir: Path) -> None:
    assert confine(workdir, "a/../b.txt") == workdir.resolve() / "b.txt"
    assert confine(workdir, str(workdir / "c.txt")) == workdir.resolve() / "c.txt"
    for bad in ("../x", "/etc/passwd", "", "a\x00b"):
        with pytest.raises(Refused):
            confine(workdir, bad)


def test_toolbox_reports_bad_calls_as_errors_not_exceptions(workdir: Path) -> None:
    box = Toolbox(workdir)
    assert box.call("write_file", '{"path": "a.txt"').is_error  # broken JSON
    assert "needs content" in box.call("write_file", {"path": "a.txt"}).text
    assert box.call("write_file", {"path": "a.txt", "content": 3}).is_error
    assert box.call("rm_rf", {}).text.startswith("error: unknown tool 'rm_rf'")
    assert box.call("read_file", {"path": "missing.txt"}).is_error
    assert box.call("write_file", {"path": ".git/config", "content": "x"}).is_error
    assert not box.finished and box.call("finish", '{"result": "ok"}').text == "finished"
    assert box.result == "ok"


def test_cost_and_retry_after_helpers() -> None:
    usage = Usage(1_000_000, 1_000_000, cache_read_tokens=1_000_000)
    price = {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cache_read_per_mtok": 0.1}
    assert cost_usd(usage, price) == pytest.approx(3.1)
    assert cost_usd(usage, None) is None
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "Thu, 01 Jan 1970 00:01:00 GMT"}, now=30.0) == 30.0
    assert retry_after({}) is None

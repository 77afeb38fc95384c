"""The `openai` engine through the real SDK against the fake API: Chat Completions and the
Responses API, each with and without streaming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nexus.engines.base import Job, OutgoingMessage, Usage, get_engine
from nexus.engines.openai_api import OpenAIEngine
from tests.fakes import FakeOpenAI, Request, Turn, error, tool_call

MODES = [("chat", False), ("chat", True), ("responses", False), ("responses", True)]
MODE_IDS = ["chat", "chat-stream", "responses", "responses-stream"]


def run(srv: FakeOpenAI, folder: Path, **settings: Any) -> Any:
    settings.setdefault("max_retries", 0)
    env = {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": srv.base_url}
    job = Job(
        "T-2",
        "do the task",
        folder,
        folder,
        model="gpt-test",
        timeout=5.0,
        settings=settings,
        env=env,
    )
    return OpenAIEngine().run(job)


def last_outputs(request: Request) -> list[str]:
    """The tool outputs the engine sent back in `request`, in either API's shape."""
    body = request.body
    if "messages" in body:
        return [m["content"] for m in body["messages"] if m["role"] == "tool"]
    return [i["output"] for i in body["input"] if i.get("type") == "function_call_output"]


def test_engine_is_registered_with_its_key_and_checks_the_api_setting() -> None:
    engine = get_engine("openai")
    assert isinstance(engine, OpenAIEngine)
    assert engine.capabilities.needs_env == ("OPENAI_API_KEY",)
    assert "OPENAI_API_KEY" in (engine.check({}, {}) or "")
    assert engine.check({}, {"OPENAI_API_KEY": "k"}) is None
    assert "unknown api 'assistants'" in (engine.check({"api": "assistants"}, {}) or "")


@pytest.mark.parametrize(("api", "stream"), MODES, ids=MODE_IDS)
def test_text_only_answer(tmp_path: Path, api: str, stream: bool) -> None:
    with FakeOpenAI(["Nothing to change."]) as srv:
        result = run(srv, tmp_path, api=api, stream=stream)
        (req,) = srv.requests
    assert result.ok and result.text == "Nothing to change." and result.model == "gpt-test"
    assert req.path == ("/v1/responses" if api == "responses" else "/v1/chat/completions")
    assert bool(req.body.get("stream")) == stream


@pytest.mark.parametrize(("api", "stream"), MODES, ids=MODE_IDS)
def test_tool_round_trip_writes_inside_and_refuses_outside(
    tmp_path: Path, api: str, stream: bool
) -> None:
    folder = tmp_path / "agent"
    folder.mkdir()
    script = [
        tool_call("write_file", {"path": "../escape.txt", "content": "no"}),
        tool_call("write_file", {"path": "notes/plan.md", "content": "# Plan\n"}),
        Turn(text="Wrote the plan.", tool_calls=tool_call("finish", {"result": "plan"}).tool_calls),
    ]
    with FakeOpenAI(script) as srv:
        result = run(srv, folder, api=api, stream=stream)
        refused, wrote = (last_outputs(r) for r in srv.requests[1:])
    assert result.ok and result.text == "plan"
    assert (folder / "notes" / "plan.md").read_text() == "# Plan\n"
    assert not (tmp_path / "escape.txt").exists()
    assert refused[-1].startswith("refused:") and wrote[-1].startswith("wrote 7 characters")


def test_chat_history_carries_the_assistant_tool_calls(tmp_path: Path) -> None:
    with FakeOpenAI([tool_call("list_files", {"path": "."}), "ok"]) as srv:
        run(srv, tmp_path)
        messages = srv.requests[1].body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    (call,) = messages[2]["tool_calls"]
    assert messages[3]["tool_call_id"] == call["id"]
    assert json.loads(call["function"]["arguments"]) == {"path": "."}


def test_responses_input_carries_the_function_calls(tmp_path: Path) -> None:
    with FakeOpenAI([tool_call("list_files"), "ok"]) as srv:
        run(srv, tmp_path, api="responses")
        body = srv.requests[1].body
    assert body["store"] is False and "finish" in body["instructions"]
    kinds = [i.get("type", i.get("role")) for i in body["input"]]
    assert kinds == ["user", "function_call", "function_call_output"]
    assert body["input"][1]["call_id"] == body["input"][2]["call_id"]


def test_post_message_is_collected(tmp_path: Path) -> None:
    with FakeOpenAI([tool_call("post_message", {"to": "code", "text": "go"}), "sent"]) as srv:
        result = run(srv, tmp_path, api="responses")
    assert result.messages == (OutgoingMessage("code", "go"),)


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_usage_and_cost_are_summed_over_turns(tmp_path: Path, api: str) -> None:
    script = [
        tool_call("list_files", usage={"input_tokens": 400, "output_tokens": 20}),
        Turn(text="done", usage={"input_tokens": 600, "output_tokens": 80}),
    ]
    prices = {"gpt-test": {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}
    with FakeOpenAI(script) as srv:
        result = run(srv, tmp_path, api=api, stream=True, prices=prices)
    assert result.usage == Usage(1000, 100)
    assert result.cost_usd == pytest.approx((1000 * 2.0 + 100 * 8.0) / 1e6)


def test_a_429_then_success_is_retried_by_the_sdk(tmp_path: Path) -> None:
    with FakeOpenAI([error(429, retry_after="0.05"), "fine now"]) as srv:
        result = run(srv, tmp_path, max_retries=2)
        assert len(srv.requests) == 2
    assert result.ok and result.text == "fine now"


def test_a_429_storm_is_a_rate_limited_result(tmp_path: Path) -> None:
    with FakeOpenAI([error(429, retry_after="0.05")] * 3) as srv:
        result = run(srv, tmp_path, api="responses", max_retries=2)
        assert len(srv.requests) == 3
    assert not result.ok and result.rate_limited and result.retry_after == 0.05
    assert (result.reason or "").startswith("openai API rate limited (429): Rate limit reached")


def test_a_500_fails_naming_the_status(tmp_path: Path) -> None:
    with FakeOpenAI([error(500)]) as srv:
        result = run(srv, tmp_path)
    assert not result.ok and not result.rate_limited and "(500)" in (result.reason or "")


def test_a_401_says_to_check_the_key(tmp_path: Path) -> None:
    with FakeOpenAI([error(401)]) as srv:
        result = run(srv, tmp_path, api="responses")
    assert not result.ok and "OPENAI_API_KEY" in (result.reason or "")


def test_a_hang_mid_run_keeps_the_usage_of_earlier_turns(tmp_path: Path) -> None:
    script = [tool_call("list_files", usage={"input_tokens": 10}), Turn(text="late", delay=3)]
    with FakeOpenAI(script) as srv:
        env = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": srv.base_url}
        job = Job("T-3", "p", tmp_path, tmp_path, timeout=0.5, env=env, settings={"max_retries": 0})
        result = OpenAIEngine().run(job)
    assert not result.ok and "did not answer in time" in (result.reason or "")
    assert result.usage.input_tokens == 10 and result.model == OpenAIEngine.default_model


def test_organization_comes_from_the_job_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-of-the-daemon")
    with FakeOpenAI(["ok"]) as srv:
        env = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": srv.base_url, "OPENAI_ORG_ID": "org-1"}
        OpenAIEngine().run(Job("T-4", "p", tmp_path, tmp_path, env=env))
        headers = srv.requests[0].headers
    assert headers.get("openai-organization") == "org-1"
    assert "openai-project" not in headers
    assert headers.get("authorization") == "Bearer k"

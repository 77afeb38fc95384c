"""The fake model API servers, checked with the real official SDKs (no transport mocks)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes import SCRIPT_EXHAUSTED, FakeAnthropic, FakeOpenAI, Turn, error, tool_call

ROOT = Path(__file__).resolve().parents[1]
USER = [{"role": "user", "content": "hi"}]


def claude(srv: FakeAnthropic, retries: int = 0, timeout: float = 5) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=srv.url, api_key="test-key", max_retries=retries, timeout=timeout
    )


def gpt(srv: FakeOpenAI, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key="test-key", max_retries=retries, timeout=5)


# -- Anthropic ---------------------------------------------------------------------------------


def test_anthropic_text_turn_comes_back_as_a_message_with_usage() -> None:
    turn = Turn(text="hello there", usage={"input_tokens": 11, "output_tokens": 7})
    with FakeAnthropic([turn]) as srv:
        msg = claude(srv).messages.create(model="claude-x", max_tokens=50, messages=USER)
        assert srv.requests[0].body["messages"] == USER
    assert msg.content[0].type == "text" and msg.content[0].text == "hello there"
    assert msg.stop_reason == "end_turn" and msg.model == "claude-x"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (11, 7)


def test_anthropic_tool_use_turn_round_trips_in_both_modes() -> None:
    call = tool_call("write_file", {"path": "a.txt", "content": "x" * 40}, text="writing")
    with FakeAnthropic([call, call]) as srv:
        client = claude(srv)
        plain = client.messages.create(model="m", max_tokens=50, messages=USER)
        with client.messages.stream(model="m", max_tokens=50, messages=USER) as stream:
            streamed = stream.get_final_message()
    for msg in (plain, streamed):
        assert msg.stop_reason == "tool_use"
        assert [b.type for b in msg.content] == ["text", "tool_use"]
        block = msg.content[1]
        assert block.type == "tool_use"
        assert block.name == "write_file" and block.input == {"path": "a.txt", "content": "x" * 40}


def test_anthropic_stream_delivers_text_in_several_deltas() -> None:
    with (
        FakeAnthropic(["a longer answer that arrives in pieces"]) as srv,
        claude(srv).messages.stream(model="m", max_tokens=50, messages=USER) as stream,
    ):
        deltas = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(deltas) > 1 and "".join(deltas) == "a longer answer that arrives in pieces"
    assert final.usage.output_tokens > 0


def test_anthropic_wire_format_with_beta_query_is_sse() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": USER, "stream": True}
    with FakeAnthropic(["hi"]) as srv:
        req = urllib.request.Request(
            srv.url + "/v1/messages?beta=true",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", "x-api-key": "k"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read().decode()
            assert resp.headers["content-type"].startswith("text/event-stream")
        assert srv.requests[0].query == {"beta": "true"}
    events = [line.split(": ", 1)[1] for line in raw.splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert {
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    } <= set(events)


def test_anthropic_errors_have_the_api_error_body_and_retry_after() -> None:
    with FakeAnthropic([error(429, retry_after=7), error(529), error(401)]) as srv:
        client = claude(srv)
        with pytest.raises(anthropic.RateLimitError) as limited:
            client.messages.create(model="m", max_tokens=5, messages=USER)
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            client.messages.create(model="m", max_tokens=5, messages=USER)
        with pytest.raises(anthropic.AuthenticationError):
            client.messages.create(model="m", max_tokens=5, messages=USER)
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": limited.value.body["error"]["message"]},
    }
    assert overloaded.value.status_code == 529
    assert overloaded.value.body["error"]["type"] == "overloaded_error"


def test_anthropic_sdk_retries_past_a_scripted_429() -> None:
    with FakeAnthropic([error(429, retry_after=0.01), "after the retry"]) as srv:
        msg = claude(srv, retries=2).messages.create(model="m", max_tokens=5, messages=USER)
        assert len(srv.model_requests()) == 2
    assert msg.content[0].text == "after the retry"


def test_title_side_question_is_answered_without_using_the_script() -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    side = {
        "model": "m",
        "max_tokens": 50,
        "messages": USER,
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }
    with FakeAnthropic(["the real answer"], title="Fix the bug") as srv:
        client = claude(srv)
        title = client.messages.create(**side)
        answer = client.messages.create(model="m", max_tokens=5, messages=USER)
        assert [r.side for r in srv.requests] == [True, False]
    assert json.loads(title.content[0].text) == {"title": "Fix the bug"}
    assert answer.content[0].text == "the real answer"


def test_count_tokens_does_not_use_the_script() -> None:
    with FakeAnthropic(["kept"]) as srv:
        client = claude(srv)
        assert client.messages.count_tokens(model="m", messages=USER).input_tokens > 0
        assert srv.remaining == 1


def test_exhausted_script_answers_with_a_clear_text() -> None:
    with FakeAnthropic([]) as srv:
        msg = claude(srv).messages.create(model="m", max_tokens=5, messages=USER)
        assert srv.exhausted == 1
    assert msg.content[0].text == SCRIPT_EXHAUSTED


def test_responder_and_callable_turns_see_the_request_body() -> None:
    def responder(body: Any) -> str | None:
        return "echo " + body["messages"][0]["content"] if body.get("metadata") else None

    script = [lambda body: f"max_tokens was {body['max_tokens']}"]
    with FakeAnthropic(script, responder=responder) as srv:
        client = claude(srv)
        echoed = client.messages.create(
            model="m", max_tokens=5, messages=USER, metadata={"user_id": "u"}
        )
        scripted = client.messages.create(model="m", max_tokens=9, messages=USER)
    assert echoed.content[0].text == "echo hi"
    assert scripted.content[0].text == "max_tokens was 9"


def test_delay_turn_makes_the_client_time_out() -> None:
    with (
        FakeAnthropic([Turn(text="late", delay=2)]) as srv,
        pytest.raises(anthropic.APITimeoutError),
    ):
        claude(srv, timeout=0.3).messages.create(model="m", max_tokens=5, messages=USER)


def test_concurrent_requests_each_take_their_own_turn() -> None:
    answers: list[str] = []
    with FakeAnthropic([f"turn {i}" for i in range(8)]) as srv:
        client = claude(srv)

        def ask() -> None:
            msg = client.messages.create(model="m", max_tokens=5, messages=USER)
            answers.append(msg.content[0].text)

        threads = [threading.Thread(target=ask) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(srv.requests) == 8
    assert sorted(answers) == sorted(f"turn {i}" for i in range(8))


def test_requests_record_path_headers_and_body() -> None:
    with FakeAnthropic(["x"]) as srv:
        claude(srv).messages.create(model="claude-x", max_tokens=5, messages=USER)
        (req,) = srv.requests
    assert (req.method, req.path) == ("POST", "/v1/messages")
    assert "test-key" in (req.headers.get("x-api-key", "") + req.headers.get("authorization", ""))
    assert req.body["model"] == "claude-x"
    assert "test-key" not in json.dumps(req.redacted())


# -- OpenAI ------------------------------------------------------------------------------------


def test_openai_chat_text_and_tool_calls_without_streaming() -> None:
    script = ["plain answer", tool_call("read_file", {"path": "a.txt"})]
    with FakeOpenAI(script) as srv:
        client = gpt(srv)
        first = client.chat.completions.create(model="g", messages=USER)
        second = client.chat.completions.create(model="g", messages=USER)
    assert first.choices[0].message.content == "plain answer"
    assert first.usage is not None and first.usage.total_tokens > 0
    (call,) = second.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.name == "read_file"
    assert json.loads(call.function.arguments) == {"path": "a.txt"}
    assert second.choices[0].finish_reason == "tool_calls"


def test_openai_chat_stream_carries_argument_deltas_and_usage() -> None:
    long_input = {"path": "notes/a-rather-long-file-name.txt", "content": "y" * 30}
    with FakeOpenAI([tool_call("write_file", long_input, usage={"input_tokens": 5})]) as srv:
        chunks = list(
            gpt(srv).chat.completions.create(
                model="g",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    argument_deltas = [
        tc.function.arguments
        for c in chunks
        for ch in c.choices
        for tc in ch.delta.tool_calls or ()
        if tc.function and tc.function.arguments
    ]
    assert len(argument_deltas) > 1 and json.loads("".join(argument_deltas)) == long_input
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 5


def test_openai_chat_stream_helper_accumulates_the_completion() -> None:
    with (
        FakeOpenAI([tool_call("finish", {"result": "r"}, text="before")]) as srv,
        gpt(srv).chat.completions.stream(model="g", messages=USER) as stream,
    ):
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "before"
    assert message.tool_calls and message.tool_calls[0].function.name == "finish"


def test_openai_responses_without_streaming() -> None:
    with FakeOpenAI(["resp text", tool_call("list_files", {"path": "."})]) as srv:
        client = gpt(srv)
        text_resp = client.responses.create(model="g", input="hi")
        call_resp = client.responses.create(model="g", input="hi")
    assert text_resp.output_text == "resp text" and text_resp.status == "completed"
    assert text_resp.usage is not None and text_resp.usage.output_tokens > 0
    (item,) = call_resp.output
    assert item.type == "function_call" and item.name == "list_files"
    assert json.loads(item.arguments) == {"path": "."}


def test_openai_responses_stream_events_and_final_response() -> None:
    turn = tool_call("finish", {"result": "done"}, text="all good", usage={"output_tokens": 4})
    with FakeOpenAI([turn, turn]) as srv:
        client = gpt(srv)
        events = [e.type for e in client.responses.create(model="g", input="hi", stream=True)]
        with client.responses.stream(model="g", input="hi") as stream:
            final = stream.get_final_response()
    assert events[0] == "response.created" and events[-1] == "response.completed"
    assert {
        "response.output_item.added",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.output_item.done",
    } <= set(events)
    assert final.output_text == "all good"
    assert [o.type for o in final.output] == ["message", "function_call"]
    assert final.usage is not None and final.usage.output_tokens == 4


def test_openai_errors_have_the_api_error_body() -> None:
    with FakeOpenAI([error(429, retry_after="2"), error(401), error(500, "boom")]) as srv:
        client = gpt(srv)
        with pytest.raises(openai.RateLimitError) as limited:
            client.responses.create(model="g", input="hi")
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="g", messages=USER)
        with pytest.raises(openai.InternalServerError) as broken:
            client.chat.completions.create(model="g", messages=USER)
    assert limited.value.response.headers["retry-after"] == "2"
    assert limited.value.code == "rate_limit_exceeded"
    assert broken.value.message.endswith("boom") or "boom" in str(broken.value.body)


# -- as a separate process ---------------------------------------------------------------------


@pytest.mark.parametrize("module", ["anthropic_server", "openai_server"])
def test_server_runs_as_a_process_printing_its_port(module: str, tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["from the process", {"error": 500}]))
    record = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            f"tests.fakes.{module}",
            "--script",
            str(script),
            "--record",
            str(record),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("PORT=")
        url = f"http://127.0.0.1:{first.removeprefix('PORT=')}"
        if module == "anthropic_server":
            client = anthropic.Anthropic(base_url=url, api_key="secret-key", max_retries=0)
            msg = client.messages.create(model="m", max_tokens=5, messages=USER)
            assert msg.content[0].text == "from the process"
            with pytest.raises(anthropic.InternalServerError):
                client.messages.create(model="m", max_tokens=5, messages=USER)
        else:
            oa = openai.OpenAI(base_url=url + "/v1", api_key="secret-key", max_retries=0)
            assert oa.responses.create(model="g", input="hi").output_text == "from the process"
            with pytest.raises(openai.InternalServerError):
                oa.responses.create(model="g", input="hi")
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
    lines = record.read_text().splitlines()
    assert len(lines) == 2 and "secret-key" not in record.read_text()
    assert json.loads(lines[0])["body"]["model"] in ("m", "g")

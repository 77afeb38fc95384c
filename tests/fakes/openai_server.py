"""A fake OpenAI API on 127.0.0.1: Chat Completions and Responses, for the SDK and Codex.

    with FakeOpenAI(["hello"]) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="test")   # base_url ends in /v1

`POST /v1/chat/completions`: JSON, or with `stream: true` `data: {chunk}` lines ending in
`data: [DONE]` (text deltas, tool_calls with streamed argument deltas, a usage chunk when
`stream_options.include_usage` is set).  `POST /v1/responses`: JSON, or with `stream: true`
named SSE events (response.created, response.in_progress, response.output_item.added,
response.content_part.added, response.output_text.delta/done, response.function_call_arguments
.delta/done, response.output_item.done, response.completed with usage).  Errors carry the API's
`{"error": {message, type, param, code}}` body and an optional `retry-after`.

As a process: `python -m tests.fakes.openai_server --script FILE.json [--port 0]`.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from tests.fakes.http_base import (
    Exchange,
    FakeServer,
    Turn,
    estimate_tokens,
    now,
    pieces,
    serve_main,
)

ERRORS = {  # status -> (type, code, message)
    400: ("invalid_request_error", None, "Invalid request"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided"),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden"),
    404: ("invalid_request_error", "not_found", "Not found"),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests"),
    500: ("server_error", None, "The server had an error while processing your request"),
    503: ("server_error", None, "The engine is currently overloaded"),
}


class FakeOpenAI(FakeServer):
    base_path = "/v1"
    routes: ClassVar[dict[str, str]] = {
        "/v1/chat/completions": "chat_completions",
        "/v1/responses": "responses",
    }

    # -- shared ------------------------------------------------------------------------------
    def _calls(self, turn: Turn, n: int) -> list[tuple[str, str, str]]:
        """(call id, name, JSON arguments) for each tool call of the turn."""
        return [
            (c.id or f"call_fake_{n}_{i}", c.name, json.dumps(dict(c.input)))
            for i, c in enumerate(turn.tool_calls)
        ]

    def _tokens(self, body: dict[str, Any], turn: Turn, prompt_key: str) -> tuple[int, int]:
        used = dict(turn.usage or {})
        prompt = body.get(prompt_key) or body.get("messages") or ""
        out = turn.text + "".join(json.dumps(dict(c.input)) for c in turn.tool_calls)
        return (
            used.get("input_tokens", estimate_tokens(prompt)),
            used.get("output_tokens", estimate_tokens(out)),
        )

    def send_error_turn(self, ex: Exchange, turn: Turn) -> None:
        kind, code, message = ERRORS.get(turn.status, ("server_error", None, "error"))
        body = {
            "error": {
                "message": turn.message or message,
                "type": turn.error_type or kind,
                "param": None,
                "code": code,
            }
        }
        headers = {"x-request-id": f"req_fake_{self.next_id()}", **self.retry_headers(turn)}
        ex.send_json(turn.status, body, headers)

    # -- Chat Completions --------------------------------------------------------------------
    def chat_completions(self, ex: Exchange, turn: Turn) -> None:
        body = ex.body or {}
        n = self.next_id()
        calls = self._calls(turn, n)
        prompt_tokens, completion_tokens = self._tokens(body, turn, "messages")
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        finish = turn.stop_reason or ("tool_calls" if calls else "stop")
        head = {
            "id": f"chatcmpl-fake-{n}",
            "created": now(),
            "model": body.get("model", "gpt-fake"),
            "system_fingerprint": None,
        }
        if not body.get("stream"):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": turn.text or None,
                "refusal": None,
            }
            if calls:
                message["tool_calls"] = [
                    {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                    for cid, name, args in calls
                ]
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ex.send_json(
                200, {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
            return
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        head = {**head, "object": "chat.completion.chunk"}
        extra = {"usage": None} if with_usage else {}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            ex.send_event({**head, "choices": [choice], **extra})

        ex.start_sse()
        chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in pieces(turn.text):
            chunk({"content": piece})
        for index, (cid, name, args) in enumerate(calls):
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": cid,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
            for piece in pieces(args):
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        chunk({}, finish)
        if with_usage:
            ex.send_event({**head, "choices": [], "usage": usage})
        ex.send_event("[DONE]")
        ex.end_sse()

    # -- Responses ---------------------------------------------------------------------------
    def responses(self, ex: Exchange, turn: Turn) -> None:
        body = ex.body or {}
        n = self.next_id()
        items: list[dict[str, Any]] = []
        if turn.text:
            items.append(
                {
                    "type": "message",
                    "id": f"msg_fake_{n}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [_output_text(turn.text)],
                }
            )
        for i, (cid, name, args) in enumerate(self._calls(turn, n)):
            items.append(
                {
                    "type": "function_call",
                    "id": f"fc_fake_{n}_{i}",
                    "call_id": cid,
                    "name": name,
                    "arguments": args,
                    "status": "completed",
                }
            )
        input_tokens, output_tokens = self._tokens(body, turn, "input")
        response = {
            "id": f"resp_fake_{n}",
            "object": "response",
            "created_at": now(),
            "status": "completed",
            "model": body.get("model", "gpt-fake"),
            "output": items,
            "instructions": body.get("instructions"),
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "error": None,
            "incomplete_details": None,
            "metadata": {},
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
        }
        if body.get("stream"):
            self._stream_response(ex, response)
        else:
            ex.send_json(200, response, {"x-request-id": f"req_fake_{n}"})

    def _stream_response(self, ex: Exchange, response: dict[str, Any]) -> None:
        seq = 0

        def event(kind: str, **fields: Any) -> None:
            nonlocal seq
            ex.send_event({"type": kind, "sequence_number": seq, **fields}, kind)
            seq += 1

        ex.start_sse()
        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        event("response.created", response=pending)
        event("response.in_progress", response=pending)
        for index, item in enumerate(response["output"]):
            at = {"output_index": index, "item_id": item["id"]}
            if item["type"] == "message":
                text = item["content"][0]["text"]
                event(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "status": "in_progress", "content": []},
                )
                event("response.content_part.added", **at, content_index=0, part=_output_text(""))
                for piece in pieces(text):
                    event(
                        "response.output_text.delta",
                        **at,
                        content_index=0,
                        delta=piece,
                        logprobs=[],
                    )
                event("response.output_text.done", **at, content_index=0, text=text, logprobs=[])
                event("response.content_part.done", **at, content_index=0, part=_output_text(text))
            else:
                event(
                    "response.output_item.added",
                    output_index=index,
                    item={**item, "status": "in_progress", "arguments": ""},
                )
                for piece in pieces(item["arguments"]):
                    event("response.function_call_arguments.delta", **at, delta=piece)
                event("response.function_call_arguments.done", **at, arguments=item["arguments"])
            event("response.output_item.done", output_index=index, item=item)
        event("response.completed", response=response)
        ex.end_sse()


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


if __name__ == "__main__":
    raise SystemExit(serve_main(FakeOpenAI))

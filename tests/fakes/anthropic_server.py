"""A fake Anthropic Messages API on 127.0.0.1 for the SDK and the Claude Code CLI.

    with FakeAnthropic(["hello"]) as srv:
        client = anthropic.Anthropic(base_url=srv.base_url, api_key="test")

Speaks `POST /v1/messages` (also `?beta=true`, as Claude Code sends it), non-streaming JSON and
streaming SSE (message_start, ping, content_block_start/delta/stop with text_delta and
input_json_delta, message_delta with stop_reason and usage, message_stop), errors with the API's
error body and an optional `retry-after`, and `POST /v1/messages/count_tokens`.

A request with no tools and a json_schema output format is Claude Code asking for a session
title: it is answered with `{"title": …}` (an instance of the requested schema) without taking a
turn of the script (`answer_side_questions=False` turns that off).

As a process: `python -m tests.fakes.anthropic_server --script FILE.json [--port 0]`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar

from tests.fakes.http_base import (
    Exchange,
    FakeServer,
    Turn,
    TurnLike,
    estimate_tokens,
    pieces,
    serve_main,
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    401: "invalid x-api-key",
    429: "Number of request tokens has exceeded your per-minute rate limit",
    529: "Overloaded",
}


class FakeAnthropic(FakeServer):
    routes: ClassVar[dict[str, str]] = {"/v1/messages": "messages"}
    utility_routes: ClassVar[dict[str, str]] = {"/v1/messages/count_tokens": "count_tokens"}

    def __init__(
        self,
        script: Iterable[TurnLike] = (),
        *,
        title: str = "Fake session",
        answer_side_questions: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(script, **kw)
        self.title = title
        self.answer_side_questions = answer_side_questions

    def side_turn(self, body: Any) -> Turn | None:
        schema = structured_output_schema(body)
        if not self.answer_side_questions or schema is None or (body or {}).get("tools"):
            return None
        return Turn(text=json.dumps(instance_of(schema, self.title)))

    def count_tokens(self, ex: Exchange) -> None:
        ex.send_json(200, {"input_tokens": estimate_tokens(ex.body)})

    def messages(self, ex: Exchange, turn: Turn) -> None:
        message = self.build_message(ex.body or {}, turn)
        if (ex.body or {}).get("stream"):
            self.stream_message(ex, message)
        else:
            ex.send_json(200, message, {"request-id": f"req_fake_{self.next_id()}"})

    def build_message(self, body: dict[str, Any], turn: Turn) -> dict[str, Any]:
        n = self.next_id()
        content: list[dict[str, Any]] = []
        if turn.text:
            content.append({"type": "text", "text": turn.text})
        for i, call in enumerate(turn.tool_calls):
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id or f"toolu_fake_{n}_{i}",
                    "name": call.name,
                    "input": dict(call.input),
                }
            )
        usage = {
            "input_tokens": estimate_tokens(body.get("messages", [])),
            "output_tokens": estimate_tokens(content or ""),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            **(turn.usage or {}),
        }
        return {
            "id": f"msg_fake_{n:04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-fake"),
            "content": content,
            "stop_reason": turn.stop_reason or ("tool_use" if turn.tool_calls else "end_turn"),
            "stop_sequence": None,
            "usage": usage,
        }

    def stream_message(self, ex: Exchange, message: dict[str, Any]) -> None:
        usage = message["usage"]
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        ex.start_sse({"request-id": f"req_fake_{self.next_id()}"})
        ex.send_event({"type": "message_start", "message": start}, "message_start")
        ex.send_event({"type": "ping"}, "ping")
        for index, block in enumerate(message["content"]):
            opening: dict[str, Any]
            if block["type"] == "text":
                opening = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
            else:
                opening = {**block, "input": {}}
                raw = json.dumps(block["input"])
                deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces(raw)]
            ex.send_event(
                {"type": "content_block_start", "index": index, "content_block": opening},
                "content_block_start",
            )
            for delta in deltas:
                ex.send_event(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            ex.send_event({"type": "content_block_stop", "index": index}, "content_block_stop")
        ex.send_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
            "message_delta",
        )
        ex.send_event({"type": "message_stop"}, "message_stop")
        ex.end_sse()

    def send_error_turn(self, ex: Exchange, turn: Turn) -> None:
        kind = turn.error_type or ERROR_TYPES.get(turn.status, "api_error")
        message = turn.message or ERROR_MESSAGES.get(turn.status, f"fake {kind}")
        headers = {"request-id": f"req_fake_{self.next_id()}", **self.retry_headers(turn)}
        body = {"type": "error", "error": {"type": kind, "message": message}}
        ex.send_json(turn.status, body, headers)


def structured_output_schema(body: Any) -> dict[str, Any] | None:
    """The JSON schema a request asks the answer to follow, if any (old and new field names)."""
    if not isinstance(body, dict):
        return None
    for fmt in (body.get("output_format"), (body.get("output_config") or {}).get("format")):
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            schema = fmt.get("schema")
            return schema if isinstance(schema, dict) else {}
    return None


def instance_of(schema: dict[str, Any], title: str) -> Any:
    """A small value that fits `schema`; string fields named `title` get `title`."""
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {"title": {"type": "string"}}
        return {
            name: (title if name == "title" else instance_of(sub, title))
            for name, sub in props.items()
        }
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    if "enum" in schema:
        return schema["enum"][0]
    return title


if __name__ == "__main__":
    raise SystemExit(serve_main(FakeAnthropic))

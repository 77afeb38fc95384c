"""The `anthropic` engine: the Messages API through the official SDK, with the workspace tools.

Settings: `model`, `base_url` (else ANTHROPIC_BASE_URL), `max_retries` (2), `max_turns` (30),
`max_tokens` (8192), `stream` (false), `prices` (model → input_per_mtok, output_per_mtok).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from nexus.engines.base import Job, Usage
from nexus.engines.toolbox import (
    TOOLS,
    ApiEngine,
    Call,
    Conversation,
    History,
    Reply,
    ToolOutcome,
    system_prompt,
)


class AnthropicEngine(ApiEngine):
    name: ClassVar[str] = "anthropic"
    sdk_module = "anthropic"
    key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"
    default_base_url = "https://api.anthropic.com"
    default_model = "claude-sonnet-5-5"

    def client(self, sdk: Any, job: Job, options: dict[str, Any]) -> Any:
        return sdk.Anthropic(**options)

    def conversation(self, client: Any, job: Job, model: str) -> Conversation:
        return _Messages(client, job, model)


class _Messages(History):
    history_key = "messages"
    max_tokens_key = "max_tokens"
    default_max_tokens = 8192  # the Messages API requires a limit

    def __init__(self, client: Any, job: Job, model: str) -> None:
        tools = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
            for t in TOOLS
        ]
        request = {"model": model, "system": system_prompt(job), "tools": tools}
        super().__init__(client, job, request, [{"role": "user", "content": job.prompt}])

    def send(self, timeout: float | None) -> Reply:
        request = self.next_request(timeout)
        if self.stream:
            with self.client.messages.stream(**request) as stream:
                message = stream.get_final_message()
        else:
            message = self.client.messages.create(**request)
        content: list[dict[str, Any]] = []
        texts: list[str] = []
        calls: list[Call] = []
        for block in message.content:
            if block.type == "text":
                texts.append(str(block.text))
                content.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                calls.append(Call(str(block.id), str(block.name), dict(block.input or {})))
                content.append(
                    {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
                )
        self.history.append({"role": "assistant", "content": content})
        u = message.usage
        usage = Usage(
            input_tokens=int(u.input_tokens or 0),
            output_tokens=int(u.output_tokens or 0),
            cache_read_tokens=int(u.cache_read_input_tokens or 0),
            cache_write_tokens=int(u.cache_creation_input_tokens or 0),
        )
        return Reply("\n".join(texts), tuple(calls), usage)

    def add_results(self, results: Sequence[tuple[Call, ToolOutcome]]) -> None:
        blocks = [
            {
                "type": "tool_result",
                "tool_use_id": call.id,
                "content": outcome.text,
                "is_error": outcome.is_error,
            }
            for call, outcome in results
        ]
        self.history.append({"role": "user", "content": blocks})

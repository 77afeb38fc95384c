"""The `openai` engine: Chat Completions (default) or the Responses API (`api: responses`)
through the official SDK, with the workspace tools.

Settings: `model`, `api` (chat | responses), `base_url` (else OPENAI_BASE_URL; it ends in /v1),
`max_retries` (2), `max_turns` (30), `max_tokens` (unset: the API's default), `stream` (false),
`prices` (model → input_per_mtok, output_per_mtok).
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


class OpenAIEngine(ApiEngine):
    name: ClassVar[str] = "openai"
    sdk_module = "openai"
    key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    default_base_url = "https://api.openai.com/v1"
    default_model = "gpt-5.5"

    def check(self, settings: Any, env: Any) -> str | None:
        api = settings.get("api", "chat")
        if api not in ("chat", "responses"):
            return f"engine openai: unknown api {api!r} in its settings (use chat or responses)"
        return super().check(settings, env)

    def client(self, sdk: Any, job: Job, options: dict[str, Any]) -> Any:
        client = sdk.OpenAI(**options)
        # The SDK fills these from this process's environment; the job's environment rules.
        client.organization = job.env.get("OPENAI_ORG_ID")
        client.project = job.env.get("OPENAI_PROJECT_ID")
        return client

    def conversation(self, client: Any, job: Job, model: str) -> Conversation:
        if job.settings.get("api") == "responses":
            return _Responses(client, job, model)
        return _Chat(client, job, model)


def _usage(prompt: Any, completion: Any, details: Any) -> Usage:
    # OpenAI counts cached prompt tokens inside the prompt; nexus keeps them apart (as Anthropic).
    cached = int(getattr(details, "cached_tokens", 0) or 0)
    return Usage(int(prompt or 0) - cached, int(completion or 0), cache_read_tokens=cached)


class _Chat(History):
    history_key = "messages"
    max_tokens_key = "max_completion_tokens"

    def __init__(self, client: Any, job: Job, model: str) -> None:
        tools = [
            {"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": dict(t.parameters)}}
            for t in TOOLS
        ]  # fmt: skip
        opening = [
            {"role": "system", "content": system_prompt(job)},
            {"role": "user", "content": job.prompt},
        ]
        super().__init__(client, job, {"model": model, "tools": tools}, opening)

    def send(self, timeout: float | None) -> Reply:
        request = self.next_request(timeout)
        if self.stream:
            text, calls, usage = self._read_stream(
                self.client.chat.completions.create(
                    **request, stream=True, stream_options={"include_usage": True}
                )
            )
        else:
            completion = self.client.chat.completions.create(**request)
            message = completion.choices[0].message
            text = str(message.content or "")
            calls = [
                Call(str(tc.id), str(tc.function.name), str(tc.function.arguments))
                for tc in message.tool_calls or ()
            ]
            u = completion.usage
            usage = _usage(u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details)
        turn: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            turn["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
        self.history.append(turn)
        return Reply(text, tuple(calls), usage)

    @staticmethod
    def _read_stream(stream: Any) -> tuple[str, list[Call], Usage]:
        parts: list[str] = []
        slots: dict[int, dict[str, str]] = {}
        usage = Usage()
        with stream:
            for chunk in stream:
                if chunk.usage is not None:
                    u = chunk.usage
                    usage = _usage(u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details)
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        parts.append(delta.content)
                    for tc in delta.tool_calls or ():
                        slot = slots.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = tc.id or slot["id"]
                        if tc.function is not None:
                            slot["name"] = tc.function.name or slot["name"]
                            slot["arguments"] += tc.function.arguments or ""
        calls = [Call(s["id"], s["name"], s["arguments"]) for _, s in sorted(slots.items())]
        return "".join(parts), calls, usage

    def add_results(self, results: Sequence[tuple[Call, ToolOutcome]]) -> None:
        for call, outcome in results:
            self.history.append({"role": "tool", "tool_call_id": call.id, "content": outcome.text})


class _Responses(History):
    history_key = "input"
    max_tokens_key = "max_output_tokens"

    def __init__(self, client: Any, job: Job, model: str) -> None:
        tools = [
            {"type": "function", "name": t.name, "description": t.description,
             "parameters": dict(t.parameters), "strict": False}
            for t in TOOLS
        ]  # fmt: skip
        request = {
            "model": model,
            "instructions": system_prompt(job),
            "store": False,  # the history travels with each request; nothing is kept upstream
            "tools": tools,
        }
        super().__init__(client, job, request, [{"role": "user", "content": job.prompt}])

    def send(self, timeout: float | None) -> Reply:
        request = self.next_request(timeout)
        if self.stream:
            response = None
            with self.client.responses.create(**request, stream=True) as stream:
                for event in stream:
                    if event.type in (
                        "response.completed",
                        "response.incomplete",
                        "response.failed",
                    ):
                        response = event.response
                    elif event.type == "error":
                        raise RuntimeError(f"the response stream failed: {event.message}")
            if response is None:
                raise RuntimeError("the response stream ended before response.completed")
        else:
            response = self.client.responses.create(**request)
        if response.status == "failed" and response.error is not None:
            raise RuntimeError(f"the response failed: {response.error.message}")
        texts: list[str] = []
        calls: list[Call] = []
        for item in response.output:
            if item.type == "message":
                texts += [str(p.text) for p in item.content if p.type == "output_text"]
            elif item.type == "function_call":
                calls.append(Call(str(item.call_id), str(item.name), str(item.arguments)))
        text = "".join(texts)
        if text:
            self.history.append({"role": "assistant", "content": text})
        self.history += [
            {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
            for c in calls
        ]
        u = response.usage
        usage = (
            Usage()
            if u is None
            else _usage(u.input_tokens, u.output_tokens, u.input_tokens_details)
        )
        return Reply(text, tuple(calls), usage)

    def add_results(self, results: Sequence[tuple[Call, ToolOutcome]]) -> None:
        self.history += [
            {"type": "function_call_output", "call_id": call.id, "output": outcome.text}
            for call, outcome in results
        ]

"""The `claude-code` engine: the Claude Code CLI in headless mode (`claude -p`).

Command line (bracketed parts only when the job or the settings ask for them)::

    claude -p --output-format stream-json --verbose --permission-mode acceptEdits
           [--model M] [--append-system-prompt PERSONA] [--resume SESSION]
           [--allowedTools T...] [--disallowedTools T...] [--max-turns N]
           [--mcp-config FILE...] [--add-dir DIR...] [extra_args...] -- PROMPT

The prompt comes last, after `--`, because `--allowedTools`, `--add-dir` and `--mcp-config`
take a variable number of values and would otherwise swallow it (and a prompt may start with a
dash).  Settings (`engines.claude-code` in nexus.yaml, then the role's, then the task's):
`binary`, `output_format` (stream-json | json), `permission_mode` (default acceptEdits; never
bypassPermissions unless set), `allowed_tools`, `disallowed_tools`, `max_turns`, `mcp_config`,
`add_dirs` (paths relative to the workspace; `mcp_config` may also be inline JSON),
`extra_args`.

The outcome follows AGENT_CLIS.md: `is_error` and the exit code decide, never `subtype`.  An
API 429/529 or a usage limit is `rate_limited`; a `--resume` of a session the CLI no longer
knows is retried once as a fresh session and reported in `session_replaced`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, ClassVar

from nexus import proc
from nexus.engines.base import Capabilities, EngineResult, Job, Usage
from nexus.engines.cli_common import (
    CliEngine,
    as_float,
    as_int,
    ended_early,
    field,
    forward,
    iter_json_lines,
    looks_rate_limited,
    parse_json_object,
    remaining,
    retry_after_from,
    setting_list,
    setting_path,
    snippet,
    tail,
    text_field,
)

DEFAULT_PERMISSION_MODE = "acceptEdits"
_UNKNOWN_SESSION = ("No conversation found with session ID", "does not match any session title")
_RATE_LIMIT_STATUS = (429, 529)


class ClaudeCodeEngine(CliEngine):
    name: ClassVar[str] = "claude-code"
    capabilities: ClassVar[Capabilities] = Capabilities(binary="claude", can_resume=True)
    install_hint: ClassVar[str] = "npm install -g @anthropic-ai/claude-code@2.1.330"

    def run_with(self, job: Job, binary: str) -> EngineResult:
        started = time.monotonic()
        result = self._attempt(job, binary, job.session, job.timeout)
        if isinstance(result, proc.ProcResult):
            # The session expired or lives in another config dir: start afresh, say so.
            forward(job, f"claude: session {job.session} not found, starting a new session")
            second = self._attempt(job, binary, None, remaining(job, started))
            assert isinstance(second, EngineResult)
            return replace(
                second, session_replaced=job.session, duration=time.monotonic() - started
            )
        return result

    def _attempt(
        self, job: Job, binary: str, session: str | None, timeout: float | None
    ) -> EngineResult | proc.ProcResult:
        """One run of the CLI.  Returns the raw process only when it refused `--resume`."""
        stream = str(job.settings.get("output_format") or "stream-json") != "json"
        outcome = self.launch(job, build_argv(job, binary, session, stream), timeout, stream)
        if isinstance(outcome, EngineResult):
            return outcome
        if session and outcome.returncode != 0 and _unknown_session(outcome):
            return outcome
        return interpret(job, outcome, stream)

    def describe(self, event: dict[str, Any]) -> list[str]:
        return describe_event(event)


def build_argv(job: Job, binary: str, session: str | None, stream: bool) -> list[str]:
    settings = job.settings
    argv = [binary, "-p", "--output-format"]
    argv += ["stream-json", "--verbose"] if stream else ["json"]
    argv += ["--permission-mode", str(settings.get("permission_mode") or DEFAULT_PERMISSION_MODE)]
    if job.model:
        argv += ["--model", job.model]
    if job.system_prompt.strip():
        argv += ["--append-system-prompt", job.system_prompt]
    if session:
        argv += ["--resume", session]
    for key, flag in (
        ("allowed_tools", "--allowedTools"),
        ("disallowed_tools", "--disallowedTools"),
    ):
        tools = setting_list(settings, key)
        if tools:
            argv += [flag, *tools]
    if settings.get("max_turns"):
        argv += ["--max-turns", str(as_int(settings["max_turns"]))]
    for key, flag in (("mcp_config", "--mcp-config"), ("add_dirs", "--add-dir")):
        paths = setting_path(settings, key, job.workspace)
        if paths:
            argv += [flag, *paths]
    argv += setting_list(settings, "extra_args")
    return [*argv, "--", job.prompt]


def interpret(job: Job, outcome: proc.ProcResult, stream: bool) -> EngineResult:
    """The `EngineResult` of one finished (or killed) `claude -p` process."""
    events = list(iter_json_lines(outcome.stdout)) if stream else []
    init = next((e for e in events if e.get("type") == "system" and e.get("subtype") == "init"), {})
    if stream:
        final = next((e for e in reversed(events) if e.get("type") == "result"), None)
    else:
        final = parse_json_object(outcome.stdout)
    session = (final or {}).get("session_id") or init.get("session_id")
    model = _model(init, final or {}) or job.model
    early = ended_early(outcome, job.timeout, session=session, model=model)
    if early is not None:
        return early
    if final is None:
        stderr = outcome.stderr
        return EngineResult.failure(
            f"claude produced no result: {outcome.describe()}",
            session=session,
            model=model,
            rate_limited=looks_rate_limited(stderr),
            duration=outcome.duration,
        )
    text = text_field(final, "result")
    common: dict[str, Any] = {
        "session": session,
        "usage": _usage(final.get("usage")),
        "cost_usd": as_float(final.get("total_cost_usd")),
        "model": model,
        "duration": outcome.duration,
    }
    if not final.get("is_error") and outcome.returncode == 0:
        return EngineResult(ok=True, text=text, **common)
    return _failure(job, outcome, final, text, common)


def _failure(
    job: Job, outcome: proc.ProcResult, final: dict[str, Any], text: str, common: dict[str, Any]
) -> EngineResult:
    status = final.get("api_error_status")
    errors = [str(e) for e in final.get("errors") or []]
    detail = text or "; ".join(errors) or tail(outcome.stderr) or outcome.describe()
    rate_limited = status in _RATE_LIMIT_STATUS or (
        status is None and looks_rate_limited(text, *errors)
    )
    if rate_limited:
        code = f" (HTTP {status})" if status else ""
        reason = f"claude is rate-limited{code}: {detail}"
        return EngineResult.failure(
            reason, rate_limited=True, retry_after=retry_after_from(detail), **common
        )
    if final.get("subtype") == "error_max_turns":
        limit = job.settings.get("max_turns") or final.get("num_turns")
        reason = f"claude stopped at the turn limit (max_turns {limit}) before finishing"
    elif status in (401, 403):
        reason = (
            f"claude was refused by the API (HTTP {status}): {detail}; check ANTHROPIC_API_KEY "
            "(or log in with `claude`), then run `nexus doctor`"
        )
    elif status:
        reason = f"claude API error (HTTP {status}): {detail}"
    elif final.get("is_error"):
        reason = f"claude reported an error: {detail}"
    else:
        reason = f"claude exited with code {outcome.returncode}: {detail}"
    return EngineResult.failure(reason, **common)


def _unknown_session(outcome: proc.ProcResult) -> bool:
    said = outcome.stderr + outcome.stdout
    return any(marker in said for marker in _UNKNOWN_SESSION)


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    return Usage(
        input_tokens=as_int(raw.get("input_tokens")),
        output_tokens=as_int(raw.get("output_tokens")),
        cache_read_tokens=as_int(raw.get("cache_read_input_tokens")),
        cache_write_tokens=as_int(raw.get("cache_creation_input_tokens")),
    )


def _model(init: dict[str, Any], final: dict[str, Any]) -> str | None:
    model = init.get("model")
    if isinstance(model, str) and model and not model.startswith("<"):
        return model
    by_model = final.get("modelUsage")
    if isinstance(by_model, dict) and by_model:
        return str(next(iter(by_model)))
    return None


def describe_event(event: dict[str, Any]) -> list[str]:
    """Short human lines for one stream-json event (none when it is not worth showing)."""
    kind, subtype = event.get("type"), event.get("subtype")
    if kind == "system" and subtype == "init":
        return [f"claude: started session {event.get('session_id')} ({event.get('model')})"]
    if kind == "system" and subtype == "api_retry":
        status = event.get("error_status") or event.get("error")
        return [f"claude: API retry {event.get('attempt')}/{event.get('max_retries')} ({status})"]
    if kind == "result":
        state = "failed" if event.get("is_error") else "done"
        return [f"claude: {state} after {event.get('num_turns')} turns"]
    message = event.get("message")
    if kind not in ("assistant", "user") or not isinstance(message, dict):
        return []
    lines = [_describe_block(block) for block in message.get("content") or []]
    return [line for line in lines if line]


def _describe_block(block: Any) -> str | None:
    if not isinstance(block, dict):
        return None
    if block.get("type") == "text" and str(block.get("text", "")).strip():
        return f"claude: {snippet(str(block['text']))}"
    if block.get("type") == "tool_use":
        args = field(block, "input")
        keys = ("file_path", "path", "command", "pattern", "url", "description")
        target = next((str(args[k]) for k in keys if args.get(k)), "")
        return f"claude: {block.get('name')} {snippet(target, 80)}".rstrip()
    if block.get("type") == "tool_result" and block.get("is_error"):
        content = block.get("content")
        return f"claude: tool error: {snippet(str(content), 100)}"
    return None

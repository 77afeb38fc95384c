"""The `codex` engine: OpenAI's Codex CLI in non-interactive mode (`codex exec --json`).

Command line::

    codex exec --json [--skip-git-repo-check] --sandbox workspace-write [-m MODEL]
               [extra_args...] [resume THREAD_ID] PROMPT

Settings: `binary`, `sandbox` (default workspace-write: the agent may edit its working dir and
nothing else; `danger-full-access` only when set), `skip_git_repo_check` (default false),
`extra_args`.  Codex has no system-prompt flag, so the role's persona opens the prompt of a new
thread.  The NDJSON events (AGENT_CLIS.md) give the thread id (`thread.started`), the answer
(the last `agent_message` item), token usage (`turn.completed`) and failures (`turn.failed`,
`error`).  Usage counts uncached input apart from cached input, as Anthropic's does; Codex
reports no cost.
"""

from __future__ import annotations

from typing import Any, ClassVar

from nexus import proc
from nexus.engines.base import Capabilities, EngineResult, Job, Usage
from nexus.engines.cli_common import (
    CliEngine,
    as_int,
    ended_early,
    field,
    iter_json_lines,
    looks_rate_limited,
    prompt_with_persona,
    retry_after_from,
    setting_bool,
    setting_list,
    snippet,
    tail,
)

DEFAULT_SANDBOX = "workspace-write"


class CodexEngine(CliEngine):
    name: ClassVar[str] = "codex"
    capabilities: ClassVar[Capabilities] = Capabilities(binary="codex", can_resume=True)
    install_hint: ClassVar[str] = "npm install -g @openai/codex"
    streams: ClassVar[bool] = True

    def argv(self, job: Job, binary: str) -> list[str]:
        return build_argv(job, binary)

    def interpret(self, job: Job, outcome: proc.ProcResult) -> EngineResult:
        return interpret(job, outcome)

    def describe(self, event: dict[str, Any]) -> list[str]:
        said = describe_event(event)
        return [said] if said else []


def build_argv(job: Job, binary: str) -> list[str]:
    settings = job.settings
    argv = [binary, "exec", "--json"]
    if setting_bool(settings, "skip_git_repo_check", False):
        argv.append("--skip-git-repo-check")
    argv += ["--sandbox", str(settings.get("sandbox") or DEFAULT_SANDBOX)]
    if job.model:
        argv += ["-m", job.model]
    argv += setting_list(settings, "extra_args")
    if job.session:
        argv += ["resume", job.session]
    prompt = prompt_with_persona(job)
    return [*argv, "--", prompt] if prompt.startswith("-") else [*argv, prompt]


def interpret(job: Job, outcome: proc.ProcResult) -> EngineResult:
    session = job.session
    answers: list[str] = []
    errors: list[str] = []
    usage = Usage()
    for event in iter_json_lines(outcome.stdout):
        kind = event.get("type")
        item = field(event, "item")
        if kind == "thread.started" and event.get("thread_id"):
            session = str(event["thread_id"])
        elif kind == "item.completed" and item.get("type") == "agent_message":
            answers.append(str(item.get("text") or ""))
        elif kind == "turn.completed":
            usage = usage + _usage(event.get("usage"))
        elif kind in ("turn.failed", "error"):
            errors.append(_error_text(event))
    common: dict[str, Any] = {
        "session": session,
        "usage": usage,
        "model": job.model,
        "duration": outcome.duration,
    }
    early = ended_early(outcome, job.timeout, **common)
    if early is not None:
        return early
    if outcome.returncode == 0 and not errors:
        return EngineResult(ok=True, text=answers[-1] if answers else "", **common)
    detail = "; ".join(errors) or tail(outcome.stderr) or outcome.describe()
    if looks_rate_limited(detail):
        return EngineResult.failure(
            f"codex is rate-limited: {detail}",
            rate_limited=True,
            retry_after=retry_after_from(detail),
            **common,
        )
    return EngineResult.failure(
        f"codex failed (exit code {outcome.returncode}): {detail}", **common
    )


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    cached = as_int(raw.get("cached_input_tokens"))
    return Usage(
        input_tokens=max(0, as_int(raw.get("input_tokens")) - cached),
        output_tokens=as_int(raw.get("output_tokens")),
        cache_read_tokens=cached,
    )


def _error_text(event: dict[str, Any]) -> str:
    error = event.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(event.get("message") or error or "unknown error")


def describe_event(event: dict[str, Any]) -> str | None:
    """A short human line for one `codex exec --json` event (None: nothing worth showing)."""
    kind = event.get("type")
    item = field(event, "item")
    if kind == "thread.started":
        return f"codex: started thread {event.get('thread_id')}"
    if kind in ("turn.failed", "error"):
        return f"codex: error: {snippet(_error_text(event))}"
    if kind == "item.started" and item.get("type") == "command_execution":
        return f"codex: $ {snippet(str(item.get('command', '')), 100)}"
    if kind != "item.completed":
        return None
    if item.get("type") == "agent_message":
        return f"codex: {snippet(str(item.get('text', '')))}"
    if item.get("type") == "file_change":
        paths = [str(c.get("path")) for c in item.get("changes") or [] if isinstance(c, dict)]
        return f"codex: changed {', '.join(paths)}"
    if item.get("type") == "mcp_tool_call":
        return f"codex: tool {item.get('server')}/{item.get('tool')}"
    return None

"""The `gemini` engine: Google's Gemini CLI in headless mode (`gemini -p … --output-format json`).

Command line::

    gemini -p PROMPT --output-format json --approval-mode auto_edit [--skip-trust]
           [-m MODEL] [-r SESSION] [extra_args...]

Settings: `binary`, `approval_mode` (default auto_edit: file edits are approved, shell commands
and other tools are not — the same line as claude-code's acceptEdits; yolo only when set),
`skip_trust` (default true: the working dir is the nexus workspace the user chose, and headless
runs in an untrusted folder fail), `extra_args`.  Gemini has no system-prompt flag, so the
persona opens the prompt of a new session.

Output is one object `{"session_id", "response", "stats", "error"?}`; exit codes 0 ok, 1 error,
42 bad input, 53 turn limit.  Token counts come from `stats.models.<model>.tokens` (prompt,
candidates, cached, thoughts); the CLI reports no cost.
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
    looks_rate_limited,
    parse_json_object,
    prompt_with_persona,
    retry_after_from,
    setting_bool,
    setting_list,
    tail,
    text_field,
)

DEFAULT_APPROVAL_MODE = "auto_edit"
EXIT_REASONS = {42: "gemini rejected the input", 53: "gemini hit its turn limit"}


class GeminiEngine(CliEngine):
    name: ClassVar[str] = "gemini"
    capabilities: ClassVar[Capabilities] = Capabilities(binary="gemini", can_resume=True)
    install_hint: ClassVar[str] = "npm install -g @google/gemini-cli"

    def argv(self, job: Job, binary: str) -> list[str]:
        return build_argv(job, binary)

    def interpret(self, job: Job, outcome: proc.ProcResult) -> EngineResult:
        return interpret(job, outcome)


def build_argv(job: Job, binary: str) -> list[str]:
    settings = job.settings
    prompt = prompt_with_persona(job)
    # yargs would read a prompt that starts with a dash as a flag; the `=` form cannot be.
    argv = [binary, f"--prompt={prompt}"] if prompt.startswith("-") else [binary, "-p", prompt]
    argv += ["--output-format", "json"]
    argv += ["--approval-mode", str(settings.get("approval_mode") or DEFAULT_APPROVAL_MODE)]
    if setting_bool(settings, "skip_trust", True):
        argv.append("--skip-trust")
    if job.model:
        argv += ["-m", job.model]
    if job.session:
        argv += ["-r", job.session]
    return argv + setting_list(settings, "extra_args")


def interpret(job: Job, outcome: proc.ProcResult) -> EngineResult:
    data = parse_json_object(outcome.stdout) or {}
    models = field(field(data, "stats"), "models")
    common: dict[str, Any] = {
        "session": str(data.get("session_id") or job.session or "") or None,
        "usage": _usage(models),
        "model": next(iter(models), None) or job.model,
        "duration": outcome.duration,
    }
    early = ended_early(outcome, job.timeout, **common)
    if early is not None:
        return early
    error = data.get("error")
    if outcome.returncode == 0 and not error and data:
        return EngineResult(ok=True, text=text_field(data, "response"), **common)
    message = ""
    if isinstance(error, dict):
        message = str(error.get("message") or "")
    elif error:
        message = str(error)
    detail = message or tail(outcome.stderr) or outcome.describe()
    if looks_rate_limited(detail):
        return EngineResult.failure(
            f"gemini is rate-limited: {detail}",
            rate_limited=True,
            retry_after=retry_after_from(detail),
            **common,
        )
    what = EXIT_REASONS.get(outcome.returncode, f"gemini failed (exit code {outcome.returncode})")
    return EngineResult.failure(f"{what}: {detail}", **common)


def _usage(models: dict[str, Any]) -> Usage:
    total = Usage()
    for name in models:
        tokens = field(field(models, name), "tokens")
        cached = as_int(tokens.get("cached"))
        total = total + Usage(
            input_tokens=max(0, as_int(tokens.get("prompt")) - cached),
            output_tokens=as_int(tokens.get("candidates")) + as_int(tokens.get("thoughts")),
            cache_read_tokens=cached,
        )
    return total

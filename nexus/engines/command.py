"""The `command` engine: any executable as an agent.

    engines:
      command:
        argv: ["my-agent", "--task", "{task_id}", "--prompt", "{prompt_file}"]
        rate_limit_exit_code: 75        # optional: this exit code pauses the engine

The program (`argv[0]`) is looked up on the job's PATH; a relative path is taken from the
workspace.  Each element of `argv` has `{prompt_file}`, `{task_id}`, `{workdir}`,
`{workspace}`, `{role}` and `{model}` replaced (and nothing else: other braces stay as they
are); no shell is involved.
The prompt is written to stdin and to a private temp file (`{prompt_file}`, also in
`NEXUS_PROMPT_FILE`), removed afterwards.  Task fields arrive as `NEXUS_*` variables
(NEXUS_TASK_ID, NEXUS_TASK_TITLE, NEXUS_ROLE, NEXUS_WORKSPACE, NEXUS_WORKDIR, NEXUS_MODEL,
NEXUS_SESSION, NEXUS_PROMPT_FILE, and NEXUS_<FIELD> for every other simple task field).
The exit code decides success; stdout is the result text.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from nexus.engines.base import Capabilities, EngineResult, Job
from nexus.engines.cli_common import (
    as_int,
    ended_early,
    find_executable,
    run_process,
    substitute,
    tail,
)

_NAME_UNSAFE = re.compile(r"[^A-Z0-9]+")
# One environment string may not pass 128 KiB (Linux MAX_ARG_STRLEN); a long task body is in the
# prompt anyway, so it is left out rather than failing the start.
_MAX_ENV_VALUE = 32 * 1024


class CommandEngine:
    name: ClassVar[str] = "command"
    capabilities: ClassVar[Capabilities] = Capabilities()

    def check(self, settings: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
        argv = settings.get("argv")
        if (
            not argv
            or not isinstance(argv, list | tuple)
            or not all(isinstance(a, str | int | float) for a in argv)
        ):
            return (
                "engine command needs `argv`, a list of strings "
                '(e.g. engines.command.argv: ["my-agent", "{prompt_file}"] in nexus.yaml)'
            )
        program = str(argv[0])
        relative_path = os.sep in program and not os.path.isabs(program)
        # A relative path is taken from the workspace, which only `run` knows.
        if not relative_path and find_executable(program, env) is None:
            return (
                f"engine command runs `{argv[0]}`, which is not on PATH: install it, or give "
                "its full path as the first element of engines.command.argv"
            )
        return None

    def run(self, job: Job) -> EngineResult:
        return self.run_command(job).redacted(job.env)

    def run_command(self, job: Job) -> EngineResult:
        problem = self.check(job.settings, job.env)
        if problem is not None:
            return EngineResult.failure(problem)
        with tempfile.TemporaryDirectory(prefix="nexus-prompt-") as tmp:
            prompt_file = Path(tmp) / "prompt.md"
            prompt_file.write_text(job.prompt, encoding="utf-8")
            values = placeholders(job, prompt_file)
            argv = [substitute(str(a), values) for a in job.settings["argv"]]
            argv[0] = find_executable(argv[0], job.env, job.workspace) or argv[0]
            outcome = run_process(job, argv, input=job.prompt, env=task_env(job, prompt_file))
        if isinstance(outcome, EngineResult):
            return outcome
        common: dict[str, Any] = {"model": job.model, "duration": outcome.duration}
        early = ended_early(outcome, job.timeout, **common)
        if early is not None:
            return early
        if outcome.returncode == 0:
            return EngineResult(ok=True, text=outcome.stdout.strip(), **common)
        limit_code = job.settings.get("rate_limit_exit_code")
        if limit_code is not None and outcome.returncode == as_int(limit_code):
            detail = tail(outcome.stderr) or tail(outcome.stdout)
            return EngineResult.failure(
                f"{Path(argv[0]).name} reported a rate limit (exit code {outcome.returncode})"
                + (f": {detail}" if detail else ""),
                rate_limited=True,
                **common,
            )
        return EngineResult.failure(outcome.describe(), text=outcome.stdout.strip(), **common)


def placeholders(job: Job, prompt_file: Path) -> dict[str, str]:
    return {
        "prompt_file": str(prompt_file),
        "task_id": job.task_id,
        "workdir": str(job.workdir),
        "workspace": str(job.workspace),
        "role": job.role or "",
        "model": job.model or "",
    }


def task_env(job: Job, prompt_file: Path) -> dict[str, str]:
    """The job's environment plus the task, as NEXUS_* variables."""
    env = dict(job.env)
    for key, value in job.task_fields.items():
        flat = _flat(value)
        if flat is not None and len(flat) <= _MAX_ENV_VALUE:
            env["NEXUS_" + _NAME_UNSAFE.sub("_", str(key).upper()).strip("_")] = flat
    env.update(
        {
            "NEXUS_TASK_ID": job.task_id,
            "NEXUS_TASK_TITLE": str(job.task_fields.get("title") or ""),
            "NEXUS_ROLE": job.role or "",
            "NEXUS_WORKSPACE": str(job.workspace),
            "NEXUS_WORKDIR": str(job.workdir),
            "NEXUS_MODEL": job.model or "",
            "NEXUS_SESSION": job.session or "",
            "NEXUS_PROMPT_FILE": str(prompt_file),
        }
    )
    return env


def _flat(value: Any) -> str | None:
    """A task field as one environment value: scalars as text, lists comma-separated."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return ",".join(str(v) for v in value)
    return None

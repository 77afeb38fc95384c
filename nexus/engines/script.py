"""The `script` engine: a deterministic agent that follows a list of steps.

For demos, tests and users' own CI of their workflows.  The steps come from the task's
`script` field when it has one, else from `settings["steps"]`; each step is a mapping with one
of these keys:

    write: PATH, content: TEXT       write a file (PATH relative to the working dir, confined
    append: PATH, content: TEXT      inside it: no absolute paths, no `..`, no symlink out)
    message: {to: ROLE, text: TEXT, type: T}     post to a role's scratchpad
    run: [argv...] | "cmd string"    run a program (a string is split like a shell would, but
         check: true                 no shell runs, and placeholders are filled after the split,
                                     so a value is always one argument); a non-zero exit fails
                                     the run unless `check: false`
    sleep: SECONDS                   wait (cancellable, within the job's timeout)
    fail: REASON                     stop with a failure
    rate_limit: SECONDS              stop as rate-limited, retry after SECONDS
    usage: {input_tokens, output_tokens, cost_usd}    record usage and cost
    session: ID                      report this session id (else the job's is kept)
    result: TEXT                     the final text (default "done")

Text fields may use {task_id}, {title}, {role}, {attempt}, {python} (the Python running nexus),
{workdir}, {session} (the session being resumed, if any) and {output} (what the last `run`
step printed).  The setting `fail_attempts: N`
fails every run while the task's `attempts` is below N, for retry tests.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from nexus.engines.base import Capabilities, EngineResult, Job, OutgoingMessage, Usage
from nexus.engines.cli_common import (
    as_float,
    as_int,
    ended_early,
    find_executable,
    forward,
    run_process,
    substitute,
    tail,
)

STEP_KINDS = (
    "write",
    "append",
    "message",
    "run",
    "sleep",
    "fail",
    "rate_limit",
    "usage",
    "session",
    "result",
)


class ScriptEngine:
    name: ClassVar[str] = "script"
    # It keeps no conversation, but it reports a session id so workflows that resume can be
    # tested with it.
    capabilities: ClassVar[Capabilities] = Capabilities(can_resume=True)

    def check(self, settings: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
        return validate_steps(settings.get("steps") or [])

    def run(self, job: Job) -> EngineResult:
        return self.run_script(job).redacted(job.env)

    def run_script(self, job: Job) -> EngineResult:
        started = time.monotonic()
        steps = job.task_fields.get("script") or job.settings.get("steps") or []
        problem = validate_steps(steps)
        if problem is not None:
            return EngineResult.failure(problem)
        attempts = as_int(job.task_fields.get("attempts"))
        fail_attempts = as_int(job.settings.get("fail_attempts"))
        if attempts < fail_attempts:
            return EngineResult.failure(
                f"scripted failure on attempt {attempts} (fail_attempts: {fail_attempts})"
            )
        run = _ScriptRun(job, started)
        for number, step in enumerate(steps, start=1):
            if job.cancel.is_set():
                return run.end(False, "script was stopped before it finished (cancelled)")
            stop = run.step(number, step)
            if stop is not None:
                return stop
        return run.end(True)


def validate_steps(steps: Any) -> str | None:
    """None when `steps` is a list of known steps; otherwise what is wrong with it."""
    if not isinstance(steps, list):
        return "engine script needs `steps` as a list of steps (see `nexus.engines.script`)"
    for number, step in enumerate(steps, start=1):
        kinds = [k for k in STEP_KINDS if isinstance(step, Mapping) and k in step]
        if len(kinds) != 1:
            return f"script step {number} ({step!r}) must have exactly one of: " + ", ".join(
                STEP_KINDS
            )
        if kinds[0] == "message" and not (
            isinstance(step["message"], Mapping) and step["message"].get("to")
        ):
            return f"script step {number}: a message needs `to` and `text`"
    return None


class _ScriptRun:
    """The state of one scripted run: what it said, spent and posted so far."""

    def __init__(self, job: Job, started: float) -> None:
        self.job = job
        self.started = started
        self.text = "done"
        self.messages: list[OutgoingMessage] = []
        self.usage = Usage()
        self.cost: float | None = None
        self.session = job.session
        fields = job.task_fields
        self.values = {
            "task_id": job.task_id,
            "title": str(fields.get("title") or ""),
            "role": job.role or "",
            "attempt": str(as_int(fields.get("attempts"))),
            "python": sys.executable,
            "workdir": str(job.workdir),
            "output": "",
            "session": job.session or "",
        }

    def fill(self, value: Any) -> str:
        return substitute(str(value), self.values)

    def remaining(self) -> float | None:
        if self.job.timeout is None:
            return None
        return self.job.timeout - (time.monotonic() - self.started)

    def end(self, ok: bool, reason: str | None = None, **kw: Any) -> EngineResult:
        return EngineResult(
            ok=ok,
            text=self.text if ok else "",
            reason=reason,
            session=self.session,
            usage=self.usage,
            cost_usd=self.cost,
            model=self.job.model,
            messages=tuple(self.messages),
            duration=time.monotonic() - self.started,
            **kw,
        )

    def step(self, number: int, step: Mapping[str, Any]) -> EngineResult | None:
        """Do one step; a result when the run stops here."""
        if "write" in step or "append" in step:
            return self.write(number, step)
        if "message" in step:
            spec = step["message"]
            message = OutgoingMessage(
                to=self.fill(spec["to"]),
                text=self.fill(spec.get("text", "")),
                type=self.fill(spec.get("type", "response")),
            )
            self.messages.append(message)
        elif "run" in step:
            return self.run(number, step)
        elif "sleep" in step:
            return self.sleep(as_float(step["sleep"]) or 0.0)
        elif "fail" in step:
            return self.end(False, self.fill(step["fail"]))
        elif "rate_limit" in step:
            wait = as_float(step["rate_limit"]) or 0.0
            return self.end(
                False,
                f"rate-limited (scripted), retry after {wait:g}s",
                rate_limited=True,
                retry_after=wait,
            )
        elif "usage" in step:
            spec = step["usage"] if isinstance(step["usage"], Mapping) else {}
            self.usage = self.usage + Usage(
                input_tokens=as_int(spec.get("input_tokens")),
                output_tokens=as_int(spec.get("output_tokens")),
                cache_read_tokens=as_int(spec.get("cache_read_tokens")),
                cache_write_tokens=as_int(spec.get("cache_write_tokens")),
            )
            cost = as_float(spec.get("cost_usd"))
            if cost is not None:
                self.cost = (self.cost or 0.0) + cost
        elif "session" in step:
            self.session = self.fill(step["session"])
        elif "result" in step:
            self.text = self.fill(step["result"])
        return None

    def write(self, number: int, step: Mapping[str, Any]) -> EngineResult | None:
        kind = "write" if "write" in step else "append"
        target = confine(self.job.workdir, self.fill(step[kind]))
        if isinstance(target, str):
            return self.end(False, f"script step {number} ({kind}): {target}")
        content = self.fill(step.get("content", ""))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a" if kind == "append" else "w", encoding="utf-8") as f:
                f.write(content)
        except OSError as exc:
            return self.end(False, f"script step {number} ({kind} {step[kind]}): {exc}")
        forward(self.job, f"script: {kind} {step[kind]}")
        return None

    def run(self, number: int, step: Mapping[str, Any]) -> EngineResult | None:
        raw = step["run"]
        # Split first, fill after: a title full of quotes and spaces stays one argument.
        argv = [self.fill(a) for a in (shlex.split(raw) if isinstance(raw, str) else raw)]
        if not argv:
            return self.end(False, f"script step {number}: `run` needs a command")
        argv[0] = find_executable(argv[0], self.job.env, self.job.workdir) or argv[0]
        forward(self.job, f"script: $ {shlex.join(argv)}")
        left = self.remaining()
        outcome = run_process(
            self.job,
            argv,
            timeout=None if left is None else max(left, 0.01),
            on_line=lambda line: forward(self.job, line),
        )
        if isinstance(outcome, EngineResult):
            return self.end(False, f"script step {number}: {outcome.reason}")
        early = ended_early(outcome, self.job.timeout)
        if early is not None:
            return self.end(False, f"script step {number}: {early.reason}")
        self.values["output"] = (outcome.stdout + outcome.stderr).strip()[-4000:]
        if outcome.returncode != 0 and step.get("check", True):
            output = tail(outcome.stdout + "\n" + outcome.stderr)
            return self.end(False, f"script step {number}: {outcome.describe()}; output: {output}")
        return None

    def sleep(self, seconds: float) -> EngineResult | None:
        left = self.remaining()
        wait = seconds if left is None else max(0.0, min(seconds, left))
        if self.job.cancel.wait(wait):
            return self.end(False, "script was stopped before it finished (cancelled)")
        if left is not None and seconds > left:
            return self.end(False, f"script timed out after {self.job.timeout:g}s")
        return None


def confine(workdir: Path, relative: str) -> Path | str:
    """The file `relative` names inside `workdir`, or why it may not be written."""
    path = Path(relative)
    if not relative or path.is_absolute() or ".." in path.parts:
        return f"{relative!r} must be a relative path inside the working dir"
    root = workdir.resolve()
    target = (root / path).resolve()
    if target == root or not target.is_relative_to(root):
        return f"{relative!r} leads outside the working dir (through a symlink)"
    return target

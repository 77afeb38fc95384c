"""What the engines that drive an agent CLI (claude, codex, gemini, any command) share.

Finding the executable on the PATH of the job's own environment (never the daemon's), reading
JSON and NDJSON that may be mixed with stray non-JSON lines, recognising rate limits, reading
typed settings, and turning a process that timed out, was cancelled or could not start into a
failed `EngineResult`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from nexus import proc
from nexus.engines.base import Capabilities, EngineResult, Job
from nexus.errors import NexusError
from nexus.redact import redact

ProgressSink = Callable[[str], None]

# Words CLIs and APIs use when the provider, not the task, is the problem: retrying the task
# would burn an attempt for nothing, so the engine is paused instead.
_RATE_LIMIT = re.compile(
    r"\b(429|529)\b|rate[ _-]?limit|too many requests|overloaded|usage limit|"
    r"limit reached|hit your (usage )?limit|quota|resource[ _]exhausted",
    re.IGNORECASE,
)
# "Claude AI usage limit reached|1751234567": the epoch second the limit resets.
_RESET_EPOCH = re.compile(r"\|(\d{10})\b")


def find_executable(name: str, env: Mapping[str, str], base: Path | None = None) -> str | None:
    """The absolute path of `name` as the child's PATH (from `env`) would find it.  A name with
    a slash is a path (relative ones are taken from `base`)."""
    if os.sep in name or (os.altsep and os.altsep in name):
        path = Path(name).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(name, path=env.get("PATH", os.defpath))


def setting_list(settings: Mapping[str, Any], key: str) -> list[str]:
    """A setting that may be given as one string or a list of strings."""
    value = settings.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    return [str(value)]


def setting_bool(settings: Mapping[str, Any], key: str, default: bool) -> bool:
    value = settings.get(key, default)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def setting_path(settings: Mapping[str, Any], key: str, base: Path) -> list[str]:
    """Paths from a setting; relative ones are relative to `base` (the workspace).  Inline JSON
    (a value starting with `{`) is passed as it is."""
    return [
        p if p.lstrip().startswith("{") else str(base / Path(p).expanduser())
        for p in setting_list(settings, key)
    ]


def iter_json_lines(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of an NDJSON text, skipping lines that are not JSON objects (banners,
    warnings, a half-written last line)."""
    for line in text.splitlines():
        obj = parse_json_line(line)
        if obj is not None:
            yield obj


def parse_json_line(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The one JSON object a `--output-format json` run prints, tolerating text around it."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        obj = json.loads(stripped)
        if isinstance(obj, dict):
            return obj
    except ValueError:
        pass
    start = stripped.find("{")
    if start > 0:
        try:
            obj, _ = json.JSONDecoder().raw_decode(stripped[start:])
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return obj
    last = None
    for last in iter_json_lines(stripped):  # noqa: B007 - the last object wins
        pass
    return last


def looks_rate_limited(*texts: str | None) -> bool:
    return any(t and _RATE_LIMIT.search(t) for t in texts)


def retry_after_from(text: str | None, now: float | None = None) -> float | None:
    """Seconds until a usage limit resets, when the message says so."""
    if not text:
        return None
    match = _RESET_EPOCH.search(text)
    if not match:
        return None
    now = time.time() if now is None else now
    return max(0.0, float(match.group(1)) - now)


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace `{name}` for the known names only, so other braces (JSON, shell) stay."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def field(obj: Any, key: str) -> dict[str, Any]:
    """`obj[key]` when both are JSON objects, else an empty one: event shapes vary by version."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def text_field(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def as_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def tail(text: str, lines: int = 5, width: int = 600) -> str:
    """The last lines of a program's output, joined on one line for a failure reason."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    joined = " | ".join(kept)
    return joined if len(joined) <= width else "…" + joined[-width:]


def snippet(text: str, width: int = 120) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


def remaining(job: Job, started: float) -> float | None:
    """What is left of the job's timeout, for a second process in the same run."""
    if job.timeout is None:
        return None
    return max(0.1, job.timeout - (time.monotonic() - started))


def prompt_with_persona(job: Job) -> str:
    """For CLIs without a system-prompt flag: the persona goes first in a new session (a
    resumed session already has it)."""
    if job.system_prompt.strip() and not job.session:
        return f"{job.system_prompt.strip()}\n\n---\n\n{job.prompt}"
    return job.prompt


def run_process(
    job: Job,
    argv: Sequence[str],
    *,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    on_line: ProgressSink | None = None,
) -> proc.ProcResult | EngineResult:
    """Run one child for `job` (its workdir, env, timeout and cancel).  A child that could not
    start comes back as a failed result instead of an exception."""
    try:
        return proc.run(
            argv,
            cwd=job.workdir,
            env=job.env if env is None else env,
            input=input,
            timeout=job.timeout if timeout is None else timeout,
            cancel=job.cancel,
            on_line=on_line,
        )
    except NexusError as exc:
        return EngineResult.failure(str(exc))


def ended_early(result: proc.ProcResult, timeout: float | None, **kw: Any) -> EngineResult | None:
    """The failed result for a child that timed out or was cancelled; None when it ended on its
    own."""
    name = Path(result.argv[0]).name
    kw = {"duration": result.duration, **kw}
    if result.timed_out:
        limit = timeout if timeout is not None else result.duration
        return EngineResult.failure(f"{name} timed out after {limit:g}s and was killed", **kw)
    if result.cancelled:
        return EngineResult.failure(f"{name} was stopped before it finished (cancelled)", **kw)
    return None


def forward(job: Job, line: str | None) -> None:
    """Hand a progress line to the job's sink, secrets masked (it ends up in logs and feeds)."""
    if line and job.on_progress is not None:
        with contextlib.suppress(Exception):  # a progress sink must never kill the run
            job.on_progress(redact(line, job.env, os.environ))


class CliEngine:
    """Base of the engines that run one agent CLI per job: finds the binary (and says how to
    install it when it is missing), runs `argv` and hands the finished process to `interpret`;
    `describe` turns one NDJSON event into progress lines when the CLI streams."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    install_hint: ClassVar[str]
    streams: ClassVar[bool] = False

    def binary(
        self, settings: Mapping[str, Any], env: Mapping[str, str], base: Path | None = None
    ) -> str | None:
        """The CLI to run: settings["binary"] (a name on PATH, or a path, relative ones from
        the workspace) or the usual name on the PATH of `env`."""
        assert self.capabilities.binary is not None
        wanted = str(settings.get("binary") or self.capabilities.binary)
        return find_executable(wanted, env, base)

    def check(self, settings: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
        if self.binary(settings, env) is not None:
            return None
        wanted = settings.get("binary") or self.capabilities.binary
        return (
            f"engine {self.name} needs the `{wanted}` executable on PATH: {self.install_hint}, "
            f"or set engines.{self.name}.binary in nexus.yaml"
        )

    def run(self, job: Job) -> EngineResult:
        binary = self.binary(job.settings, job.env, job.workspace)
        if binary is None:
            message = self.check(job.settings, job.env) or f"engine {self.name} cannot start"
            return EngineResult.failure(message)
        return self.run_with(job, binary).redacted(job.env)

    def run_with(self, job: Job, binary: str) -> EngineResult:
        outcome = self.launch(job, self.argv(job, binary), job.timeout, self.streams)
        return outcome if isinstance(outcome, EngineResult) else self.interpret(job, outcome)

    def launch(
        self, job: Job, argv: Sequence[str], timeout: float | None, stream: bool
    ) -> proc.ProcResult | EngineResult:
        on_line = (lambda line: self.progress(job, line)) if stream else None
        return run_process(job, argv, timeout=timeout, on_line=on_line)

    def progress(self, job: Job, line: str) -> None:
        event = parse_json_line(line)
        for said in self.describe(event) if event is not None else []:
            forward(job, said)

    def argv(self, job: Job, binary: str) -> list[str]:
        raise NotImplementedError

    def interpret(self, job: Job, outcome: proc.ProcResult) -> EngineResult:
        raise NotImplementedError

    def describe(self, event: dict[str, Any]) -> list[str]:
        return []

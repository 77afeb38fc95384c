"""Run one task through its engine: build the prompt and the environment, run, verify.

Shell.  Everything the daemon decided is in an `Assignment`; `run` returns a `RunReport` and
never raises for anything an agent does.  As soon as the engine returns, the report is saved
to `.nexus/results/<task>.json`, so a daemon killed before it commits the result applies it on
restart instead of running the task again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nexus import proc
from nexus.engines.base import EngineResult, Job, OutgoingMessage, Usage, get_engine
from nexus.errors import NexusError
from nexus.gitrepo import Repo
from nexus.redact import is_secret_name
from nexus.store import OWNED, Workspace
from nexus.task import Task

# Environment variables an engine's child may see, by prefix: only its own provider's.
ENGINE_ENV: Mapping[str, tuple[str, ...]] = {
    "claude-code": (
        "ANTHROPIC_",
        "CLAUDE_",
        "IS_SANDBOX",
        "API_TIMEOUT_MS",
        "DISABLE_",
        "MCP_",
        # Node's runtime settings, by name: a NODE_ prefix would also pass NODE_AUTH_TOKEN (npm).
        "NODE_OPTIONS",
        "NODE_EXTRA_CA_CERTS",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
    ),
    "anthropic": ("ANTHROPIC_",),
    "openai": ("OPENAI_",),
    "codex": ("OPENAI_", "CODEX_"),
    "gemini": ("GEMINI_", "GOOGLE_"),
}


@dataclass(frozen=True)
class Assignment:
    task: Task  # loaded from its file (fields and body)
    engine: str
    model: str | None
    settings: Mapping[str, Any]
    prompt: str
    system_prompt: str
    session: str | None
    attempt: int
    timeout: float
    workdir: Path


@dataclass
class RunReport:
    task_id: str
    attempt: int
    result: EngineResult
    interrupted: bool = False
    verify_error: str | None = None
    files: list[str] = field(default_factory=list)  # repo-relative paths the agent changed
    log: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunReport:
        r = dict(data["result"])
        r["usage"] = Usage(**r.get("usage") or {})
        r["messages"] = tuple(OutgoingMessage(**m) for m in r.get("messages") or ())
        return cls(
            task_id=data["task_id"],
            attempt=int(data["attempt"]),
            result=EngineResult(**r),
            interrupted=bool(data.get("interrupted")),
            verify_error=data.get("verify_error"),
            files=list(data.get("files") or []),
            log=data.get("log"),
        )


def job_env(engine: str, settings: Mapping[str, Any], ws: Workspace, task: Task) -> dict[str, str]:
    """The explicit environment for an agent: the basics, its provider's variables, the names
    listed in the engine's `env` setting, and NEXUS_* so the agent can call `nexus send`."""
    source = os.environ
    prefixes = ENGINE_ENV.get(engine, ())
    keep = [k for k in source if k.startswith(prefixes)] if prefixes else []
    keep += [str(k) for k in settings.get("env") or () if isinstance(k, str)]
    bin_dir = str(Path(sys.executable).parent)
    path = source.get("PATH", "")
    extra = {
        "NEXUS_WORKSPACE": str(ws.root),
        "NEXUS_TASK_ID": task.id,
        "NEXUS_ROLE": task.role or "",
        "PATH": f"{bin_dir}{os.pathsep}{path}" if bin_dir not in path.split(os.pathsep) else path,
    }
    return proc.child_env(source, extra, keep=keep)


def dirty_state(repo: Repo, ws: Workspace) -> dict[str, tuple[str, int, int]]:
    """Files outside nexus's own paths that differ from HEAD, with a stat fingerprint."""
    owned = tuple(repo.rel(ws.root / p) for p in OWNED)
    runtime = repo.rel(ws.root / ".nexus")
    out: dict[str, tuple[str, int, int]] = {}
    for entry in repo.status(["."]):
        p = entry.path
        if p.startswith(runtime + "/") or any(p == o or p.startswith(o + "/") for o in owned):
            continue
        try:
            st = (repo.top / p).stat()
            out[p] = (entry.code, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            out[p] = (entry.code, 0, -1)
    return out


class SharedStatus:
    """`dirty_state` shared by runs that end (or start) together.  `git status` stats every
    file of the repository (~16 ms at 1,000 files) and each run needs one before and one after:
    with 8 workers that was a third of the daemon's overhead.  A caller asks for a reading
    taken no earlier than `since`; one already taken (or being taken) since then is shared.
    A reading that started after a run ended is a correct "after" for it; "before" readings
    are shared by the runs of one wave, which the concurrent runs of that wave blur anyway
    (files changed meanwhile by any of them are attributed to each that sees them change)."""

    def __init__(self, repo: Repo, ws: Workspace) -> None:
        self.repo, self.ws = repo, ws
        self._cond = threading.Condition()
        self._reading: tuple[float, dict[str, tuple[str, int, int]]] | None = None
        self._busy_since: float | None = None  # start of the reading in progress

    def since(self, since: float) -> dict[str, tuple[str, int, int]]:
        with self._cond:
            while True:
                if self._reading is not None and self._reading[0] >= since:
                    return self._reading[1]
                if self._busy_since is None:
                    break
                self._cond.wait()  # a reading is in progress: it may do
            started = self._busy_since = time.monotonic()
        state: dict[str, tuple[str, int, int]] = {}
        try:
            state = _safe(lambda: dirty_state(self.repo, self.ws), {})
        finally:
            with self._cond:
                if self._reading is None or self._reading[0] < started:
                    self._reading = (started, state)
                self._busy_since = None
                self._cond.notify_all()
        return state


def run(
    ws: Workspace,
    repo: Repo,
    a: Assignment,
    *,
    cancel: threading.Event,
    on_progress: Callable[[str], None] | None = None,
    status: SharedStatus | None = None,
    wave: float | None = None,
) -> RunReport:
    """Run the assignment to the end.  Never raises for an agent's failure.  `status`
    shares `git status` readings with the runs around it (`wave`: when this run's wave was
    claimed)."""
    logs = ws.runtime / "logs"
    logs.mkdir(exist_ok=True)
    log_path = logs / f"{a.task.id}-{a.attempt}.log"
    status = status or SharedStatus(repo, ws)
    before = status.since(time.monotonic() if wave is None else wave)
    log_lock = threading.Lock()

    def progress(line: str) -> None:
        with log_lock, contextlib.suppress(OSError), log_path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        if on_progress:
            on_progress(line)

    task_fields = {
        **a.task.fields,
        "id": a.task.id,
        "title": a.task.title,
        "attempts": a.attempt,
        "role": a.task.role,
    }
    job = Job(
        task_id=a.task.id,
        prompt=a.prompt,
        workdir=a.workdir,
        workspace=ws.root,
        role=a.task.role,
        system_prompt=a.system_prompt,
        model=a.model,
        timeout=a.timeout,
        session=a.session,
        settings=a.settings,
        env=job_env(a.engine, a.settings, ws, a.task),
        task_fields=task_fields,
        cancel=cancel,
        on_progress=progress,
    )
    started = time.monotonic()
    running = ws.runtime / "running"
    running.mkdir(exist_ok=True)
    try:
        with proc.track_groups(running / f"{a.task.id}.pids"):
            result = get_engine(a.engine).run(job)
    except NexusError as exc:
        result = EngineResult.failure(str(exc))
    except Exception as exc:  # an engine bug must not take the daemon down
        result = EngineResult.failure(f"engine {a.engine} crashed: {type(exc).__name__}: {exc}")
    # Built-in engines mask secrets themselves; a third-party engine may not: whatever it
    # returns is masked here too before anything is kept.
    result = result.redacted(job.env)
    if not result.duration:
        result = _with_duration(result, time.monotonic() - started)
    report = RunReport(
        a.task.id,
        a.attempt,
        result,
        interrupted=cancel.is_set(),
        log=ws.rel(log_path) if log_path.exists() else None,
    )
    if result.ok and a.task.verify and not cancel.is_set():
        report.verify_error = verify(a.task.verify, job, a.workdir)
    after = status.since(time.monotonic())
    report.files = sorted(p for p, state in after.items() if before.get(p) != state)
    report.files += sorted(p for p in before if p not in after)  # reverted or deleted
    # Saved for a restart to apply; on a full disk the daemon still has it in memory.
    with contextlib.suppress(OSError):
        save_report(ws, report)
    return report


def verify(command: str, job: Job, workdir: Path) -> str | None:
    """Run the task's `verify` command (split like a shell would, but no shell runs)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return f"verify command cannot be read ({exc}): {command!r}"
    if not argv:
        return None
    # The check is the task's own command, which an agent may have edited: it gets the
    # agent's environment without the secret-looking variables (API keys, tokens).
    env = {k: v for k, v in job.env.items() if not is_secret_name(k)}
    try:
        res = proc.run(argv, cwd=workdir, env=env, timeout=job.timeout, cancel=job.cancel)
    except NexusError as exc:
        return f"verify could not start: {exc.message}"
    return None if res.ok else f"verify `{command}` failed: {res.describe()}"


def save_report(ws: Workspace, report: RunReport) -> None:
    folder = ws.runtime / "results"
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{report.task_id}.tmp"
    tmp.write_text(json.dumps(report.to_json(), default=str))
    os.replace(tmp, folder / f"{report.task_id}.json")


def saved_reports(ws: Workspace) -> list[RunReport]:
    out = []
    folder = ws.runtime / "results"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(RunReport.from_json(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError, TypeError):
            path.rename(path.with_suffix(".unreadable"))
    return out


def drop_report(ws: Workspace, task_id: str) -> None:
    (ws.runtime / "results" / f"{task_id}.json").unlink(missing_ok=True)


def _with_duration(result: EngineResult, seconds: float) -> EngineResult:
    from dataclasses import replace

    return replace(result, duration=seconds)


def _safe(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except NexusError:
        return default

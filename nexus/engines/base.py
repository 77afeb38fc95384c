"""The engine contract and the registry.

An engine turns a prepared `Job` (prompt, persona, model, working dir, timeout, session) into an
`EngineResult`.  Failures are values: `run` never raises for an agent that fails, crashes, hangs
or is rate-limited; it returns `ok=False` with a human-readable `reason` (and `rate_limited=True`
when the engine should be paused instead of the task's retry being spent).

Built-in engines are registered through the same entry-point group as third-party ones
(`nexus.engines`, see pyproject.toml), and are imported only when used, so SDK imports never
slow down the CLI.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from nexus.errors import EngineError
from nexus.redact import redact

ENTRY_POINT_GROUP = "nexus.engines"


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )


@dataclass(frozen=True)
class OutgoingMessage:
    """A message an agent asked to post to another role's scratchpad."""

    to: str
    text: str
    type: str = "response"


@dataclass(frozen=True)
class Job:
    """Everything an engine needs for one run.  `settings` is the merged engine configuration
    (nexus.yaml engine section, then the role's, then the task's); `env` is the complete,
    explicit environment for any child process."""

    task_id: str
    prompt: str
    workdir: Path
    workspace: Path
    role: str | None = None
    system_prompt: str = ""
    model: str | None = None
    timeout: float | None = None
    session: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    task_fields: Mapping[str, Any] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)
    on_progress: Callable[[str], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class EngineResult:
    ok: bool
    text: str = ""
    reason: str | None = None
    session: str | None = None
    usage: Usage = Usage()
    cost_usd: float | None = None
    model: str | None = None
    rate_limited: bool = False
    retry_after: float | None = None
    session_replaced: str | None = None  # the old session id, when it had expired
    messages: tuple[OutgoingMessage, ...] = ()
    duration: float = 0.0

    @classmethod
    def failure(cls, reason: str, **kw: Any) -> EngineResult:
        return cls(ok=False, reason=reason, **kw)

    def redacted(self, env: Mapping[str, str]) -> EngineResult:
        """This result with secret values (of `env` and of this process's environment) masked
        in everything nexus keeps: the text, the reason and the messages.  An agent that echoes
        its key must not get it committed to a task file or a scratchpad."""
        secrets = (env, os.environ)
        return replace(
            self,
            text=redact(self.text, *secrets),
            reason=None if self.reason is None else redact(self.reason, *secrets),
            messages=tuple(replace(m, text=redact(m.text, *secrets)) for m in self.messages),
        )


@dataclass(frozen=True)
class Capabilities:
    needs_env: tuple[str, ...] = ()  # one of these must be set (e.g. an API key)
    binary: str | None = None  # executable that must be on PATH
    can_resume: bool = False
    edits_files: bool = True
    max_parallel: int | None = None  # None: only the global limit applies


@runtime_checkable
class Engine(Protocol):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def check(self, settings: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
        """None when the engine can run with these settings and environment; otherwise what is
        missing and how to fix it (shown by `nexus doctor` and before dispatch)."""
        ...

    def run(self, job: Job) -> EngineResult:
        """Run the job to the end, honouring `job.timeout` and `job.cancel`.  Never raises for
        agent failures."""
        ...


@functools.cache
def _entry_points() -> dict[str, Any]:
    # Scanning every installed distribution's metadata takes 10-90 ms, and the daemon asks
    # every pass: read once per process (a newly installed engine needs a restart).
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


_cache: dict[str, type[Engine]] = {}
_lock = threading.Lock()


def engine_names() -> list[str]:
    return sorted(_entry_points())


def get_engine(name: str) -> Engine:
    """An instance of the engine registered as `name`."""
    with _lock:
        cls = _cache.get(name)
        if cls is None:
            eps = _entry_points()
            if name not in eps:
                known = ", ".join(sorted(eps)) or "none"
                raise EngineError(
                    f"unknown engine {name!r} (known: {known})",
                    fix="pick one of the known engines, or install the package that provides it",
                )
            try:
                cls = eps[name].load()
            except Exception as exc:  # a broken third-party plugin must not crash nexus
                raise EngineError(
                    f"engine {name!r} failed to load: {exc}",
                    fix="reinstall the package that provides it, or run `nexus doctor`",
                ) from exc
            _cache[name] = cls
    return cls()

"""The one way nexus starts child processes.

Every child gets an explicit environment, its own process group (so a timeout or a cancel
kills the agent *and* everything it started), closed stdin unless input is given, and comes
back as a value: nothing here raises for a non-zero exit, a timeout or a cancel.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nexus.errors import NexusError

# What a child needs to behave like a normal program, and nothing that may hold a secret.
BASE_ENV_KEYS = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TMPDIR",
    "TZ",
    "SHELL",
    "SYSTEMROOT",
    "PYTHONPATH",
    "VIRTUAL_ENV",
)


def child_env(
    source: Mapping[str, str], extra: Mapping[str, str] | None = None, keep: Iterable[str] = ()
) -> dict[str, str]:
    """An explicit environment: the harmless basics from `source`, the named `keep` keys when
    present there, then `extra` on top."""
    env = {k: source[k] for k in (*BASE_ENV_KEYS, *keep) if k in source}
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class ProcResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.cancelled

    def describe(self) -> str:
        """A one-line account of how the process ended, for error messages."""
        name = Path(self.argv[0]).name
        if self.timed_out:
            return f"{name} timed out after {self.duration:.1f}s and was killed"
        if self.cancelled:
            return f"{name} was stopped (nexus is shutting down)"
        if self.returncode < 0:
            return f"{name} was killed by signal {-self.returncode}"
        tail = (self.stderr.strip() or self.stdout.strip()).splitlines()[-3:]
        detail = (": " + " | ".join(tail)) if tail else ""
        return f"{name} exited with code {self.returncode}{detail}"


_tracking = threading.local()


@contextlib.contextmanager
def track_groups(path: Path) -> Iterator[None]:
    """Within this block (on this thread), record the process group of every child started by
    `run` in `path`, one per line, so a restarted daemon can kill what a dead one left."""
    _tracking.path = path
    try:
        yield
    finally:
        _tracking.path = None
        path.unlink(missing_ok=True)


def kill_tracked(path: Path) -> list[int]:
    """Kill every process group listed in `path` (left by a dead daemon); returns them."""
    killed = []
    try:
        groups = [int(x) for x in path.read_text().split()]
    except (OSError, ValueError):
        groups = []
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
            killed.append(pgid)
    path.unlink(missing_ok=True)
    return killed


def _record_group(pid: int) -> None:
    path = getattr(_tracking, "path", None)
    if path is not None:
        with contextlib.suppress(OSError), open(path, "a") as fh:
            fh.write(f"{pid}\n")
            fh.flush()
            os.fsync(fh.fileno())


def _kill_group(proc: subprocess.Popen[str], grace: float = 2.0) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run(
    argv: Sequence[str],
    *,
    cwd: Path | str,
    env: Mapping[str, str],
    input: str | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_line: Callable[[str], None] | None = None,
) -> ProcResult:
    """Run `argv` to the end (or until `timeout`/`cancel`) and return how it went.

    With `on_line`, stdout is read line by line as it arrives and each line is handed over
    (for live progress); the full stdout is still returned.
    """
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise NexusError(
            f"cannot start {argv[0]}: {exc.strerror or exc}",
            fix=f"check that {argv[0]} is installed and on PATH (run `nexus doctor`)",
        ) from exc

    _record_group(proc.pid)  # start_new_session: the child's pid is its process group
    out_parts: list[str] = []
    err_parts: list[str] = []

    def pump_out() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out_parts.append(line)
            if on_line is not None:
                # A progress sink must never kill the run.
                with contextlib.suppress(Exception):
                    on_line(line.rstrip("\n"))

    def pump_err() -> None:
        assert proc.stderr is not None
        err_parts.append(proc.stderr.read())

    readers = [
        threading.Thread(target=pump_out, daemon=True),
        threading.Thread(target=pump_err, daemon=True),
    ]
    for r in readers:
        r.start()
    if input is not None:
        # Written from a thread: a child that never reads would otherwise block us on a full
        # pipe before the timeout is ever checked.
        def feed() -> None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError, OSError):
                proc.stdin.write(input)
                proc.stdin.close()

        readers.append(threading.Thread(target=feed, daemon=True))
        readers[-1].start()

    timed_out = cancelled = False
    deadline = None if timeout is None else start + timeout
    while True:
        try:
            proc.wait(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            pass
        if deadline is not None and time.monotonic() >= deadline:
            timed_out = True
            _kill_group(proc)
            break
        if cancel is not None and cancel.is_set():
            cancelled = True
            _kill_group(proc)
            break
    # The leader is gone; make sure nothing it started lingers holding our pipes open.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    for r in readers:
        r.join(timeout=5)
    return ProcResult(
        argv=tuple(argv),
        returncode=proc.returncode if proc.returncode is not None else -9,
        stdout="".join(out_parts),
        stderr="".join(err_parts),
        duration=time.monotonic() - start,
        timed_out=timed_out,
        cancelled=cancelled,
    )

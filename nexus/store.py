"""The workspace on disk: finding it, reading every task file fast, writing atomically, locking.

Shell.  Reading 10,000 task files is kept cheap by a cache in `.nexus/cache.bin` keyed by each
file's (mtime_ns, ctime_ns, size, inode): only files that changed since the last run are parsed.
The cache holds parsed *fields* (plain JSON), never code, and a corrupt cache is ignored.

Layout of tasks created by nexus: `tasks/<first character of id>/<id>.md`.  With at most 32 such
folders each commit writes small trees (a flat folder of 10,000 files would make every commit
write a 300 KB tree; see docs/performance.md).  People may put task files anywhere under tasks/.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import marshal
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import Any

try:  # hashlib imports OpenSSL's bindings first (~4 ms of every command); blake2 is built in
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter without the built-in module
    from hashlib import blake2b

from nexus import taskfile
from nexus.config import Config
from nexus.config import load as load_config
from nexus.errors import TaskFileError, WorkspaceError
from nexus.locate import CONFIG_FILE, RUNTIME, nearest_workspace
from nexus.task import ID_ALPHABET, Task

OWNED = ("nexus.yaml", "tasks", "agents", "scratchpads", "plans", "prompts", ".gitignore")
"""Paths (relative to the workspace) that nexus commits; nothing else is ever swept in."""
CACHE_VERSION = (6, taskfile.ROW_FIELDS)  # a new Task field invalidates old caches
MAX_TASK_FILE_BYTES = 1024 * 1024
FEW_CHANGED = 50  # fewer than 1 in 50 files changed since the last scan here: parse them


# The tasks the last scan of each workspace built, with the cache entry each came from: in a
# long-lived process (the daemon; a warm command's spare, which scans while it waits) the next
# scan reuses the task of every file whose stat key is unchanged, and reads no cache file when
# all are.  Keyed as the cache is, so never stale; replaced whole by each scan.  Only kept
# where `keep_scans()` was called: a one-shot command would pay for it at exit (~30 ms at
# 10,000 tasks, the interpreter's teardown of what the memo holds) and never use it.
_BUILT: dict[str, dict[str, tuple[Any, Task | None]]] = {}
_keep = False


def keep_scans() -> None:
    """Keep what each scan built for the next one, from now on (long-lived processes)."""
    global _keep
    _keep = True


@dataclass
class Scan:
    tasks: dict[str, Task] = field(default_factory=dict)
    broken: list[TaskFileError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    digest: str = ""  # changes whenever any task file is added, removed or touched
    # Each task's summary already encoded as JSON, kept in the cache beside its row: a
    # command that prints every task (`list --json`) then encodes nothing (see json_summaries).
    encoded: dict[str, tuple[Task, str]] = field(default_factory=dict)
    keys: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # rel -> stat key


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._config: Config | None = None

    # -- finding -----------------------------------------------------------------------------

    @classmethod
    def find(cls, explicit: str | os.PathLike[str] | None = None) -> Workspace:
        """The workspace named explicitly (or by NEXUS_WORKSPACE), else the nearest folder at or
        above the current one that holds a nexus.yaml."""
        named = explicit or os.environ.get("NEXUS_WORKSPACE")
        if named:
            root = Path(named).expanduser()
            if not (root / CONFIG_FILE).is_file():
                raise WorkspaceError(
                    f"{root} is not a nexus workspace (no {CONFIG_FILE})",
                    fix=f"run `nexus init {root}` or point --workspace at a workspace",
                )
            return cls(root)
        here = Path.cwd().resolve()
        if (found := nearest_workspace(str(here))) is not None:
            return cls(Path(found))
        raise WorkspaceError(
            f"no nexus workspace here ({here} and its parents have no {CONFIG_FILE})",
            fix="run `nexus init DIR`, cd into a workspace, or pass --workspace DIR",
        )

    # -- paths -------------------------------------------------------------------------------

    @property
    def runtime(self) -> Path:
        path = self.root / RUNTIME
        path.mkdir(exist_ok=True)
        return path

    @property
    def tasks_dir(self) -> Path:
        return self.root / "tasks"

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def inside(self, relative: str) -> Path:
        """`relative` resolved inside the workspace; refuses anything that would leave it."""
        if "\0" in relative or relative.startswith(("/", "\\")) or ":" in relative[:3]:
            raise WorkspaceError(f"path {relative!r} must be relative to the workspace")
        target = (self.root / relative).resolve()
        if target != self.root and self.root not in target.parents:
            raise WorkspaceError(
                f"path {relative!r} leaves the workspace",
                fix="use a path inside the workspace, without '..' or links pointing out",
            )
        return target

    def new_task_path(self, task_id: str) -> Path:
        return self.tasks_dir / task_id[0].lower() / f"{task_id}.md"

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.root / CONFIG_FILE, self.runtime / "config.bin")
        return self._config

    def reload_config(self) -> Config:
        self._config = None
        return self.config

    # -- reading -----------------------------------------------------------------------------

    def scan(self) -> Scan:
        """Every task file under tasks/, parsed (from the cache when unchanged)."""
        cache_file = self.runtime / "cache.bin"
        built = _BUILT.get(str(self.root), {})
        fresh: dict[str, Any] = {}
        now_built: dict[str, tuple[Any, Task | None]] = {}
        result = Scan()
        first_path: dict[str, str] = {}
        dirty = False
        prefix = len(str(self.root)) + 1
        files = [(path, path[prefix:], stat_key(st)) for path, st in _walk_md(str(self.tasks_dir))]
        unbuilt = [f for f in files if (b := built.get(f[1])) is None or b[0][0] != f[2]]
        # A few files changed since this process last scanned: parsing them (~0.3 ms each)
        # beats reading the whole cache file (~7 us a task: 70 ms at 10,000 tasks).
        read_cache = len(unbuilt) * FEW_CHANGED > len(files)
        cache = _read_cache(cache_file) if read_cache else {}
        misses = [(path, rel, key[2]) for path, rel, key in unbuilt
                  if (cached := cache.get(rel)) is None or cached[0] != key]  # fmt: skip
        parsed = _parse_many(misses)
        for _path, rel, key in files:
            known = built.get(rel)
            if known is not None and known[0][0] == key:
                entry, task = known
            else:
                entry = cache.get(rel)
                if entry is None or entry[0] != key:
                    entry = (key, *parsed[rel])
                    dirty = True
                task = None if entry[2] is not None else taskfile.task_from_row(entry[1], rel)
            fresh[rel] = entry
            if _keep:
                now_built[rel] = (entry, task)
            _, _row, error, warnings, encoded = entry
            if task is None:
                message, line, field_, fix = error
                result.broken.append(
                    TaskFileError(message, path=rel, line=line, field=field_, fix=fix)
                )
                continue
            if warnings:
                result.warnings.extend(warnings)
            if task.id in first_path:
                result.broken.append(
                    TaskFileError(
                        f"duplicate id {task.id!r}: {first_path[task.id]} has it too",
                        path=rel,
                        field="id",
                        fix="give one of the two files another id (or delete the copy)",
                    )
                )
                continue
            first_path[task.id] = rel
            result.tasks[task.id] = task
            result.encoded[task.id] = (task, encoded or _encode(task))
        if dirty or (read_cache and len(fresh) != len(cache)):
            _write_cache(cache_file, fresh)
        if _keep:
            _BUILT[str(self.root)] = now_built
        result.keys = {rel: entry[0] for rel, entry in fresh.items()}
        result.digest = files_digest(result.keys)
        return result

    def owned_stat_digest(self, git_dir: Path, owned: Sequence[str] | None = None) -> str:
        """A digest of the stat of every file nexus owns outside tasks/ and of git's HEAD,
        index and reflog: equal digests mean nothing there changed.  `owned`: the first half
        (`owned_stats`) as read earlier, with git's half read now."""
        parts = list(self.owned_stats() if owned is None else owned)
        for name in ("HEAD", "index", "logs/HEAD", "packed-refs"):
            parts.append(f"{name}:{_stat_key(git_dir / name)}")
        with contextlib.suppress(OSError):
            parts.append((git_dir / "HEAD").read_text())
        return blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()

    def owned_stats(self) -> list[str]:
        """The stat of every file nexus owns outside tasks/."""
        parts: list[str] = []
        for name in OWNED:
            if name == "tasks":
                continue
            top = self.root / name
            if top.is_file():
                parts.append(f"{name}:{_stat_key(top)}")
            elif top.is_dir():
                for path, st in _walk_all(str(top)):
                    parts.append(f"{path}:{st.st_mtime_ns},{st.st_ctime_ns},{st.st_size}")
        return parts

    def read_text(self, path: Path) -> str:
        data = path.read_bytes()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TaskFileError(
                f"not UTF-8 text (byte {exc.start})",
                path=self.rel(path),
                fix="save the file as UTF-8",
            ) from None

    def load_task(self, task: Task) -> tuple[Task, str]:
        """The task re-read from its file (with its body) and the file's exact text."""
        path = self.root / task.path
        text = self.read_text(path)
        return taskfile.parse(text, task.path, Path(task.path).stem).task, text

    # -- writing -----------------------------------------------------------------------------

    def write_atomic(self, path: Path, text: str) -> None:
        """Write `text` so that readers see the old file or the new one, never half of it.
        Atomic against a crashed or killed process.  No fsync: git does not fsync the objects
        of the commit that follows either (core.fsync), so it would buy no durability against
        power loss while costing ~2 ms a file (measured); set core.fsync in git for that."""
        self.write_many({path: text})

    def write_many(
        self,
        files: Mapping[Path, str],
        before_rename: Callable[[], None] | None = None,
        rename: Callable[[Path, Path], None] = os.replace,
    ) -> None:
        """Write several files atomically, all or none against a write error: every new text
        goes to a temp file first (where a full disk fails), and only when all are written
        are they renamed into place.  A write error removes the temps, changes nothing and
        raises WorkspaceError naming the file."""
        temps: list[tuple[Path, Path]] = []
        try:
            for path, text in files.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
                temps.append((tmp, path))
                with open(tmp, "w", encoding="utf-8", newline="") as fh:
                    _injected_fault(path)
                    fh.write(text)
            if before_rename is not None:
                before_rename()  # the last check (a compare-and-swap), as late as it can be
        except BaseException as exc:
            for tmp, _ in temps:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            if isinstance(exc, OSError):
                raise WorkspaceError(
                    f"cannot write {_shown(self.root, temps[-1][1]) if temps else 'a file'}: "
                    f"{exc.strerror or exc}; nothing was changed",
                    fix="free disk space (or fix the permissions); nexus tries again by itself",
                ) from None
            raise
        for tmp, path in temps:
            rename(tmp, path)

    def new_id(self, taken: set[str] | dict[str, Any]) -> str:
        """A fresh id: 8 random Crockford base32 characters (40 bits).  Random, not sequential,
        so two clones creating tasks at the same moment do not collide (the chance for two sets
        of 10,000 ids is about 1 in 10,000)."""
        import secrets  # only commands that create tasks pay for it (it loads OpenSSL)

        while True:
            tid = "".join(secrets.choice(ID_ALPHABET) for _ in range(8))
            if tid not in taken and not self.new_task_path(tid).exists():
                return tid

    # -- locking -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout: float = 30.0) -> Iterator[None]:
        """The workspace write lock: one nexus process mutates the workspace at a time."""
        with hold_lock(self.runtime / "lock", timeout=timeout, what="workspace"):
            yield


@contextlib.contextmanager
def hold_lock(path: Path, *, timeout: float, what: str) -> Iterator[None]:
    """An flock on `path`; its holder (pid, host, command) is written beside it so a waiting
    process can say who holds it.  The kernel drops the lock when the holder dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    info = path.with_name(path.name + ".owner")
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_owner(info)
                    raise WorkspaceError(
                        f"the {what} is locked by {holder}",
                        fix="wait for it to finish, or stop that process",
                    ) from None
                time.sleep(0.02)
        owner = json.dumps(
            {"pid": os.getpid(), "host": os.uname().nodename, "command": " ".join(sys.argv[:3])}
        )
        with contextlib.suppress(OSError):
            # Reading is much cheaper than rewriting (the daemon locks twice a wave).
            if not info.exists() or info.read_text() != owner:
                info.write_text(owner)
        yield
    finally:
        os.close(fd)  # releases the flock


def try_lock(path: Path) -> int | None:
    """Take an flock without waiting; the fd to keep open, or None if someone holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{6}\.tmp$")  # write_many's temps
_RUNTIME_TEMP = re.compile(r"^.+\.(\d+)\.tmp$")  # intent.json.<pid>.tmp, .cache.<pid>.tmp
_DAEMON_TEMPS = (".daemon-state.tmp", "results/.*.tmp")  # only the daemon writes these


def remove_stale_temps(root: Path) -> list[str]:
    """Delete temp files left by processes killed mid-write: atomic-write temps in nexus's
    folders and pid-named temps in `.nexus/` whose process is gone, and the daemon's own
    temps (call it holding the daemon lock).  Their paths, relative to `root`."""
    found: list[str] = []
    for name in OWNED:
        top = root / name
        if top.is_dir():
            found += [p for p, _st in _walk_all(str(top)) if _dead(_TEMP_NAME, p)]
    runtime = root / RUNTIME
    if runtime.is_dir():
        found += [str(p) for p in runtime.iterdir() if _dead(_RUNTIME_TEMP, str(p))]
        found += [str(p) for pattern in _DAEMON_TEMPS for p in runtime.glob(pattern)]
    removed = []
    for path in found:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(os.path.relpath(path, root))
    return removed


def _dead(pattern: re.Pattern[str], path: str) -> bool:
    m = pattern.match(os.path.basename(path))
    return m is not None and not _alive(int(m.group(1)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


FAULT_ENV = "NEXUS_FAULT_WRITES"
"""Tests only (benchmarks/crash.py, tests/test_crash.py): while the file this variable names
exists, every write of a workspace file fails as on a full disk (ENOSPC)."""


def _shown(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _injected_fault(path: Path) -> None:
    flag = os.environ.get(FAULT_ENV)
    if flag and os.path.exists(flag):
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected: {FAULT_ENV})")


def _read_owner(info: Path) -> str:
    try:
        data = json.loads(info.read_text())
        return f"pid {data['pid']} on {data['host']} ({data['command']})"
    except (OSError, ValueError, KeyError):
        return "another process"


def stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """What says a task file is unchanged: the key of the cache, the scan and its digest."""
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def files_digest(keys: Mapping[str, tuple[int, int, int, int]]) -> str:
    """The digest of the task files' stat keys (equal digests: no task file changed)."""
    return blake2b(repr(sorted(keys.items())).encode(), digest_size=16).hexdigest()


def _walk_md(folder: str) -> list[tuple[str, os.stat_result]]:
    """(path, stat) of every visible .md file below `folder`, sorted by path.  Written as a
    plain loop with one stat per entry: this is the hot path of every command."""
    out: list[tuple[str, os.stat_result]] = []
    pending = [folder]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if S_ISDIR(st.st_mode):
                pending.append(entry.path)
            elif S_ISREG(st.st_mode) and name.endswith(".md"):
                out.append((entry.path, st))
            elif S_ISLNK(st.st_mode) and (name.endswith(".md") or os.path.isdir(entry.path)):
                out.append((entry.path, st))  # reported, never followed: see _parse_entry
    out.sort()
    return out


def _walk_all(folder: str) -> Iterator[tuple[str, os.stat_result]]:
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_all(entry.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                yield entry.path, entry.stat(follow_symlinks=False)


def _stat_key(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return "-"
    return f"{st.st_mtime_ns},{st.st_ctime_ns},{st.st_size},{st.st_ino}"


def json_summaries(tasks: Iterable[Task], encoded: Mapping[str, tuple[Task, str]]) -> str:
    """`json.dumps([t.summary() for t in tasks])`, reusing the encodings a scan cached for
    tasks that have not changed since (the very same Task value)."""
    parts = []
    for t in tasks:
        cached = encoded.get(t.id)
        parts.append(cached[1] if cached is not None and cached[0] is t else _encode(t))
    return "[" + ",".join(parts) + "]"


def _encode(task: Task) -> str:
    return json.dumps(task.summary(), ensure_ascii=False)


PARALLEL_PARSE_MIN = 500  # files to parse before it pays to start worker processes


def _parse_many(
    files: Sequence[tuple[str, str, int]],
) -> dict[str, tuple[Any, Any, list[str], str | None]]:
    """`_parse_entry` of each (path, rel, size), by rel.  Many files (a first run, a fresh
    clone: 10,000 files took 3.5 s on one core) are parsed by one forked process per core;
    never from a process running threads (the daemon, the web server), where fork is unsafe:
    they parse in order, once, when they start."""
    cores = os.cpu_count() or 1
    if len(files) < PARALLEL_PARSE_MIN or cores < 2 or threading.active_count() > 1:
        return {rel: _parse_entry(path, rel, size) for path, rel, size in files}
    import concurrent.futures
    import multiprocessing

    chunks = [files[i::cores] for i in range(cores)]
    try:
        with concurrent.futures.ProcessPoolExecutor(
            cores, mp_context=multiprocessing.get_context("fork")
        ) as pool:
            done = list(pool.map(_parse_chunk, chunks))
    except (OSError, concurrent.futures.process.BrokenProcessPool):
        return {rel: _parse_entry(path, rel, size) for path, rel, size in files}
    return {rel: out for part in done for rel, out in part}


def _parse_chunk(
    files: Sequence[tuple[str, str, int]],
) -> list[tuple[str, tuple[Any, Any, list[str], str | None]]]:
    return [(rel, _parse_entry(path, rel, size)) for path, rel, size in files]


def _parse_entry(path: str, rel: str, size: int) -> tuple[Any, Any, list[str], str | None]:
    """(row, error, warnings, encoded summary) for one file; error is (message, line, field,
    fix)."""
    if os.path.islink(path):
        link = (
            "is a symbolic link; nexus reads only regular files under tasks/ (a link can point "
            "outside the workspace)"
        )
        return None, (link, None, None, "replace the link with a copy of the file"), [], None
    if size > MAX_TASK_FILE_BYTES:
        return (
            None,
            (
                f"the file is {size} bytes; task files are limited to {MAX_TASK_FILE_BYTES}",
                None,
                None,
                "move large content to another file and list it under 'context'",
            ),
            [],
            None,
        )
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            None,
            (f"not UTF-8 text (byte {exc.start})", None, None, "save the file as UTF-8"),
            [],
            None,
        )
    except OSError as exc:
        return None, (f"cannot read: {exc.strerror}", None, None, "check its permissions"), [], None
    if "\0" in text:
        return (
            None,
            ("the file contains NUL bytes", None, None, "remove them; task files are text"),
            [],
            None,
        )
    try:
        parsed = taskfile.parse(text, rel, rel.rsplit("/", 1)[-1].removesuffix(".md"))
    except TaskFileError as exc:
        return None, (exc.detail, exc.line, exc.field, exc.fix), [], None
    task = parsed.task
    return taskfile.task_row(task), None, list(parsed.warnings), _encode(task)


def _read_cache(path: Path) -> dict[str, Any]:
    # marshal: ten times faster than json for 10,000 rows.  The file is nexus's own, in the
    # git-ignored .nexus/ folder; anything unreadable is simply ignored.
    try:
        with open(path, "rb") as fh:
            data = marshal.loads(fh.read())  # load(fh) reads in tiny chunks: 30x slower
        if isinstance(data, tuple) and data[0] == CACHE_VERSION and isinstance(data[1], dict):
            files: dict[str, Any] = data[1]
            return files
    except (OSError, EOFError, ValueError, TypeError, IndexError):
        pass
    return {}


def _write_cache(path: Path, files: dict[str, Any]) -> None:
    tmp = path.with_name(f".cache.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            marshal.dump((CACHE_VERSION, files), fh)
        os.replace(tmp, path)
    except (OSError, ValueError):  # a cache we cannot write only costs speed
        with contextlib.suppress(OSError):
            tmp.unlink()


def swap(a: Path, b: Path) -> bool:
    """Exchange two files atomically (Linux renameat2 RENAME_EXCHANGE): afterwards `a` holds
    exactly what `b` held the moment before.  False where that is not available or `b` does
    not exist; then nothing happened."""
    func = _renameat2()
    if func is None:
        return False
    return int(func(-100, os.fsencode(a), -100, os.fsencode(b), 2)) == 0  # AT_FDCWD, EXCHANGE


@functools.cache
def _renameat2() -> Any:
    import ctypes

    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:
        return None

"""Git as the journal: commits of exactly the given paths, status, log, file contents at HEAD.

Shell.  State commits are built with plumbing, never `git commit`:

1. a private index (kept in the workspace's `.nexus/`, mirroring HEAD) gets the changed paths;
2. `write-tree` + `commit-tree` make the commit: no hooks run, nothing the person staged is in it;
3. `update-ref HEAD new old` moves the branch only if nobody committed meanwhile (else we
   rebuild on the new HEAD and try again);
4. the person's own index is updated for *our paths only*, so `git status` stays clean and
   whatever they staged stays staged.

Measured on 10,000 tasks: about 45 ms per commit, against ~80 ms for `git commit --only` and
~300 ms for GitPython's IndexFile (see docs/performance.md).  Long-lived processes (the daemon,
the warm command server) do steps 2-3 and the reading half of 4 in-process with libgit2
(`commit_in_process`): two git processes a commit instead of six.  A lock file left by a dead git
process (`index.lock`, `<ref>.lock`) older than STALE_LOCK_SECONDS is removed with a warning.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nexus.errors import GitError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
ZERO_OID = "0" * 40
STALE_LOCK_SECONDS = 60.0
NEXUS_IDENT = ("nexus", "nexus@localhost")

_in_process = False


def commit_in_process() -> None:
    """Build commits with libgit2 (pygit2) in this process from now on, where it can: for
    long-lived processes only, since importing pygit2 (~60 ms) costs a short command more
    than the four git processes (~10 ms) it saves."""
    global _in_process
    _in_process = True


_ENV_KEEP = (
    "PATH",
    "HOME",
    "XDG_CONFIG_HOME",
    "LANG",
    "TZ",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_CEILING_DIRECTORIES",
)


def _git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    env.update(
        LC_ALL="C",
        GIT_TERMINAL_PROMPT="0",
        GIT_LITERAL_PATHSPECS="1",
        GIT_OPTIONAL_LOCKS="0",
    )
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class StatusEntry:
    code: str  # two-letter porcelain code, e.g. " M", "??", "D "
    path: str  # relative to the repository top level


Warn = Callable[[str], None]


class Repo:
    """A git repository, addressed from any folder inside it."""

    def __init__(self, top: Path, git_dir: Path, warn: Warn | None = None) -> None:
        self.top = top
        self.git_dir = git_dir
        self.warn: Warn = warn or (lambda _msg: None)
        self._person: tuple[str, str] | bool | None = False
        self._libgit2: _Libgit2 | Literal[False] | None = None  # False: not here, or unusable

    @classmethod
    def discover(cls, path: Path, warn: Warn | None = None) -> Repo | None:
        ordinary = _ordinary_top(path)
        if ordinary is not None:
            return cls(ordinary, ordinary / ".git", warn)
        try:
            out = _run(["rev-parse", "--show-toplevel", "--absolute-git-dir"], cwd=path)
        except GitError:
            return None
        top, git_dir = out.splitlines()[:2]
        return cls(Path(top), Path(git_dir), warn)

    @classmethod
    def init(cls, path: Path) -> Repo:
        import git  # GitPython: creating a repository is a one-off, not a hot path

        try:
            git.Repo.init(path, initial_branch="main")
        except Exception as exc:  # GitPython raises its own tree; convert at the boundary
            raise GitError(f"git init failed in {path}: {exc}") from None
        repo = cls.discover(path)
        if repo is None:
            raise GitError(f"git init did not create a repository in {path}")
        return repo

    # -- running git -------------------------------------------------------------------------

    def git(
        self,
        args: Sequence[str],
        *,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        ok_codes: Iterable[int] = (0,),
    ) -> str:
        return _run(args, cwd=self.top, input=input, env=env, ok_codes=ok_codes)

    def rel(self, path: Path) -> str:
        """`path` relative to the top level, with '/' separators."""
        return path.resolve().relative_to(self.top.resolve()).as_posix()

    # -- reading -----------------------------------------------------------------------------

    def head(self) -> tuple[str, str] | None:
        """(commit, tree) of HEAD, or None on an unborn branch."""
        try:
            out = self.git(["rev-parse", "-q", "HEAD", "HEAD^{tree}"])
        except GitError:
            return None
        commit, tree = out.split()
        return commit, tree

    def status(self, pathspecs: Sequence[str]) -> list[StatusEntry]:
        out = self.git(
            [
                "status",
                "--porcelain=v1",
                "-z",
                "--untracked-files=all",
                "--no-renames",
                "--ignored=no",
                "--",
                *pathspecs,
            ]
        )
        return [StatusEntry(rec[:2], rec[3:]) for rec in out.split("\0") if len(rec) > 3]

    def show_many(self, rev: str, paths: Sequence[str]) -> dict[str, bytes | None]:
        """Contents of `paths` at `rev` in one `git cat-file --batch` (None: not there)."""
        out: dict[str, bytes | None] = {p: None for p in paths if "\n" in p}  # not askable
        paths = [p for p in paths if "\n" not in p]
        if not paths:
            return out
        data = "".join(f"{rev}:{p}\n" for p in paths).encode()
        proc = subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=self.top,
            env=_git_env(),
            input=data,
            capture_output=True,
            check=False,
        )
        buf = proc.stdout
        pos = 0
        for p in paths:
            nl = buf.find(b"\n", pos)
            # "<oid> <type> <size>", or "<name> missing" where the name may hold spaces.
            header = buf[pos:nl].split()
            pos = nl + 1
            if header[-1:] in ([b"missing"], [b"ambiguous"]):
                out[p] = None
            elif len(header) == 3 and header[1] == b"blob":
                size = int(header[2])
                out[p] = buf[pos : pos + size]
                pos += size + 1
            else:
                out[p] = None
                if len(header) == 3:  # a tree or other object: skip its content
                    pos += int(header[2]) + 1
        return out

    def log(self, fmt: str, pathspecs: Sequence[str], extra: Sequence[str] = ()) -> str:
        if self.head() is None:
            return ""
        return self.git(["log", f"--format={fmt}", *extra, "--", *pathspecs])

    def person(self) -> tuple[str, str] | None:
        """The person's configured identity (user.name, user.email), if any."""
        if self._person is False:
            try:
                name = self.git(["config", "--get", "user.name"]).strip()
                email = self.git(["config", "--get", "user.email"]).strip()
                self._person = (name, email) if name and email else None
            except GitError:
                self._person = None
        return self._person if isinstance(self._person, tuple) else None

    # -- committing --------------------------------------------------------------------------

    def commit_paths(
        self,
        paths: Sequence[str],
        message: str,
        *,
        private_index: Path,
        author: tuple[str, str] | None = None,
    ) -> str | None:
        """Commit the current working-tree state of exactly `paths` (relative to the top level;
        a missing file is committed as deleted) on top of HEAD.  Returns the new commit, or None
        when the paths already match HEAD."""
        if not paths:
            return None
        head_file = private_index.with_name(private_index.name + ".head")
        penv = {"GIT_INDEX_FILE": str(private_index)}
        name, email = author or NEXUS_IDENT
        ident = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": NEXUS_IDENT[0],
            "GIT_COMMITTER_EMAIL": NEXUS_IDENT[1],
        }
        stdin_paths = "".join(p + "\0" for p in paths)
        for _attempt in range(8):
            base = _read_head_file(head_file)
            if base is None or not private_index.exists():
                base = self.head() or (ZERO_OID, EMPTY_TREE)
                self._clear_lock(Path(str(private_index) + ".lock"), force=True)
                if base[0] == ZERO_OID:
                    private_index.unlink(missing_ok=True)
                    self.git(["read-tree", "--empty"], env=penv)
                else:
                    self.git(["read-tree", base[0]], env=penv)
                _write_head_file(head_file, base)
            self._clear_lock(Path(str(private_index) + ".lock"), force=True)
            # From here until HEAD moves, the private index holds paths HEAD does not: a
            # process killed in between must not leave them to be swept into the next commit
            # (under another message), so the index counts as unknown until the end.
            head_file.unlink(missing_ok=True)
            self.git(
                ["update-index", "--add", "--remove", "-z", "--stdin"], input=stdin_paths, env=penv
            )
            lg2 = self._in_process()
            staged = lg2.read_index(private_index) if lg2 else None
            tree = (lg2 and lg2.write_tree(staged)) or self.git(["write-tree"], env=penv).strip()
            entries = lg2.entries(staged, paths, self.top) if lg2 else None
            if tree == base[1]:
                _write_head_file(head_file, base)
                self._sync_index(paths, penv, entries)
                return None
            parents = [] if base[0] == ZERO_OID else ["-p", base[0]]
            commit = (lg2 and lg2.commit(tree, parents[1:], message, ident)) or self.git(
                ["commit-tree", tree, *parents, "-F", "-"], input=message, env=ident
            ).strip()
            if self._move_head(commit, base[0], message):
                _write_head_file(head_file, (commit, tree))
                self._sync_index(paths, penv, entries)
                return commit
            head_file.unlink(missing_ok=True)  # HEAD moved under us: rebuild on the new one
        raise GitError(
            "could not commit: HEAD kept moving while nexus tried to commit (8 attempts)",
            fix="stop other processes committing in a loop, then run `nexus resume`",
        )

    def _in_process(self) -> _Libgit2 | None:
        if self._libgit2 is None:
            self._libgit2 = (_Libgit2.open(self.git_dir) if _in_process else None) or False
        return self._libgit2 or None

    def warm_up(self) -> None:
        """Open the repository for libgit2 and read HEAD's tree, ahead of a commit."""
        if lg2 := self._in_process():
            with lg2.lock, contextlib.suppress(Exception):
                lg2.repo.revparse_single("HEAD^{tree}")

    def _move_head(self, new: str, old: str, message: str) -> bool:
        subject = message.splitlines()[0][:200]
        lg2 = self._in_process()
        moved = lg2.move_head(new, old, subject) if lg2 else None
        if moved is not None:
            return moved
        for _ in range(40):
            try:
                self.git(["update-ref", "-m", subject, "HEAD", new, old])
                return True
            except GitError as exc:
                text = str(exc)
                lock = _lock_in(text)
                if lock is not None:
                    if not self._clear_lock(lock):
                        time.sleep(0.05)
                    continue
                if "but expected" in text or "reference already exists" in text:
                    return False
                if "unable to resolve reference" in text or "cannot lock ref" in text:
                    return False
                raise
        raise GitError(
            "could not update HEAD: a git lock stayed in place for 2 s",
            fix="if no git command is running, delete the .lock file git names and retry",
        )

    def _sync_index(
        self, paths: Sequence[str], penv: Mapping[str, str], present: Mapping[str, str] | None
    ) -> None:
        """Make the person's index agree with HEAD for our paths only.  `present`: the
        private index's "mode sha" of each path in it, when already known."""
        if present is None:
            listed = self.git(["ls-files", "-s", "-z", "--", *paths], env=penv)
            present = {}
            for rec in listed.split("\0"):
                if rec:
                    meta, _, path = rec.partition("\t")
                    mode, sha, _stage = meta.split()
                    present[path] = f"{mode} {sha}"
        info = "".join(f"{present.get(p) or f'0 {ZERO_OID}'}\t{p}\0" for p in paths)
        for _ in range(20):
            try:
                self.git(["update-index", "-z", "--index-info"], input=info)
                return
            except GitError as exc:
                lock = _lock_in(str(exc))
                if lock is None:
                    raise
                if not self._clear_lock(lock):
                    time.sleep(0.05)
        self.warn(
            "git's index is locked by another git command; nexus's commit is made, but "
            "`git status` may show nexus's files as changed until that command finishes"
        )

    def _clear_lock(self, lock: Path, force: bool = False) -> bool:
        """Remove a lock file left by a dead process.  True when it was removed."""
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return False
        if not force and age < STALE_LOCK_SECONDS:
            return False
        try:
            lock.unlink()
        except FileNotFoundError:
            return False
        if not force:
            self.warn(f"removed {lock} left by a git process that died {age:.0f}s ago")
        return True


class _Libgit2:
    """The middle of a commit (write-tree, commit-tree, update-ref, ls-files) in-process:
    ~2 ms instead of four git processes (~10 ms).  Staging the working tree's files and the
    person's index stay with git, which knows every filter, mode and index extension.
    Whatever libgit2 cannot do here (an index it does not read, a locked or moved reference,
    an unborn branch) is answered None, and the caller asks git, whose answer is the rule."""

    def __init__(self, pygit2: Any, repo: Any) -> None:
        self.pygit2 = pygit2
        self.repo = repo
        self.lock = threading.Lock()  # a pygit2 Repository is not for two threads at once

    @classmethod
    @functools.cache
    def open(cls, git_dir: Path) -> _Libgit2 | None:
        """One per repository and process (its caches are worth keeping), or None."""
        try:
            import pygit2

            # Writing a tree, libgit2 would look up every object its entries name (8 of the
            # 9 ms at 1,000 tasks).  They are in the object store: git put them there (read-tree
            # from HEAD, update-index hashing the files) before the index named them.
            pygit2.settings.enable_strict_object_creation(False)
            return cls(pygit2, pygit2.Repository(str(git_dir)))
        except Exception:  # not installed, or a repository libgit2 refuses: git does it all
            return None

    def read_index(self, path: Path) -> Any:
        index = _index_class(self.pygit2)
        try:
            return index(str(path))
        except Exception:  # pygit2.GitError, or anything else libgit2 did not expect
            return None

    def write_tree(self, index: Any) -> str | None:
        if index is None:
            return None
        try:
            with self.lock:
                return str(index.write_tree(self.repo))
        except Exception:
            return None

    def entries(self, index: Any, paths: Sequence[str], top: Path) -> dict[str, str] | None:
        """ "mode sha" of each path in the index; None when one is missing but on disk."""
        if index is None:
            return None
        found: dict[str, str] = {}
        for path in paths:
            try:
                entry = index[path]
            except (KeyError, ValueError, UnicodeError):
                if os.path.lexists(top / path):
                    return None
                continue
            found[path] = f"{entry.mode:o} {entry.id}"
        return found

    def commit(
        self, tree: str, parents: Sequence[str], message: str, ident: Mapping[str, str]
    ) -> str | None:
        sig = self.pygit2.Signature
        try:
            with self.lock:
                oid = self.repo.create_commit(
                    None,  # no reference moved: _move_head does that, compare-and-swap
                    sig(ident["GIT_AUTHOR_NAME"], ident["GIT_AUTHOR_EMAIL"]),
                    sig(ident["GIT_COMMITTER_NAME"], ident["GIT_COMMITTER_EMAIL"]),
                    message,
                    tree,
                    list(parents),
                )
            return str(oid)
        except Exception:
            return None

    def move_head(self, new: str, old: str, subject: str) -> bool | None:
        """HEAD (or the branch it names) from `old` to `new`, or False when it is not at `old`:
        libgit2 compares under the reference's lock, as `git update-ref` does."""
        if old == ZERO_OID:
            return None
        try:
            with self.lock:
                refs = self.repo.references
                head = refs["HEAD"]
                name = head.target if isinstance(head.target, str) else "HEAD"
                ref = refs[name]
                if str(ref.target) != old:
                    return False
                ref.set_target(new, subject)  # fails if it moved since `refs[name]` read it
            return True
        except Exception:  # locked, moved meanwhile, packed oddly: git says what holds
            return None


@functools.cache
def _index_class(pygit2: Any) -> Any:
    class Index(pygit2.Index):  # type: ignore[misc]
        """pygit2's Index, whose __del__ raises AttributeError when opening the file failed
        (pygit2 1.21): printed as "Exception ignored" wherever a later garbage collection
        happens to run it, in the middle of a command's output."""

        def __del__(self) -> None:
            if hasattr(self, "_index"):
                super().__del__()

    return Index


def _ordinary_top(path: Path) -> Path | None:
    """`path`, resolved, when it is the top of an ordinary repository (a `.git` folder whose
    own config neither sets `core.worktree` nor says bare; git reads neither from included
    files): what `git rev-parse` would answer, without a git process (~3 ms on every command).
    None: ask git."""
    git_dir = path / ".git"
    try:
        config = (git_dir / "config").read_text(errors="replace")
    except OSError:  # no .git folder: a subfolder of a repository, a linked worktree's file
        return None
    if git_dir.is_symlink() or not (git_dir / "HEAD").is_file():
        return None
    for line in config.lower().splitlines():
        key, _, value = line.partition("=")
        if "worktree" in key:
            return None
        if key.strip() == "bare" and value.strip() != "false":
            return None
    return path.resolve()


def _lock_in(text: str) -> Path | None:
    """The lock file git complains about, if that is the complaint."""
    marker = "Unable to create '"
    i = text.find(marker)
    if i >= 0 and ".lock'" in text[i:]:
        return Path(text[i + len(marker) : text.index(".lock'", i) + len(".lock")])
    return None


def _read_head_file(path: Path) -> tuple[str, str] | None:
    try:
        commit, tree = path.read_text().split()
        return commit, tree
    except (OSError, ValueError):
        return None


def _write_head_file(path: Path, base: tuple[str, str]) -> None:
    path.write_text(f"{base[0]} {base[1]}\n")


def _run(
    args: Sequence[str],
    *,
    cwd: Path,
    input: str | bytes | None = None,
    env: Mapping[str, str] | None = None,
    ok_codes: Iterable[int] = (0,),
) -> str:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_git_env(env),
            input=input.encode() if isinstance(input, str) else input,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed", fix="install git (2.30 or newer)") from None
    if proc.returncode not in tuple(ok_codes):
        err = proc.stderr.decode(errors="replace").strip()
        raise GitError(f"git {args[0]} failed: {err or 'exit code ' + str(proc.returncode)}")
    return proc.stdout.decode(errors="replace")

"""The write path every operation shares: reading the workspace, syncing (repair, people's
edits, promotion) and committing a batch with its trailers."""

from __future__ import annotations

import datetime as dt
import functools
import json
import marshal
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, field, replace
from pathlib import Path
from typing import Any

from nexus import dag, journal, promote, taskfile
from nexus.changes import Batch
from nexus.errors import TaskFileError, ValidationError, WorkspaceError
from nexus.gitrepo import Repo
from nexus.store import MAX_TASK_FILE_BYTES, OWNED, Workspace, files_digest, stat_key, swap
from nexus.task import Status, Task, Transition, can_transition, id_problem


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Snapshot:
    tasks: dict[str, Task]
    broken: list[TaskFileError]
    warnings: list[str]
    digest: str = ""
    _problems: list[dag.Problem] | None = None
    encoded: dict[str, tuple[Task, str]] = field(default_factory=dict)  # see Scan.encoded
    graph: dag.Graph | None = None  # reverse edges, carried over while no dep changes
    problems_file: Path | None = None  # where problems are kept for this digest (see below)

    def structure(self) -> dag.Graph:
        """Who depends on whom and who is whose child (computed on first use: ~25 ms at
        10,000 tasks, so a batch reuses its snapshot's)."""
        if self.graph is None:
            self.graph = dag.graph(self.tasks)
        return self.graph

    @property
    def problems(self) -> list[dag.Problem]:
        """Structural problems of the graph (computed on first use: cycles cost a full pass)."""
        if self._problems is None:
            self._problems = self._cached_problems()
            if self._problems is None:
                self._problems = dag.problems(self.tasks)
                self._keep_problems(self._problems)
        return self._problems

    # A scan's digest covers the stat of every task file, and the problems are a function of
    # the task files alone: kept under that digest, `nexus status` and `validate` skip the
    # graph walk (~90 ms at 10,000 tasks) while no task file changes.

    def _cached_problems(self) -> list[dag.Problem] | None:
        if not self.digest or self.problems_file is None:
            return None
        try:
            digest, rows = marshal.loads(self.problems_file.read_bytes())
            return [dag.Problem(*row) for row in rows] if digest == self.digest else None
        except (OSError, EOFError, ValueError, TypeError):
            return None

    def _keep_problems(self, problems: list[dag.Problem]) -> None:
        if not self.digest or self.problems_file is None:
            return
        rows = [astuple(p) for p in problems]
        tmp = self.problems_file.with_name(f".problems.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(marshal.dumps((self.digest, rows)))
            os.replace(tmp, self.problems_file)
        except OSError:  # a cache we cannot write only costs speed
            tmp.unlink(missing_ok=True)


SAVE_MERGES = 8  # a person's saves merged into one change before it gives up (an editor
# saving in a loop); a try is a few ms, so a save must land in that window every time


class _SavedMeanwhile(WorkspaceError):
    def __init__(self, message: str, *, fix: str, saved: Mapping[str, str | None]) -> None:
        super().__init__(message, fix=fix)
        self.saved = saved


@dataclass
class SyncReport:
    repaired: list[str] = field(default_factory=list)  # paths committed from an intent
    person_edits: list[str] = field(default_factory=list)  # paths committed as the person's
    transitions: list[Transition] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)


class ServiceCore:
    def __init__(
        self,
        ws: Workspace,
        actor: str = "cli",
        now: Callable[[], dt.datetime] = utcnow,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.ws = ws
        self.actor = actor
        self.now = now
        self.warn = warn or (lambda _m: None)
        repo = Repo.discover(ws.root, warn=self.warn)
        if repo is None:
            raise WorkspaceError(
                f"{ws.root} is not inside a git repository",
                fix=f"run `git init` in {ws.root} (or recreate it with `nexus init`)",
            )
        self.repo = repo
        self._snap: Snapshot | None = None
        self.written: list[str] = []  # workspace-relative paths this service wrote (for the daemon)
        self._scan_keys: dict[str, tuple[int, int, int, int]] = {}
        # What the last sync found settled (committed and promoted): the task files' stat keys
        # and the stat of nexus's other files.  None: it was not.
        self._settled: tuple[dict[str, tuple[int, int, int, int]], list[str]] | None = None

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The workspace as it is on disk now."""
        scan = self.ws.scan()
        self._scan_keys = scan.keys
        self._snap = Snapshot(
            scan.tasks,
            scan.broken,
            scan.warnings,
            scan.digest,
            encoded=scan.encoded,
            problems_file=self.ws.runtime / "problems.bin",
        )
        return self._snap

    def current(self) -> Snapshot:
        """The snapshot this service last read or wrote (read now if there is none)."""
        return self._snap if self._snap is not None else self.snapshot()

    def resolve(self, tasks: Mapping[str, Task], ref: str) -> Task:
        """A task by id or by a unique id prefix."""
        if problem := id_problem(ref):
            raise ValidationError(f"task id {problem}")
        if ref in tasks:
            return tasks[ref]
        matches = [t for tid, t in tasks.items() if tid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(sorted(t.id for t in matches)[:5])
            raise ValidationError(
                f"{ref!r} matches several tasks ({names})", fix="type more of the id"
            )
        raise ValidationError(f"no task {ref!r}", fix="see the ids with `nexus list`")

    def policy(self) -> promote.RetryPolicy:
        lim = self.ws.config.limits
        return promote.RetryPolicy(max_retries=lim.max_retries, backoff=lim.retry_backoff)

    @property
    def _pathspecs(self) -> list[str]:
        return [self.repo.rel(self.ws.root / p) for p in OWNED]

    # -- the write path ----------------------------------------------------------------------

    def sync(self) -> SyncReport:
        """Repair, commit people's edits, promote: what every command does first."""
        with self.ws.lock():
            return self._sync_locked()[0]

    def _sync_locked(self) -> tuple[SyncReport, Snapshot]:
        report = SyncReport()
        snap = self.snapshot()
        owned = self.ws.owned_stats()
        fingerprint = snap.digest + self.ws.owned_stat_digest(self.repo.git_dir, owned)
        intent = (self.ws.runtime / "intent.json").exists()
        self._settled = None
        if not intent and _read(self._settled_file) == fingerprint:
            # Nothing changed since a sync found the workspace committed and fully promoted:
            # only time can have moved something (a failed task's retry backoff running out).
            seeds = [t.id for t in snap.tasks.values() if t.status is Status.FAILED]
            self._settled = (self._scan_keys, owned)
            return report, self._promote_and_commit(snap, report, seeds)
        self._repair(report)
        self._commit_person_edits(report)
        if report.repaired or report.person_edits:
            snap = self.snapshot()
        snap = self._promote_and_commit(snap, report, None)
        if not (report.repaired or report.person_edits or report.transitions):
            self._settled_file.write_text(fingerprint)
            self._settled = (self._scan_keys, owned)
        return report, snap

    @property
    def _settled_file(self) -> Path:
        return self.ws.runtime / "settled"

    def _settle_after(self, batch: Batch) -> None:
        """After a change to a settled workspace: record it settled again, so the next command
        skips `git status` and the promotion pass.  The task files keep the stat keys the sync
        saw, but for the ones this change wrote, taken now and only where each holds exactly
        what was committed (a person's save since then changes a key, or the text, and is then
        seen by the next sync); nexus's other files keep the stats the sync saw."""
        if self._settled is None or batch.extra_paths:
            return
        keys, owned = self._settled
        keys = dict(keys)
        for rel, text in batch.texts.items():
            now, key = self._read_back(rel)
            if now != text or key is None:
                return
            keys[rel] = key
        fingerprint = files_digest(keys) + self.ws.owned_stat_digest(self.repo.git_dir, owned)
        self._settled_file.write_text(fingerprint)

    def _promote_and_commit(
        self, snap: Snapshot, report: SyncReport, seeds: Sequence[str] | None
    ) -> Snapshot:
        if seeds is not None and not seeds:
            return snap
        batch = Batch(self.ws, snap.tasks, self.now(), snap.structure())
        batch.promote(self.policy(), seeds=seeds)
        if batch.transitions:
            commit = self._commit(batch, journal.summarize(batch.transitions, _titles(batch)))
            report.transitions.extend(batch.transitions)
            report.commits += [commit] if commit else []
            snap = Snapshot(
                batch.tasks, snap.broken, snap.warnings, encoded=snap.encoded, graph=batch.graph
            )
        self._snap = snap
        return snap

    def mutate(
        self,
        build: Callable[[Batch, Snapshot], str],
        facts: Mapping[str, str] | None = None,
        actor: str | None = None,
        *,
        snapshot: Snapshot | None = None,
    ) -> Batch:
        """Run `build` (which fills a batch and returns the commit summary) and commit the
        result together with the promotions it causes.

        Without `snapshot`, the workspace is synced first (people's edits committed as theirs).
        A long-running caller that keeps its own up-to-date snapshot (the daemon) may pass it;
        the files being changed are re-read either way, so a stale snapshot cannot override
        what is on disk.
        """
        with self.ws.lock():
            snap = snapshot if snapshot is not None else self._sync_locked()[1]
            batch = Batch(self.ws, snap.tasks, self.now(), snap.structure())
            summary = build(batch, snap)
            _check_graph(batch)
            batch.promote(self.policy())
            self._commit(batch, summary, facts, actor, extra_paths=batch.extra_paths)
            if snapshot is None:  # synced here: self._settled says how the sync found it
                self._settle_after(batch)
            self._snap = Snapshot(
                batch.tasks, snap.broken, snap.warnings, encoded=snap.encoded, graph=batch.graph
            )
            return batch

    def _commit(
        self,
        batch: Batch,
        summary: str,
        facts: Mapping[str, str] | None = None,
        actor: str | None = None,
        author: tuple[str, str] | None = None,
        extra_paths: Sequence[str] = (),
    ) -> str | None:
        if not batch.texts and not extra_paths:
            return None
        change = journal.Change(
            summary, actor or self.actor, batch.transitions, (), facts or {}, batch.created
        )
        message = journal.message(change)
        for folder in {str(Path(rel).parent) for rel in batch.texts}:
            self.ws.inside(folder)  # a folder linked out of the workspace: refused, unwritten
        paths = [self.repo.rel(self.ws.root / p) for p in batch.texts] + list(extra_paths)
        intent = self.ws.runtime / "intent.json"
        if intent.exists():
            # An earlier commit failed after writing its files (a git error; `git gc` holding
            # a temp file): record it first, or this intent would replace it and its
            # transitions would never reach the journal.
            self._repair(SyncReport())
        _write_json(intent, {"paths": paths, "message": message})
        clobbered: dict[str, str] = {}
        folded: set[str] = set()
        for attempt in range(SAVE_MERGES + 1):
            try:
                self.ws.write_many(
                    {
                        self.ws.root / rel: text
                        for rel, text in batch.texts.items()
                        if batch.read.get(rel) != text  # unchanged: a person's save may be newer
                    },
                    before_rename=lambda: self._check_unchanged(batch),
                    rename=functools.partial(self._swap_in, batch.read, clobbered),
                )
                break
            except WorkspaceError as exc:
                # A person's saves meanwhile: the first time they are committed as the
                # person's (a git commit: an editor saving in a loop lands again meanwhile);
                # after that they are folded into this commit, which says so, and the next try
                # is milliseconds away.
                if (
                    isinstance(exc, _SavedMeanwhile)
                    and attempt < SAVE_MERGES
                    and self._merge_saves(batch, exc.saved, attempt == 0)
                ):
                    if attempt:
                        folded.update(exc.saved)
                        notes = [f"holds a person's save of {rel} made meanwhile"
                                 for rel in sorted(folded)]  # fmt: skip
                        message = journal.message(replace(change, details=notes))
                        _write_json(intent, {"paths": paths, "message": message})
                    continue
                intent.unlink(missing_ok=True)  # nothing was written: nothing to repair
                raise
        self._merge_clobbered(batch, clobbered)
        self.written.extend(batch.texts)
        commit = self.repo.commit_paths(
            paths, message, private_index=self.ws.runtime / "git-index", author=author
        )
        intent.unlink(missing_ok=True)
        return self._put_back(batch, change, commit, author)

    def _put_back(
        self,
        batch: Batch,
        change: journal.Change,
        commit: str | None,
        author: tuple[str, str] | None,
    ) -> str | None:
        """A save from an editor's stale buffer that landed between nexus writing a file and
        git staging it went into the commit instead of nexus's change: the commit says what the
        change did, the file it holds does not, and no later sync could tell (it restores a
        stale save only from a commit that holds nexus's change; `_restore_lost`).  Put the
        change back on top of that save and commit it, so that HEAD holds both."""
        last = commit
        for _ in range(SAVE_MERGES):
            lost = self._lost_in(batch, last) if last else {}
            if not lost:
                break
            self._merge_clobbered(batch, lost)
            again = journal.Change(
                f"{change.summary} (put back over a save made meanwhile)",
                change.actor,
                details=[f"puts this change back over a person's save of {rel}" for rel in lost],
            )
            self.written.extend(lost)
            last = (
                self.repo.commit_paths(
                    [self.repo.rel(self.ws.root / rel) for rel in lost],
                    journal.message(again),
                    private_index=self.ws.runtime / "git-index",
                    author=author,
                )
                or last
            )
        return last

    def _lost_in(self, batch: Batch, commit: str) -> dict[str, str]:
        """The files this change wrote whose text in `commit` is not the change's, with the
        person's save now on disk.  One `git cat-file`, and only when a file on disk is no
        longer what the change wrote (a person saved since)."""
        saved: dict[str, str] = {}
        for rel, text in batch.texts.items():
            if batch.read.get(rel) == text:
                continue  # not written by this change
            for _ in range(20):  # an editor writing in place: read it once it is written
                now, _key = self._read_back(rel)
                if now is not None and (now == text or _parsed(now, rel) is not None):
                    break
                time.sleep(0.005)
            if now is not None and now != text:
                saved[rel] = now
        if not saved:
            return {}
        committed = self.repo.show_many(commit, [self.repo.rel(self.ws.root / r) for r in saved])
        return {
            rel: now
            for rel, now in saved.items()
            if committed.get(self.repo.rel(self.ws.root / rel)) != batch.texts[rel].encode()
        }

    def _read_back(self, rel: str) -> tuple[str | None, tuple[int, int, int, int] | None]:
        """A file this service wrote, as it is now: its text (None: it does not read) and its
        stat key (None unless the file held still while it was read)."""
        path = self.ws.root / rel
        try:
            before = stat_key(path.stat())
            text = self.ws.read_text(path)
            return text, before if stat_key(path.stat()) == before else None
        except (OSError, TaskFileError):
            return None, None

    def _swap_in(
        self, expected: Mapping[str, str], clobbered: dict[str, str], tmp: Path, path: Path
    ) -> None:
        """Rename `tmp` over `path`; if what it replaced is not the text the batch read (a
        person's save landed after the last check), keep that save in `clobbered`."""
        rel = self.ws.rel(path)
        if rel not in expected or not swap(tmp, path):
            os.replace(tmp, path)
            return
        try:
            replaced = tmp.read_bytes().decode("utf-8", "replace")
        finally:
            tmp.unlink(missing_ok=True)
        if replaced != expected[rel]:
            clobbered[rel] = replaced

    def _merge_clobbered(self, batch: Batch, clobbered: dict[str, str]) -> None:
        """Put back the saves `_swap_in` caught, with the batch's changes applied on top."""
        for _ in range(5):
            if not clobbered:
                return
            ours = {rel: batch.texts[rel] for rel in clobbered}
            merged: dict[Path, str] = {}
            for rel, theirs in clobbered.items():
                done = taskfile.restore_lost(batch.read[rel], ours[rel], theirs)
                if done is None and _parsed(theirs, rel) is None:
                    continue  # caught half-written: the editor's write went to the old file
                _put_text(batch, rel, done[0] if done else theirs)
                merged[self.ws.root / rel] = batch.texts[rel]
            clobbered = {}
            self.ws.write_many(merged, rename=functools.partial(self._swap_in, ours, clobbered))

    def _check_unchanged(self, batch: Batch) -> None:
        """Compare-and-swap: a task file a person saved after this batch read it is never
        overwritten.  Nothing is written; `_commit` merges the saves and tries again, and
        when they collide with the batch the caller gets a WorkspaceError (the daemon retries
        with the file as it is now; docs/lifecycle.md)."""
        saved: dict[str, str | None] = {}
        for rel, text in batch.read.items():
            try:
                now = self.ws.read_text(self.ws.root / rel)
            except (OSError, TaskFileError):
                now = None
            if now != text and batch.texts[rel] != text:
                saved[rel] = now
        if saved:
            raise _SavedMeanwhile(
                f"{', '.join(sorted(saved))} changed on disk while nexus was updating it; "
                "nothing was written",
                fix="run the command again (the daemon retries by itself)",
                saved=saved,
            )

    def _merge_saves(
        self, batch: Batch, saved: Mapping[str, str | None], commit_theirs: bool
    ) -> bool:
        """Saves a person made while the batch was being built: rebase the batch's changes
        onto them (committing them first as the person's, actor `user`, if `commit_theirs`).
        False, with nothing changed, when a save collides with the batch (see
        `taskfile.merge_save`)."""
        merged: dict[str, tuple[str, str]] = {}  # rel → (their save, the batch on top of it)
        for rel, theirs in saved.items():
            now, was = _parsed(theirs, rel), _parsed(batch.read[rel], rel)
            if theirs is None or now is None or was is None or _structure(now) != _structure(was):
                return False  # deleted, broken, or deps changed: the batch's promotions are off
            done = taskfile.merge_save(batch.read[rel], batch.texts[rel], theirs)
            if done is None or _parsed(done, rel) is None:
                return False
            merged[rel] = (theirs, done)
        if commit_theirs:
            self._commit_person_edits(SyncReport())
        for rel, (theirs, done) in merged.items():
            batch.read[rel] = theirs
            _put_text(batch, rel, done)
        return True

    def _repair(self, report: SyncReport) -> None:
        intent = self.ws.runtime / "intent.json"
        try:
            data = json.loads(intent.read_text())
            paths, message = list(data["paths"]), str(data["message"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError):
            self.warn(f"ignored an unreadable {intent} (a crash while writing it)")
            intent.unlink(missing_ok=True)
            return
        unwritten = self._unwritten(paths, message)
        if unwritten:
            # Killed between its renames: the files of these tasks still hold what they held
            # before, so the journal must not say they moved.
            message = journal.without_tasks(message, unwritten)
            self.warn(
                f"an interrupted nexus run had not written {', '.join(sorted(unwritten))}; "
                "their transitions were left out of the journal"
            )
        subject, _, rest = message.partition("\n")
        message = f"{subject} (recovered)\n{rest}"
        commit = self.repo.commit_paths(paths, message, private_index=self.ws.runtime / "git-index")
        intent.unlink(missing_ok=True)
        if commit:
            report.repaired.extend(paths)
            report.commits.append(commit)
            self.warn(f"committed {len(paths)} file(s) an interrupted nexus run had written")

    def _unwritten(self, paths: Sequence[str], message: str) -> set[str]:
        """The tasks an intent's message moves or creates whose files do not hold that."""
        final, created = journal.promised(message)
        if not final and not created:
            return set()
        on_disk: dict[str, str] = {}
        for rel in paths:
            path = self.repo.top / rel
            if not rel.endswith(".md") or not path.is_file():
                continue
            try:
                task = taskfile.parse(self.ws.read_text(path), rel, path.stem).task
            except (OSError, TaskFileError):
                continue
            on_disk[task.id] = str(task.status)
        return {tid for tid, dst in final.items() if on_disk.get(tid) != dst} | {
            tid for tid in created if tid not in on_disk
        }

    def _commit_person_edits(self, report: SyncReport) -> None:
        entries = self.repo.status(self._pathspecs)
        if not entries:
            return
        top = self.repo.top
        ws_prefix = self.repo.rel(self.ws.root)
        tasks_prefix = self.repo.rel(self.ws.tasks_dir) + "/"
        changed: list[str] = []
        notes: list[str] = []
        transitions: list[Transition] = []
        task_paths = [
            e.path for e in entries if e.path.startswith(tasks_prefix) and e.path.endswith(".md")
        ]
        before = self.repo.show_many("HEAD", task_paths) if task_paths else {}
        for entry in entries:
            path = entry.path
            if path.startswith(tasks_prefix) and path.endswith(".md"):
                note = self._person_task_change(top / path, path, before.get(path), transitions)
                if note is None:
                    continue  # broken: left for the person to fix, reported by status
                notes.append(note)
            elif Path(path).name.startswith(".") and path.endswith(".tmp"):
                continue  # a temp file of an atomic write in progress
            changed.append(path)
        if not changed:
            return
        change = journal.Change(
            f"{len(changed)} file(s) edited by a person", "user", transitions, notes
        )
        commit = self.repo.commit_paths(
            changed,
            journal.message(change),
            private_index=self.ws.runtime / "git-index",
            author=self.repo.person(),
        )
        if commit:
            report.person_edits.extend(
                p[len(ws_prefix) + 1 :] if ws_prefix != "." else p for p in changed
            )
            report.commits.append(commit)
            report.transitions.extend(transitions)

    def _person_task_change(
        self, abspath: Path, path: str, old: bytes | None, transitions: list[Transition]
    ) -> str | None:
        """A note for the commit, with any status change a person made; None when the file is
        broken, or was saved again while a stale save was being looked at (it is then left
        uncommitted, for the person or the next sync)."""
        stem = Path(path).stem
        if abspath.is_symlink():
            return None  # never followed: the scan reports it
        if not abspath.exists():
            return f"deleted {path}"
        if abspath.stat().st_size > MAX_TASK_FILE_BYTES:
            return None
        try:
            text = self.ws.read_text(abspath)
            new = taskfile.parse(text, path, stem).task
        except TaskFileError:
            return None
        if old is None:
            return f"created {new.id} ({new.title})"
        try:
            prev = taskfile.parse(old.decode("utf-8"), path, stem).task
        except (TaskFileError, UnicodeDecodeError):
            return f"fixed {new.id}"
        note = f"edited {new.id}"
        if prev.status is not new.status or prev.body not in new.body:
            restored = self._restore_lost(abspath, path, old.decode("utf-8"), text)
            if restored is not None:
                text, note = restored
                new = taskfile.parse(text, path, stem).task
            elif self.ws.read_text(abspath) != text:
                # Saved again while we looked: committing now would take the newer save
                # unexamined (and undo nexus's change for good if it is stale too).  The next
                # sync looks at it, with nexus's commit still the last.
                return None
        if prev.status is not new.status:
            allowed = can_transition(prev.status, new.status)
            why = "edited by a person" + ("" if allowed else " (outside the lifecycle table)")
            transitions.append(Transition(new.id, prev.status, new.status, why))
        return note

    def _restore_lost(
        self, abspath: Path, path: str, ours: str, theirs: str
    ) -> tuple[str, str] | None:
        """An editor that saved a buffer loaded before nexus's last write to this file would
        undo that write: put nexus's change back (`taskfile.restore_lost`) and say so in the
        commit (docs/lifecycle.md, "Editing while nexus writes")."""
        last = self.repo.log("%H%x00%(trailers:key=Nexus-Actor,valueonly)", [path], ["-1"])
        sha, _, actor = last.strip().partition("\0")
        if not sha or actor.strip() in ("", "user"):
            return None
        base = self.repo.show_many(f"{sha}^", [path]).get(path)
        if base is None:
            return None
        merged = taskfile.restore_lost(base.decode("utf-8", "replace"), ours, theirs)
        if merged is None:
            return None
        text, restored = merged
        if self.ws.read_text(abspath) != theirs:
            return None  # saved again meanwhile: the next sync looks at the newer save
        self.ws.write_atomic(abspath, text)
        note = (
            f"edited {path} in a buffer older than nexus's commit {sha[:10]}; kept the "
            f"person's changes and restored nexus's: {', '.join(restored)}"
        )
        self.warn(note)
        return text, note


def status_counts(tasks: Mapping[str, Task]) -> tuple[dict[str, int], float]:
    counts = {str(s): 0 for s in Status}
    for t in tasks.values():
        counts[str(t.status)] += 1
    live = len(tasks) - counts["cancelled"]
    progress = counts["complete"] / live if live else 0.0
    return counts, round(progress, 4)


def _check_graph(batch: Batch) -> None:
    if not any(t.dst is Status.PENDING for t in batch.transitions) and not batch.deps_changed:
        return  # no dep was added or reopened: no new cycle is possible
    cycles = dag.find_cycles(batch.tasks)
    if cycles:
        raise ValidationError(
            f"this would create a dependency cycle: {' → '.join(cycles[0])}",
            fix="remove one of those deps",
        )


def _titles(batch: Batch) -> dict[str, str]:
    return {tid: t.title[:60] for tid, t in batch.tasks.items()}


def _parsed(text: str | None, path: str) -> Task | None:
    """The task a file's text holds, or None when it is missing or does not parse."""
    if text is None:
        return None
    try:
        return taskfile.parse(text, path, Path(path).stem).task
    except TaskFileError:
        return None


def _structure(task: Task) -> tuple[tuple[str, ...], str | None]:
    """What a batch's promotions were computed from: a task's deps and parent."""
    return tuple(task.deps), task.parent


def _put_text(batch: Batch, path: str, text: str) -> None:
    """Give a batch a new text for `path`, and the tasks it holds their new values."""
    batch.texts[path] = text
    for tid, task in list(batch.tasks.items()):
        if task.path == path:
            batch.tasks[tid] = taskfile.parse(text, path, tid).task


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)

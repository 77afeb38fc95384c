"""The operations every surface calls (CLI, MCP, web, daemon).

Each mutating operation runs under the workspace lock and follows one path:

1. `sync`: repair a change an earlier nexus process wrote but did not commit (the intent file),
   commit any edit a person made to nexus's files (actor `user`), promote;
2. build the operation's changes in a `Batch`, then promote over the result;
3. `_commit`: record the intent, write the files atomically, commit exactly those paths with
   the transitions as trailers, drop the intent.

A crash anywhere in 3 leaves the intent file behind, and the next nexus run finishes the commit.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus import dag, journal, promote, taskfile
from nexus.changes import Batch, iso
from nexus.errors import GitError, NexusError, TaskFileError, ValidationError, WorkspaceError
from nexus.gitrepo import Repo
from nexus.store import OWNED, Workspace
from nexus.task import Kind, Priority, Size, Status, Task, Transition, can_transition, id_problem

if TYPE_CHECKING:
    from nexus.plans import Decomposition, Plan, PlanFile, Review
    from nexus.scratchpads import Message


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Snapshot:
    tasks: dict[str, Task]
    broken: list[TaskFileError]
    warnings: list[str]
    digest: str = ""
    _problems: list[dag.Problem] | None = None

    @property
    def problems(self) -> list[dag.Problem]:
        """Structural problems of the graph (computed on first use: cycles cost a full pass)."""
        if self._problems is None:
            self._problems = dag.problems(self.tasks)
        return self._problems


@dataclass
class SyncReport:
    repaired: list[str] = field(default_factory=list)  # paths committed from an intent
    person_edits: list[str] = field(default_factory=list)  # paths committed as the person's
    transitions: list[Transition] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)


class Service:
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

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The workspace as it is on disk now."""
        scan = self.ws.scan()
        self._snap = Snapshot(scan.tasks, scan.broken, scan.warnings, scan.digest)
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
        settled_file = self.ws.runtime / "settled"
        fingerprint = snap.digest + self.ws.owned_stat_digest(self.repo.git_dir)
        intent = (self.ws.runtime / "intent.json").exists()
        if not intent and _read(settled_file) == fingerprint:
            # Nothing changed since a sync found the workspace committed and fully promoted:
            # only time can have moved something (a failed task's retry backoff running out).
            seeds = [t.id for t in snap.tasks.values() if t.status is Status.FAILED]
            return report, self._promote_and_commit(snap, report, seeds)
        self._repair(report)
        self._commit_person_edits(report)
        if report.repaired or report.person_edits:
            snap = self.snapshot()
        snap = self._promote_and_commit(snap, report, None)
        if not (report.repaired or report.person_edits or report.transitions):
            settled_file.write_text(fingerprint)
        return report, snap

    def _promote_and_commit(
        self, snap: Snapshot, report: SyncReport, seeds: Sequence[str] | None
    ) -> Snapshot:
        if seeds is not None and not seeds:
            return snap
        batch = Batch(self.ws, snap.tasks, self.now())
        batch.promote(self.policy(), seeds=seeds)
        if batch.transitions:
            commit = self._commit(batch, journal.summarize(batch.transitions, _titles(batch)))
            report.transitions.extend(batch.transitions)
            report.commits += [commit] if commit else []
            snap = Snapshot(batch.tasks, snap.broken, snap.warnings)
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
            batch = Batch(self.ws, snap.tasks, self.now())
            summary = build(batch, snap)
            _check_graph(batch)
            batch.promote(self.policy())
            self._commit(batch, summary, facts, actor, extra_paths=batch.extra_paths)
            self._snap = Snapshot(batch.tasks, snap.broken, snap.warnings)
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
        paths = [self.repo.rel(self.ws.root / p) for p in batch.texts] + list(extra_paths)
        intent = self.ws.runtime / "intent.json"
        _write_json(intent, {"paths": paths, "message": message})
        for rel, text in batch.texts.items():
            self.ws.write_atomic(self.ws.root / rel, text)
        self.written.extend(batch.texts)
        commit = self.repo.commit_paths(
            paths, message, private_index=self.ws.runtime / "git-index", author=author
        )
        intent.unlink(missing_ok=True)
        return commit

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
        subject, _, rest = message.partition("\n")
        message = f"{subject} (recovered)\n{rest}"
        commit = self.repo.commit_paths(paths, message, private_index=self.ws.runtime / "git-index")
        intent.unlink(missing_ok=True)
        if commit:
            report.repaired.extend(paths)
            report.commits.append(commit)
            self.warn(f"committed {len(paths)} file(s) an interrupted nexus run had written")

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
        broken (it is then left uncommitted)."""
        stem = Path(path).stem
        if not abspath.exists():
            return f"deleted {path}"
        try:
            new = taskfile.parse(self.ws.read_text(abspath), path, stem).task
        except TaskFileError:
            return None
        if old is None:
            return f"created {new.id} ({new.title})"
        try:
            prev = taskfile.parse(old.decode("utf-8"), path, stem).task
        except (TaskFileError, UnicodeDecodeError):
            return f"fixed {new.id}"
        if prev.status is not new.status:
            allowed = can_transition(prev.status, new.status)
            why = "edited by a person" + ("" if allowed else " (outside the lifecycle table)")
            transitions.append(Transition(new.id, prev.status, new.status, why))
        return f"edited {new.id}"

    # -- operations --------------------------------------------------------------------------

    def add(
        self,
        title: str,
        *,
        kind: str = "task",
        size: str = "M",
        role: str | None = None,
        deps: Sequence[str] = (),
        parent: str | None = None,
        priority: str = "normal",
        acceptance: Sequence[str] = (),
        body: str = "",
        engine: str | None = None,
        model: str | None = None,
        task_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Task:
        created: list[Task] = []

        def build(batch: Batch, snap: Snapshot) -> str:
            if task_id is not None:
                if problem := id_problem(task_id):
                    raise ValidationError(f"--id {problem}")
                if task_id in batch.tasks:
                    raise ValidationError(
                        f"task {task_id} already exists ({batch.tasks[task_id].path})",
                        fix="choose another id, or leave --id out",
                    )
            tid = task_id or self.ws.new_id(batch.tasks)
            fields = self.new_task_fields(
                batch,
                tid,
                title,
                kind=kind,
                size=size,
                role=role,
                deps=deps,
                parent=parent,
                priority=priority,
                acceptance=acceptance,
                engine=engine,
                model=model,
                extra=extra,
            )
            path = self.ws.rel(self.ws.new_task_path(tid))
            text = taskfile.new_file(fields, _body(body))
            created.append(batch.create(path, text))
            return f"add {tid} ({title.strip()[:80]})"

        batch = self.mutate(build)
        return batch.tasks[created[0].id]

    def new_task_fields(
        self,
        batch: Batch,
        tid: str,
        title: str,
        *,
        kind: str,
        size: str,
        role: str | None,
        deps: Sequence[str],
        parent: str | None,
        priority: str,
        acceptance: Sequence[str],
        engine: str | None,
        model: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Validated fields of a new task, in the order people read them."""
        if not title.strip() or "\n" in title.strip():
            raise ValidationError("a task title must be one non-empty line")
        _member("kind", kind, Kind)
        _member("size", size, Size)
        _member("priority", priority, Priority)
        for dep in deps:
            if problem := id_problem(dep):
                raise ValidationError(f"--deps: {problem}")
            if dep == tid:
                raise ValidationError(
                    f"task {tid} cannot depend on itself", fix=f"remove {tid} from --deps"
                )
            if dep not in batch.tasks:
                raise ValidationError(
                    f"dependency {dep} does not exist (no task has that id)",
                    fix="check the id with `nexus list`",
                )
        if parent is not None and parent not in batch.tasks:
            raise ValidationError(
                f"parent {parent} does not exist", fix="check the id with `nexus list`"
            )
        if role is not None:
            self.check_role(role)
        if engine is not None:
            from nexus.engines.base import engine_names

            if engine not in engine_names():
                raise ValidationError(
                    f"unknown engine {engine!r}", fix=f"use one of: {', '.join(engine_names())}"
                )
        fields: dict[str, Any] = {
            "id": tid,
            "title": title.strip(),
            "kind": kind,
            "status": "pending",
            "size": size,
            "role": role,
            "deps": list(deps),
            "parent": parent,
            "priority": priority if priority != "normal" else None,
            "engine": engine,
            "model": model,
            "acceptance": list(acceptance) or None,
            "created": iso(batch.now),
        }
        for key, value in (extra or {}).items():
            fields.setdefault(key, value)
        return fields

    def check_role(self, role: str) -> None:
        if problem := id_problem(role, "role name"):
            raise ValidationError(problem)
        if not (self.ws.root / "agents" / f"{role}.md").is_file():
            roles = ", ".join(self.roles()) or "none"
            raise ValidationError(
                f"role {role!r} has no agents/{role}.md", fix=f"use one of: {roles}, or create it"
            )

    def roles(self) -> list[str]:
        folder = self.ws.root / "agents"
        return sorted(p.stem for p in folder.glob("*.md")) if folder.is_dir() else []

    def set_status(
        self,
        ref: str,
        dst: Status,
        *,
        reason: str,
        result: str | None = None,
        error: str | None = None,
        facts: Mapping[str, str] | None = None,
        changes: Mapping[str, Any] | None = None,
        actor: str | None = None,
        snapshot: Snapshot | None = None,
    ) -> Task:
        """complete / fail / cancel / retry (→ pending) / claim, with their side effects."""
        found: list[str] = []

        def build(batch: Batch, snap: Snapshot) -> str:
            task = self.resolve(batch.tasks, ref)
            found.append(task.id)
            extra: dict[str, Any] = dict(changes or {})
            append = None
            if dst is Status.COMPLETE:
                extra["error"] = None
                if result:
                    append = _result_section(batch.text_of(task), result, batch.stamp)
            elif dst is Status.FAILED:
                extra["error"] = error or reason
                extra["attempts"] = (
                    max(task.attempts, 1) if task.status.active else (task.attempts + 1)
                )
                append = f"## Attempts\n\n- {batch.stamp}: {error or reason}"
            elif dst is Status.PENDING and task.status in (
                Status.FAILED,
                Status.CANCELLED,
                Status.COMPLETE,
            ):
                extra.update(attempts=0, error=None)
            batch.move(task.id, dst, reason, extra, append)
            return f"{dst if dst is not Status.PENDING else 'reopen'} {task.id} ({task.title[:80]})"

        batch = self.mutate(build, facts, actor, snapshot=snapshot)
        return batch.tasks[found[0]]

    def edit(self, ref: str, assignments: Mapping[str, str], reason: str | None = None) -> Task:
        """Set fields from FIELD=VALUE text (VALUE read as YAML: `deps=[a, b]`, `size=L`)."""
        import yaml

        found: list[str] = []

        def build(batch: Batch, snap: Snapshot) -> str:
            task = self.resolve(batch.tasks, ref)
            found.append(task.id)
            changes: dict[str, Any] = {}
            for key, raw in assignments.items():
                if key == "id":
                    raise ValidationError(
                        "ids are stable and cannot be edited",
                        fix="create a new task and cancel this one",
                    )
                if key not in taskfile.KNOWN_FIELDS:
                    raise ValidationError(
                        f"unknown field {key!r}",
                        fix=f"use one of: {', '.join(taskfile.KNOWN_FIELDS)}",
                    )
                try:
                    value = yaml.safe_load(raw) if raw.strip() else None
                except yaml.YAMLError:
                    value = raw
                changes[key] = value
            if "role" in changes and changes["role"] is not None:
                self.check_role(str(changes["role"]))
            status = changes.pop("status", None)
            # Validate the whole result before anything is written.
            text = taskfile.update(batch.text_of(task), changes)
            try:
                taskfile.parse(text, task.path, Path(task.path).stem)
            except TaskFileError as exc:
                raise ValidationError(exc.detail, fix=exc.fix) from None
            for dep in changes.get("deps") or []:
                if str(dep) == task.id:
                    raise ValidationError(
                        f"task {task.id} cannot depend on itself", fix=f"remove {task.id} from deps"
                    )
                if str(dep) not in batch.tasks:
                    raise ValidationError(
                        f"task {task.id} would depend on {dep}, which does not exist",
                        fix="check the id with `nexus list`",
                    )
            if status is not None:
                batch.move(
                    task.id,
                    Status(_member("status", str(status), Status)),
                    reason or f"edited ({self.actor})",
                    changes,
                )
            else:
                batch.update(task.id, changes)
            return f"edit {task.id} ({', '.join(assignments)})"

        batch = self.mutate(build)
        return batch.tasks[found[0]]

    # -- questions ---------------------------------------------------------------------------

    def why(self, task: Task, snap: Snapshot) -> list[str]:
        """Why a task is where it is, in sentences."""
        tasks = snap.tasks
        out: list[str] = []
        errors = [p for p in snap.problems if p.task_id == task.id]
        out += [f"{p.message} — {p.fix}" for p in errors]
        st = task.status
        if st is Status.PENDING:
            waiting = dag.blockers(task, tasks)
            for dep, owner, dep_status in waiting:
                whose = "" if owner == task.id else f" (a dep of its parent {owner})"
                if dep_status is None:
                    out.append(f"waits for {dep}{whose}, which does not exist")
                elif dep_status is Status.CANCELLED:
                    out.append(
                        f"waits for {dep}{whose}, which is cancelled: it will never "
                        f"complete — remove the dep or `nexus retry {dep}`"
                    )
                elif dep_status is Status.FAILED:
                    out.append(
                        f"waits for {dep}{whose}, which failed: {tasks[dep].error} — "
                        f"see `nexus why {dep}`"
                    )
                else:
                    out.append(
                        f"waits for {dep}{whose} ({tasks[dep].title}), which is {dep_status}"
                    )
            if not waiting and not errors:
                out.append("all deps are complete: the next nexus run promotes it to ready")
        elif st is Status.READY:
            if task.size is Size.XL:
                out.append(self.xl_reason(task, tasks))
            elif any(t.parent == task.id for t in tasks.values()):
                out.append("it has children: it completes when they do")
            else:
                out.append(self._daemon_reason(task.id))
        elif st.active:
            who = f" by {task.assignee}" if task.assignee else ""
            since = f" since {task.started}" if task.started else ""
            out.append(f"{st}{who}{since}")
        elif st is Status.FAILED:
            policy = self.policy()
            allowed = policy.retries_for(task)
            at = promote.retry_at(task, policy)
            line = f"failed (attempt {task.attempts} of {allowed + 1}): {task.error}"
            if at is None:
                line += f" — no retries left; `nexus retry {task.id}` starts it again"
            else:
                line += f" — retried automatically after {iso(at)}"
            out.append(line)
        elif st is Status.COMPLETE:
            out.append(f"complete{' since ' + task.finished if task.finished else ''}")
        elif st is Status.CANCELLED:
            out.append(f"cancelled — `nexus retry {task.id}` reopens it")
        return out

    def _daemon_reason(self, task_id: str) -> str:
        """Why a ready task waits, as the running daemon last saw it."""
        try:
            state = json.loads((self.ws.runtime / "daemon-state.json").read_text())
        except (OSError, ValueError):
            return "ready: no `nexus watch` is running (start one, or run it from Claude Code)"
        reason = (state.get("waiting") or {}).get(task_id)
        if task_id in (state.get("running") or []):
            return "starting: the daemon has just claimed it"
        if reason:
            return f"ready, waiting: {reason}"
        if state.get("waiting_for_a_worker"):
            return "ready, waiting: all workers are busy (it starts by priority, then age)"
        return "ready: the daemon starts it next"

    def log(self, task_id: str | None = None, extra: Sequence[str] = ()) -> list[journal.Entry]:
        args = list(extra)
        if task_id:
            args += [f"--grep=^Nexus-Transition: {task_id} ", f"--grep=^Nexus-Created: {task_id}$"]
        out = self.repo.log(journal.LOG_FORMAT, [self.repo.rel(self.ws.root)], args)
        entries = journal.parse_log(out)
        return journal.for_task(entries, task_id) if task_id else entries

    # -- prompts ---------------------------------------------------------------------------

    def task_prompt(
        self,
        task: Task,
        role: Any,
        tasks: Mapping[str, Task],
        inbox_ids: list[str],
        role_names: Sequence[str],
    ) -> str:
        """The prompt an agent gets for `task` (loaded, with its body): persona, the task and
        its acceptance criteria, files to read, dependency results, unread messages (their ids
        are added to `inbox_ids`, to be marked read when the run succeeds), shared context and
        orchestrator feedback.  The daemon and `nexus_execute` (MCP) both use it."""
        from nexus import prompts

        deps = []
        for dep in task.deps:
            if dep in tasks:
                loaded, _ = self.ws.load_task(tasks[dep])
                deps.append((dep, loaded.title, prompts.extract_result(loaded.body)))
        inbox: list[tuple[str, str, str, str]] = []
        left_out = 0
        if task.role:
            messages, unread_ids, left_out = self.inbox_for_prompt(task.role)
            inbox = [(m.frm, m.type, m.time or "", m.payload) for m in messages]
            inbox_ids.extend(unread_ids)
        pads = self.ws.root / "scratchpads"
        return prompts.task_prompt(
            prompts.load_template(self.ws.root, "task"),
            role=role,
            task=task,
            body=task.body,
            context_files=list(task.context),
            dependency_results=deps,
            inbox=inbox,
            inbox_left_out=left_out,
            shared_context=_read(pads / "shared_context.md") or "",
            orchestrator_feedback=_read(pads / "orchestrator_feedback.md") or "",
            workspace=str(self.ws.root),
            workdir=str(self.repo.top),
            roles=list(role_names),
        )

    # -- agents ----------------------------------------------------------------------------

    def agents_status(self) -> list[dict[str, Any]]:
        """Every role: persona summary, routed engine and model, stored session, what it runs."""
        from nexus import agents, sessions

        roles, problems = agents.load_roles(self.ws.root, self.ws.config)
        path = self.ws.root / sessions.PATH
        stored, _ = sessions.parse_sessions(
            path.read_text(encoding="utf-8") if path.exists() else ""
        )
        tasks = self.current().tasks
        out = []
        for rid, role in sorted(roles.items()):
            running = [t.id for t in tasks.values() if t.role == rid and t.status.active]
            kept = stored.get(rid)
            out.append(
                {
                    **role.summary(),
                    "session_id": kept.session if kept else None,
                    "session_engine": kept.engine if kept else None,
                    "current_tasks": running,
                    "status": "working" if running else "idle",
                    "queued": sum(
                        1 for t in tasks.values() if t.role == rid and t.status is Status.READY
                    ),
                }
            )
        for problem in problems:
            self.warn(problem)
        return out

    # -- messages ----------------------------------------------------------------------------
    # Scratchpad mailboxes; the format and the read state are described in nexus/scratchpads.py.

    def send_message(
        self, frm: str, to: str, text: str, type: str = "note", task: str | None = None
    ) -> Message:
        """Append a message to `scratchpads/<frm>_to_<to>.md` and commit it (trailer
        `Nexus-Message: <id>`).  `to` is a role or `all`; `frm` a role, `user`, `prime` or
        `nexus`; `task` an id or unique prefix."""
        from nexus import scratchpads

        roles = self.roles()
        scratchpads.check_sender(frm, roles)
        scratchpads.check_recipient(to, roles)
        scratchpads.check_type(type)
        rel = scratchpads.pad_path(frm, to)
        path = self.ws.inside(rel)
        facts: dict[str, str] = {}
        sent: list[scratchpads.Message] = []

        def build(batch: Batch, snap: Snapshot) -> str:
            task_id = self.resolve(batch.tasks, task).id if task is not None else None
            message = scratchpads.compose(frm, to, text, type, task_id, batch.stamp)
            old = self.ws.read_text(path) if path.exists() else None
            batch.put(rel, scratchpads.append(old, message))
            facts["Message"] = message.id
            sent.append(message)
            return f"message {frm} → {to} ({type})"

        self.mutate(build, facts)
        return sent[0]

    def inbox(self, role: str, unread_only: bool = True, limit: int | None = 20) -> list[Message]:
        """Messages to `role` (and broadcasts), oldest first: the newest `limit` of them (None
        or 0: all).  `scratchpads.newest` says how many a limit leaves out."""
        from nexus import scratchpads

        scratchpads.check_role(role, self.roles())
        messages = scratchpads.read_inbox(self.ws, role)
        if unread_only:
            read = scratchpads.read_ids(self.ws, role)
            messages = [m for m in messages if m.id not in read]
        return scratchpads.newest(messages, limit)[0]

    def mark_read(self, role: str, ids: Sequence[str]) -> int:
        """Mark messages of `role`'s inbox read; returns how many were unread."""
        from nexus import scratchpads

        scratchpads.check_role(role, self.roles())
        return scratchpads.mark_read(self.ws, role, ids)

    def inbox_for_prompt(self, role: str, limit: int = 20) -> tuple[list[Message], list[str], int]:
        """The unread messages for a role's next prompt (the newest `limit`), the ids of every
        unread message (to mark read once the run succeeds, so a retry still sees them) and how
        many older unread ones were left out."""
        from nexus import scratchpads

        unread = self.inbox(role, limit=None)
        shown, left_out = scratchpads.newest(unread, limit)
        return shown, [m.id for m in unread], left_out

    # -- mcp ---------------------------------------------------------------------------------
    # Operations the MCP surface needs beyond the CLI's (nexus/mcp/): a caller that runs tasks
    # itself claims them, reads results, attaches files, and asks what the work cost.

    def claim_for_caller(
        self,
        assignee: str,
        *,
        count: int,
        refs: Sequence[str] = (),
        role: str | None = None,
    ) -> tuple[list[Task], dict[str, str]]:
        """Claim up to `count` ready tasks (or the ones named by `refs`) for a caller that runs
        them itself: ready → assigned → in_progress with `assignee`, in one commit.  Returns the
        claimed tasks and, for each ready task left out, why (XL, a container, touches that
        overlap a running task, over the count)."""
        from nexus import dispatch

        claimed: list[str] = []
        waiting: dict[str, str] = {}

        def build(batch: Batch, snap: Snapshot) -> str:
            tasks = batch.tasks
            if refs:
                wanted = [self.resolve(tasks, ref) for ref in refs]
                for t in wanted:
                    if t.status is not Status.READY:
                        raise ValidationError(
                            f"task {t.id} is {t.status}, not ready",
                            fix=f"see why with `nexus why {t.id}`; only ready tasks are claimed",
                        )
            else:
                wanted = [
                    t
                    for t in tasks.values()
                    if t.status is Status.READY and (role is None or t.role == role)
                ]
            running = [
                dispatch.Running(t.id, "caller", t.role, t.touches, False)
                for t in tasks.values()
                if t.status.active
            ]
            plan = dispatch.plan(
                [dispatch.Candidate(t, "caller") for t in wanted],
                running,
                workers=len(running) + count,
                engine_limits={},
                paused={},
                containers={t.parent for t in tasks.values() if t.parent},
                now=0.0,
            )
            for tid, why in plan.waiting.items():
                waiting[tid] = f"over the count of {count}" if "workers are busy" in why else why
            for cand in plan.start:
                tid = cand.task.id
                batch.move(tid, Status.ASSIGNED, f"claimed by {assignee}", {"assignee": assignee})
                batch.move(tid, Status.IN_PROGRESS, f"run by {assignee}")
                claimed.append(tid)
            return f"claim {len(claimed)} task(s) for {assignee}"

        batch = self.mutate(build)
        return [batch.tasks[tid] for tid in claimed], waiting

    def result(self, ref: str) -> tuple[Task, str]:
        """A task (with its body) and the text of its last `## Result` section ("" if none)."""
        from nexus.prompts import extract_result

        task, _ = self.ws.load_task(self.resolve(self.snapshot().tasks, ref))
        return task, extract_result(task.body)

    def add_context(self, ref: str, paths: Sequence[str]) -> tuple[Task, list[str]]:
        """Add files to a task's `context` (what its agent reads first).  Paths are relative to
        the repository's top folder (absolute paths inside it are accepted); a path leaving the
        repository, or into .git/ or .nexus/, is refused.  Returns the task and the added paths
        that do not exist yet."""
        if not paths:
            raise ValidationError("no paths given", fix="pass one or more file paths")
        rels = [self._repo_file(p) for p in paths]
        found: list[str] = []

        def build(batch: Batch, snap: Snapshot) -> str:
            task = batch.current(self.resolve(batch.tasks, ref).id)
            found.append(task.id)
            merged = list(dict.fromkeys([*task.context, *rels]))
            if merged != list(task.context):
                batch.update(task.id, {"context": merged})
            return f"context of {task.id} (+{len(merged) - len(task.context)} file(s))"

        batch = self.mutate(build)
        missing = [r for r in rels if not (self.repo.top / r).exists()]
        return batch.tasks[found[0]], missing

    def _repo_file(self, raw: str) -> str:
        top = self.repo.top.resolve()
        if not raw.strip() or "\0" in raw:
            raise ValidationError(f"{raw!r} is not a file path")
        path = Path(raw.strip()).expanduser()
        target = (path if path.is_absolute() else top / path).resolve()
        if target == top or top not in target.parents:
            raise ValidationError(
                f"path {raw!r} is outside the repository {top}",
                fix="attach files inside the repository, relative to its top folder",
            )
        rel = target.relative_to(top).as_posix()
        if rel.split("/")[0] in (".git", ".nexus") or "/.nexus/" in f"/{rel}":
            raise ValidationError(
                f"path {raw!r} is inside .git/ or .nexus/", fix="attach project files only"
            )
        return rel

    def cost(self, by: Sequence[str] | None = None) -> dict[str, Any]:
        """Recorded cost and tokens from the journal's trailers, in total and broken down by
        task, role, engine, model and day (or the dimensions in `by`)."""
        from nexus import costs

        dims = list(by) if by else list(costs.DIMENSIONS)
        for dim in dims:
            if dim not in costs.DIMENSIONS:
                raise ValidationError(
                    f"cannot break costs down by {dim!r}",
                    fix=f"use some of: {', '.join(costs.DIMENSIONS)}",
                )
        titles = {tid: t.title for tid, t in self.current().tasks.items()}
        return costs.summarize(costs.charges(self.log()), dims, titles)

    # -- web --------------------------------------------------------------------------------
    # Read-only views the dashboards show (the web server first); nothing here is web-specific.

    def daemon_state(self) -> dict[str, Any] | None:
        """What the running `nexus watch` last published (`.nexus/daemon-state.json`: running,
        waiting, paused), or None when no daemon runs (a file left by a killed one included)."""
        try:
            state = json.loads((self.ws.runtime / "daemon-state.json").read_text())
            os.kill(int(state["pid"]), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, but another user's
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return state if isinstance(state, dict) else None

    def progress(self, task: Task, snap: Snapshot) -> dict[str, Any]:
        """Where a task stands: status, attempts, times, whether an agent runs it now, why a
        ready task waits (as the daemon sees it) and how many of its children are complete."""
        state = self.daemon_state() or {}
        kids = [t for t in snap.tasks.values() if t.parent == task.id]
        done = sum(1 for t in kids if t.status is Status.COMPLETE)
        if task.status is Status.COMPLETE:
            fraction = 1.0
        else:
            fraction = round(done / len(kids), 4) if kids else 0.0
        waiting = (state.get("waiting") or {}).get(task.id)
        return {
            "task_id": task.id,
            "status": str(task.status),
            "attempts": task.attempts,
            "max_retries": self.policy().retries_for(task),
            "started": task.started,
            "finished": task.finished,
            "assignee": task.assignee,
            "running": task.id in (state.get("running") or []) and task.status.active,
            "daemon": bool(state),
            "waiting": str(waiting) if waiting and task.status is Status.READY else None,
            "children": {"complete": done, "total": len(kids)},
            "progress": fraction,
            "error": task.error,
        }

    def role_session(self, role: str) -> dict[str, Any]:
        """The engine session a role resumes (agents/sessions.yaml) and what it runs now."""
        from nexus import sessions

        self.check_role(role)
        path = self.ws.root / sessions.PATH
        stored, _ = sessions.parse_sessions(
            path.read_text(encoding="utf-8") if path.exists() else ""
        )
        kept = stored.get(role)
        running = [
            t.id for t in self.current().tasks.values() if t.role == role and t.status.active
        ]
        return {
            "role": role,
            "session_id": kept.session if kept else None,
            "engine": kept.engine if kept else None,
            "updated": (kept.updated or None) if kept else None,
            "replaced": list(kept.replaced) if kept else [],
            "current_tasks": running,
            "status": "working" if running else ("idle" if kept else "none"),
        }

    def scratchpad_files(self) -> list[dict[str, Any]]:
        """Every file in scratchpads/: mailboxes (`<from>_to_<to>.md`, with their message
        counts) and the context files prompts include whole."""
        from nexus import scratchpads

        folder = self.ws.root / scratchpads.FOLDER
        names = sorted(p.name for p in folder.glob("*.md")) if folder.is_dir() else []
        out = []
        for name in names:
            pad = self.scratchpad(name[:-3])
            if pad is not None:
                out.append({k: v for k, v in pad.items() if k not in ("text", "messages")})
        return out

    def scratchpad(self, name: str) -> dict[str, Any] | None:
        """One scratchpad by name (its file name without `.md`): its text and, for a mailbox,
        its messages; None when there is no such file."""
        from nexus import scratchpads

        if id_problem(name, "scratchpad name"):
            return None
        try:
            path = self.ws.inside(f"{scratchpads.FOLDER}/{name}.md")
        except WorkspaceError:
            return None  # a link pointing out of the workspace is not read
        if not path.is_file():
            return None
        text = path.read_bytes().decode("utf-8", "replace")
        frm, sep, to = name.partition("_to_")
        mailbox = bool(sep and frm and to)
        messages = scratchpads.parse(text, frm, to) if mailbox else []
        return {
            "name": name,
            "path": f"{scratchpads.FOLDER}/{name}.md",
            "kind": "mailbox" if mailbox else "context",
            "from": frm if mailbox else None,
            "to": to if mailbox else None,
            "messages_count": len(messages),
            "bytes": len(text.encode("utf-8")),
            "modified": iso(dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)),
            "text": text,
            "messages": [m.to_json() for m in messages],
        }

    # -- planning ----------------------------------------------------------------------------
    # The oracle (role prime) turns a goal or an XL task into plans/<name>.yaml; `approve`
    # makes it tasks.  Schema and validation: nexus/plans.py; asking: nexus/oracle.py.

    def plan_prompt(self, goal: str | None = None, parent: str | None = None) -> str:
        """The planning prompt (prompts/plan.md): the goal (default: nexus.yaml's), the tasks
        that exist, the roles, and the task being decomposed when `parent` is given."""
        from nexus import plans, prompts

        tasks = self.snapshot().tasks
        xl = self.ws.load_task(self.resolve(tasks, parent))[0] if parent else None
        section = ""
        if xl is not None:
            criteria = "".join(f"\n- {c}" for c in xl.acceptance)
            section = (
                f"# The task to decompose\n\nTask {xl.id} (size {xl.size}, role "
                f"{xl.role or 'none'}): {xl.title}\n\n{plans.description(xl.body).strip()}\n"
                + (f"\nAcceptance criteria:\n{criteria}\n" if criteria else "")
                + "\nEvery task of your plan becomes a part of it; it completes when they do."
            )
        lines, more = plans.task_lines(tasks.values())
        existing = ""
        if lines:
            existing = "# Existing tasks\n\nid [status, size, role] title:\n\n" + "\n".join(lines)
            existing += f"\n- … and {more} more (not shown)" if more else ""
        values = {
            "goal": self._plan_goal(goal, xl),
            "parent": section,
            "existing_tasks": existing,
            "roles": self._role_lines(),
        }
        return prompts.render(prompts.load_template(self.ws.root, "plan"), values)

    def plan(
        self,
        goal: str | None = None,
        *,
        engine: str | None = None,
        parent: str | None = None,
        attempts: int = 3,
    ) -> PlanFile:
        """Ask the oracle for a plan (asking again with the problems while it is invalid, at
        most `attempts` times) and commit it as plans/<name>.yaml, with the oracle's engine,
        model, cost and tokens as trailers."""
        from nexus import oracle, plans

        self.sync()
        tasks = self.current().tasks
        xl = self.resolve(tasks, parent) if parent else None
        pid = xl.id if xl else None
        goal = self._plan_goal(goal, xl)
        prompt = self.plan_prompt(goal, pid)
        roles = self.roles()

        def parse(text: str) -> plans.Plan:
            data = {**plans.extract(text), "kind": "plan"}
            return plans.validated(data, roles=roles, tasks=tasks, parent=pid)

        name = self._plan_name(goal)
        asked = oracle.Oracle.for_workspace(self.ws, engine, "L")
        try:
            plan, spend = oracle.converse(
                asked, prompt, parse, label=pid or "plan", attempts=attempts
            )
        except oracle.NoValidAnswer as exc:
            raise self._rejected(exc, name) from None
        return self._write_plan(replace(plan, parent=pid, goal=plan.goal or goal), name, spend)

    def save_plan(self, text: str, name: str | None = None, parent: str | None = None) -> PlanFile:
        """Validate a plan (or change list) someone wrote — YAML or JSON, possibly in prose or
        a fenced block — and commit it as plans/<name>.yaml.  Raises `plans.Rejected` (a
        ValidationError) listing every problem."""
        from nexus import plans

        data = plans.extract(text)
        if name is not None and (problem := id_problem(name, "plan name")):
            raise ValidationError(problem)
        tasks = self.snapshot().tasks
        pid = self.resolve(tasks, parent).id if parent else None
        plan = plans.validated(data, roles=self.roles(), tasks=tasks, parent=pid)
        plan = replace(plan, approved=None, task_ids={})
        return self._write_plan(plan, name or self._plan_name(plan.goal or "adapt"), None)

    def plans(self) -> list[tuple[str, bool]]:
        """Every plan file (path, approved?), newest first."""
        found = []
        for path in (self.ws.root / "plans").glob("*.yaml"):
            _parent, approved, created = _plan_header(path)
            stamp = created or iso(dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC))
            found.append((stamp, self.ws.rel(path), approved))
        return [(rel, approved) for _s, rel, approved in sorted(found, reverse=True)]

    def approve(self, plan: str | None = None) -> list[Task]:
        """Materialise a plan — by default the newest not yet approved — in one commit: ids
        assigned, keys mapped to them in deps and parents, the parts of a decomposed task
        under it; or apply a change list.  The plan file records `approved` and `task_ids`.
        Returns the tasks created or changed."""
        from nexus import plans

        roles = self.roles()
        ids: list[str] = []

        def build(batch: Batch, snap: Snapshot) -> str:
            rel = self._plan_path(plan)
            text = self.ws.read_text(self.ws.root / rel)
            data = plans.read_file(text)
            if data.get("approved"):
                raise ValidationError(
                    f"{rel} was approved already ({data['approved']})",
                    fix="nothing to do: its tasks exist (see `nexus status`)",
                )
            try:
                p = plans.validated(data, roles=roles, tasks=batch.tasks)
            except plans.Rejected as exc:
                raise plans.Rejected(exc.problems, rel, fix=f"edit {rel}, then approve") from None
            if p.kind == "adapt":
                mapping = self._apply_changes(batch, p, rel, ids)
            else:
                mapping = self._create_parts(batch, p.tasks, p.parent, ids)
            batch.put(rel, plans.mark_approved(text, batch.stamp, mapping))
            return f"approve {rel} ({len(ids)} task(s))"

        batch = self.mutate(build)
        return [batch.tasks[i] for i in ids]

    def adapt_prompt(self, feedback: str) -> str:
        """The prompt (prompts/adapt.md) asking for changes to the live DAG."""
        from nexus import plans, prompts

        if not feedback.strip():
            raise ValidationError("adapt needs feedback", fix='nexus adapt "what should change"')
        lines, more = plans.task_lines(self.snapshot().tasks.values(), limit=300)
        state = "\n".join(lines) + (f"\n- … and {more} more (not shown)" if more else "")
        values = {
            "goal": self.ws.config.goal or "(no goal is set in nexus.yaml)",
            "feedback": feedback.strip(),
            "current_state": "# Current tasks\n\nid [status, size, role] title:\n\n"
            + (state or "(there are no tasks yet)"),
            "roles": self._role_lines(),
        }
        return prompts.render(prompts.load_template(self.ws.root, "adapt"), values)

    def adapt(self, feedback: str, *, engine: str | None = None) -> PlanFile:
        """Ask the oracle for changes (add, cancel, resize, rewire, edit) given the live DAG;
        commit them as plans/<name>.yaml (`kind: adapt`) for `approve`."""
        from nexus import oracle, plans

        self.sync()
        prompt = self.adapt_prompt(feedback)
        tasks, roles = self.current().tasks, self.roles()

        def parse(text: str) -> plans.Plan:
            data = {**plans.extract(text), "kind": "adapt"}
            return plans.validated(data, roles=roles, tasks=tasks)

        name = self._plan_name(f"adapt {feedback}")
        asked = oracle.Oracle.for_workspace(self.ws, engine, "L")
        try:
            plan, spend = oracle.converse(asked, prompt, parse, label="adapt")
        except oracle.NoValidAnswer as exc:
            raise self._rejected(exc, name) from None
        plan = replace(plan, goal=self.ws.config.goal, feedback=feedback.strip())
        return self._write_plan(plan, name, spend)

    def review_prompt(self, task_id: str) -> str:
        """The review prompt (prompts/review.md) for a complete task: its description,
        acceptance criteria, result and the files its run changed."""
        from nexus import plans, prompts

        task = self._reviewable(self.snapshot().tasks, task_id)
        criteria = "".join(f"\n- {c}" for c in task.acceptance)
        values = {
            "task_id": task.id,
            "title": task.title,
            "body": plans.description(task.body).strip() or "(no description)",
            "acceptance": f"## Acceptance criteria\n{criteria}" if criteria else "",
            "result": prompts.extract_result(task.body),
            "files_changed": "\n".join(f"- {f}" for f in self._files_changed(task)),
        }
        return prompts.render(prompts.load_template(self.ws.root, "review"), values)

    def review(self, task_id: str, *, engine: str | None = None) -> Review:
        """Ask the oracle to review a complete task and record its verdict."""
        from nexus import oracle, plans

        tid = self._reviewable(self.snapshot().tasks, task_id).id
        prompt = self.review_prompt(tid)
        asked = oracle.Oracle.for_workspace(self.ws, engine, "M")
        try:
            review, spend = oracle.converse(
                asked, prompt, lambda t: plans.check_review(plans.extract(t), tid), label=tid
            )
        except oracle.NoValidAnswer as exc:
            raise self._rejected(exc, f"review-{tid}") from None
        return self._record_review(tid, review, spend.facts())

    def record_review(self, task_id: str, verdict_text: str) -> Review:
        """Record a verdict someone wrote (`verdict: accepted|reopen`, `reasons`, `criteria`):
        accepted appends `## Review` to the task; reopen also sends it back to pending (then
        ready), with the reasons for its next run."""
        from nexus import plans

        tid = self._reviewable(self.snapshot().tasks, task_id).id
        return self._record_review(tid, plans.check_review(plans.extract(verdict_text), tid), None)

    def oracle_problem(self, engine: str | None = None) -> str | None:
        """None when the oracle can answer here; else what is missing, with the fix."""
        from nexus import oracle

        return oracle.Oracle.for_workspace(self.ws, engine).problem()

    def xl_reason(self, task: Task, tasks: Mapping[str, Task]) -> str:
        """Why a ready XL task waits: its parts run, its plan waits for approval, its
        decomposition failed, or nobody decomposed it yet."""
        if any(t.parent == task.id for t in tasks.values()):
            return "it has children: it completes when they do"
        waiting = self._waiting_plans().get(task.id)
        if waiting is not None:
            name = waiting.rsplit("/", 1)[-1].removesuffix(".yaml")
            return f"XL: plan {waiting} waits for approval (`nexus approve {name}`)"
        failed = self._decompose_failures().get(task.id)
        if failed is not None:
            at = iso(dt.datetime.fromtimestamp(float(failed["retry_at"]), dt.UTC))
            error = " ".join(str(failed["error"]).split())[:300]
            return f"XL: decomposition failed: {error} — the daemon asks again after {at}"
        if self.ws.config.raw.get("auto_decompose") is True:
            return "XL: the daemon asks the oracle to decompose it (auto_decompose)"
        return f"XL: decompose first — `nexus plan --parent {task.id}`, then `nexus approve`"

    def decompose_xl(self, snap: Snapshot, *, approve: bool = False) -> list[Decomposition]:
        from nexus.plans import Decomposition

        """One round of auto-decomposition: plan the first ready XL task that has no parts, no
        plan waiting and no failure still cooling down; approve the plan when `approve`.  A
        failure is recorded (`nexus why` tells it) and asked again later with backoff."""
        from nexus import dispatch

        containers = {t.parent for t in snap.tasks.values() if t.parent}
        ready = [
            t
            for t in snap.tasks.values()
            if t.status is Status.READY and t.size is Size.XL and t.id not in containers
        ]
        if not ready:
            return []
        waiting = self._waiting_plans()
        failures = self._decompose_failures()
        now = self.now().timestamp()
        for t in sorted(ready, key=dispatch.order_key):
            failed = failures.get(t.id)
            if t.id in waiting or (failed and now < float(failed["retry_at"])):
                continue
            try:
                pf = self.plan(parent=t.id)
            except NexusError as exc:
                tries = int(failed["tries"]) + 1 if failed else 1
                retry_at = now + min(self.policy().delay(tries), 3600.0)
                failures[t.id] = {"error": str(exc), "tries": tries, "retry_at": retry_at}
                _write_json(self._failures_file, failures)
                return [Decomposition(t.id, error=str(exc))]
            if failures.pop(t.id, None) is not None:
                _write_json(self._failures_file, failures)
            if not approve:
                return [Decomposition(t.id, pf.path)]
            try:
                created = self.approve(pf.name)
            except NexusError as exc:
                return [Decomposition(t.id, pf.path, error=str(exc))]
            return [Decomposition(t.id, pf.path, tuple(c.id for c in created))]
        return []

    # planning helpers

    def _plan_goal(self, goal: str | None, xl: Task | None) -> str:
        text = " ".join((goal or "").split()) or (xl.title if xl else "") or self.ws.config.goal
        if not text.strip():
            raise ValidationError(
                "there is no goal to plan for",
                fix='pass one (`nexus plan "what to build"`) or set `goal:` in nexus.yaml',
            )
        return text.strip()

    def _role_lines(self) -> str:
        from nexus import agents

        roles, _problems = agents.load_roles(self.ws.root, self.ws.config)
        team = {k: r for k, r in roles.items() if k != "prime"} or roles
        lines = []
        for r in team.values():
            skills = ", ".join(e.replace("_", " ") for e in r.expertise[:5])
            what = ", ".join(x for x in (r.name, r.title) if x)
            lines.append(f"- `{r.role}`: {what}" + (f" — {skills}" if skills else ""))
        return "\n".join(lines) or "(no roles: agents/ is empty; leave `role` out)"

    def _plan_name(self, text: str) -> str:
        import re
        import secrets

        from nexus.task import ID_ALPHABET

        slug = re.sub(r"[^a-z0-9]+", "-", text.lower())[:40].strip("-") or "plan"
        while True:
            name = f"{slug}-{''.join(secrets.choice(ID_ALPHABET) for _ in range(4))}"
            if not (self.ws.root / "plans" / f"{name}.yaml").exists():
                return name

    def _plan_path(self, ref: str | None) -> str:
        """plans/<name>.yaml for a name, file name or path; else the newest waiting plan."""
        if ref is None:
            waiting = [rel for rel, approved in self.plans() if not approved]
            if not waiting:
                raise ValidationError(
                    "no plan waits for approval", fix='make one with `nexus plan "GOAL"`'
                )
            return waiting[0]
        name = Path(ref).name.removesuffix(".yaml").removesuffix(".yml")
        if problem := id_problem(name, "plan name"):
            raise ValidationError(problem)
        if not (self.ws.root / "plans" / f"{name}.yaml").is_file():
            raise ValidationError(
                f"there is no plan plans/{name}.yaml", fix="see the plans with `ls plans/`"
            )
        return f"plans/{name}.yaml"

    def _write_plan(self, plan: Plan, name: str, spend: Any) -> PlanFile:
        from nexus import plans
        from nexus.plans import PlanFile

        rel = f"plans/{name}.yaml"

        def build(batch: Batch, snap: Snapshot) -> str:
            meta: dict[str, Any] = {"created": batch.stamp}
            if spend is not None:
                meta["oracle"] = spend.summary()
            batch.put(rel, plans.render(plan, name, meta))
            what = "changes" if plan.kind == "adapt" else "plan"
            return f"{what} {rel} ({(plan.feedback or plan.goal)[:60]})"

        self.mutate(build, spend.facts() if spend is not None else None)
        return PlanFile(rel, plan)

    def _rejected(self, exc: Any, name: str) -> ValidationError:
        """Keep the last rejected answer under .nexus/plans/ and say where."""
        from nexus import plans

        folder = self.ws.runtime / "plans"
        folder.mkdir(exist_ok=True)
        path = folder / f"rejected-{name}.txt"
        notes = "".join(f"# - {p}\n" for p in exc.problems)
        path.write_text(f"# rejected after {exc.spend.asks} answer(s):\n{notes}\n{exc.answer}")
        return plans.Rejected(
            exc.problems,
            f"the oracle's last answer ({exc.spend.asks} asked)",
            saved=self.ws.rel(path),
            fix="ask again (perhaps with a clearer goal or another --engine), or write the plan "
            "yourself (docs/planning.md) and approve it with `nexus run FILE`",
        )

    def _create_parts(
        self, batch: Batch, parts: Sequence[Any], parent: str | None, ids: list[str]
    ) -> dict[str, str]:
        """Create plan tasks (deps and parents before the tasks that need them); returns the
        key → id mapping."""
        from nexus import plans

        if parent is not None:
            holder = batch.current(parent)
            if holder.status.terminal or holder.status.active:
                raise ValidationError(
                    f"task {parent} is {holder.status}: it can no longer be decomposed"
                )
            if any(t.parent == parent for t in batch.tasks.values()):
                raise ValidationError(
                    f"task {parent} already has parts",
                    fix="change them with `nexus adapt`, or cancel them first",
                )
        taken = set(batch.tasks)
        mapping: dict[str, str] = {}
        for t in parts:
            mapping[t.key] = self.ws.new_id(taken)
            taken.add(mapping[t.key])
        for t in plans.creation_order(parts):
            tid = mapping[t.key]
            extra = {k: v for k, v in t.extra.items() if k not in ("priority", "engine", "model")}
            fields = self.new_task_fields(
                batch,
                tid,
                t.title,
                kind=t.kind,
                size=t.size,
                role=t.role,
                deps=[mapping.get(d, d) for d in t.deps],
                parent=mapping.get(t.parent, t.parent) if t.parent else parent,
                priority=str(t.extra.get("priority") or "normal"),
                acceptance=t.acceptance,
                engine=t.extra.get("engine"),
                model=t.extra.get("model"),
                extra=extra,
            )
            path = self.ws.rel(self.ws.new_task_path(tid))
            batch.create(path, taskfile.new_file(fields, _body(t.body)))
            ids.append(tid)
        return mapping

    def _apply_changes(self, batch: Batch, p: Any, rel: str, ids: list[str]) -> dict[str, str]:
        from nexus import frontmatter, plans

        adds = [c.task for c in p.changes if c.task is not None]
        mapping = self._create_parts(batch, adds, None, ids)
        for c in p.changes:
            if c.task is not None:
                continue
            task = batch.current(c.target)
            if c.op == "cancel":
                batch.move(task.id, Status.CANCELLED, f"{c.reason} ({rel})")
            elif c.op == "resize":
                batch.update(task.id, {"size": c.size})
            elif c.op == "rewire":
                batch.update(task.id, {"deps": [mapping.get(d, d) for d in c.deps or ()]})
            else:
                if c.body is not None:
                    sp = frontmatter.split(batch.text_of(task))
                    body = plans.replace_description(sp.body, c.body)
                    batch.texts[task.path] = replace(sp, body=body).join()
                changes: dict[str, Any] = {}
                if c.title is not None:
                    changes["title"] = c.title
                if c.acceptance is not None:
                    changes["acceptance"] = list(c.acceptance) or None
                batch.update(task.id, changes)
            ids.append(task.id)
        return mapping

    def _reviewable(self, tasks: Mapping[str, Task], ref: str) -> Task:
        task, _ = self.ws.load_task(self.resolve(tasks, ref))
        if task.status is not Status.COMPLETE:
            raise ValidationError(
                f"task {task.id} is {task.status}: only a complete task has a result to review",
                fix=f"see `nexus why {task.id}`",
            )
        return task

    def _files_changed(self, task: Task) -> list[str]:
        """The files the run that completed `task` changed (from that commit), task files
        left out."""
        out = self.repo.git(
            ["log", "-1", "--format=", "--name-only",
             f"--grep=^Nexus-Transition: {task.id} .* -> complete$", "--", "."]
        )  # fmt: skip
        tasks_dir = self.repo.rel(self.ws.tasks_dir) + "/"
        return [p for p in out.splitlines() if p.strip() and not p.startswith(tasks_dir)]

    def _record_review(self, tid: str, review: Review, facts: Mapping[str, str] | None) -> Review:
        from nexus import plans

        def build(batch: Batch, snap: Snapshot) -> str:
            task = batch.current(tid)
            if task.status is not Status.COMPLETE:
                raise ValidationError(f"task {tid} is {task.status}, no longer complete")
            heading = "## Review" if "\n## Review" not in batch.text_of(task) else None
            section = plans.review_section(
                review, batch.stamp, heading or f"## Review ({batch.stamp})"
            )
            if review.verdict == "accepted":
                batch.update(tid, {}, append=section)
            else:
                reasons = "; ".join(review.reasons)
                batch.move(
                    tid,
                    Status.PENDING,
                    f"reopened by review: {reasons[:120]}",
                    {"attempts": 0, "error": f"review: {reasons}"[:1000]},
                    section,
                )
            return f"review {tid}: {review.verdict}"

        batch = self.mutate(build, facts)
        return replace(review, status=str(batch.tasks[tid].status))

    @property
    def _failures_file(self) -> Path:
        folder = self.ws.runtime / "plans"
        folder.mkdir(exist_ok=True)
        return folder / "decompose-failures.json"

    def _decompose_failures(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._failures_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _waiting_plans(self) -> dict[str, str]:
        """Plan files not yet approved, by the task they decompose."""
        out: dict[str, str] = {}
        for path in sorted((self.ws.root / "plans").glob("*.yaml")):
            parent, approved, _created = _plan_header(path)
            if parent and not approved:
                out.setdefault(parent, self.ws.rel(path))
        return out


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


def _member(name: str, value: str, enum: Any) -> str:
    try:
        return str(enum(value))
    except ValueError:
        allowed = " | ".join(str(m) for m in enum)
        raise ValidationError(
            f"{value!r} is not a valid {name}", fix=f"use one of: {allowed}"
        ) from None


def _body(text: str) -> str:
    return (text.strip() + "\n") if text.strip() else ""


def _result_section(text: str, result: str, stamp: str) -> str:
    heading = "## Result" if "\n## Result" not in text else f"## Result ({stamp})"
    return f"{heading}\n\n{taskfile.safe_block(result.strip())}"


def _titles(batch: Batch) -> dict[str, str]:
    return {tid: t.title[:60] for tid, t in batch.tasks.items()}


def _plan_header(path: Path) -> tuple[str | None, bool, str]:
    """`plans.header` of a plan file, read again only when the file changed (the daemon asks
    every pass while an XL task waits)."""
    st = path.stat()
    return _header_of(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4096)
def _header_of(path: str, mtime_ns: int, size: int) -> tuple[str | None, bool, str]:
    from nexus import plans

    return plans.header(Path(path).read_text(encoding="utf-8", errors="replace"))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


__all__ = ["GitError", "NexusError", "Service", "Snapshot", "SyncReport", "status_counts"]

"""Operations on tasks: create, change status, edit fields, claim for a caller, results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nexus import frontmatter, journal, taskfile
from nexus.changes import Batch, iso
from nexus.errors import TaskFileError, ValidationError
from nexus.service.core import ServiceCore, Snapshot
from nexus.task import Kind, Priority, Size, Status, Task, id_problem


class TaskOps(ServiceCore):
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
                    raise ValidationError(f"--id {problem}", fix="choose an id like 'auth-42'")
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
            raise ValidationError(
                "a task title must be one non-empty line", fix="put the details in the body"
            )
        _member("kind", kind, Kind)
        _member("size", size, Size)
        _member("priority", priority, Priority)
        for dep in deps:
            if problem := id_problem(dep):
                raise ValidationError(f"--deps: {problem}", fix="list task ids (`nexus list`)")
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
            raise ValidationError(f"role {problem}", fix="name a file in agents/ (`nexus agents`)")
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
        moved_from: list[Status] | None = None,
    ) -> Task:
        """complete / fail / cancel / retry (→ pending) / claim, with their side effects.
        `moved_from`, when given, receives the status the task had on disk just before (so a
        caller that prints it needs no scan of its own)."""
        found: list[str] = []

        def build(batch: Batch, snap: Snapshot) -> str:
            task = self.resolve(batch.tasks, ref)
            found.append(task.id)
            if moved_from is not None:
                moved_from.append(batch.current(task.id).status)
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
                    loader = frontmatter.safe_loader()
                    value = yaml.load(raw, Loader=loader) if raw.strip() else None
                    frontmatter.check_shape(value)
                except frontmatter.FrontmatterError as exc:
                    raise ValidationError(f"field {key}: {exc.message}", fix=exc.fix) from None
                except (yaml.YAMLError, RecursionError):
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
                field = f" (field {exc.field})" if exc.field else ""
                raise ValidationError(f"{task.path}{field}: {exc.detail}", fix=exc.fix) from None
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

    def log(self, task_id: str | None = None, extra: Sequence[str] = ()) -> list[journal.Entry]:
        args = list(extra)
        if task_id:
            args += [f"--grep=^Nexus-Transition: {task_id} ", f"--grep=^Nexus-Created: {task_id}$"]
        out = self.repo.log(journal.LOG_FORMAT, [self.repo.rel(self.ws.root)], args)
        entries = journal.parse_log(out)
        return journal.for_task(entries, task_id) if task_id else entries

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
        low = rel.lower()  # on a case-insensitive disk .GIT is .git
        if low.split("/")[0] in (".git", ".nexus") or "/.nexus/" in f"/{low}":
            raise ValidationError(
                f"path {raw!r} is inside .git/ or .nexus/", fix="attach project files only"
            )
        return rel


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

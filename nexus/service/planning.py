"""Planning through the oracle: plans, approval, adaptation, reviews, XL decomposition."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus import taskfile
from nexus.changes import Batch, iso
from nexus.errors import NexusError, ValidationError
from nexus.service.agents import AgentOps
from nexus.service.core import Snapshot, _write_json
from nexus.service.tasks import _body
from nexus.task import Size, Status, Task, id_problem

if TYPE_CHECKING:
    from nexus.plans import Decomposition, Plan, PlanFile, Review


class PlanningOps(AgentOps):
    # -- planning ----------------------------------------------------------------------------
    # The oracle (role prime) turns a goal or an XL task into plans/<name>.yaml; `approve`
    # makes it tasks.  Schema and validation: nexus/plans/; asking: nexus/oracle.py.

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
            text = self.ws.read_text(self.ws.inside(rel))
            try:
                data = plans.read_file(text)
            except plans.Rejected as exc:
                raise plans.Rejected(exc.problems, rel, fix=f"edit {rel}, then approve") from None
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
        return self.xl_reasons([task.id], tasks)[task.id]

    def xl_reasons(self, ids: Iterable[str], tasks: Mapping[str, Task]) -> dict[str, str]:
        """`xl_reason` of several tasks, reading the task map, the plans and the failures once:
        the daemon asks for every waiting XL task each pass, and asking per task was
        O(XL tasks x tasks) (~45 s a pass with 5,000 XL tasks among 10,000)."""
        parents = {t.parent for t in tasks.values() if t.parent}
        plans_waiting: dict[str, str] | None = None
        failures: dict[str, dict[str, Any]] | None = None
        out = {}
        for tid in ids:
            if tid in parents:
                out[tid] = "it has children: it completes when they do"
                continue
            if plans_waiting is None:
                plans_waiting, failures = self._waiting_plans(), self._decompose_failures()
            waiting = plans_waiting.get(tid)
            failed = failures.get(tid) if failures is not None else None
            if waiting is not None:
                name = waiting.rsplit("/", 1)[-1].removesuffix(".yaml")
                out[tid] = f"XL: plan {waiting} waits for approval (`nexus approve {name}`)"
            elif failed is not None:
                at = iso(dt.datetime.fromtimestamp(float(failed["retry_at"]), dt.UTC))
                error = " ".join(str(failed["error"]).split())[:300]
                out[tid] = f"XL: decomposition failed: {error} — the daemon asks again after {at}"
            elif self.ws.config.raw.get("auto_decompose") is True:
                out[tid] = "XL: the daemon asks the oracle to decompose it (auto_decompose)"
            else:
                out[tid] = (
                    f"XL: decompose first — `nexus plan --parent {tid}`, then `nexus approve`"
                )
        return out

    def decompose_xl(self, snap: Snapshot, *, approve: bool = False) -> list[Decomposition]:
        """One round of auto-decomposition: plan the first ready XL task that has no parts, no
        plan waiting and no failure still cooling down; approve the plan when `approve`.  A
        failure is recorded (`nexus why` tells it) and asked again later with backoff."""
        from nexus import dispatch
        from nexus.plans import Decomposition

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
        self.ws.inside(f"plans/{name}.yaml")  # refuses a link pointing out of the workspace
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


def _plan_header(path: Path) -> tuple[str | None, bool, str]:
    """`plans.header` of a plan file, read again only when the file changed (the daemon asks
    every pass while an XL task waits)."""
    st = path.stat()
    return _header_of(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4096)
def _header_of(path: str, mtime_ns: int, size: int) -> tuple[str | None, bool, str]:
    from nexus import plans

    return plans.header(Path(path).read_text(encoding="utf-8", errors="replace"))

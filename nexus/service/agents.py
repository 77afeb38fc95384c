"""Agents' side of the service: task prompts, roles and their sessions, scratchpad messages."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus.changes import Batch, iso
from nexus.service.core import Snapshot, _read
from nexus.service.tasks import TaskOps
from nexus.task import Status, Task, id_problem

if TYPE_CHECKING:
    from nexus.scratchpads import Message


class AgentOps(TaskOps):
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
        return prompts.task_prompt(
            prompts.load_template(self.ws.root, "task"),
            role=role,
            task=task,
            body=task.body,
            context_files=list(task.context),
            dependency_results=deps,
            inbox=inbox,
            inbox_left_out=left_out,
            shared_context=self._pad_text("shared_context.md"),
            orchestrator_feedback=self._pad_text("orchestrator_feedback.md"),
            workspace=str(self.ws.root),
            workdir=str(self.repo.top),
            roles=list(role_names),
        )

    def _pad_text(self, name: str) -> str:
        """A scratchpads/ file that prompts include whole (`scratchpads.pad_file`: a link to
        /proc/self/environ or a key file is not read)."""
        from nexus import scratchpads

        path = scratchpads.pad_file(self.ws, name)
        return (_read(path) or "") if path is not None else ""

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

    def running_agents(
        self, state: Mapping[str, Any] | None, snap: Snapshot | None = None
    ) -> list[dict[str, Any]]:
        """The agents a running daemon runs now, from its published `state` (`daemon_state()`;
        None: no daemon, so none): task id and title, role, engine and model, when the run
        started (the task's `started`).  Engine and model come from the daemon's own
        `agent_started` event in `.nexus/events.jsonl` (so a `nexus watch --engine` override
        shows), else from routing as the daemon routes."""
        from nexus import agents

        if not state:
            return []
        tasks = (snap or self.current()).tasks
        running = [tasks[tid] for tid in state.get("running") or [] if tid in tasks]
        if not running:
            return []
        started = _started_events(self.ws.runtime / "events.jsonl", {t.id for t in running})
        roles, _problems = agents.load_roles(self.ws.root, self.ws.config)
        out = []
        for t in running:
            event = started.get(t.id)
            if event is None:
                r = agents.route(t, roles.get(t.role or ""), self.ws.config)
                event = {"engine": r.engine, "model": r.model}
            out.append(
                {
                    "task_id": t.id,
                    "title": t.title,
                    "role": t.role,
                    "engine": event.get("engine"),
                    "model": event.get("model"),
                    "status": str(t.status),
                    "started": t.started,
                    "attempt": t.attempts,
                }
            )
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
        path = scratchpads.pad_file(self.ws, f"{name}.md")  # links leading out are not read
        if path is None:
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


def _started_events(path: Path, ids: set[str], window: int = 256 * 1024) -> dict[str, Any]:
    """The latest `agent_started` event of each task in `ids`, from the end of the daemon's
    event log (only its last `window` bytes are read: the runs that matter started recently)."""
    found: dict[str, Any] = {}
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - window))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return found
    for line in reversed(lines):
        if '"agent_started"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the first, cut line, or one being written
        if isinstance(event, dict) and event.get("task") in ids:
            found.setdefault(event["task"], event)
    return found

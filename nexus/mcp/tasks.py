"""Tools for single tasks and messages: add, update, attach context files, costs, and the
scratchpad mailboxes."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field

from nexus.errors import ValidationError
from nexus.mcp.base import Base, Project, Reply, Size, TaskId, brief


class TaskTools(Base):
    """Tasks one at a time, costs and messages."""

    def nexus_cost(
        self,
        by: Annotated[
            list[Literal["task", "role", "engine", "model", "day"]] | None,
            Field(description="Breakdowns to include (default: all five)."),
        ] = None,
        project: Project = None,
    ) -> Reply:
        """What the work cost: dollars and tokens recorded in the git journal (one entry per
        agent run), in total and broken down by task, role, engine, model and day."""
        from nexus import costs

        svc = self.projects.service(project)
        summary = svc.cost(by)
        return Reply(costs.render(summary), summary)

    def nexus_add_task(
        self,
        title: Annotated[str, Field(description="One line.")],
        size: Annotated[
            Size, Field(description="S, M or L picks the model; XL is decomposed, never run.")
        ] = "M",
        role: Annotated[str | None, Field(description="Role that runs it (agents/).")] = None,
        deps: Annotated[
            list[str] | None, Field(description="Ids of tasks that must be complete first.")
        ] = None,
        parent: Annotated[str | None, Field(description="Id of the enclosing task.")] = None,
        kind: Literal["project", "milestone", "task", "subtask"] = "task",
        priority: Literal["low", "normal", "high", "critical"] = "normal",
        acceptance: Annotated[
            list[str] | None, Field(description="Checkable acceptance criteria.")
        ] = None,
        body: Annotated[str, Field(description="Description (markdown).")] = "",
        project: Project = None,
    ) -> Reply:
        """Add one task. It is ready at once when it has no unfinished dependencies."""
        svc = self.projects.service(project)
        task = svc.add(
            title,
            kind=kind,
            size=size,
            role=role,
            deps=deps or (),
            parent=parent,
            priority=priority,
            acceptance=acceptance or (),
            body=body,
        )
        return Reply(f"added {task.id} ({task.title}): {task.status}", {"task": brief(task)})

    def nexus_update_task(
        self,
        task_id: TaskId,
        fields: Annotated[
            dict[str, Any],
            Field(
                description='Fields to set, e.g. {"size": "L", "deps": ["k7q2"]}; null '
                "removes a field. Known fields: title, kind, status, size, role, deps, parent, "
                "priority, engine, model, max_retries, timeout, acceptance, context, touches, "
                "verify, budget_usd. A status change must follow the lifecycle "
                "(e.g. in_progress -> ready gives a claimed task back)."
            ),
        ],
        project: Project = None,
    ) -> Reply:
        """Change fields of a task (validated before anything is written)."""
        if not fields:
            raise ValidationError("no fields given", fix='pass e.g. {"size": "L"}')
        svc = self.projects.service(project)
        text = {key: json.dumps(value, ensure_ascii=False) for key, value in fields.items()}
        task = svc.edit(task_id, text)
        return Reply(f"{task.id}: set {', '.join(fields)}", {"task": brief(task)})

    def nexus_add_context(
        self,
        task_id: TaskId,
        paths: Annotated[
            list[str],
            Field(
                min_length=1,
                description="Files the task's agent should read first, relative to the "
                "repository's top folder (they must stay inside it).",
            ),
        ],
        project: Project = None,
    ) -> Reply:
        """Attach file references to a task (its `context` field): they head its prompt."""
        svc = self.projects.service(project)
        task, missing = svc.add_context(task_id, paths)
        text = f"{task.id} context: {', '.join(task.context)}"
        if missing:
            text += f"\nnot there yet: {', '.join(missing)}"
        return Reply(text, {"task": brief(task), "context": list(task.context), "missing": missing})

    def nexus_send_message(
        self,
        sender: Annotated[str, Field(description="A role, or user, prime or nexus.")],
        to: Annotated[str, Field(description="A role, or `all`.")],
        text: Annotated[str, Field(description="The message (markdown).")],
        type: Literal[
            "task_assignment", "response", "status_update", "feedback", "question", "note"
        ] = "note",
        task_id: Annotated[str | None, Field(description="The task it is about.")] = None,
        project: Project = None,
    ) -> Reply:
        """Send a message through the scratchpads: the recipient's agent sees it in its next
        prompt."""
        svc = self.projects.service(project)
        message = svc.send_message(sender, to, text, type, task_id)
        return Reply(f"sent {message.id}: {sender} -> {to} ({type})", message.to_json())

    def nexus_read_messages(
        self,
        role: Annotated[str, Field(description="Whose inbox (a role).")],
        unread_only: bool = True,
        limit: Annotated[int, Field(ge=0, description="Newest N messages (0: all).")] = 20,
        mark_read: Annotated[
            bool, Field(description="Mark the messages returned as read.")
        ] = False,
        project: Project = None,
    ) -> Reply:
        """Messages to a role (and broadcasts), oldest first."""
        svc = self.projects.service(project)
        messages = svc.inbox(role, unread_only=unread_only, limit=limit or None)
        if mark_read and messages:
            svc.mark_read(role, [m.id for m in messages])
        lines = [f"{len(messages)} message(s) for {role}"]
        for m in messages:
            about = f" about {m.task}" if m.task else ""
            lines.append(f"\n[{m.id}] {m.time or '?'} {m.frm} -> {m.to} ({m.type}){about}")
            lines.append(m.payload)
        return Reply("\n".join(lines), {"messages": [m.to_json() for m in messages]})

"""The MCP tools: every `nexus_*` method of `Tools` is one tool.  Arguments are validated from
the signature (the SDK turns it into the input schema, the docstring into the description);
each returns a `Reply`.  No SDK here: server.py registers them and turns `NexusError`s into tool
errors carrying the message and the fix.  Every change goes through the Service (actor `mcp`).

The names are a contract (DESIGN.md §8); `CORE` is the default set, `ALL` adds the rest.
"""

from __future__ import annotations

from nexus.mcp.base import Reply
from nexus.mcp.lifecycle import Lifecycle
from nexus.mcp.planning import Planning
from nexus.mcp.tasks import TaskTools

CORE = (
    "nexus_create_project",
    "nexus_list_projects",
    "nexus_resume",
    "nexus_plan",
    "nexus_approve",
    "nexus_execute",
    "nexus_complete",
    "nexus_fail",
    "nexus_status",
    "nexus_result",
)
ALL = (
    *CORE,
    "nexus_adapt",
    "nexus_review",
    "nexus_add_context",
    "nexus_cost",
    "nexus_add_task",
    "nexus_update_task",
    "nexus_send_message",
    "nexus_read_messages",
)
READ_ONLY = ("nexus_list_projects", "nexus_status", "nexus_result", "nexus_cost")


class Tools(Lifecycle, Planning, TaskTools):
    """All the tools over one set of projects."""


__all__ = ["ALL", "CORE", "READ_ONLY", "Reply", "Tools"]

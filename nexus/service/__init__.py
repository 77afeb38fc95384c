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

from nexus.errors import GitError, NexusError
from nexus.service.core import Snapshot, SyncReport, status_counts, utcnow
from nexus.service.views import ViewOps


class Service(ViewOps):
    """Every operation, in layers that build on each other: the write path (core), tasks,
    agents and messages, planning, and the questions surfaces ask (views)."""


__all__ = [
    "GitError",
    "NexusError",
    "Service",
    "Snapshot",
    "SyncReport",
    "status_counts",
    "utcnow",
]

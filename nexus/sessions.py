"""`agents/sessions.yaml`: the engine session each persistent role resumes (DESIGN.md §6).

The file is committed, so a role's session survives restarts and moves with the workspace:

    code:
      engine: claude-code
      session: 5f0c...
      updated: 2025-01-01T12:00:00+00:00
      replaced: [older-id, newer-id]

Pure: the daemon reads the file, calls these functions and writes the text back through its
batch.  A session of one engine is never resumed on another.  A file nexus cannot read is
treated as empty (with a warning): the roles then start fresh sessions, which is safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nexus.task import id_problem

PATH = "agents/sessions.yaml"
MAX_REPLACED = 5
HEADER = (
    "# Written by nexus: the engine session each persistent role resumes (see agents/*.md).\n"
    "# Delete a role's entry to make it start a fresh session; other edits are overwritten.\n"
)


@dataclass(frozen=True)
class RoleSession:
    engine: str
    session: str
    updated: str = ""
    replaced: tuple[str, ...] = ()  # earlier session ids, newest last

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "session": self.session,
            "updated": self.updated,
            "replaced": list(self.replaced),
        }


Sessions = dict[str, RoleSession]


def _entry(value: Any) -> RoleSession | None:
    if not isinstance(value, Mapping):
        return None
    engine, session = value.get("engine"), value.get("session")
    if not (isinstance(engine, str) and engine and isinstance(session, str) and session):
        return None
    replaced = value.get("replaced") or []
    if not isinstance(replaced, list):
        replaced = []
    updated = value.get("updated")
    return RoleSession(
        engine=engine,
        session=session,
        updated=str(updated) if updated is not None else "",
        replaced=tuple(str(r) for r in replaced if isinstance(r, str) and r)[-MAX_REPLACED:],
    )


def parse_sessions(text: str) -> tuple[Sessions, str | None]:
    """The sessions in the file, and a warning when (part of) it could not be used."""
    if not text.strip():
        return {}, None
    import yaml

    from nexus import frontmatter

    try:
        data = yaml.load(text, Loader=frontmatter.safe_loader())
        frontmatter.check_shape(data)
    except frontmatter.FrontmatterError as exc:
        return {}, f"{PATH}: {exc.message}; every role starts a fresh session"
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        return {}, f"{PATH} is not valid YAML ({first}); every role starts a fresh session"
    if data is None:
        return {}, None
    if not isinstance(data, Mapping):
        return {}, f"{PATH} is not a mapping of role → session; every role starts afresh"
    sessions: Sessions = {}
    skipped: list[str] = []
    for role, value in data.items():
        entry = _entry(value)
        if entry is None or id_problem(role, "role name"):
            skipped.append(str(role))
        else:
            sessions[role] = entry
    warning = None
    if skipped:
        warning = (
            f"{PATH}: the entries {', '.join(skipped)} lack an engine and a session id; "
            "those roles start fresh sessions"
        )
    return sessions, warning


def render_sessions(sessions: Mapping[str, RoleSession]) -> str:
    """The file text: roles sorted, fields in a fixed order, so rewrites make small diffs."""
    import yaml

    data = {role: sessions[role].as_dict() for role in sorted(sessions)}
    if not data:
        return HEADER
    body: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1_000_000)
    return HEADER + body


def session_for(sessions: Mapping[str, RoleSession], role: str, engine: str) -> str | None:
    """The session to resume for `role` on `engine`, if it has one on that engine."""
    entry = sessions.get(role)
    return entry.session if entry is not None and entry.engine == engine else None


def record(
    sessions: Mapping[str, RoleSession],
    role: str,
    engine: str,
    session_id: str,
    now_iso: str,
    replaced: str | None = None,
) -> Sessions:
    """A new mapping with `role`'s session set.  The previous id (and `replaced`, the id the
    engine reported as expired) go to the history; unchanged when nothing changed, so callers
    can skip the write."""
    out = dict(sessions)
    old = sessions.get(role)
    history = list(old.replaced) if old is not None else []
    for earlier in (old.session if old is not None else None, replaced):
        if earlier and earlier != session_id and earlier not in history:
            history.append(earlier)
    kept = tuple(history[-MAX_REPLACED:])
    if old is None or (old.engine, old.session, old.replaced) != (engine, session_id, kept):
        out[role] = RoleSession(engine, session_id, now_iso, kept)
    return out

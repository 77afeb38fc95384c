"""Commit messages with machine-readable trailers, and reading them back.

Pure.  A state commit looks like:

    nexus: complete auth-1 (Research OAuth2 flows)

    auth-1: ready -> complete (completed from the CLI)
    auth-2: pending -> ready (all 1 deps complete)

    Nexus-Transition: auth-1 ready -> complete
    Nexus-Transition: auth-2 pending -> ready
    Nexus-Actor: cli

`git log --format=%(trailers)` and `git interpret-trailers --parse` read the trailers back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nexus.task import Status, Transition

TRAILER_KEYS = (
    "Agent",
    "Engine",
    "Model",
    "Session",
    "Cost-USD",
    "Tokens",
    "Actor",
    "Attempt",
    "Message",
    "Files",
)
_SAFE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")  # git refuses NUL; lines forge trailers


def _clean(value: object) -> str:
    return _SAFE.sub(" ", str(value)).strip()


@dataclass(frozen=True)
class Change:
    """What one commit records: the transitions and the facts about the run behind them."""

    summary: str
    actor: str
    transitions: Sequence[Transition] = ()
    details: Sequence[str] = ()  # extra body lines
    facts: Mapping[str, str] = field(default_factory=dict)  # trailer key (without Nexus-) → value
    created: Sequence[str] = ()  # ids of tasks this commit creates


def message(change: Change) -> str:
    lines = [f"nexus: {_clean(change.summary)}"[:200], ""]
    body = [f"{t.task_id}: {t.src} -> {t.dst} ({_clean(t.reason)})" for t in change.transitions]
    body += [_clean(d) for d in change.details]
    if body:
        lines += [*body, ""]
    lines += [f"Nexus-Created: {tid}" for tid in change.created]
    lines += [f"Nexus-Transition: {t.task_id} {t.src} -> {t.dst}" for t in change.transitions]
    for key in TRAILER_KEYS:
        if key in change.facts and key != "Actor":
            lines.append(f"Nexus-{key}: {_clean(change.facts[key])}")
    lines.append(f"Nexus-Actor: {_clean(change.actor)}")
    return "\n".join(lines) + "\n"


def promised(message: str) -> tuple[dict[str, str], list[str]]:
    """What a commit message says its files hold: each task's status after its last
    transition, and the ids it creates."""
    final: dict[str, str] = {}
    created: list[str] = []
    for line in message.splitlines():
        if line.startswith("Nexus-Transition: "):
            if m := _TRANSITION.match(line[len("Nexus-Transition: ") :]):
                final[m.group(1)] = m.group(3)
        elif line.startswith("Nexus-Created: "):
            created.append(line[len("Nexus-Created: ") :].strip())
    return final, created


def without_tasks(message: str, task_ids: Iterable[str]) -> str:
    """`message` without the lines and trailers about `task_ids` (for a commit whose files
    for them were never written: a process killed between its renames)."""
    ids = set(task_ids)
    kept = []
    for line in message.splitlines():
        head = line.split(":", 1)[0]
        value = line.partition(": ")[2]
        if head in ids:
            continue  # "auth-1: ready -> complete (reason)"
        if head in ("Nexus-Transition", "Nexus-Created") and value.split(" ", 1)[0] in ids:
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


def summarize(transitions: Sequence[Transition], titles: Mapping[str, str]) -> str:
    """A one-line subject for a set of transitions."""
    if not transitions:
        return "update"
    if len(transitions) == 1:
        t = transitions[0]
        verb = {Status.READY: "promote", Status.PENDING: "reopen"}.get(t.dst, str(t.dst))
        title = titles.get(t.task_id)
        return f"{verb} {t.task_id}" + (f" ({title})" if title else "")
    by_dst: dict[str, int] = {}
    for t in transitions:
        by_dst[str(t.dst)] = by_dst.get(str(t.dst), 0) + 1
    return ", ".join(f"{n} {dst}" for dst, n in by_dst.items())


@dataclass(frozen=True)
class Entry:
    """One commit of the journal as read back from git."""

    commit: str
    time: int  # unix seconds
    author: str
    subject: str
    transitions: tuple[tuple[str, str, str], ...]  # (task id, from, to)
    trailers: Mapping[str, str]
    created: tuple[str, ...] = ()

    @property
    def actor(self) -> str:
        return self.trailers.get("Actor", "")

    def to_json(self, task_id: str | None = None) -> dict[str, Any]:
        """The entry as `nexus log --json` and the web API show it (transitions of `task_id`
        only, when given)."""
        return {
            "commit": self.commit,
            "time": self.time,
            "author": self.author,
            "subject": self.subject,
            "actor": self.actor,
            "trailers": dict(self.trailers),
            "created": list(self.created),
            "transitions": [
                {"task": t, "from": src, "to": dst}
                for t, src, dst in self.transitions
                if task_id is None or t == task_id
            ],
        }

    def cost_usd(self) -> float:
        try:
            return float(self.trailers.get("Cost-USD", 0) or 0)
        except ValueError:
            return 0.0


# `git log` format: fields separated by \x1f, records ended by \x1e.
LOG_FORMAT = "%H%x1f%at%x1f%an%x1f%s%x1f%(trailers:only=true,unfold=true)%x1e"
_TRANSITION = re.compile(r"^(\S+) (\S+) -> (\S+)$")


def parse_log(output: str) -> list[Entry]:
    entries = []
    for record in output.split("\x1e"):
        record = record.strip("\n")
        if not record:
            continue
        parts = record.split("\x1f")
        if len(parts) < 5:
            continue
        commit, when, author, subject, trailer_text = parts[:5]
        transitions: list[tuple[str, str, str]] = []
        created: list[str] = []
        trailers: dict[str, str] = {}
        for line in trailer_text.splitlines():
            key, sep, value = line.partition(": ")
            if not sep or not key.startswith("Nexus-"):
                continue
            key, value = key[len("Nexus-") :], value.strip()
            if key == "Transition":
                if m := _TRANSITION.match(value):
                    transitions.append((m.group(1), m.group(2), m.group(3)))
            elif key == "Created":
                created.append(value)
            else:
                trailers[key] = value
        if not transitions and not trailers:
            continue
        entry = Entry(
            commit, int(when or 0), author, subject, tuple(transitions), trailers, tuple(created)
        )
        entries.append(entry)
    return entries


def for_task(entries: Iterable[Entry], task_id: str) -> list[Entry]:
    return [
        e for e in entries if task_id in e.created or any(t[0] == task_id for t in e.transitions)
    ]

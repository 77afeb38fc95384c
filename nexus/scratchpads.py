"""Scratchpads: the markdown mailboxes that roles (and people) write to each other.

A pure core (`compose`, `render`, `parse`, `append`, `newest`, the name checks) and a thin shell
(`read_inbox`, `read_ids`, `mark_read`) that reads the files and the read state.

Files.  `scratchpads/<from>_to_<to>.md` holds the messages from one role to another, oldest first;
nexus only ever appends to it.  `<from>_to_all.md` is a broadcast: every role's inbox includes
it (except its sender's own).  `shared_context.md` (global context) and
`orchestrator_feedback.md` (the orchestrator's instructions) are not mailboxes; prompts include
them whole.  A file nexus creates starts with the line `# Messages from <from> to <to>`.

Names.  A role is a file in agents/ (`agents/code.md` is the role `code`): 1-64 letters, digits,
'-' or '_', so no name can leave the folder, span lines or mean anything to a shell.  A
recipient is a role or `all`.  A sender is a role or one of `user` (a person), `prime` (the
orchestrator) and `nexus` (nexus itself), which need no agents file.  A name containing `_to_`
is refused: the file name would not say who wrote to whom.

One message, as `render` writes it (the first line is a single line in the file):

    <!-- nexus:message {"id": "m-20261122T031500Z-ab12cd", "time": "2026-11-22T03:15:00Z",
         "from": "aria", "to": "code", "type": "task_assignment", "task": "k7q2mx4p"} -->
    ### aria → code · task_assignment · 2026-11-22 03:15 UTC (task k7q2mx4p)

    <payload: markdown, or a ```json block when the text sent was JSON>

    <!-- /nexus:message m-20261122T031500Z-ab12cd -->

- The header is a JSON object inside an HTML comment (markdown viewers hide it); `task` is left
  out when there is none.  Types: task_assignment, response, status_update, feedback, question,
  note (the message schema of the NEXUS design, in markdown form).
- The `###` heading is for people; parsing skips it: the header is the truth.
- The closing comment ends the payload, so text after it is not part of the message.
- A payload line that would read as either comment is written with one more leading backslash
  (`\\<!-- nexus:message ...`) and read back without it, so a payload (code fences included)
  can neither forge a message nor end one early.  Markers count only at the start of a line.

Written by hand.  Text outside every marked block (appended with an editor, or a whole file
without markers) is a message too: type `note`, time unknown (None), and the id `h-<hash>` of
the file's names, the id of the message before it and the text, so it stays the same while the
text does (editing it makes it a new, unread message).  Sender and recipient always come from
the file name, whatever a header says.  Parsing never raises: a damaged header is plain text; a
block whose closing comment is gone runs to the next header or the end of the file.

Read state is runtime state: `.nexus/inbox/<role>.json` (git-ignored) lists the ids a role has
read.  After a fresh clone, or when `.nexus/` is removed, old messages count as unread once.
Inboxes list messages oldest first; a `limit` keeps only the newest ones, so a prompt stays
small, and `newest` says how many were left out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus.errors import ValidationError, WorkspaceError
from nexus.task import id_problem

if TYPE_CHECKING:
    from nexus.store import Workspace

FOLDER = "scratchpads"
TYPES = ("task_assignment", "response", "status_update", "feedback", "question", "note")
BROADCAST = "all"
SYSTEM_SENDERS = ("user", "prime", "nexus")
SPECIAL_FILES = ("shared_context.md", "orchestrator_feedback.md")

_OPEN = re.compile(r"^<!-- nexus:message (\{.*\}) -->[ \t]*$")
_CLOSE = re.compile(r"^<!-- /nexus:message (\S+) -->[ \t]*$")
_MARKER_LIKE = re.compile(r"^\\*<!-- /?nexus:message")  # escaped on render
_ESCAPED = re.compile(r"^\\+<!-- /?nexus:message")  # unescaped on parse
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # NUL, terminal escapes: dropped from text
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_FILE_HEADER = re.compile(r"^# Messages from \S+ to \S+[ \t]*$")
_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)")
_JSON_BLOCK = re.compile(r"^(`{3,})json\n(.*)\n\1$", re.DOTALL)


@dataclass(frozen=True)
class Message:
    id: str
    time: str | None  # ISO 8601 UTC; None when written by hand
    frm: str
    to: str  # a role, or "all"
    type: str
    task: str | None
    payload: str

    @property
    def data(self) -> Any:
        """The payload's JSON value when the payload is one ```json block, else None."""
        match = _JSON_BLOCK.match(self.payload)
        if match is None:
            return None
        try:
            return json.loads(match.group(2))
        except ValueError:
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "from": self.frm,
            "to": self.to,
            "type": self.type,
            "task": self.task,
            "payload": self.payload,
        }


# -- names -------------------------------------------------------------------------------------


def check_sender(name: str, roles: Sequence[str]) -> None:
    if name == BROADCAST:
        raise ValidationError(
            f"{BROADCAST!r} cannot send: it is the recipient that means every role",
            fix=f"send as one of: {', '.join([*roles, *SYSTEM_SENDERS])}",
        )
    _check_name(name, "sender", roles, SYSTEM_SENDERS)


def check_recipient(name: str, roles: Sequence[str]) -> None:
    """A role, `all` (broadcast) or `user` (the person: `nexus inbox user` shows them)."""
    _check_name(name, "recipient", roles, (BROADCAST, "user"))


def check_role(name: str, roles: Sequence[str]) -> None:
    _check_name(name, "inbox", roles, ())


def _check_name(name: str, what: str, roles: Sequence[str], also: Sequence[str]) -> None:
    choices = ", ".join([*roles, *also]) or "none (add a file to agents/)"
    problem = id_problem(name, "role name")
    if problem is None and "_to_" in name:
        problem = f"{name!r} is not a valid role name: '_to_' separates the two roles in file names"
    if problem is not None:
        raise ValidationError(f"{what}: {problem}", fix=f"use one of: {choices}")
    if name not in roles and name not in also:
        raise ValidationError(
            f"{what}: {name!r} is not a role (there is no agents/{name}.md)",
            fix=f"use one of: {choices}, or create agents/{name}.md",
        )


def check_type(type: str) -> None:
    if type not in TYPES:
        raise ValidationError(
            f"unknown message type {type!r}", fix=f"use one of: {', '.join(TYPES)}"
        )


def pad_path(frm: str, to: str) -> str:
    """The mailbox of messages from `frm` to `to`, relative to the workspace (names checked)."""
    return f"{FOLDER}/{frm}_to_{to}.md"


# -- the format (pure) -------------------------------------------------------------------------


def compose(
    frm: str, to: str, text: str, type: str, task: str | None, time: str, nonce: str | None = None
) -> Message:
    """A new message sent at `time` (ISO 8601 UTC).  Text that is JSON becomes a ```json block;
    blank lines around the text are dropped.  Names must have been checked."""
    check_type(type)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = _trim(text.split("\n"))
    if not lines:
        raise ValidationError("the message is empty", fix="give the text to send (or - for stdin)")
    payload = "\n".join(lines)
    if payload.lstrip()[:1] in ("{", "["):
        try:
            json.loads(payload)
        except ValueError:
            pass
        else:
            longest = max((len(run) for run in re.findall(r"`+", payload)), default=0)
            fence = "`" * max(3, longest + 1)
            payload = f"{fence}json\n{payload}\n{fence}"
    stamp = time.replace("-", "").replace(":", "")
    return Message(f"m-{stamp}-{nonce or secrets.token_hex(3)}", time, frm, to, type, task, payload)


def summary(message: Message) -> str:
    """`aria → code · task_assignment · 2026-11-22 03:15 UTC (task k7q2mx4p)`"""
    when = message.time or "time unknown"
    if message.time and (match := _ISO.match(message.time)):
        when = f"{match.group(1)} {match.group(2)} UTC"
    task = f" (task {message.task})" if message.task else ""
    return f"{message.frm} → {message.to} · {message.type} · {when}{task}"


def render(message: Message) -> str:
    """The message as a block of a scratchpad file (ending in a newline)."""
    header = message.to_json()
    del header["payload"]
    if not message.task:
        del header["task"]
    # No value can hold "-->" once names are checked; escaping it anyway keeps the comment whole.
    meta = json.dumps(header, ensure_ascii=False).replace("-->", "--\\u003e")
    body = "\n".join(
        "\\" + line if _MARKER_LIKE.match(line) else line for line in message.payload.split("\n")
    )
    return (
        f"<!-- nexus:message {meta} -->\n### {summary(message)}\n\n{body}\n\n"
        f"<!-- /nexus:message {message.id} -->\n"
    )


def append(existing: str | None, message: Message) -> str:
    """The text of a scratchpad after appending `message` (a new file gets its header line)."""
    if existing is None or not existing.strip():
        return f"# Messages from {message.frm} to {message.to}\n\n{render(message)}"
    sep = "" if existing.endswith("\n\n") else "\n" if existing.endswith("\n") else "\n\n"
    return existing + sep + render(message)


def parse(text: str, from_: str, to: str) -> list[Message]:
    """Every message in a scratchpad's text, in order, including text written by hand."""
    out: list[Message] = []
    loose: list[str] = []  # lines outside any marked block
    header: dict[str, Any] | None = None
    body: list[str] = []
    for line in text.splitlines():
        opened = _header(line)
        if opened is not None:
            if header is not None:  # the previous block lost its closing comment
                out.append(_marked(header, body, from_, to))
            _hand_written(loose, out, from_, to)
            header, body, loose = opened, [], []
        elif header is not None:
            closed = _CLOSE.match(line)
            if closed and closed.group(1) == header["id"]:
                out.append(_marked(header, body, from_, to))
                header = None
            else:
                body.append(line)
        elif not _CLOSE.match(line):  # a stray closing comment is no one's text
            loose.append(line)
    if header is not None:
        out.append(_marked(header, body, from_, to))
    _hand_written(loose, out, from_, to)
    return out


def newest(messages: Sequence[Message], limit: int | None) -> tuple[list[Message], int]:
    """The last `limit` messages (None or 0: all) and how many older ones were left out."""
    if not limit or len(messages) <= limit:
        return list(messages), 0
    return list(messages[-limit:]), len(messages) - limit


def _header(line: str) -> dict[str, Any] | None:
    match = _OPEN.match(line)
    if match is None:
        return None
    try:
        data = json.loads(match.group(1))
    except ValueError:
        return None
    if not isinstance(data, dict) or not _MESSAGE_ID.match(str(data.get("id", ""))):
        return None
    return data


def _marked(header: dict[str, Any], body: list[str], from_: str, to: str) -> Message:
    if body and body[0].startswith("### ") and "→" in body[0]:
        body = body[1:]
    lines = [line[1:] if _ESCAPED.match(line) else line for line in _trim(body)]
    kind = header.get("type")
    time = header.get("time")
    task = header.get("task")
    return Message(
        id=str(header["id"]),
        time=time if isinstance(time, str) and time else None,
        frm=from_,
        to=to,
        type=kind if kind in TYPES else "note",
        task=task if isinstance(task, str) and id_problem(task) is None else None,
        payload="\n".join(lines),
    )


def _hand_written(loose: list[str], out: list[Message], from_: str, to: str) -> None:
    lines = _trim(loose)
    if not out and lines and _FILE_HEADER.match(lines[0]):
        lines = _trim(lines[1:])
    if not lines:
        return
    payload = "\n".join(lines)
    before = out[-1].id if out else ""
    key = "\0".join((from_, to, before, payload)).encode("utf-8", "replace")
    mid = "h-" + hashlib.blake2b(key, digest_size=6).hexdigest()
    out.append(Message(mid, None, from_, to, "note", None, payload))


def _trim(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


# -- the files (shell) -------------------------------------------------------------------------


def read_inbox(ws: Workspace, role: str) -> list[Message]:
    """Every message to `role` (its own mailboxes and the broadcasts of others), oldest first.
    Messages of the same second keep file-name order; one written by hand sorts after the
    message before it in its file."""
    keyed: list[tuple[tuple[str, str, int], Message]] = []
    for frm, to, path in _inbox_files(ws, role):
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        when = ""
        for index, message in enumerate(parse(text, frm, to)):
            when = message.time or when
            keyed.append(((when, path.name, index), message))
    keyed.sort(key=lambda pair: pair[0])
    return [message for _, message in keyed]


def read_ids(ws: Workspace, role: str) -> set[str]:
    """Ids of the messages `role` has read (an unreadable state file means none)."""
    try:
        data = json.loads(_state_file(ws, role).read_text(encoding="utf-8"))
        return {i for i in data["read"] if isinstance(i, str)}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def mark_read(ws: Workspace, role: str, ids: Iterable[str]) -> int:
    """Mark messages of `role`'s inbox read; how many were unread.  Ids of messages no longer in
    any file are dropped from the state, so it stays as small as the inbox."""
    from nexus.store import hold_lock

    wanted = set(ids)
    path = _state_file(ws, role)
    path.parent.mkdir(exist_ok=True)
    with hold_lock(path.with_suffix(".lock"), timeout=10.0, what=f"inbox of {role}"):
        present = {m.id for m in read_inbox(ws, role)}
        if unknown := sorted(wanted - present):
            raise ValidationError(
                f"no message {unknown[0]} in the inbox of {role}",
                fix=f"see the ids with `nexus inbox {role} --all`",
            )
        old = read_ids(ws, role)
        ws.write_atomic(path, json.dumps({"read": sorted((old & present) | wanted)}) + "\n")
        return len(wanted - old)


def _state_file(ws: Workspace, role: str) -> Path:
    return ws.runtime / "inbox" / f"{role}.json"


def pad_file(ws: Workspace, file_name: str) -> Path | None:
    """`scratchpads/<file_name>` when it is a regular file that resolves right inside the
    workspace's scratchpads/ folder; None when it is missing, not a regular file (a FIFO would
    hang the reader), or a link leading anywhere else: out of the workspace (a key file,
    /proc/self/environ), into .git/ (credentials in .git/config) or .nexus/.  What this
    returns may go whole into a prompt sent to a model."""
    try:
        path = ws.inside(f"{FOLDER}/{file_name}")
    except WorkspaceError:
        return None
    return path if path.parent == (ws.root / FOLDER).resolve() and path.is_file() else None


def _inbox_files(ws: Workspace, role: str) -> Iterator[tuple[str, str, Path]]:
    try:
        names = sorted(os.listdir(ws.root / FOLDER))
    except OSError:
        return
    for name in names:
        if name.startswith(".") or name in SPECIAL_FILES:
            continue
        for to in dict.fromkeys((role, BROADCAST)):
            suffix = f"_to_{to}.md"
            frm = name[: -len(suffix)] if name.endswith(suffix) else ""
            if not frm or (to == BROADCAST and frm == role):
                continue
            path = pad_file(ws, name)
            if path is not None:
                yield frm, to, path
            break

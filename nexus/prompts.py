"""Prompt assembly: a template + persona + task + context + inbox → the text an agent gets.

Pure except `load_template`, which finds a workspace's override (`<ws>/prompts/<name>.md`) or
the template shipped with nexus.  Templates use `string.Template` variables (`$title`,
`${role}`); a section that brings its own `##` heading is empty when it has nothing to say, and
the blank lines it leaves are collapsed.  A prompt is bounded (`MAX_PROMPT_CHARS`): when it
would be longer, the longest parts are cut and each cut says so in the prompt.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping, Sequence
from pathlib import Path

from nexus.agents import Role
from nexus.errors import NexusError
from nexus.task import Task, id_problem

MAX_PROMPT_CHARS = 100_000
MAX_DEP_RESULT_CHARS = 8_000
DEFAULT_PERSONA = (
    "You are an AI coding agent doing one task in a nexus workspace. Stay within the task's "
    "scope, check your work where a command can show it, and report truthfully what you did "
    "and what is left open."
)
_FENCE = re.compile(r"^\s*(```|~~~)")
_RESULT_HEADING = re.compile(r"^## Result(?: \(.*\))?\s*$")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


class Template(str):
    """Template text that remembers where it came from, so a broken one is reported with its
    path."""

    source: str

    def __new__(cls, text: str, source: str) -> Template:
        obj = super().__new__(cls, text)
        obj.source = source
        return obj


def load_template(ws_root: Path, name: str) -> Template:
    """`<ws>/prompts/<name>.md` when a person put one there, else the shipped template."""
    from nexus.resources import prompts_dir

    if problem := id_problem(name, "template name"):
        raise NexusError(f"no prompt template: {problem}")
    override = ws_root / "prompts" / f"{name}.md"
    try:
        shipped_dir: Path | None = prompts_dir()
    except FileNotFoundError:
        shipped_dir = None
    candidates = [(override, f"{override} (the workspace's override)")]
    if shipped_dir is not None:
        candidates.append((shipped_dir / f"{name}.md", f"the shipped template {name}.md"))
    for path, source in candidates:
        if not path.is_file():
            continue
        if path is override and not path.resolve().is_relative_to(ws_root.resolve()):
            # A link out of the workspace (to a key file, /proc/self/environ) would put its
            # content in every prompt sent to a model.
            raise NexusError(
                f"the prompt template {path} is a link leading out of the workspace",
                fix=f"replace prompts/{name}.md with a file inside the workspace, or remove it",
            )
        try:
            return Template(path.read_text(encoding="utf-8"), source)
        except (OSError, UnicodeDecodeError) as exc:
            raise NexusError(
                f"cannot read the prompt template {path}: {exc}", fix="make it a UTF-8 text file"
            ) from None
    shipped = shipped_dir / f"{name}.md" if shipped_dir else "nexus's own prompts/ folder"
    raise NexusError(
        f"there is no prompt template {name!r}: neither {override} nor {shipped} exists",
        fix=f"write prompts/{name}.md in the workspace, or reinstall nexus",
    )


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill `$variables`.  A template that uses a variable nexus does not provide, or a `$`
    that starts no variable, is reported with its source and the fix."""
    source = getattr(template, "source", "the prompt template")
    try:
        text = string.Template(template).substitute(values)
    except KeyError as exc:
        raise NexusError(
            f"{source} uses ${exc.args[0]}, which nexus does not provide here "
            f"(it provides: {', '.join('$' + k for k in sorted(values))})",
            fix="remove that variable from the template, or write $$ for a literal '$'",
        ) from None
    except ValueError as exc:
        where = str(exc).rsplit(":", 1)[-1].strip()  # "line 3, col 7"
        raise NexusError(
            f"{source}: the '$' at {where} starts no variable",
            fix="write $$ for a literal '$', and $name or ${name} for a variable",
        ) from None
    return _collapse_blank_lines(text)


def _collapse_blank_lines(text: str) -> str:
    """At most one blank line in a row outside fenced code (empty sections leave gaps)."""
    out: list[str] = []
    fenced = False
    for line in text.strip("\n").split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
        if not fenced and not line.strip() and out and not out[-1].strip():
            continue
        out.append(line)
    return "\n".join(out).strip() + "\n"


def extract_result(task_body: str) -> str:
    """The text under the last `## Result` (or `## Result (<time>)`) heading of a task body, up
    to the next `## ` heading; "" when there is none."""
    start: int | None = None
    end: int | None = None
    fenced = False
    lines = task_body.splitlines()
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
        if fenced:
            continue
        if _RESULT_HEADING.match(line):
            start, end = i + 1, None
        elif line.startswith("## ") and start is not None and end is None:
            end = i
    if start is None:
        return ""
    return "\n".join(lines[start:end]).strip()


# -- sections --------------------------------------------------------------------------------


def _section(heading: str, content: str) -> str:
    return f"## {heading}\n\n{content.strip()}" if content.strip() else ""


def _bullets(items: Sequence[str]) -> str:
    return "\n".join("- " + item.strip().replace("\n", "\n  ") for item in items if item.strip())


def _clip(text: str, limit: int, note: str) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()}\n\n[… {len(text) - limit:,} more characters left out; {note}]"


@functools.cache
def _boilerplate() -> frozenset[str]:
    """The paragraphs of the shipped scratchpad files that only say what the file is for."""
    from nexus.resources import template_dir

    try:
        files = sorted((template_dir() / "scratchpads").glob("*.md"))
        texts = [f.read_text(encoding="utf-8") for f in files]
    except (OSError, UnicodeDecodeError):
        return frozenset()
    found: set[str] = set()
    for text in texts:
        text = text.replace("{{goal}}", "").replace("{{name}}", "")
        found.update(" ".join(p.split()) for p in _PARAGRAPH_BREAK.split(text))
    return frozenset(found - {""})


def scratchpad_content(text: str) -> str:
    """What a shared scratchpad file (shared_context.md, orchestrator_feedback.md) says beyond
    the header and explanation it was created with, and beyond HTML comments."""
    text = _COMMENT.sub("", text.replace("\r\n", "\n"))
    boiler = _boilerplate()
    kept = [
        p.strip()
        for p in _PARAGRAPH_BREAK.split(text)
        if p.strip() and " ".join(p.split()) not in boiler
    ]
    return "\n\n".join(kept)


def _dependency_section(results: Sequence[tuple[str, str, str]]) -> str:
    parts = []
    for dep_id, title, result in results:
        text = _clip(
            result.strip() or "(no result was recorded)",
            MAX_DEP_RESULT_CHARS,
            f"the full result is under ## Result in the task file of {dep_id}",
        )
        parts.append(f"### {dep_id} — {title}\n\n{text}")
    return _section("Results of the tasks this one depends on", "\n\n".join(parts))


def _inbox_section(inbox: Sequence[tuple[str, str, str, str]], left_out: int, role: str) -> str:
    parts = []
    if left_out > 0:
        parts.append(
            f"{left_out} older message{'s were' if left_out != 1 else ' was'} left out; "
            f"they are in the files scratchpads/*_to_{role}.md of the workspace."
        )
    for frm, kind, time, payload in inbox:
        head = " · ".join(p for p in (frm, kind, time) if p)
        parts.append(f"### {head}\n\n{payload.strip() or '(empty message)'}")
    return _section("Messages for you", "\n\n".join(parts)) if inbox or left_out > 0 else ""


def _shrink(parts: dict[str, str], over: int) -> dict[str, str]:
    """Cut the longest parts from their end until `over` characters are gone; every cut says
    so where it happened."""
    parts = dict(parts)
    while over > 0:
        name = max(parts, key=lambda k: len(parts[k]))
        current = parts[name]
        note = (
            f"\n\n[… nexus left out the rest of this part: a prompt is limited to "
            f"{MAX_PROMPT_CHARS:,} characters]"
        )
        keep = max(len(current) - over - len(note), 0)
        shortened = current[:keep].rstrip() + note
        gained = len(current) - len(shortened)
        if gained <= 0:
            break
        parts[name] = shortened
        over -= gained
    return parts


def task_prompt(
    template: str,
    *,
    role: Role | None,
    task: Task,
    body: str,
    context_files: Sequence[str],
    dependency_results: Sequence[tuple[str, str, str]],
    inbox: Sequence[tuple[str, str, str, str]],
    inbox_left_out: int,
    shared_context: str,
    orchestrator_feedback: str,
    workspace: str,
    workdir: str,
    roles: Sequence[str],
) -> str:
    """The prompt for one run of `task`.  `dependency_results` are (id, title, result text);
    `inbox` messages are (from, type, time, payload), oldest first; `inbox_left_out` counts the
    older unread messages not shown."""
    me = role.role if role is not None else (task.role or "agent")
    others = [r for r in roles if r != me]
    parts = {
        "persona": (role.persona if role is not None else "").strip() or DEFAULT_PERSONA,
        "body": body.strip() or "(The task has no description beyond its title.)",
        "acceptance": _section("Acceptance criteria", _bullets(task.acceptance)),
        "context_files": _section(
            "Files to read first",
            f"Paths are relative to the working directory `{workdir}`.\n\n"
            + "\n".join(f"- `{path}`" for path in context_files)
            if context_files
            else "",
        ),
        "dependency_results": _dependency_section(dependency_results),
        "inbox": _inbox_section(inbox, inbox_left_out, me),
        "shared_context": _section("Shared context", scratchpad_content(shared_context)),
        "orchestrator_feedback": _section(
            "Orchestrator feedback", scratchpad_content(orchestrator_feedback)
        ),
    }
    fixed = {
        "role": me,
        "task_id": task.id,
        "title": task.title,
        "workspace": workspace,
        "workdir": workdir,
        "roles": ", ".join(others) or "(no other roles)",
    }
    text = render(template, {**parts, **fixed})
    if len(text) > MAX_PROMPT_CHARS:
        text = render(template, {**_shrink(parts, len(text) - MAX_PROMPT_CHARS), **fixed})
    return text

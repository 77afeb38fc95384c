"""Reading plans: the YAML or JSON mapping in an oracle's answer or a plan file, a plan
file's header, a task body's description."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from nexus.plans.model import MAX_ANSWER_CHARS, Problem, Refused, Rejected

# Top-level keys that start the YAML of a plan, a change list or a review in unfenced prose.
_TOP_LINE = re.compile(r"^(goal|tasks|changes|verdict|kind)\s*:", re.MULTILINE)
_KEY_LINE = re.compile(r"^[\w-]+\s*:(\s|$)")
_HEADER = re.compile(r"^(parent|approved|created)[ \t]*:.*$", re.MULTILINE)
_APPENDED = re.compile(r"^## (Result|Attempts|Review)\b", re.MULTILINE)
_FENCE = re.compile(
    r"^(?P<ind>[ \t]*)(?P<f>```|~~~)[ \t]*(?P<lang>[\w-]*)[^\n]*\n"
    r"(?P<body>.*?)^(?P=ind)(?P=f)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


# -- values ----------------------------------------------------------------------------------


def load_yaml(text: str) -> Any:
    """YAML through nexus's safe loader (duplicate keys refused); errors name the line."""
    import yaml

    from nexus.frontmatter import FrontmatterError, check_shape, is_nesting_limit, safe_loader

    try:
        data = yaml.load(text, Loader=safe_loader())  # a safe loader subclass
        check_shape(data, max_values=2_000_000)  # a plan of 10,000 tasks holds ~200,000
        return data
    except FrontmatterError as exc:
        raise Refused([Problem(None, "yaml", f"{exc.message}; {exc.fix}")]) from None
    except RecursionError:
        raise Refused([Problem(None, "yaml", "nested too deeply")]) from None
    except yaml.MarkedYAMLError as exc:
        if is_nesting_limit(exc):
            raise Refused([Problem(None, "yaml", "nested too deeply")]) from None
        mark = exc.problem_mark or exc.context_mark
        line = f" on line {mark.line + 1}" if mark is not None else ""
        refused = Refused if isinstance(exc, yaml.constructor.ConstructorError) else Rejected
        raise refused(
            [Problem(None, "yaml", f"not valid YAML{line}: {exc.problem or exc.context}")]
        ) from None
    except yaml.YAMLError as exc:
        raise Rejected([Problem(None, "yaml", f"not valid YAML: {exc}")]) from None


def extract(text: str) -> dict[str, Any]:
    """The mapping an answer holds: the first ```yaml/```json fenced block, else the whole text
    as YAML, else the YAML that starts at a top-level `goal:`/`tasks:`/... line inside prose,
    else the first `{...}` JSON object.  Raises `Rejected` saying what was found instead."""
    if len(text) > MAX_ANSWER_CHARS:
        raise Rejected([Problem(None, "answer", f"longer than {MAX_ANSWER_CHARS:,} characters")])
    fences = list(_FENCE.finditer(text))
    for m in fences:
        if m.group("lang").lower() in ("yaml", "yml", "json"):
            return _mapping(load_yaml(m.group("body")))
    candidates = [text]
    if start := _TOP_LINE.search(text):
        candidates.append(_yaml_run(text[start.start() :]))
    candidates += [m.group("body") for m in fences]
    for candidate in candidates:
        try:
            found = load_yaml(candidate)
        except Refused:
            raise
        except Rejected:
            continue
        if isinstance(found, dict):
            return _unwrap(found)
    decoder = json.JSONDecoder()
    for m in itertools.islice(re.finditer(r"\{", text), 200):
        try:
            obj, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(obj, dict):
            return _unwrap(obj)
    raise Rejected(
        [Problem(None, "answer", "no YAML or JSON mapping was found in the answer")],
        "the answer",
        fix="answer with one fenced ```yaml block holding the whole mapping",
    )


def _yaml_run(text: str) -> str:
    """The lines from the start of `text` that look like YAML (up to the first line of prose
    or a fence after them)."""
    kept = []
    for line in text.splitlines():
        prose = line.strip() and line[0] not in " \t-#" and not _KEY_LINE.match(line)
        if prose or line.startswith(("```", "~~~")):
            break
        kept.append(line)
    return "\n".join(kept)


def _unwrap(data: dict[str, Any]) -> dict[str, Any]:
    """`{plan: {...}}` (one key holding the real mapping) is taken as the mapping itself."""
    if len(data) == 1:
        ((key, value),) = data.items()
        if key in ("plan", "review", "adapt") and isinstance(value, dict):
            return value
    return data


def _mapping(found: Any) -> dict[str, Any]:
    if not isinstance(found, dict):
        kind = "nothing" if found is None else type(found).__name__
        raise Rejected([Problem(None, "answer", f"holds {kind}, not a mapping of fields")])
    return _unwrap(found)


def read_file(text: str) -> dict[str, Any]:
    """The mapping of a plan file (plain YAML; no tolerance for prose)."""
    return _mapping(load_yaml(text))


def header(text: str) -> tuple[str | None, bool, str]:
    """(parent, approved?, created) of a plan file, read from its top-level lines without
    parsing the whole file (the daemon asks every pass)."""
    values: dict[str, Any] = {}
    for m in _HEADER.finditer(text):
        try:
            found = load_yaml(m.group(0))
        except Rejected:
            continue
        if isinstance(found, dict):
            values.update(found)
    parent = values.get("parent")
    return (
        (str(parent) if parent else None),
        bool(values.get("approved")),
        str(values.get("created") or ""),
    )


def description(body: str) -> str:
    """A task body without the sections nexus appends (result, attempts, reviews)."""
    m = _APPENDED.search(body)
    return body[: m.start()] if m else body


def replace_description(body: str, new: str) -> str:
    m = _APPENDED.search(body)
    rest = body[m.start() :] if m else ""
    return new.strip() + "\n" + (f"\n{rest}" if rest else "")

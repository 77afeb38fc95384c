"""Split, parse and edit YAML frontmatter without disturbing anything a person wrote.

Pure.  Three promises:

* `split` finds the frontmatter block exactly as written (BOM, CRLF and all), so
  `join(split(text)) == text` byte for byte.
* `load` parses it with the safe (C when available) loader, refuses duplicate keys and
  reports errors with the line number *in the file*.
* `set_fields` rewrites only the lines of the keys it sets; every other line (other keys, their
  order, comments, blank lines) is kept verbatim.  New keys are appended at the end.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_DELIM = re.compile(r"^---[ \t]*\r?$")
_END = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$")
_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)[ \t]*:(?:[ \t]|\r?$)")
DELETE: Any = object()
"""Pass as a value to `set_fields` to remove a key."""


class FrontmatterError(Exception):
    """A problem with the frontmatter block; `line` is 1-based in the whole file."""

    def __init__(self, message: str, line: int | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.fix = fix


@dataclass(frozen=True)
class Split:
    bom: str  # "\ufeff" or ""
    opening: str  # the opening delimiter line, with its newline
    yaml_text: str  # the lines between the delimiters
    closing: str  # the closing delimiter line, with its newline (may lack one at EOF)
    body: str

    @property
    def newline(self) -> str:
        if self.opening.endswith("\r\n"):
            return "\r\n"
        return "\r" if self.opening.endswith("\r") else "\n"  # "\r": classic Mac OS files

    def join(self) -> str:
        return self.bom + self.opening + self.yaml_text + self.closing + self.body


def split(text: str) -> Split:
    """Find the frontmatter block.  Raises FrontmatterError when there is none."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    rest = text[len(bom) :]
    if not rest.strip():
        raise FrontmatterError(
            "the file is empty",
            line=1,
            fix="start it with a frontmatter block: '---', 'title: ...', '---'",
        )
    lines = rest.splitlines(keepends=True)
    if not _DELIM.match(lines[0].rstrip("\n")):
        raise FrontmatterError(
            "the file does not start with a '---' frontmatter block",
            line=1,
            fix="put '---' on the first line, the fields (at least 'title: ...'), then '---'",
        )
    for i in range(1, len(lines)):
        if _END.match(lines[i].rstrip("\n")):
            return Split(
                bom=bom,
                opening=lines[0],
                yaml_text="".join(lines[1:i]),
                closing=lines[i],
                body="".join(lines[i + 1 :]),
            )
    raise FrontmatterError(
        "the frontmatter block is not closed",
        line=len(lines),
        fix="add a line with just '---' after the last field",
    )


@functools.cache
def safe_loader() -> Any:
    """The safe (C when available) YAML loader, refusing duplicate keys.  Built on first use
    so that commands which parse nothing never import yaml."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def construct_mapping(loader: Any, node: Any) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {seen[key] + 2})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return dict(loader.construct_pairs(node, deep=True))

    loader: Any = type("NexusSafeLoader", (base,), {})
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return loader


def _plain(value: Any) -> Any:
    """Dates and times become ISO strings, so values round-trip through JSON and text."""
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


MAX_FRONTMATTER_BYTES = 256 * 1024


def load(sp: Split) -> dict[str, Any]:
    """Parse the YAML of a split file into a mapping of field → value."""
    if len(sp.yaml_text) > MAX_FRONTMATTER_BYTES:
        raise FrontmatterError(
            f"the frontmatter is {len(sp.yaml_text)} bytes; the limit is {MAX_FRONTMATTER_BYTES}",
            line=2,
            fix="move long text into the body below the closing '---'",
        )
    if not sp.yaml_text.strip():
        raise FrontmatterError("the frontmatter block is empty", line=2, fix="add 'title: ...'")
    import yaml

    try:
        data = yaml.load(sp.yaml_text, Loader=safe_loader())  # a safe loader subclass
    except RecursionError:
        raise _too_deep() from None
    except yaml.MarkedYAMLError as exc:
        if is_nesting_limit(exc):
            raise _too_deep() from None
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark is not None else None  # +1 for 1-based, +1 for '---'
        what = exc.problem or exc.context or "invalid YAML"
        fix = (
            "fix the YAML syntax on that line (quote values that contain ': ' or start "
            "with a special character)"
        )
        yaml_lines = sp.yaml_text.splitlines()
        if mark is not None and mark.line < len(yaml_lines) and "\t" in yaml_lines[mark.line]:
            fix = "indent with spaces: YAML does not allow tabs there"
        raise FrontmatterError(
            f"frontmatter is not valid YAML: {what}", line=line, fix=fix
        ) from None
    except yaml.YAMLError as exc:
        raise FrontmatterError(f"frontmatter is not valid YAML: {exc}", line=2) from None
    if not isinstance(data, dict):
        raise FrontmatterError(
            f"frontmatter must be a mapping of 'field: value' lines, not {_yaml_kind(data)}",
            line=2,
            fix="write one 'field: value' per line between the '---' lines",
        )
    check_shape(data)
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise FrontmatterError(
            f"field names must be text; {bad[0]!r} is not", line=2, fix="quote the field name"
        )
    return {k: _plain(v) for k, v in data.items()}


MAX_VALUES = 100_000
MAX_DEPTH = 32


def check_shape(data: Any, max_values: int = MAX_VALUES) -> None:
    """Refuse YAML whose aliases expand to more than `max_values` values ("billion laughs":
    the loader shares aliased objects, but everything that walks the result would expand
    them) or that nests deeper than MAX_DEPTH.  The walk stops as soon as a limit is passed."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > max_values:
            raise FrontmatterError(
                f"the YAML holds more than {max_values:,} values once its aliases (*name) "
                "are expanded",
                line=2,
                fix="write the values out instead of using anchors (&name) and aliases",
            )
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise _too_deep()
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items)


def is_nesting_limit(exc: Exception) -> bool:
    """Whether a YAML error is the C parser's own nesting limit (the libyaml in PyYAML 6.0.4
    stops at 1,000 levels; the pure-Python parser runs out of stack: RecursionError)."""
    return "nesting depth" in str(getattr(exc, "problem", "") or "")


def _too_deep() -> FrontmatterError:
    return FrontmatterError(
        f"the YAML is nested more than {MAX_DEPTH} levels deep",
        line=2,
        fix="keep fields flat: text, numbers or short lists",
    )


def _yaml_kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    return f"a single value ({type(value).__name__})"


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, list | dict)


def dump_value(key: str, value: Any, newline: str = "\n") -> str:
    """`key: value` as YAML lines: flow style for short collections of scalars (`deps: [a, b]`),
    block style for everything else."""
    import yaml

    kw: dict[str, Any] = {"allow_unicode": True, "width": 1_000_000, "sort_keys": False}
    text: str
    if isinstance(value, list | dict) and all(
        _is_scalar(v) for v in (value.values() if isinstance(value, dict) else value)
    ):
        flow = yaml.safe_dump(value, default_flow_style=True, **kw).strip()
        text = f"{key}: {flow}\n" if len(flow) <= 120 else ""
    else:
        text = ""
    if not text:
        text = yaml.safe_dump({key: value}, default_flow_style=False, **kw)
    return text.replace("\n", newline)


def set_fields(text: str, updates: Mapping[str, Any]) -> str:
    """Return `text` with the given frontmatter keys set (or removed with DELETE).

    Only the lines belonging to those keys change.  A key's lines are its own line plus the
    indented or blank lines after it (its nested value); a comment in column 0 starts a new
    block and is never touched.
    """
    sp = split(text)
    nl = sp.newline
    lines = sp.yaml_text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += nl
    blocks: dict[str, tuple[int, int]] = {}
    starts = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _TOP_KEY.match(line))]
    for n, (start, key) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        # Trailing column-0 comments belong to what follows, not to this key.
        while end > start + 1 and (lines[end - 1].startswith("#") or not lines[end - 1].strip()):
            end -= 1
        blocks[key] = (start, end)
    replacements: dict[int, tuple[int, list[str]]] = {}
    appended: list[str] = []
    for key, value in updates.items():
        new = [] if value is DELETE else dump_value(key, value, nl).splitlines(keepends=True)
        if key in blocks:
            start, end = blocks[key]
            replacements[start] = (end, new)
        elif value is not DELETE:
            appended.extend(new)
    out: list[str] = []
    i = 0
    while i < len(lines):
        if i in replacements:
            end, new = replacements[i]
            out.extend(new)
            i = end
        else:
            out.append(lines[i])
            i += 1
    out.extend(appended)
    return Split(sp.bom, sp.opening, "".join(out), sp.closing, sp.body).join()


def new_document(fields: Mapping[str, Any], body: str) -> str:
    """A fresh frontmatter document (fields in the given order)."""
    import frontmatter as _frontmatter  # python-frontmatter; only needed when creating files

    post = _frontmatter.Post(body, **fields)
    rendered: str = _frontmatter.dumps(
        post, sort_keys=False, allow_unicode=True, width=1_000_000, default_flow_style=None
    )
    return rendered if rendered.endswith("\n") else rendered + "\n"

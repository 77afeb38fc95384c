"""Task files: every field validated with a message naming the file, field and fix."""

from __future__ import annotations

import pytest

from nexus import taskfile
from nexus.errors import TaskFileError
from nexus.task import Kind, Priority, Size, Status


def parse(text: str, path: str = "tasks/a/a1.md") -> taskfile.Parsed:
    return taskfile.parse(text, path, "a1")


def test_defaults_fill_what_the_file_leaves_out() -> None:
    t = parse("---\ntitle: Research\n---\nbody\n").task
    assert (t.id, t.kind, t.status, t.size, t.priority) == (
        "a1",
        Kind.TASK,
        Status.PENDING,
        Size.M,
        Priority.NORMAL,
    )
    assert t.body == "body\n"


def test_unknown_fields_are_kept_and_warned_about() -> None:
    parsed = parse("---\ntitle: x\nsprint: 7\n---\n")
    assert parsed.task.fields["sprint"] == 7
    assert any("unknown field 'sprint'" in w for w in parsed.warnings)


def test_comma_separated_deps_are_accepted() -> None:
    assert parse("---\ntitle: x\ndeps: b1, c2\n---\n").task.deps == ("b1", "c2")


@pytest.mark.parametrize(
    ("frontmatter", "field", "words"),
    [
        ("status: done", "status", "'done' is not a valid status"),
        ("size: XXL", "size", "'XXL' is not a valid size"),
        ("kind: epic", "kind", "not a valid kind"),
        ("priority: urgent", "priority", "not a valid priority"),
        ("deps: {a: 1}", "deps", "list of text"),
        ("deps: [../etc]", "deps", "not a valid id"),
        ("id: ../../etc/passwd", "id", "not a valid id"),
        ("id: a/b", "id", "not a valid id"),
        ("attempts: -1", "attempts", "whole number"),
        ("attempts: many", "attempts", "whole number"),
        ("timeout: [1]", "timeout", "number"),
        ("title: [a, b]", "title", "text"),
        ("role: ../x", "role", "not a valid role name"),
        ("cost: 3", "cost", "mapping"),
    ],
)
def test_bad_field_values_name_the_field_and_the_fix(
    frontmatter: str, field: str, words: str
) -> None:
    title = "" if frontmatter.startswith("title") else "title: t\n"
    with pytest.raises(TaskFileError) as info:
        parse(f"---\n{title}{frontmatter}\n---\n")
    err = info.value
    assert err.field == field
    assert words in err.detail
    assert err.fix
    assert "tasks/a/a1.md" in str(err)


def test_a_missing_title_is_an_error_with_the_fix() -> None:
    with pytest.raises(TaskFileError) as info:
        parse("---\nstatus: ready\n---\n")
    assert info.value.field == "title"
    assert "title:" in (info.value.fix or "")


def test_update_keeps_everything_it_does_not_set() -> None:
    text = "---\nmine: 1\ntitle: t\nstatus: ready\n---\n# Notes\n\nKeep me.\n"
    out = taskfile.update(text, {"status": "complete"}, append="## Result\n\nDone.")
    expected = "---\nmine: 1\ntitle: t\nstatus: complete\n---\n# Notes\n\nKeep me.\n"
    assert out == expected + "\n## Result\n\nDone.\n"


def test_agent_output_with_frontmatter_markers_is_made_harmless() -> None:
    text = "---\ntitle: t\n---\n"
    out = taskfile.update(
        text, {}, append="## Result\n\n" + taskfile.safe_block("---\nstatus: x\n---")
    )
    t = parse(out).task
    assert t.status is Status.PENDING
    assert "    ---" in out

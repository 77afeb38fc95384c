"""The frontmatter layer never disturbs what a person wrote."""

from __future__ import annotations

import pytest

from nexus import frontmatter as fm

PERSON_FILE = (
    "---\n"
    "# my own notes about this task\n"
    "title: Research OAuth2 flows\n"
    "zeta: kept first   # a person's key, before nexus's\n"
    "status: ready  # inline comment\n"
    "deps:\n"
    "  - a1\n"
    "  - a2\n"
    "\n"
    "# a comment before a custom block\n"
    "notes:\n"
    "  owner: pat\n"
    "---\n"
    "Body line one.\n"
    "<!-- a comment in the body -->\n"
    "---\n"
    "A horizontal rule above, not frontmatter.\n"
)


@pytest.mark.parametrize(
    "text",
    [
        PERSON_FILE,
        PERSON_FILE.replace("\n", "\r\n"),
        "\ufeff" + PERSON_FILE,
        "---\ntitle: no trailing newline\n---",
        "---\ntitle: x\n...\nbody after a YAML end marker\n",
    ],
)
def test_split_and_join_round_trip_byte_for_byte(text: str) -> None:
    assert fm.split(text).join() == text


def test_set_fields_changes_only_the_lines_of_the_keys_it_sets() -> None:
    out = fm.set_fields(PERSON_FILE, {"status": "complete", "deps": ["b"]})
    before, after = PERSON_FILE.splitlines(), out.splitlines()
    changed = [(b, a) for b, a in zip(before, after, strict=False) if b != a]
    assert ("status: ready  # inline comment", "status: complete") in changed
    assert "# my own notes about this task" in after
    assert "zeta: kept first   # a person's key, before nexus's" in after
    assert "# a comment before a custom block" in after
    assert out.endswith("---\nA horizontal rule above, not frontmatter.\n")
    assert fm.load(fm.split(out))["notes"] == {"owner": "pat"}
    keys = list(fm.load(fm.split(out)))
    assert keys == ["title", "zeta", "status", "deps", "notes"]


def test_set_fields_appends_new_keys_and_deletes_removed_ones() -> None:
    out = fm.set_fields(PERSON_FILE, {"updated": "2026-01-01T00:00:00Z", "zeta": fm.DELETE})
    data = fm.load(fm.split(out))
    assert "zeta" not in data
    assert data["updated"] == "2026-01-01T00:00:00Z"
    assert list(data)[-1] == "updated"


def test_set_fields_keeps_crlf_line_endings() -> None:
    crlf = PERSON_FILE.replace("\n", "\r\n")
    out = fm.set_fields(crlf, {"status": "complete", "attempts": 2})
    assert "\n" not in out.replace("\r\n", "")
    assert fm.load(fm.split(out))["attempts"] == 2


def test_timestamps_load_as_iso_text() -> None:
    data = fm.load(fm.split("---\ntitle: t\ncreated: 2026-11-22T02:54:19Z\nday: 2026-11-22\n---\n"))
    assert data["created"] == "2026-11-22T02:54:19+00:00"
    assert data["day"] == "2026-11-22"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", 1, "empty"),
        ("just text\n", 1, "does not start"),
        ("---\ntitle: x\n", 2, "not closed"),
        ("---\n---\n", 2, "empty"),
        ("---\ntitle: [unclosed\n---\n", 3, "not valid YAML"),
        ("---\n- a\n- b\n---\n", 2, "mapping"),
        ("---\njust a string\n---\n", 2, "mapping"),
        ("---\ntitle: a\nsize: S\ntitle: b\n---\n", 4, "duplicate key 'title' (first on line 2)"),
        ("---\ntitle: !!python/object:os.system x\n---\n", 2, "not valid YAML"),
    ],
)
def test_bad_frontmatter_is_reported_with_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(fm.FrontmatterError) as info:
        fm.load(fm.split(text))
    assert info.value.line == line
    assert words in info.value.message


def test_new_document_writes_fields_in_the_given_order() -> None:
    text = fm.new_document({"id": "a1", "title": "T: colon", "deps": []}, "Body\n")
    assert text.splitlines()[:4] == ["---", "id: a1", "title: 'T: colon'", "deps: []"]
    assert fm.load(fm.split(text)) == {"id": "a1", "title": "T: colon", "deps": []}

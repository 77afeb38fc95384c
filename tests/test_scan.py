"""Scanning the workspace: a first run parses in worker processes and must read exactly what
one process reads."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from nexus import store
from nexus.store import Workspace

PIDS_FILE = "NEXUS_TEST_SCAN_PIDS"
PARSE_CHUNK = store._parse_chunk


def _recording_chunk(files: Sequence[tuple[str, str, int]]) -> Any:
    with open(os.environ[PIDS_FILE], "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return PARSE_CHUNK(files)


def test_a_first_scan_in_worker_processes_reads_what_one_process_reads(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = workspace / "tasks" / "x"
    folder.mkdir(parents=True)
    for i in range(40):
        deps = f"deps: [t{i - 1:03d}]\n" if i else ""
        (folder / f"t{i:03d}.md").write_text(
            f"---\nid: t{i:03d}\ntitle: Tâche {i}\n{deps}odd_field: {i}\n---\nBody\n"
        )
    (folder / "broken.md").write_text("---\nid: broken\ntitle: [unclosed\n---\n")
    (folder / "dup.md").write_text("---\nid: t001\ntitle: Copy\n---\n")

    def scan() -> store.Scan:
        (workspace / ".nexus" / "cache.bin").unlink(missing_ok=True)
        store._BUILT.clear()  # nor the tasks this process built last time: a first scan
        return Workspace(workspace).scan()

    monkeypatch.setattr(store, "PARALLEL_PARSE_MIN", 10**9)
    serial = scan()
    pids = tmp_path / "pids"
    monkeypatch.setenv(PIDS_FILE, str(pids))
    monkeypatch.setattr(store, "PARALLEL_PARSE_MIN", 1)
    # Earlier tests may leave a thread behind in this process; the workers must still run.
    monkeypatch.setattr(store.threading, "active_count", lambda: 1)
    monkeypatch.setattr(store, "_parse_chunk", _recording_chunk)
    parallel = scan()

    workers = set(pids.read_text().split())
    assert len(workers) >= min(2, os.cpu_count() or 1) and str(os.getpid()) not in workers
    assert parallel.tasks == serial.tasks and len(serial.tasks) == 40
    assert [str(e) for e in parallel.broken] == [str(e) for e in serial.broken]
    # dup.md sorts first, so t001.md is the copy reported
    assert {e.path for e in serial.broken} == {"tasks/x/broken.md", "tasks/x/t001.md"}
    assert parallel.warnings == serial.warnings and serial.warnings
    assert {k: v[1] for k, v in parallel.encoded.items()} == {
        k: v[1] for k, v in serial.encoded.items()
    }
    assert parallel.digest == serial.digest


def test_a_later_scan_in_the_same_process_reuses_unchanged_tasks_and_sees_every_change(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon and a warm command's spare scan again and again: a file whose stat key is
    unchanged keeps its task (not even the cache file is read); an edited, added or deleted
    file is seen at once."""
    monkeypatch.setattr(store, "_keep", True)  # as in `nexus watch` and the warm server
    folder = workspace / "tasks" / "m"
    folder.mkdir(parents=True)
    for name in ("keep", "edit", "gone"):
        (folder / f"{name}.md").write_text(f"---\nid: {name}\ntitle: {name}\n---\n")
    first = Workspace(workspace).scan()
    reads: list[Path] = []
    real = store._read_cache
    monkeypatch.setattr(store, "_read_cache", lambda path: reads.append(path) or real(path))
    again = Workspace(workspace).scan()
    assert reads == []
    assert all(again.tasks[tid] is first.tasks[tid] for tid in ("keep", "edit", "gone"))
    (folder / "edit.md").write_text("---\nid: edit\ntitle: edited since\n---\n")
    (folder / "gone.md").unlink()
    (folder / "new.md").write_text("---\nid: new\ntitle: new\n---\n")
    (folder / "bad.md").write_text("---\nid: bad\ntitle: [unclosed\n---\n")
    third = Workspace(workspace).scan()
    assert third.tasks["edit"].title == "edited since"
    assert "gone" not in third.tasks and third.tasks["new"].title == "new"
    assert [e.path for e in third.broken] == ["tasks/m/bad.md"]
    assert third.tasks["keep"] is first.tasks["keep"]
    assert len(reads) == 1  # the cache file, for the files this process had not built
    other_process = Workspace(workspace)
    store._BUILT.clear()
    assert other_process.scan().tasks == third.tasks  # the cache file agrees


def test_a_few_files_changed_since_the_last_scan_are_parsed_without_reading_the_cache(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 10,000 tasks the cache file takes ~70 ms to read: a long-lived process that last
    scanned a moment ago parses the one file that changed instead, and still leaves a cache
    file that a new process can use whole."""
    monkeypatch.setattr(store, "_keep", True)
    folder = workspace / "tasks" / "f"
    folder.mkdir(parents=True)
    for i in range(store.FEW_CHANGED * 2):
        (folder / f"f{i:03d}.md").write_text(f"---\nid: f{i:03d}\ntitle: T{i}\n---\n")
    Workspace(workspace).scan()
    (folder / "f007.md").write_text("---\nid: f007\ntitle: Changed\n---\n")
    reads: list[Path] = []
    real_read = store._read_cache
    monkeypatch.setattr(store, "_read_cache", lambda path: reads.append(path) or real_read(path))
    warm = Workspace(workspace).scan()
    assert reads == [] and warm.tasks["f007"].title == "Changed"
    parsed: list[str] = []
    real_parse = store._parse_many
    monkeypatch.setattr(
        store, "_parse_many", lambda files: parsed.extend(f[1] for f in files) or real_parse(files)
    )
    store._BUILT.clear()  # a new process: everything comes from the cache file
    cold = Workspace(workspace).scan()
    assert parsed == [] and len(reads) == 1
    assert cold.tasks == warm.tasks


def test_a_one_shot_command_keeps_nothing_for_a_next_scan(workspace: Path) -> None:
    """Keeping the built tasks costs a one-shot process ~30 ms at exit at 10,000 tasks (the
    interpreter's teardown of them): only `nexus watch` and the warm server keep them."""
    assert store._keep is False
    (workspace / "tasks" / "one.md").write_text("---\nid: one\ntitle: One\n---\n")
    assert "one" in Workspace(workspace).scan().tasks
    assert str(Workspace(workspace).root) not in store._BUILT

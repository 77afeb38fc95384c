"""Backlog.md, the closest file-based peer, driven through its own CLI for the side-by-side run.

The npm package `backlog.md` (pinned below) is installed into `benchmarks/.backlog/` (git-ignored)
on first use; it is never a test dependency.  Its CLI needs ~0.4 s per `task create`, so large
workspaces are built by writing its task files in its own format (`task_file` renders exactly what
`backlog task create` writes, copied from files the real CLI made) and the run then checks that
`backlog task list` sees every written task.

Offline: `backlog init` is given `--check-branches false --include-remote false`, so the config
says `remote_operations: false` and `check_active_branches: false` (no `git fetch`, no reads of
other branches); Backlog.md has no telemetry.  `prepare` refuses a config that says otherwise.
Each run gets its own HOME so no user config leaks in.  `auto_commit` stays at Backlog.md's
default (false): its creates and edits are *not* committed, while every nexus change is.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.common import git

VERSION = "1.52.0"
PACKAGE = "backlog.md"
HERE = Path(__file__).resolve().parent
INSTALL_DIR = HERE / ".backlog"
CREATED = "2026-01-01 00:00"


def install(folder: Path = INSTALL_DIR) -> Path:
    """The pinned Backlog.md binary, installed with npm into `folder` if it is not there yet.
    The platform binary is returned rather than the node wrapper: that saves Backlog.md the
    wrapper's ~40 ms of node start-up per command, so its figures are on the kind side."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(platform.machine().lower())
    name = f"{PACKAGE}-{sys.platform.replace('win32', 'windows')}-{arch}"
    binary = folder / "node_modules" / name / "backlog"
    if not binary.exists() or installed_version(folder) != VERSION:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(folder),
             f"{PACKAGE}@{VERSION}"],
            check=True,
            capture_output=True,
        )  # fmt: skip
    if not binary.exists():
        raise RuntimeError(f"npm installed {PACKAGE}@{VERSION} but {binary} is missing")
    return binary


def installed_version(folder: Path) -> str | None:
    manifest = folder / "node_modules" / PACKAGE / "package.json"
    if not manifest.exists():
        return None
    found = re.search(r'"version":\s*"([^"]+)"', manifest.read_text())
    return found.group(1) if found else None


def environment(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "NO_COLOR": "1",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@x",
    }


def slug(title: str) -> str:
    """The file-name form of a title as Backlog.md writes it ("Task 1" -> "Task-1")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", title).strip("-")


def task_file(
    number: int, title: str, status: str, deps: list[int], description: str
) -> tuple[str, str]:
    """(file name, text) of one task exactly as `backlog task create` 1.52 writes it."""
    deps_yaml = "".join(f"\n  - TASK-{d}" for d in deps) if deps else " []"
    text = (
        f"---\nid: TASK-{number}\ntitle: {title}\nstatus: {status}\nassignee: []\n"
        f"created_date: '{CREATED}'\nlabels: []\ndependencies:{deps_yaml}\n"
        f"ordinal: {number * 1000}\n---\n\n## Description\n\n"
        f"<!-- SECTION:DESCRIPTION:BEGIN -->\n{description}\n"
        f"<!-- SECTION:DESCRIPTION:END -->\n"
    )
    return f"task-{number} - {slug(title)}.md", text


def write_tasks(root: Path, n: int) -> list[str]:
    """`n` task files shaped like nexus's benchmark workspace (a tenth Done, chains and
    diamonds), written into an initialised Backlog.md project and committed once."""
    folder = root / "backlog" / "tasks"
    ids = []
    for i in range(n):
        number = i + 1
        deps = sorted(j + 1 for j in {i - 1, i - 7} if j >= 0 and i % 5)
        status = "Done" if i < n // 10 else "To Do"
        name, text = task_file(number, f"Benchmark task {i}", status, deps, f"Task {i}.")
        (folder / name).write_text(text)
        ids.append(f"TASK-{number}")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "backlog benchmark tasks", "--no-verify")
    return ids


def prepare(root: Path, binary: Path, env: dict[str, str]) -> None:
    """A git repo with an initialised, offline Backlog.md project in it."""
    root.mkdir(parents=True)
    git(root, "init", "-q")
    git(root, "commit", "-q", "--allow-empty", "-m", "init")
    subprocess.run(
        [str(binary), "init", "bench", "--defaults", "--integration-mode", "none",
         "--check-branches", "false", "--include-remote", "false"],
        cwd=root, env=env, check=True, capture_output=True,
    )  # fmt: skip
    config = (root / "backlog" / "config.yml").read_text()
    for setting in ("remote_operations: false", "check_active_branches: false"):
        if setting not in config:
            raise RuntimeError(f"Backlog.md config lacks `{setting}`: it might reach the network")
    (root / "backlog" / "tasks").mkdir(exist_ok=True)


def argv(binary: Path, *args: str) -> list[str]:
    return [str(binary), *args]


def listed(root: Path, binary: Path, env: dict[str, str]) -> int:
    """How many tasks `backlog task list` reports (proof that written files are read)."""
    out = subprocess.run(
        argv(binary, "task", "list", "--json"),
        cwd=root, env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return len(json.loads(out)["tasks"])

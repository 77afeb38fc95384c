"""`nexus init`: a new workspace from the template, committed as the first state.

Works in an empty folder (a new repository), in a folder inside an existing repository (a
subfolder workspace: only its own files are committed) and refuses to overwrite a workspace.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from nexus import journal
from nexus.errors import WorkspaceError
from nexus.gitrepo import Repo
from nexus.locate import CONFIG_FILE
from nexus.resources import template_dir
from nexus.store import Workspace


def _scalar(value: str) -> str:
    """`value` as a one-line YAML scalar."""
    text: str = yaml.safe_dump(value, default_style=None, width=1_000_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def init(
    folder: Path,
    name: str | None = None,
    goal: str = "",
    *,
    standalone: bool = False,
    actor: str = "cli",
) -> Workspace:
    """Create a workspace in `folder`.  Inside an existing repository it becomes a subfolder
    workspace of that repository, unless `standalone` (then it gets a repository of its own,
    as `nexus demo` wants: a demo must never commit into the repository it is run in)."""
    folder = folder.expanduser()
    if (folder / CONFIG_FILE).exists():
        raise WorkspaceError(
            f"{folder} is already a nexus workspace ({CONFIG_FILE} exists)",
            fix="use it as it is, or choose another folder",
        )
    if folder.exists() and not folder.is_dir():
        raise WorkspaceError(f"{folder} exists and is not a folder", fix="choose another name")
    name = name or folder.resolve().name
    if not name.strip() or "\n" in name or "\n" in goal:
        raise WorkspaceError("the name and goal must each be one line")
    template = template_dir()
    clashes = [
        p.name
        for p in template.iterdir()
        if (folder / p.name).exists() and p.name not in (".gitignore", "README.md")
    ]
    if clashes:
        raise WorkspaceError(
            f"{folder} already has {', '.join(sorted(clashes))}; nexus will not overwrite them",
            fix="run `nexus init` in an empty folder, or move those aside",
        )
    folder.mkdir(parents=True, exist_ok=True)
    found = None if standalone else Repo.discover(folder)
    repo = found or Repo.init(folder)
    written: list[Path] = []
    for src in sorted(template.rglob("*")):
        rel = src.relative_to(template)
        dst = folder / rel
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
            continue
        if dst.exists():  # an existing README or .gitignore of the person's: keep theirs
            if rel.as_posix() == ".gitignore":
                _ensure_ignored(dst)
                written.append(dst)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        if src.suffix in (".md", ".yaml"):
            text = dst.read_text(encoding="utf-8")
            if rel.as_posix() == CONFIG_FILE:
                text = text.replace("{{name}}", _scalar(name)).replace("{{goal}}", _scalar(goal))
            else:
                text = text.replace("{{name}}", name).replace("{{goal}}", goal)
            dst.write_text(text, encoding="utf-8")
        written.append(dst)
    ws = Workspace(folder)
    message = journal.message(journal.Change(f"init workspace {name}", actor))
    repo.commit_paths(
        [repo.rel(p) for p in written], message, private_index=ws.runtime / "git-index"
    )
    return ws


def _ensure_ignored(gitignore: Path) -> None:
    text = gitignore.read_text(encoding="utf-8")
    if not re.search(r"^/?\.nexus/?\s*$", text, re.MULTILINE):
        sep = "" if text.endswith("\n") or not text else "\n"
        gitignore.write_text(f"{text}{sep}.nexus/\n", encoding="utf-8")

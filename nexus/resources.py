"""Where the files shipped with nexus live: the workspace template and the prompt templates.

In an installed wheel they are package data under `nexus/_data/`; in a source checkout they
are the top-level `workspace-template/` and `prompts/` folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"nexus is installed without its {name}/ folder; reinstall it")


def template_dir() -> Path:
    return _find("workspace-template")


def prompts_dir() -> Path:
    return _find("prompts")

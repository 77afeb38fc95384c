"""`nexus setup`: register `nexus mcp` with Claude Code, and undo exactly that.

Shell.  Project scope merges one entry into `.mcp.json` at the repository's root:

    {"mcpServers": {"nexus": {"type": "stdio", "command": "nexus", "args": ["mcp"]}}}

Other servers and keys are never touched and the file keeps its indentation and key order.
User scope runs `claude mcp add --scope user nexus -- <command> mcp`.  What setup did is
recorded in `$XDG_STATE_HOME/nexus/setup.json`, so `--remove` takes out only the `nexus` entry
and deletes `.mcp.json` only when setup created it and nothing else is left in it.

The command is what launches this nexus: `nexus` when the `nexus` on PATH is this one, else the
absolute path of this installation's `nexus` script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nexus.errors import NexusError

NAME = "nexus"
CONFIG = ".mcp.json"


def launcher(
    which: Callable[[str], str | None] = shutil.which,
    executable: str = sys.executable,
) -> tuple[str, list[str]]:
    """The command (and the arguments before `mcp`) that starts this nexus."""
    script = Path(executable).parent / NAME
    on_path = which(NAME)
    if on_path and (not script.exists() or Path(on_path).resolve() == script.resolve()):
        return NAME, []
    if script.exists():
        return str(script.absolute()), []
    return executable, ["-m", NAME]


def entry() -> dict[str, Any]:
    command, prefix = launcher()
    return {"type": "stdio", "command": command, "args": [*prefix, "mcp"]}


def register(scope: str, cwd: Path, *, dry_run: bool = False) -> list[str]:
    if scope == "user":
        return _user_add(dry_run)
    return _project_add(cwd, dry_run)


def remove(scope: str, cwd: Path, *, dry_run: bool = False) -> list[str]:
    if scope == "user":
        return _user_remove(dry_run)
    return _project_remove(cwd, dry_run)


# -- project scope: .mcp.json ----------------------------------------------------------------


def repo_root(cwd: Path) -> Path:
    from nexus.gitrepo import Repo

    repo = Repo.discover(cwd)
    return repo.top if repo is not None else cwd.resolve()


def _project_add(cwd: Path, dry_run: bool) -> list[str]:
    path = repo_root(cwd) / CONFIG
    existed = path.exists()
    data, style = _load(path) if existed else ({}, (2, True))
    servers = _servers(data, path)
    new = entry()
    old = servers.get(NAME)
    if old == new:
        return [f"nexus is already registered in {path}; nothing to do"]
    if old is not None and not looks_like_ours(old):
        raise NexusError(
            f"{path} already has a server named {NAME!r} that nexus setup did not write "
            f"({json.dumps(old)})",
            fix="rename or remove that entry, then run `nexus setup` again",
        )
    servers[NAME] = new
    text = _dump(data, style)
    if dry_run:
        return [f"would {'update' if existed else 'create'} {path}:", text.rstrip()]
    _write(path, text)
    records = _records()
    previous = records.get(_key_project(path), {})
    records[_key_project(path)] = {
        "created_file": bool(previous.get("created_file")) or not existed,
        "entry": new,
    }
    _save_records(records)
    verb = "updated" if old is not None else "added"
    return [
        f"{verb} the {NAME} server in {path} ({new['command']} {' '.join(new['args'])})",
        "Claude Code asks once to trust a project's .mcp.json servers; "
        "undo with `nexus setup --remove`",
    ]


def _project_remove(cwd: Path, dry_run: bool) -> list[str]:
    path = repo_root(cwd) / CONFIG
    records = _records()
    record = records.get(_key_project(path), {})
    if not path.exists():
        if not dry_run:
            records.pop(_key_project(path), None)
            _save_records(records)
        return [f"{path} does not exist; nothing to remove"]
    data, style = _load(path)
    servers = _servers(data, path)
    old = servers.get(NAME)
    if old is None:
        return [f"{path} has no {NAME} server; nothing to remove"]
    if old != record.get("entry") and not looks_like_ours(old):
        raise NexusError(
            f"the {NAME!r} server in {path} was not written by nexus setup "
            f"({json.dumps(old)}); it is left alone",
            fix="edit the file by hand if you want it gone",
        )
    del servers[NAME]
    empty = not servers and set(data) <= {"mcpServers"}
    delete = empty and bool(record.get("created_file"))
    if dry_run:
        if delete:
            return [f"would delete {path} (nexus setup created it; nothing else is in it)"]
        return [f"would remove the {NAME} server from {path}:", _dump(data, style).rstrip()]
    if delete:
        path.unlink()
        said = f"deleted {path} (nexus setup created it; nothing else was in it)"
    else:
        _write(path, _dump(data, style))
        said = f"removed the {NAME} server from {path}"
    records.pop(_key_project(path), None)
    _save_records(records)
    return [said]


def looks_like_ours(value: Any) -> bool:
    """An entry of the shape `nexus setup` writes (possibly by another machine or version)."""
    if not isinstance(value, dict):
        return False
    args = value.get("args")
    command = value.get("command")
    if not isinstance(args, list) or not args or args[-1] != "mcp" or not isinstance(command, str):
        return False
    return Path(command).name == NAME or args[-3:] == ["-m", NAME, "mcp"]


def _load(path: Path) -> tuple[dict[str, Any], tuple[int | str | None, bool]]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if text.strip() else {}
    except (OSError, UnicodeDecodeError) as exc:
        raise NexusError(f"cannot read {path}: {exc}", fix="check the file's permissions") from None
    except ValueError as exc:
        raise NexusError(
            f"{path} is not valid JSON ({exc})", fix="fix the file, then run `nexus setup` again"
        ) from None
    if not isinstance(data, dict):
        raise NexusError(f"{path} must hold a JSON object", fix="fix the file by hand")
    return data, _style(text)


def _servers(data: dict[str, Any], path: Path) -> dict[str, Any]:
    servers = data.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        raise NexusError(
            f"{path}: mcpServers must be an object, not {type(servers).__name__}",
            fix="fix the file by hand",
        )
    return servers


def _style(text: str) -> tuple[int | str | None, bool]:
    """The file's indentation (None: all on one line) and whether it ends with a newline."""
    if not text.strip():
        return 2, True
    found = re.search(r"\n([ \t]+)\S", text)
    indent: int | str | None = None
    if found:
        unit = found.group(1)
        indent = len(unit) if set(unit) == {" "} else unit
    elif "\n" in text.strip():
        indent = 0
    return indent, text.endswith("\n") or not text.strip()


def _dump(data: dict[str, Any], style: tuple[int | str | None, bool]) -> str:
    indent, newline = style
    return json.dumps(data, indent=indent, ensure_ascii=False) + ("\n" if newline else "")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- user scope: claude mcp add ----------------------------------------------------------------


def _claude() -> str:
    found = shutil.which("claude")
    if found is None:
        new = entry()
        raise NexusError(
            "the `claude` CLI is not on PATH, so nexus cannot register itself for your user",
            fix="install Claude Code and run this again, or run by hand: `claude mcp add "
            f"--scope user {NAME} -- {new['command']} {' '.join(new['args'])}`, or use "
            "`nexus setup --scope project` for this repository only",
        )
    return found


def _run_claude(args: list[str]) -> tuple[int, str]:
    from nexus import proc

    env = proc.child_env(os.environ, keep=("CLAUDE_CONFIG_DIR", "XDG_CONFIG_HOME", "APPDATA"))
    result = proc.run([_claude(), *args], cwd=Path.home(), env=env, timeout=60)
    return result.returncode, (result.stdout + result.stderr).strip()


def _user_add(dry_run: bool) -> list[str]:
    new = entry()
    argv = ["mcp", "add", "--scope", "user", NAME, "--", new["command"], *new["args"]]
    claude = _claude()
    if dry_run:
        return [f"would run: {claude} {' '.join(argv)}"]
    records = _records()
    key = _key_user()
    if records.get(key, {}).get("entry") == new:
        return ["nexus is already registered for your user; nothing to do"]
    code, output = _run_claude(argv)
    if code != 0:
        raise NexusError(
            f"`claude mcp add` failed: {output or f'exit code {code}'}",
            fix=f"if a server named {NAME} exists already, remove it with "
            f"`claude mcp remove --scope user {NAME}` and run this again",
        )
    records[key] = {"entry": new}
    _save_records(records)
    return [
        output or f"registered {NAME} for your user",
        "undo with `nexus setup --remove --scope user`",
    ]


def _user_remove(dry_run: bool) -> list[str]:
    records = _records()
    key = _key_user()
    if key not in records:
        raise NexusError(
            "nexus setup did not register a user-scope server here, so there is nothing to undo",
            fix=f"to remove one by hand: `claude mcp remove --scope user {NAME}`",
        )
    argv = ["mcp", "remove", "--scope", "user", NAME]
    if dry_run:
        return [f"would run: {_claude()} {' '.join(argv)}"]
    code, output = _run_claude(argv)
    if code != 0 and "no mcp server" not in output.lower():
        raise NexusError(f"`claude mcp remove` failed: {output or f'exit code {code}'}")
    del records[key]
    _save_records(records)
    return [output if code == 0 else f"the {NAME} server was already gone ({output})"]


# -- what setup did ----------------------------------------------------------------------------


def _records_file() -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "nexus" / "setup.json"


def _records() -> dict[str, Any]:
    try:
        data = json.loads(_records_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_records(records: dict[str, Any]) -> None:
    path = _records_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, json.dumps(records, indent=2) + "\n")


def _key_project(path: Path) -> str:
    return f"project:{path.resolve()}"


def _key_user() -> str:
    return f"user:{os.environ.get('CLAUDE_CONFIG_DIR') or Path.home()}"

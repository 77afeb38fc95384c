"""`nexus setup`: registering `nexus mcp` with Claude Code in `.mcp.json` (project scope) or
through `claude mcp add` (user scope), and `--remove` undoing exactly that."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from nexus import setup
from tests.conftest import git, run_nexus

OTHER = {"mcpServers": {"github": {"command": "gh-mcp", "args": ["--stdio"]}}, "note": "mine"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    git("init", "-q", cwd=root)
    return root


def test_merges_into_an_existing_mcp_json_and_remove_restores_it_byte_for_byte(
    repo: Path,
) -> None:
    original = json.dumps(OTHER, indent=4) + "\n"
    (repo / ".mcp.json").write_text(original)

    said = run_nexus("setup", cwd=repo / "src").stdout  # found from a subfolder: the repo root
    assert "added the nexus server" in said
    text = (repo / ".mcp.json").read_text()
    data = json.loads(text)
    assert list(data) == ["mcpServers", "note"] and data["note"] == "mine"
    assert list(data["mcpServers"]) == ["github", "nexus"]
    assert data["mcpServers"]["github"] == OTHER["mcpServers"]["github"]
    nexus = data["mcpServers"]["nexus"]
    assert nexus["type"] == "stdio" and nexus["args"][-1] == "mcp"
    assert "\n    " in text and "\n        " in text and text.endswith("\n")  # 4 spaces kept

    again = run_nexus("setup", cwd=repo).stdout
    assert "already registered" in again
    assert (repo / ".mcp.json").read_text() == text

    gone = run_nexus("setup", "--remove", cwd=repo).stdout
    assert "removed the nexus server" in gone
    assert (repo / ".mcp.json").read_text() == original


def test_creates_mcp_json_when_missing_and_remove_deletes_only_what_it_created(
    repo: Path,
) -> None:
    run_nexus("setup", cwd=repo)
    created = json.loads((repo / ".mcp.json").read_text())
    assert list(created["mcpServers"]) == ["nexus"]

    run_nexus("setup", "--remove", cwd=repo)
    assert not (repo / ".mcp.json").exists()

    run_nexus("setup", cwd=repo)
    data = json.loads((repo / ".mcp.json").read_text())
    data["mcpServers"]["later"] = {"command": "x"}  # someone adds a server afterwards
    (repo / ".mcp.json").write_text(json.dumps(data, indent=2) + "\n")
    run_nexus("setup", "--remove", cwd=repo)
    assert json.loads((repo / ".mcp.json").read_text()) == {
        "mcpServers": {"later": {"command": "x"}}
    }


def test_a_foreign_nexus_entry_and_broken_json_are_left_alone(repo: Path) -> None:
    foreign = {"mcpServers": {"nexus": {"command": "some-other-tool", "args": []}}}
    (repo / ".mcp.json").write_text(json.dumps(foreign))
    for args in (("setup",), ("setup", "--remove")):
        proc = run_nexus(*args, cwd=repo, check=False)
        assert proc.returncode == 1
        assert "not written by nexus setup" in proc.stderr or "did not write" in proc.stderr
        assert "fix:" in proc.stderr
    assert json.loads((repo / ".mcp.json").read_text()) == foreign

    (repo / ".mcp.json").write_text("{not json")
    proc = run_nexus("setup", cwd=repo, check=False)
    assert proc.returncode == 1 and "not valid JSON" in proc.stderr
    assert (repo / ".mcp.json").read_text() == "{not json"


def test_dry_run_changes_nothing(repo: Path) -> None:
    proc = run_nexus("setup", "--dry-run", cwd=repo)
    assert "would create" in proc.stdout and '"nexus"' in proc.stdout
    assert not (repo / ".mcp.json").exists()


def test_user_scope_without_the_claude_cli_says_how_to_do_it_by_hand(repo: Path) -> None:
    proc = run_nexus(
        "setup",
        "--scope",
        "user",
        cwd=repo,
        check=False,
        env={"PATH": os.path.dirname(sys.executable)},
    )
    assert proc.returncode == 1
    assert "`claude` CLI is not on PATH" in proc.stderr
    assert "claude mcp add --scope user nexus --" in proc.stderr


FAKE_CLAUDE = """#!{python}
import json, os, sys
state = os.path.join(os.environ["CLAUDE_CONFIG_DIR"], "servers.json")
servers = json.load(open(state)) if os.path.exists(state) else {{}}
args = sys.argv[1:]
with open(os.path.join(os.environ["CLAUDE_CONFIG_DIR"], "calls"), "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["mcp", "add"]:
    name = args[4]
    if name in servers:
        print(f"MCP server {{name}} already exists in user config", file=sys.stderr)
        sys.exit(1)
    servers[name] = args[args.index("--") + 1:]
    print(f"Added stdio MCP server {{name}} to user config")
elif args[:2] == ["mcp", "remove"]:
    name = args[4]
    if name not in servers:
        print(f'No MCP server named "{{name}}" in user scope', file=sys.stderr)
        sys.exit(1)
    del servers[name]
    print(f"Removed MCP server {{name}} from user config")
json.dump(servers, open(state, "w"))
"""


def test_user_scope_runs_claude_mcp_add_and_remove_undoes_it(repo: Path, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "claude"
    fake.write_text(FAKE_CLAUDE.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    config = tmp_path / "claude-config"
    config.mkdir()
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "CLAUDE_CONFIG_DIR": str(config)}

    assert (
        "Added stdio MCP server nexus"
        in run_nexus("setup", "--scope", "user", cwd=repo, env=env).stdout
    )
    servers = json.loads((config / "servers.json").read_text())
    assert servers["nexus"][-1] == "mcp"
    assert "already registered" in run_nexus("setup", "--scope", "user", cwd=repo, env=env).stdout

    run_nexus("setup", "--scope", "user", "--remove", cwd=repo, env=env)
    assert json.loads((config / "servers.json").read_text()) == {}
    proc = run_nexus("setup", "--scope", "user", "--remove", cwd=repo, env=env, check=False)
    assert proc.returncode == 1 and "nothing to undo" in proc.stderr
    calls = [json.loads(x) for x in (config / "calls").read_text().splitlines()]
    assert [c[:2] for c in calls] == [["mcp", "add"], ["mcp", "remove"]]


def test_the_command_is_nexus_when_that_is_this_nexus_else_an_absolute_path(
    tmp_path: Path,
) -> None:
    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "nexus").write_text("#!/bin/sh\n")
    python = str(bindir / "python")
    assert setup.launcher(lambda _n: str(bindir / "nexus"), python) == ("nexus", [])
    other = str(tmp_path / "elsewhere" / "nexus")
    assert setup.launcher(lambda _n: other, python) == (str(bindir / "nexus"), [])
    assert setup.launcher(lambda _n: None, python) == (str(bindir / "nexus"), [])
    bare = str(tmp_path / "no-script" / "python")
    assert setup.launcher(lambda _n: None, bare) == (bare, ["-m", "nexus"])
    assert setup.launcher(lambda _n: other, bare) == ("nexus", [])

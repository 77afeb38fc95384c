"""Shared fixtures.  Every test runs with a private HOME and no real API keys, so nothing a
test does can touch the developer's own configuration or spend money."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET_VARS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "CODEX_API_KEY",
    "NEXUS_TOKEN",
    "ANTHROPIC_BASE_URL",
    "OPENAI_BASE_URL",
    "NEXUS_WORKSPACE",
    "CLAUDE_CONFIG_DIR",
)


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Pat Person\n\temail = pat@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in SECRET_VARS:
        monkeypatch.delenv(var, raising=False)
    for var in [
        v
        for v in os.environ
        if v.startswith(("GIT_AUTHOR", "GIT_COMMITTER", "GIT_DIR", "GIT_INDEX", "GIT_WORK_TREE"))
    ]:
        monkeypatch.delenv(var, raising=False)
    return home


def run_nexus(
    *args: str,
    cwd: Path,
    check: bool = True,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run the real `nexus` command (as a person would) and return what it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", "nexus", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"nexus {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}"
        )
    return proc


def start_daemon(ws: Path, *args: str) -> subprocess.Popen[str]:
    """`nexus watch ARGS` in `ws`, its stderr (the console progress) kept for `stop_daemon`."""
    return subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", *args],
        cwd=ws,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_daemon(proc: subprocess.Popen[str], *, check: bool = True) -> str:
    """SIGTERM, as a person's Ctrl-C; its stderr.  With `check`, it must exit 0."""
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    if check:
        assert proc.returncode == 0, err
    return err


def git(*args: str, cwd: Path, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    """A fresh workspace (its own git repo) made with `nexus init`."""
    from nexus.scaffold import init

    ws = init(tmp_path / "proj", goal="Migrate our auth service to OAuth2")
    yield ws.root

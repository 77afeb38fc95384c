"""`nexus dashboard` in a real terminal: tmux runs it in a pseudo-terminal, the tests read the
screen as a person would see it, change files on disk, press keys, and check that the terminal
is given back in the state it was in."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nexus.tui.view import Board
from tests.conftest import run_nexus
from tests.test_daemon import write_task

DEADLINE = 60.0  # generous: the screen is polled, never timed


class Tmux:
    """One private tmux server (its own socket, no user config) holding one shell."""

    def __init__(self, cwd: Path, width: int = 120, height: int = 40) -> None:
        if shutil.which("tmux") is None:
            if os.environ.get("CI"):
                pytest.fail("tmux is missing: .ci/run installs it")
            pytest.skip("tmux is not installed (apt-get install tmux)")
        self.socket = f"nexus-test-{uuid.uuid4().hex[:12]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
        self.env = {**env, "PS1": "$ "}
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(width),
                  "-y", str(height), "-c", str(cwd), "bash --norc --noprofile")  # fmt: skip
        self.socket_path = Path(self.tmux("display-message", "-p", "#{socket_path}").strip())

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
        )
        assert proc.returncode == 0, f"tmux {args[0]}: {proc.stderr}"
        return proc.stdout

    def type(self, line: str) -> None:
        self.tmux("send-keys", "-t", "t", "-l", line)
        self.tmux("send-keys", "-t", "t", "Enter")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def alternate_screen(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "t", "#{alternate_on}").strip() == "1"

    def wait_for(self, check: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed {what}:\n{screen}")
            time.sleep(0.1)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        self.socket_path.unlink(missing_ok=True)  # tmux leaves its socket file behind


@pytest.fixture
def term(workspace: Path) -> Iterator[Tmux]:
    t = Tmux(workspace)
    yield t
    t.kill()


def nexus_cmd(*args: str) -> str:
    return " ".join([sys.executable, "-m", "nexus", *args])


def terminal_modes(term: Tmux) -> None:
    """The terminal is back to a person's shell: cooked mode, echo on, main screen."""
    term.type("stty -a | tr ' ' '\\n' | grep -x -e icanon -e echo | tr '\\n' + ; echo")
    term.wait_for(lambda s: "icanon+echo+" in s or "echo+icanon+" in s, "icanon and echo on")
    assert not term.alternate_screen()


def drawn(screen: str) -> bool:
    """Textual draws in parts: the last panel and the footer are there."""
    last_column = re.search(r"─ \d+ cance", screen)  # "cancelled", cut on narrow screens
    return "╭─ recent" in screen and "q quit" in screen and last_column is not None


def column(screen: str, title: str) -> int | None:
    """The count in a column's title (`╭─ 3 ready ──`), None while it is not drawn."""
    found = re.search(rf"─ (\d+) {title} ─", screen)
    return int(found.group(1)) if found else None


def test_the_board_shows_columns_and_follows_a_file_edited_on_disk(
    workspace: Path, term: Tmux
) -> None:
    write_task(workspace, "alpha1", title="Research flows", status="ready", role="aria")
    write_task(workspace, "beta2", title="Write the endpoint", status="ready", role="code")
    write_task(workspace, "gamma3", title="Old work", status="complete")
    write_task(workspace, "delta4", title="Blocked work", deps=["beta2"])
    run_nexus("status", cwd=workspace)  # commit the files, promote
    term.type(nexus_cmd("dashboard") + "; echo EXIT=$?")
    screen = term.wait_for(drawn, "the whole dashboard")
    assert column(screen, "ready") == 2 and column(screen, "pending") == 1
    assert column(screen, "complete") == 1 and column(screen, "cancelled") == 0
    assert column(screen, "in progress") == 0 and column(screen, "failed") == 0
    assert "Research flows" in screen and "alpha1 aria · M" in screen and "Old work" in screen
    assert "25%  1/4 complete" in screen
    assert "no `nexus watch` is running" in screen
    assert "no run has recorded a cost yet" in screen
    assert "edited by a person" in screen.split("╭─ recent", 1)[1]  # the journal's last commit
    assert term.alternate_screen()

    # A person completes a task in an editor: the board follows without a key press.
    f = workspace / "tasks" / "alpha1.md"
    f.write_text(f.read_text().replace("status: ready", "status: complete"))
    screen = term.wait_for(lambda s: column(s, "complete") == 2, "2 complete after the edit")
    assert column(screen, "ready") == 1 and "50%  2/4 complete" in screen

    term.keys("q")
    term.wait_for(lambda s: "EXIT=0" in s, "exit status 0 after q")
    terminal_modes(term)


def test_ctrl_c_quits_cleanly_too_on_an_80x24_terminal(workspace: Path) -> None:
    write_task(workspace, "one", title="Only task", status="ready")
    term = Tmux(workspace, width=80, height=24)
    try:
        term.type(nexus_cmd("dashboard") + "; echo EXIT=$?")
        screen = term.wait_for(lambda s: drawn(s) and column(s, "ready") == 1, "the board")
        # Narrow columns cut the status names, never the counts.
        assert all(column(screen, c) == 0 for c in ("pend…", "in pr…", "fail…", "cance…"))
        term.keys("C-c")
        term.wait_for(lambda s: "EXIT=0" in s, "exit status 0 after Ctrl-C")
        terminal_modes(term)
    finally:
        term.kill()


def test_running_agents_and_costs_show_while_the_daemon_works(workspace: Path, term: Tmux) -> None:
    usage = {"input_tokens": 100, "output_tokens": 20, "cost_usd": 0.25}
    write_task(workspace, "paid", title="Paid run", role="aria", steps=[{"usage": usage}])
    assert run_nexus("watch", "--until-idle", "-q", cwd=workspace).returncode == 0
    write_task(workspace, "slow", title="Slow agent", role="code", steps=[{"sleep": 120}])
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", "-q", "--grace", "0"],
        cwd=workspace,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        term.type(nexus_cmd("dashboard") + "; echo EXIT=$?")
        screen = term.wait_for(
            lambda s: drawn(s) and "running agents (1)" in s and "total $" in s,
            "the running agent and the costs",
        )
        row = next(line for line in screen.splitlines() if "slow" in line and "Slow agent" in line)
        assert "code" in row and "script" in row
        assert "nexus watch is running" in screen
        assert "total $0.2500" in screen and "aria" in screen.split("cost", 1)[1]
        assert column(screen, "in progress") == 1
        term.keys("q")
        term.wait_for(lambda s: "EXIT=0" in s, "exit status 0 after q")
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)


def test_without_a_terminal_it_says_what_to_use_instead(workspace: Path) -> None:
    out = run_nexus("dashboard", cwd=workspace, check=False)
    assert out.returncode == 1
    assert "needs a terminal" in out.stderr and "nexus status --json" in out.stderr


def test_a_spent_project_budget_shows_as_a_banner(workspace: Path, term: Tmux) -> None:
    usage = {"input_tokens": 100, "output_tokens": 20, "cost_usd": 0.25}
    write_task(workspace, "paid", title="Paid run", steps=[{"usage": usage}])
    assert run_nexus("watch", "--until-idle", "-q", cwd=workspace).returncode == 0
    config = workspace / "nexus.yaml"
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "budgets": {"project_usd": 0.1}}, sort_keys=False))
    write_task(workspace, "next", title="Waits for money")
    term.type(nexus_cmd("dashboard") + "; echo EXIT=$?")
    screen = term.wait_for(lambda s: drawn(s) and "dispatch paused" in s, "the budget banner")
    assert "dispatch paused — budget: project spent $0.25 of $0.10" in screen
    assert column(screen, "pending") == 1 and "total $0.2500" in screen  # nothing promotes it

    # Raising the budget in an editor takes the banner away.
    config.write_text(yaml.safe_dump({**data, "budgets": {"project_usd": 5}}, sort_keys=False))
    term.wait_for(lambda s: drawn(s) and "dispatch paused" not in s, "the banner gone")
    term.keys("q")
    term.wait_for(lambda s: "EXIT=0" in s, "exit status 0 after q")


def board(budget: dict[str, Any] | None) -> Board:
    return Board("p", "", {}, 0.0, [], [], None, [], {}, budget)


def test_the_banner_names_the_project_pause_first_then_held_tasks() -> None:
    assert board(None).budget_banner is None
    assert board({"paused": False, "reason": None, "paused_tasks": {}}).budget_banner is None
    project = {"paused": True, "reason": "budget: project spent $5", "paused_tasks": {"a": "x"}}
    assert board(project).budget_banner == "dispatch paused — budget: project spent $5"
    held = {"paused": False, "paused_tasks": {"a": "budget: task a spent $1", "b": "..."}}
    assert board(held).budget_banner == "2 task(s) held — budget: task a spent $1 (and 1 more)"

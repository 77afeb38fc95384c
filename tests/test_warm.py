"""The warm command server (nexus/warm.py): while `nexus watch` runs, `nexus` commands are
run by a process forked from a warm one, and behave exactly as when run cold."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexus import warm
from tests.conftest import git, run_nexus, start_daemon, stop_daemon

WARM = {"NEXUS_WARM": "require"}
COLD = {"NEXUS_WARM": "0"}


def wait_for_server(ws: Path, timeout: float = 30.0) -> str:
    path = warm.socket_path(str(ws))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return path
        time.sleep(0.05)
    raise AssertionError(f"no warm server socket at {path} after {timeout} s")


def spawn(
    cwd: Path,
    env: dict[str, str],
    *args: str,
    stdin: int | None = None,
    stdout: int = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """`nexus ARGS` started in the background; stdout (unless given) and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "nexus", *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def watched(workspace: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    daemon = start_daemon(workspace, "-q")
    try:
        wait_for_server(workspace)
        yield workspace, daemon
    finally:
        if daemon.poll() is None:
            stop_daemon(daemon, check=False)  # 1 when tasks wait for an engine this test lacks


def test_commands_run_by_the_warm_server_print_and_commit_as_cold_ones(
    watched: tuple[Path, subprocess.Popen[str]],
) -> None:
    ws, _ = watched
    added = json.loads(run_nexus("add", "Served task", "--json", cwd=ws, env=WARM).stdout)
    assert (ws / added["path"]).is_file()
    assert f"nexus: add {added['id']} (Served task)" in git("log", "-1", "--format=%s", cwd=ws)
    for argv in (("list", "--json"), ("show", added["id"]), ("status", "--json")):
        served = run_nexus(*argv, cwd=ws, env=WARM)
        cold = run_nexus(*argv, cwd=ws, env=COLD)
        assert served.stdout == cold.stdout
    served = run_nexus("complete", added["id"], cwd=ws, env=WARM)
    assert json.loads(run_nexus("show", added["id"], "--json", cwd=ws).stdout)["status"] == (
        "complete"
    )
    assert served.returncode == 0


def test_a_spare_that_read_the_workspace_ahead_still_sees_what_changed_since(
    watched: tuple[Path, subprocess.Popen[str]],
) -> None:
    """A spare scans the workspace while it waits (warm._preload); what a person changes
    after that (an edit, a new file, a deletion, a broken file) is what the command sees."""
    ws, _ = watched
    ids = [json.loads(run_nexus("add", f"T{i}", "--json", cwd=ws, env=WARM).stdout)
           for i in range(3)]  # fmt: skip
    time.sleep(4 * warm.PRELOAD_AFTER + 0.5)  # the next spare has read them
    edited, gone, _kept = (ws / t["path"] for t in ids)
    edited.write_text(edited.read_text().replace("title: T0", "title: Edited since"))
    gone.unlink()
    (ws / "tasks" / "z").mkdir(exist_ok=True)
    (ws / "tasks" / "z" / "zhand001.md").write_text("---\nid: zhand001\ntitle: By hand\n---\n")
    (ws / "tasks" / "z" / "zbroken1.md").write_text("---\nid: zbroken1\ntitle: [oops\n---\n")
    served = run_nexus("list", "--json", cwd=ws, env=WARM)
    cold = run_nexus("list", "--json", cwd=ws, env=COLD)
    titles = {t["id"]: t["title"] for t in json.loads(served.stdout)}
    assert titles[ids[0]["id"]] == "Edited since" and ids[1]["id"] not in titles
    assert titles["zhand001"] == "By hand" and ids[2]["id"] in titles
    assert served.stdout == cold.stdout
    problems = run_nexus("validate", cwd=ws, env=WARM, check=False)
    assert problems.returncode != 0 and "zbroken1.md" in problems.stdout + problems.stderr


def test_doctor_says_whether_commands_are_served_warm(
    watched: tuple[Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    ws, daemon = watched
    report = json.loads(run_nexus("doctor", "--json", cwd=ws).stdout)
    assert report["warm"] == {"serving": True, "socket": warm.socket_path(str(ws))}
    assert "commands: served warm by `nexus watch`" in run_nexus("doctor", cwd=ws).stdout
    assert run_nexus("list", cwd=ws, env=WARM).returncode == 0  # the probe left it serving
    stop_daemon(daemon, check=False)
    assert json.loads(run_nexus("doctor", "--json", cwd=ws).stdout)["warm"]["serving"] is False
    assert "commands: run cold" in run_nexus("doctor", cwd=ws).stdout
    outside = tmp_path / "outside"
    outside.mkdir()
    assert json.loads(run_nexus("doctor", "--json", cwd=outside).stdout)["warm"] is None


def test_a_served_command_fails_with_the_cold_message_and_exit_code(
    watched: tuple[Path, subprocess.Popen[str]],
) -> None:
    ws, _ = watched
    served = run_nexus("show", "nosuchid", cwd=ws, env=WARM, check=False)
    cold = run_nexus("show", "nosuchid", cwd=ws, env=COLD, check=False)
    assert served.returncode == cold.returncode == 1
    assert served.stderr == cold.stderr
    assert "no task 'nosuchid'" in served.stderr
    usage = run_nexus("add", cwd=ws, env=WARM, check=False)  # missing TITLE: a usage error
    assert usage.returncode == 2
    assert "Missing argument 'TITLE'" in usage.stderr


def test_a_served_command_gets_the_clients_folder_environment_and_stdin(
    watched: tuple[Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    ws, _ = watched
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Outside the workspace, it is found only through the client's NEXUS_WORKSPACE.
    added = run_nexus(
        "add", "From elsewhere", cwd=elsewhere, env={**WARM, "NEXUS_WORKSPACE": str(ws)}
    )
    tid = added.stdout.strip()
    # In a subfolder, found by walking up from the client's folder.
    (ws / "tasks" / "deep").mkdir(parents=True)
    shown = run_nexus("show", tid, "--json", cwd=ws / "tasks" / "deep", env=WARM)
    assert json.loads(shown.stdout)["title"] == "From elsewhere"
    # The message comes from the client's stdin.
    run_nexus("send", "alpha", "beta", "-", cwd=ws, env=WARM, input="hello over stdin\n")
    pad = (ws / "scratchpads" / "alpha_to_beta.md").read_text()
    assert "hello over stdin" in pad


def test_ctrl_c_reaches_the_served_command(
    watched: tuple[Path, subprocess.Popen[str]],
) -> None:
    ws, _ = watched
    # stdin kept open: the served command waits for its message.
    client = spawn(ws, WARM, "send", "alpha", "beta", "-", stdin=subprocess.PIPE)
    time.sleep(1.0)  # let it connect and start reading
    assert client.poll() is None
    client.send_signal(signal.SIGINT)
    _, err = client.communicate(timeout=20)
    assert client.returncode == 130, err
    assert not (ws / "scratchpads" / "alpha_to_beta.md").exists()


def test_without_a_server_commands_run_cold_or_fail_clearly_when_required(
    workspace: Path,
) -> None:
    assert run_nexus("add", "Cold task", cwd=workspace).returncode == 0
    required = run_nexus("add", "Never", cwd=workspace, env=WARM, check=False)
    assert required.returncode == 1
    assert "no warm server for" in required.stderr
    assert "is `nexus watch` running?" in required.stderr
    tasks = json.loads(run_nexus("list", "--json", cwd=workspace).stdout)
    assert [t["title"] for t in tasks] == ["Cold task"]
    # Commands that are never served say so when a server is required.
    watch = run_nexus("watch", "--until-idle", cwd=workspace, env=WARM, check=False)
    assert "`nexus watch` is not served warm" in watch.stderr


def test_the_server_goes_with_its_daemon_even_when_the_daemon_is_killed(
    workspace: Path,
) -> None:
    daemon = start_daemon(workspace, "-q")
    path = wait_for_server(workspace)
    daemon.kill()
    daemon.wait(timeout=10)
    deadline = time.monotonic() + 10
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(path), "the warm server outlived its daemon"
    assert run_nexus("add", "After the kill", cwd=workspace).returncode == 0  # cold again
    # A clean stop removes it too.
    daemon = start_daemon(workspace, "-q")
    wait_for_server(workspace)
    stop_daemon(daemon, check=False)
    assert not os.path.exists(path)


def test_nexus_warm_0_keeps_watch_from_starting_a_server(workspace: Path) -> None:
    daemon = spawn(workspace, COLD, "watch", "-q", stdout=subprocess.DEVNULL)
    try:
        run_nexus("add", "Marker", cwd=workspace)  # the daemon is up and working by now
        time.sleep(1.0)
        # warm.start opens the log before the server exists, so its absence is proof at once
        # (the socket alone could simply not be there yet: the server imports first).
        assert not (workspace / ".nexus" / "warm.log").exists()
        assert not os.path.exists(warm.socket_path(str(workspace)))
    finally:
        stop_daemon(daemon, check=False)


def test_a_client_that_gives_up_before_go_runs_nothing_and_garbage_is_ignored(
    watched: tuple[Path, subprocess.Popen[str]],
) -> None:
    ws, _ = watched
    path = warm.socket_path(str(ws))
    with socket.socket(socket.AF_UNIX) as junk:  # not a request at all
        junk.connect(path)
        junk.sendall(b"\x00\x00\x00\x05hello")
    with socket.socket(socket.AF_UNIX) as quitter:
        quitter.connect(path)
        request = {
            "argv": ["add", "Must never exist"],
            "cwd": str(ws),
            "env": dict(os.environ),
            "umask": 0o022,
            "streams": [(None, None)] * 3,
            "install": warm._install(),
        }
        quitter.sendall(warm._frame(request))
        assert "pid" in warm._receive(quitter)
        # ...and the client closes without "go"
    time.sleep(0.5)
    run_nexus("add", "After the quitter", cwd=ws, env=WARM)
    titles = [t["title"] for t in json.loads(run_nexus("list", "--json", cwd=ws).stdout)]
    assert titles == ["After the quitter"]


def test_a_workspace_too_deep_for_a_unix_socket_path_is_served_from_the_temp_folder(
    tmp_path: Path,
) -> None:
    from nexus.scaffold import init

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    ws = init(deep / "proj", goal="deep").root
    path = warm.socket_path(str(ws))
    assert not path.startswith(str(ws))
    daemon = start_daemon(ws, "-q")
    try:
        wait_for_server(ws)
        assert run_nexus("add", "Deep task", cwd=ws, env=WARM).returncode == 0
        assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    finally:
        stop_daemon(daemon, check=False)


def test_a_server_declines_another_installation_or_changed_code(workspace: Path) -> None:
    server = warm.Server(str(workspace), os.getpid())
    assert server._decline({"install": warm._install()}) is None
    assert "another nexus installation" in str(
        server._decline({"install": ("/elsewhere", "/elsewhere/nexus")})
    )
    server.stamp = (0, 0)  # as if nexus changed on disk after the server started
    assert "restart it" in str(server._decline({"install": warm._install()}))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["list", "--json"], ("list", None)),
        (["--workspace", "/w", "add", "x"], ("add", "/w")),
        (["--workspace=/w", "status"], ("status", "/w")),
        (["--help"], (None, None)),
        (["--version"], (None, None)),
        ([], (None, None)),
    ],
)
def test_the_client_reads_the_command_and_workspace_from_argv(
    argv: list[str], expected: tuple[str | None, str | None]
) -> None:
    assert warm._command_line(argv) == expected


def _spare_of(daemon: subprocess.Popen[str]) -> int:
    """The pid of the warm server's spare: the child of the daemon's child running warm."""
    for _ in range(200):
        for server in _children(daemon.pid):
            if "nexus.warm" in Path(f"/proc/{server}/cmdline").read_text():
                spares = _children(server)
                if spares:
                    return spares[0]
        time.sleep(0.05)
    raise AssertionError("no spare found")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_ctrl_c_before_the_server_answers_runs_nothing(
    watched: tuple[Path, subprocess.Popen[str]],
) -> None:
    ws, daemon = watched
    spare = _spare_of(daemon)
    os.kill(spare, signal.SIGSTOP)  # a server too busy to answer
    try:
        client = spawn(ws, WARM, "add", "Interrupted before go")
        time.sleep(1.0)
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=20)
    finally:
        os.kill(spare, signal.SIGCONT)  # it now finds its client gone
    assert client.returncode == 130
    assert err.strip() == "interrupted"
    run_nexus("add", "After the interruption", cwd=ws, env=WARM)
    titles = [t["title"] for t in json.loads(run_nexus("list", "--json", cwd=ws).stdout)]
    assert titles == ["After the interruption"]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_a_server_that_does_not_answer_is_left_and_never_runs_the_command_too(
    watched: tuple[Path, subprocess.Popen[str]],
) -> None:
    ws, daemon = watched
    spare = _spare_of(daemon)
    os.kill(spare, signal.SIGSTOP)
    try:
        started = time.monotonic()
        # Cold after ANSWER_TIMEOUT; its output pipe closes when it exits (communicate returns).
        out = run_nexus("add", "Added once", "--json", cwd=ws, timeout=30)
        assert time.monotonic() - started >= warm.ANSWER_TIMEOUT
    finally:
        os.kill(spare, signal.SIGCONT)  # it finds its client gone, before any "go"
    time.sleep(1.0)
    tasks = json.loads(run_nexus("list", "--json", cwd=ws, env=WARM).stdout)
    assert [t["id"] for t in tasks] == [json.loads(out.stdout)["id"]]


def test_no_server_in_a_temp_folder_others_can_enter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from nexus.scaffold import init

    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", None)
    ws = init(tmp_path / ("d" * 60) / ("e" * 60) / "proj", goal="deep").root
    path = warm.socket_path(str(ws))
    folder = Path(path).parent
    assert folder.parent == tmp_path / "tmp"
    folder.mkdir(parents=True)
    folder.chmod(0o777)  # as if someone else made it first, open to all
    daemon = start_daemon(ws, "-q")
    try:
        log = ws / ".nexus" / "warm.log"
        deadline = time.monotonic() + 30
        while "others may enter it" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "the server did not refuse the folder"
            time.sleep(0.05)
        assert not os.path.exists(path)
        refused = run_nexus("add", "Not served", cwd=ws, env=WARM, check=False)
        assert "no warm server for" in refused.stderr
        assert run_nexus("add", "Cold instead", cwd=ws).returncode == 0
    finally:
        stop_daemon(daemon, check=False)
    # A socket that is there, in a folder opened up after the server made it, is not used.
    folder.chmod(0o700)
    daemon = start_daemon(ws, "-q")
    try:
        wait_for_server(ws)
        assert run_nexus("list", cwd=ws, env=WARM).returncode == 0
        folder.chmod(0o755)
        refused = run_nexus("list", cwd=ws, env=WARM, check=False)
        assert "no warm server for" in refused.stderr
    finally:
        folder.chmod(0o700)
        stop_daemon(daemon, check=False)


def test_nexus_watch_and_its_served_commands_build_commits_in_process(
    workspace: Path, tmp_path: Path
) -> None:
    """What the README says: the daemon and the commands it serves commit through libgit2,
    leaving git only the staging and the person's index; a cold command uses git's
    plumbing.  A `git` on PATH records every subcommand it is asked for."""
    import shutil

    log = tmp_path / "git.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "git"
    fake.write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec {shutil.which("git")} "$@"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    run_nexus("add", "Cold", cwd=workspace, env={**env, **COLD})
    assert "commit-tree" in log.read_text()  # cold: the plumbing commands
    log.write_text("")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", "-q"],
        cwd=workspace,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_server(workspace)
        added = json.loads(run_nexus("add", "Served", "--json", cwd=workspace,
                                     env={**env, **WARM}).stdout)  # fmt: skip
        run_nexus("complete", added["id"], cwd=workspace, env={**env, **WARM})
        # and the daemon's own commits: a person's new task file, committed and promoted
        (workspace / "tasks" / "h").mkdir(exist_ok=True)
        (workspace / "tasks" / "h" / "hand0001.md").write_text(
            "---\nid: hand0001\ntitle: By hand\n---\n"
        )
        deadline = time.monotonic() + 30
        while "nexus: promote hand0001" not in git("log", "-3", "--format=%s", cwd=workspace):
            assert time.monotonic() < deadline, git("log", "-5", "--format=%s", cwd=workspace)
            time.sleep(0.05)
    finally:
        stop_daemon(daemon, check=False)
    subjects = git("log", "-4", "--format=%s", cwd=workspace)
    assert f"nexus: complete {added['id']}" in subjects and "nexus: add" in subjects
    assert "edited by a person" in subjects
    ran = log.read_text().split()
    assert "update-index" in ran
    assert not {"write-tree", "commit-tree", "update-ref"} & set(ran), ran

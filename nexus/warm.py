"""The warm command server: while `nexus watch` runs, `nexus` commands run in a process forked
from one that has already imported nexus, instead of a new Python paying 60-100 ms for its
imports before it does any work.

    client (`nexus ...`)                        server (started by `nexus watch`)
    connects to the workspace's socket and ──►  a spare child, forked ahead of time, accepts;
    sends argv, folder, environment, umask       it declines if nexus changed on disk since
                                            ◄──  the server started, else answers {"pid": N}
    forwards SIGINT/SIGTERM/SIGHUP to N;    ──►  the child takes the fds, environment, folder
    sends "go" with its stdin/stdout/stderr      and umask and runs the command exactly as
    (the fds)                                    `nexus` would
    exits with the child's code             ◄──  {"exit": code}

The child writes straight to the client's terminal or pipes and reads its stdin, so a served
command behaves as the same command run cold.  Only short commands that do not need the
terminal as their controlling terminal are served (not `edit` with an editor, the dashboard,
`watch`, `serve`, `mcp` or the commands that ask an engine).  The client runs the command
itself when there is no server, when the server declines, or when it does not answer within
a few seconds; nothing runs before the client's "go", so a command never runs twice.

NEXUS_WARM=0 turns this off (in the client, and in `nexus watch`); NEXUS_WARM=require makes a
command that cannot be served fail instead (for tests and benchmarks that must know which
path they measured).

The client runs before anything else in every `nexus` command, so it imports only os, sys,
marshal and the C halves of socket and signal (`_socket`, `_signal`): their Python wrappers
pull in enum and friends, 7 ms of a 50 ms command.  Messages are marshal'd dicts behind a
4-byte length; the socket is its owner's alone (mode 0600), so only the same user can speak
to it.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub; the C half of `signal`
import _socket
import marshal
import os
import sys

import nexus
from nexus.locate import CONFIG_FILE, RUNTIME, nearest_workspace

TYPE_CHECKING = False  # typing costs 2 ms to import; mypy treats this name as typing's
if TYPE_CHECKING:
    import socket
    import subprocess
    from collections.abc import Mapping
    from typing import Any

SERVED = frozenset(
    {
        "add", "agents", "approve", "cancel", "complete", "cost", "fail", "inbox", "list",
        "log", "pipeline", "resume", "retry", "send", "show", "status", "trace", "validate",
        "why",
    }
)  # fmt: skip
ANSWER_TIMEOUT = 5.0  # seconds the client waits for the server's first answer
PRELOAD_AFTER = 0.05  # seconds a spare waits before it reads the workspace ahead (_preload)
SOCKET_NAME = "warm.sock"
_MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 104-108 bytes
_MAX_MESSAGE = 1 << 24


def enabled(env: Mapping[str, str]) -> bool:
    return env.get("NEXUS_WARM", "").lower() not in ("0", "off", "no", "false")


def socket_path(root: str) -> str:
    """The server's socket: in the workspace's runtime folder, or, when that path is too long
    for a Unix socket, in a private folder of the temporary directory named after it."""
    path = os.path.join(root, RUNTIME, SOCKET_NAME)
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    import hashlib
    import tempfile

    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:20]
    return os.path.join(tempfile.gettempdir(), f"nexus-{os.getuid()}", f"{digest}.sock")


def serving(root: str) -> bool:
    """Whether a warm server answers for the workspace at `root` (for `nexus doctor`)."""
    conn = _connect(root)
    if conn is None:
        return False
    conn.close()  # the spare sees the connection close before a request: ignored
    return True


def _connect(root: str) -> _socket.socket | None:
    """A connection to the workspace's server, if it is there and ours (see `_ours`)."""
    path = socket_path(root)
    if not _ours(path):
        return None
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.settimeout(ANSWER_TIMEOUT)
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    return conn


# -- the client -------------------------------------------------------------------------------


def run() -> None:
    """The `nexus` command: served warm when it can be, else run here."""
    try:
        code = _served(sys.argv[1:]) if enabled(os.environ) else None
    except KeyboardInterrupt:  # before the server was told "go": nothing ran
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    if code is not None:
        # Served: nothing of ours is left to tear down but an interpreter that imported next
        # to nothing; skipping that teardown is ~2 ms of a ~60 ms command.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:  # a closed pipe: nobody is reading what we said
            pass
        os._exit(code)
    from nexus.cli.main import run as run_here

    run_here()


def _served(argv: list[str]) -> int | None:
    """The command's exit code when a warm server ran it; None to run it here."""
    required = os.environ.get("NEXUS_WARM", "").lower() == "require"
    command, workspace = _command_line(argv)
    root = _root(workspace) if command in SERVED else None
    if root is None:
        return _refuse(required, f"`nexus {command or ''}` is not served warm here")
    conn = _connect(root)
    if conn is None:
        return _refuse(required, f"no warm server for {root} (is `nexus watch` running?)")
    try:
        try:
            _send_request(conn, argv)
            answer = _receive(conn)
            if "pid" not in answer:
                return _refuse(required, f"the warm server declined: {answer.get('declined')}")
            _forward_signals(int(answer["pid"]))  # from here on, Ctrl-C is the command's
            _go(conn)
        except (OSError, ValueError) as exc:  # no answer in time, or none at all: nothing ran
            return _refuse(required, f"the warm server did not answer ({exc})")
        return _wait(conn, int(answer["pid"]))
    finally:
        conn.close()


def _command_line(argv: list[str]) -> tuple[str | None, str | None]:
    """The command and the --workspace given before it; (None, None) for anything else
    (--help, --version, an unknown option), which the full CLI then handles."""
    workspace, i = None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--workspace" and i + 1 < len(argv):
            workspace, i = argv[i + 1], i + 2
        elif arg.startswith("--workspace="):
            workspace, i = arg.partition("=")[2], i + 1
        elif arg.startswith("-"):
            return None, None
        else:
            return arg, workspace
    return None, None


def _root(workspace: str | None) -> str | None:
    named = workspace or os.environ.get("NEXUS_WORKSPACE")
    if named:
        root = os.path.realpath(os.path.expanduser(named))
        return root if os.path.isfile(os.path.join(root, CONFIG_FILE)) else None
    return nearest_workspace(os.getcwd())


def _ours(path: str) -> bool:
    """The socket is ours, and when it lives in the shared temporary directory, so is its
    folder and no one else may enter it: the client is about to hand over its environment,
    keys included, to whoever listens there."""
    try:
        sock = os.stat(path)
        return sock.st_uid == os.getuid() and (not _in_temp(path) or _private(path))
    except OSError:
        return False


def _in_temp(path: str) -> bool:
    return not path.endswith(os.path.join(RUNTIME, SOCKET_NAME))


def _private(path: str) -> bool:
    folder = os.stat(os.path.dirname(path))
    return folder.st_uid == os.getuid() and not folder.st_mode & 0o077


def _refuse(required: bool, why: str) -> int | None:
    if not required:
        return None
    print(f"error: {why}; NEXUS_WARM=require forbids running it cold", file=sys.stderr)
    return 1


def _send_request(conn: _socket.socket, argv: list[str]) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    streams = [sys.stdin, sys.stdout, sys.stderr]
    request = {
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": umask,
        "streams": [(getattr(s, "encoding", None), getattr(s, "errors", None)) for s in streams],
        "install": _install(),
    }
    conn.sendall(_frame(request))


def _go(conn: _socket.socket) -> None:
    """ "go", with our stdin/stdout/stderr.  They travel only now: descriptors sent earlier
    would sit in the socket's queue of a server that never answered, holding our pipes open
    after we gave up (a `$(nexus ...)` would wait for them)."""
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))  # an int[3], as array("i")
    conn.sendmsg([b"go"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])


def _forward_signals(pid: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:  # it has just exited
            return

    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(sig, forward)


def _wait(conn: _socket.socket, pid: int) -> int:
    """Wait for the child (signals go to it meanwhile) to report its exit code."""
    conn.settimeout(None)
    try:
        answer = _receive(conn)
    except (OSError, ValueError):
        answer = {}
    if "exit" not in answer:
        print(
            f"error: the warm nexus process {pid} stopped before it finished (killed?); "
            "see `nexus log` and `nexus status` for what it did",
            file=sys.stderr,
        )
        return 1
    return int(answer["exit"])


def _install() -> tuple[str, str]:
    """Which Python and which nexus: a server of another installation must not serve us."""
    return os.path.realpath(sys.prefix), os.path.dirname(os.path.realpath(nexus.__file__))


def _frame(message: dict[str, Any]) -> bytes:
    data = marshal.dumps(message)
    return len(data).to_bytes(4, "big") + data


def _receive(conn: _socket.socket) -> dict[str, Any]:
    head = _exactly(conn, 4)
    size = int.from_bytes(head, "big")
    if len(head) < 4 or size > _MAX_MESSAGE:
        raise ValueError("the message ended early" if len(head) < 4 else "message too large")
    data = _exactly(conn, size)
    message = marshal.loads(data) if len(data) == size else None
    if not isinstance(message, dict):
        raise ValueError("not a nexus message")
    return message


def _exactly(conn: _socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size and (more := conn.recv(size - len(data))):
        data += more
    return data


# -- the server -------------------------------------------------------------------------------


class Server:
    """Keeps one spare child, forked ahead of time, waiting on the workspace's socket; each
    child serves one command.  The server itself is single-threaded, so forking is safe, and
    stops when the daemon that started it is gone."""

    def __init__(self, root: str, parent: int) -> None:
        self.root = root
        self.path = socket_path(root)
        self.parent = parent
        self.pid = os.getpid()
        self.stamp = _code_stamp()
        self.spare: int | None = None
        self.inode = 0

    def loop(self) -> Child | None:
        """Serve until the parent is gone (None); in a child that took a request, its Child."""
        import select
        import signal

        listener = self._listen()
        taken, took = os.pipe()  # a spare writes a byte here when it takes a request
        try:
            while os.getppid() == self.parent:
                if self.spare is None:
                    self.spare = os.fork()
                    if self.spare == 0:
                        os.close(taken)
                        return self._wait_as_spare(listener, took)
                if select.select([taken], [], [], 1.0)[0]:
                    os.read(taken, 64)
                    self.spare = None
                self._reap()
            return None
        finally:
            if os.getpid() == self.pid:
                listener.close()
                self._remove()
                if self.spare:
                    os.kill(self.spare, signal.SIGTERM)

    def _listen(self) -> socket.socket:
        import socket

        folder = os.path.dirname(self.path)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if _in_temp(self.path) and not _private(self.path):
            raise PermissionError(
                f"{folder} belongs to another user or others may enter it: not serving "
                "commands from it (remove it, or run with NEXUS_WARM=0)"
            )
        if os.path.exists(self.path):  # a dead server's: the daemon lock says we are alone
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born private: only its owner may connect
        try:
            listener.bind(self.path)
        finally:
            os.umask(old)
        listener.listen(64)
        self.inode = os.stat(self.path).st_ino
        return listener

    def _remove(self) -> None:
        try:
            if os.stat(self.path).st_ino == self.inode:  # not a newer server's socket
                os.unlink(self.path)
        except OSError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.spare:  # it died without taking a request
                self.spare = None

    def _wait_as_spare(self, listener: socket.socket, took: int) -> Child | None:
        listener.settimeout(PRELOAD_AFTER)
        preloaded = False
        while os.getppid() == self.pid:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                if not preloaded:
                    preloaded = True
                    _preload(self.root)
                    listener.settimeout(1.0)  # look at the server once a second
                continue
            os.write(took, b"x")  # the server forks the next spare now
            os.close(took)
            listener.close()
            return self._take(conn)
        return None

    def _take(self, conn: socket.socket) -> Child | None:
        try:
            conn.settimeout(ANSWER_TIMEOUT)
            request = _receive(conn)
            if not isinstance(request.get("argv"), list):
                raise ValueError("not a request")
            reason = self._decline(request)
            if reason is None:
                return Child(conn, request)
            conn.sendall(_frame({"declined": reason}))
        except (OSError, ValueError):
            pass  # a client that went away or spoke nonsense: it runs the command itself
        conn.close()
        return None

    def _decline(self, request: dict[str, Any]) -> str | None:
        if request.get("install") != _install():
            return "the client is another nexus installation"
        if _code_stamp() != self.stamp:
            return "nexus changed on disk since `nexus watch` started (restart it)"
        return None


class Child:
    """One served command, in a forked child of the server."""

    def __init__(self, conn: socket.socket, request: dict[str, Any]) -> None:
        self.conn = conn
        self.request = request
        self.fds: list[int] = []

    def run(self) -> int:
        import socket

        try:
            self.conn.sendall(_frame({"pid": os.getpid()}))
            go, self.fds, _flags, _addr = socket.recv_fds(self.conn, 2, 3)
        except (OSError, KeyboardInterrupt):  # the client went, or was interrupted, first
            go = b""
        if go != b"go" or len(self.fds) != 3:
            for fd in self.fds:
                os.close(fd)
            return 0  # the client gave up (and runs the command itself, or was interrupted)
        self.conn.settimeout(None)
        self._become_client()
        from nexus.cli.main import main

        try:
            code = main(list(self.request["argv"]))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        import contextlib

        with contextlib.suppress(OSError):  # a closed pipe: the client is gone
            sys.stdout.flush()
            sys.stderr.flush()
        # Let go of the client's stdin/stdout/stderr before saying the code: a caller reading
        # them to the end (a pipe, `$(nexus ...)`) must not wait for this interpreter's
        # teardown (~20-30 ms), which happens after the client has gone.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        with contextlib.suppress(OSError):
            self.conn.sendall(_frame({"exit": code}))
        # What is left is this interpreter's teardown (~20 ms of CPU): let the client, and the
        # daemon reacting to the change, have the CPU first.
        with contextlib.suppress(OSError):
            os.nice(19)
        return code

    def _become_client(self) -> None:
        import signal

        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        for target, fd in enumerate(self.fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(self.request["env"])
        import tempfile
        import time

        time.tzset()  # the client's TZ, not the server's
        tempfile.tempdir = None  # the client's TMPDIR
        os.chdir(self.request["cwd"])
        os.umask(int(self.request["umask"]))
        sys.argv = ["nexus", *self.request["argv"]]
        (enc_in, err_in), (enc_out, err_out), (enc_err, err_err) = self.request["streams"]
        sys.stdin = open(0, encoding=enc_in, errors=err_in, closefd=False)  # noqa: SIM115
        sys.stdout = _text_out(1, enc_out, err_out, line=os.isatty(1))
        sys.stderr = _text_out(2, enc_err, err_err or "backslashreplace", line=True)


def _text_out(fd: int, encoding: str | None, errors: str | None, line: bool) -> Any:
    """A text stream on `fd`, buffered as Python buffers its standard streams."""
    return open(
        fd, "w", buffering=1 if line else -1, encoding=encoding, errors=errors, closefd=False
    )


def _code_stamp() -> tuple[int, int]:
    """How many .py files nexus has and when the newest changed: after an upgrade or an edit to
    nexus the server would serve old code."""
    count, newest = 0, 0
    stack = [os.path.dirname(os.path.realpath(nexus.__file__))]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                    stack.append(entry.path)
                elif entry.name.endswith(".py"):
                    count += 1
                    newest = max(newest, entry.stat().st_mtime_ns)
    return count, newest


# Loaded for commands: all of nexus but the surfaces and engines no served command runs (they
# bring heavy SDKs), and the third-party modules nexus imports only when it needs them.
_COLD = ("nexus.__main__", "nexus.web", "nexus.mcp", "nexus.tui", "nexus.engines", "nexus.warm")
_LAZY = ("yaml", "frontmatter", "secrets", "concurrent.futures", "multiprocessing", "rich.console",
         "pygit2")  # fmt: skip
_SAMPLE = "---\nid: warmup01\ntitle: Warm up\nstatus: pending\ndeps: [a, b]\n---\nText.\n"


def _warm_up() -> None:
    """Import what commands use and parse a task once (yaml's first use compiles its patterns),
    so every child starts with it done; then freeze those objects so the children's garbage
    collections do not touch (and so copy) their pages."""
    import gc
    import importlib
    import pkgutil

    from nexus import gitrepo, store, taskfile

    gitrepo.commit_in_process()  # pygit2 is imported here once, for every child
    store.keep_scans()  # what a spare's read-ahead built is there for its command
    for module in pkgutil.walk_packages(nexus.__path__, "nexus."):
        if not module.name.startswith(_COLD):
            importlib.import_module(module.name)
    for name in _LAZY:
        importlib.import_module(name)
    taskfile.parse(_SAMPLE, "tasks/w/warmup01.md", "warmup01")
    gc.collect()
    gc.freeze()


def _preload(root: str) -> None:
    """What every command does first, done by the spare while it waits: scan the workspace (the
    command's own scan then reuses the tasks built here, and only stats the files; see
    store._BUILT) and open the repository for libgit2.  Nothing is written but nexus's cache;
    a workspace that does not read just now is the command's to report."""
    import contextlib
    from pathlib import Path

    from nexus.gitrepo import Repo
    from nexus.store import Workspace

    with contextlib.suppress(Exception):  # the command meets the same problem, and says so
        Workspace(Path(root)).scan()
        repo = Repo.discover(Path(root))
        if repo is not None:
            repo.warm_up()


def start(root: str) -> subprocess.Popen[bytes]:
    """Start the server for the workspace at `root` (for `nexus watch`); what it has to say
    (a crash) goes to .nexus/warm.log, not to the daemon's output, which it would hold open."""
    import subprocess

    with open(os.path.join(root, RUNTIME, "warm.log"), "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "nexus.warm", root, str(os.getpid())],
            env=dict(os.environ),  # each served command gets its client's environment instead
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # no controlling terminal: not the daemon's Ctrl-C
        )


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server; commands it is running finish on their own."""
    import subprocess

    server.terminate()
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _serve(argv: list[str]) -> int:
    import signal

    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(0))  # so the socket is removed
    server = Server(argv[0], int(argv[1]))
    _warm_up()
    try:
        child = server.loop()
    except PermissionError as exc:
        print(f"nexus warm server: {exc}", file=sys.stderr)  # into .nexus/warm.log
        return 1
    return child.run() if child is not None else 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))

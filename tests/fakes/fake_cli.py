"""What the fake agent CLIs (fake_claude, fake_codex, fake_gemini) share, and how tests put
them on a PATH.

Each fake reads its scenario from `$FAKE_<NAME>_SCENARIO` (a JSON object used for every call, or
a list: call n plays item n, the last one repeats) and appends each call to `$FAKE_<NAME>_LOG`
as one JSON line {"argv", "cwd", "env", "stdin"}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def install_fake(bin_dir: Path, name: str, script: str) -> Path:
    """Make `bin_dir/name` run `tests/fakes/<script>` with this interpreter."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / name
    target.write_text(
        f"#!{sys.executable}\n"
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        f"runpy.run_path({str(HERE / script)!r}, run_name='__main__')\n"
    )
    target.chmod(0o755)
    return target


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def scenario(prefix: str) -> dict[str, Any]:
    path = os.environ.get(f"FAKE_{prefix}_SCENARIO")
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        return data
    counter = Path(path + ".calls")
    calls = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(calls + 1))
    return dict(data[min(calls, len(data) - 1)])


def log_call(prefix: str) -> None:
    path = os.environ.get(f"FAKE_{prefix}_LOG")
    if not path:
        return
    try:
        stdin = "devnull" if os.path.samestat(os.fstat(0), os.stat(os.devnull)) else "other"
    except OSError:
        stdin = "closed"
    entry = {"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ), "stdin": stdin}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def fail(message: str, rc: int = 1) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(rc)


def hang(sc: dict[str, Any]) -> None:
    """Start a child that sleeps, record both pids, sleep: only a process-group kill ends it."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if sc.get("hang_pid_file"):
        Path(sc["hang_pid_file"]).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(600)


def write_files(sc: dict[str, Any]) -> list[str]:
    """Write the scenario's {relative path: content} in the cwd; the absolute paths written."""
    written = []
    for rel, content in (sc.get("write") or {}).items():
        target = Path(os.getcwd()) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        written.append(str(target))
    return written


class FakeCliRig:
    """A fake CLI on a private PATH, a working dir, and the environment a job would pass:
    `rig.play({...})` sets the scenario, `rig.job(...)` builds a Job, `rig.calls()` reads the
    log of what the fake was given."""

    def __init__(self, tmp_path: Path, name: str, script: str, prefix: str) -> None:
        self.bin = tmp_path / "bin"
        self.exe = install_fake(self.bin, name, script)
        self.work = tmp_path / "work"
        self.work.mkdir()
        self.log = tmp_path / f"{name}-calls.jsonl"
        self.scenario_file = tmp_path / f"{name}-scenario.json"
        self.env = {
            "PATH": f"{self.bin}{os.pathsep}{os.defpath}",
            "HOME": str(tmp_path / "home"),
            "CLAUDE_CONFIG_DIR": str(tmp_path / "claude-config"),
            f"FAKE_{prefix}_LOG": str(self.log),
            f"FAKE_{prefix}_SCENARIO": str(self.scenario_file),
        }
        self.play({})

    def play(self, *scenarios: dict[str, Any]) -> None:
        """One scenario for every call, or several: call n plays scenario n."""
        data: Any = scenarios[0] if len(scenarios) == 1 else list(scenarios)
        self.scenario_file.write_text(json.dumps(data))

    def job(self, **kw: Any) -> Any:
        from nexus.engines.base import Job

        values: dict[str, Any] = {
            "task_id": "T-1",
            "prompt": "do the task",
            "workdir": self.work,
            "workspace": self.work,
            "env": self.env,
            "timeout": 30,
        }
        values.update(kw)
        return Job(**values)

    def calls(self) -> list[dict[str, Any]]:
        return read_log(self.log)


def parse_flags(
    argv: list[str],
    value: set[str],
    boolean: set[str],
    many: set[str] = frozenset(),  # type: ignore[assignment]
    unknown: str = "error: unknown option '{}'",
    unknown_rc: int = 1,
) -> tuple[dict[str, Any], list[str]]:
    """Options and positionals, the way the real CLIs read them: `--` ends the options,
    `--flag=value` works, options in `many` take every value up to the next option, and an
    unknown option fails with the CLI's own kind of message."""
    opts: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg == "--":
            positional += argv[i + 1 :]
            break
        if "=" in arg and name in value:
            opts[name] = arg.split("=", 1)[1]
        elif arg in boolean:
            opts[arg] = True
        elif arg in value:
            if i + 1 >= len(argv):
                fail(f"error: option '{arg}' argument missing", unknown_rc)
            opts[arg] = argv[i + 1]
            i += 1
        elif arg in many:
            values = []
            while i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                values.append(argv[i + 1])
                i += 1
            opts[arg] = values
        elif arg.startswith("-"):
            fail(unknown.format(arg), unknown_rc)
        else:
            positional.append(arg)
        i += 1
    return opts, positional

"""Crash harness (issue 6): kill things at random moments and prove that nothing is lost.

One module serves the CI-sized run (`tests/test_crash.py` imports `build`, `run_with_kills`,
`check` and friends) and the long run:

    python -m benchmarks.crash --tasks 300 --kills 50 --agent-kills 10 --seed 1

A workspace of chains, diamonds and fan-outs is run by `nexus watch --workers 8` while the
harness SIGKILLs the daemon at random moments (seeded) and restarts it, optionally SIGKILLs
agents' process groups mid-run, injects write errors at the storage layer, or plays a person
who commits and runs `git gc` in the same repository.  Every agent appends `start`/`end`
lines (task id, attempt, pid) to a ledger file outside the workspace, so the harness knows
which runs really happened.  At the end `check` verifies:

* every task is complete and every task file parses;
* each task's side effect (its `end` line) is in the ledger exactly once, or, where runs were
  cut off, at most once more than the journal records interruptions or failures of it;
* the journal's transitions (`Nexus-Transition` trailers, oldest first) are continuous per
  task and replay to each file's final status;
* `git fsck` is clean, nothing nexus owns is left uncommitted, and no temp or lock file is
  left behind (atomic-write temps, `.nexus/*.tmp`, git `*.lock`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FAULT_ENV = "NEXUS_FAULT_WRITES"  # see nexus/store.py: write errors injected while a file exists

# The agent: its side effect is the `end` line; `start` tells the harness its process group.
AGENT = 'echo "start $2 $3 $$" >> "$1"; sleep "$4"; echo "end $2 $3 $$" >> "$1"'

PERSON = {
    "GIT_AUTHOR_NAME": "Pat Person",
    "GIT_AUTHOR_EMAIL": "pat@example.com",
    "GIT_COMMITTER_NAME": "Pat Person",
    "GIT_COMMITTER_EMAIL": "pat@example.com",
}


@dataclass
class Harness:
    """A workspace under test and the ledger its agents write (outside the workspace)."""

    root: Path
    ledger: Path
    ids: list[str]
    deps: dict[str, list[str]]
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the daemon
    kills: int = 0
    agent_kills: list[str] = field(default_factory=list)  # task ids whose agent was killed
    errors: list[str] = field(default_factory=list)  # daemon error events seen
    duration: float = 0.0
    exit_code: int | None = None  # of the last daemon, which ran until idle


@dataclass
class Verdict:
    problems: list[str]
    tasks: int
    interrupted: int  # tasks the journal says were interrupted (daemon killed) and retried
    failed_and_retried: int  # tasks whose run failed (agent killed) and was retried
    reruns: int  # extra `end` lines in the ledger, each covered by a journal record
    commits: int

    def summary(self) -> str:
        return (
            f"{self.tasks} tasks, {self.commits} commits, {self.interrupted} interrupted and "
            f"retried, {self.failed_and_retried} failed and retried, {self.reruns} side effects "
            f"repeated after a recorded interruption, {len(self.problems)} problems"
        )


# -- building ---------------------------------------------------------------------------------


def shapes(n: int, rng: random.Random) -> dict[str, list[str]]:
    """About `n` task ids with their deps: chains, diamonds and fan-outs, in turn."""
    deps: dict[str, list[str]] = {}
    group = 0
    while len(deps) < n:
        kind = ("chain", "diamond", "fan")[group % 3]
        p = f"{kind[0]}{group:03d}"
        if kind == "chain":
            length = rng.randint(4, 8)
            for i in range(length):
                deps[f"{p}-{i}"] = [f"{p}-{i - 1}"] if i else []
        elif kind == "diamond":
            deps[f"{p}-top"] = []
            deps[f"{p}-l"] = [f"{p}-top"]
            deps[f"{p}-r"] = [f"{p}-top"]
            deps[f"{p}-bottom"] = [f"{p}-l", f"{p}-r"]
        else:
            width = rng.randint(8, 20)
            deps[f"{p}-root"] = []
            leaves = [f"{p}-{i:02d}" for i in range(width)]
            for leaf in leaves:
                deps[leaf] = [f"{p}-root"]
            deps[f"{p}-join"] = leaves
        group += 1
    return deps


def build(
    root: Path,
    n: int = 300,
    *,
    seed: int = 1,
    pause: tuple[float, float] = (0.05, 0.3),
    max_retries: int = 3,
) -> Harness:
    """A fresh workspace at `root/ws` with about `n` script-engine tasks, committed once."""
    from nexus.scaffold import init

    rng = random.Random(seed)
    ws = root / "ws"
    ledger = root / "ledger.txt"
    init(ws, goal="crash harness")
    cfg = ws / "nexus.yaml"
    data = yaml.safe_load(cfg.read_text())
    data["limits"] = {
        **(data.get("limits") or {}),
        "max_retries": max_retries,
        "retry_backoff": 0.2,
        "timeout": 120,
    }
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    deps = shapes(n, rng)
    for tid, needs in deps.items():
        step = {
            "run": [
                "sh",
                "-c",
                AGENT,
                "agent",
                str(ledger),
                "{task_id}",
                "{attempt}",
                f"{rng.uniform(*pause):.2f}",
            ]
        }
        fields = {
            "id": tid,
            "title": f"Crash task {tid}",
            "status": "pending",
            "engine": "script",
            "deps": needs,
            "script": [step],
        }
        folder = ws / "tasks" / tid[0]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{tid}.md").write_text(
            "---\n" + yaml.safe_dump(fields, sort_keys=False) + f"---\nCrash task {tid}.\n"
        )
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "crash harness tasks", "--no-verify")
    return Harness(ws, ledger, list(deps), deps)


def git(ws: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=ws, env={**os.environ, **PERSON}, capture_output=True, text=True
    )
    if check and proc.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


# -- running ----------------------------------------------------------------------------------


def start_daemon(h: Harness, *args: str, workers: int = 8) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", "-q", "--workers", str(workers), *args],
        cwd=h.root,
        env={**os.environ, **h.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def ledger_lines(h: Harness) -> list[tuple[str, str, str, int]]:
    """(kind, task id, attempt, pid) of every complete ledger line."""
    try:
        text = h.ledger.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append((parts[0], parts[1], parts[2], int(parts[3])))
    return out


def done_count(h: Harness) -> int:
    return len({tid for kind, tid, _, _ in ledger_lines(h) if kind == "end"})


def kill_an_agent(h: Harness, rng: random.Random) -> str | None:
    """SIGKILL the process group of one agent that is running now (never the same task
    twice); the task id, or None when none is running."""
    lines = ledger_lines(h)
    ended = {(tid, pid) for kind, tid, _, pid in lines if kind == "end"}
    running = [
        (tid, pid)
        for kind, tid, _, pid in lines
        if kind == "start" and (tid, pid) not in ended and tid not in h.agent_kills
    ]
    rng.shuffle(running)
    for tid, pid in running:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        h.agent_kills.append(tid)
        return tid
    return None


def run_with_kills(
    h: Harness,
    *,
    kills: int,
    seed: int = 1,
    agent_kills: int = 0,
    gap: tuple[float, float] = (0.3, 2.0),
    during: Callable[[], None] | None = None,
    timeout: float = 600,
) -> None:
    """Run the workspace to the end under `nexus watch --workers 8`, SIGKILLing the daemon
    `kills` times at random moments (and restarting it), and SIGKILLing `agent_kills` agents'
    process groups.  `during` is called every ~50 ms while the daemon runs."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    total = len(h.ids)
    agent_due = sorted(rng.uniform(0.05, 0.9) for _ in range(agent_kills))
    while True:
        final = h.kills >= kills
        daemon = start_daemon(h, *(["--until-idle"] if final else []))
        until = time.monotonic() + rng.uniform(*gap)
        try:
            while daemon.poll() is None:
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"the run took over {timeout:.0f}s ({done_count(h)} done)")
                if not final and time.monotonic() >= until:
                    daemon.send_signal(signal.SIGKILL)
                    daemon.wait()
                    h.kills += 1
                    break
                due = agent_due and done_count(h) >= agent_due[0] * total
                if due and kill_an_agent(h, rng) is not None:
                    agent_due.pop(0)
                if during is not None:
                    during()
                time.sleep(0.05)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
        if final:
            h.exit_code = daemon.returncode
            break
    h.duration = time.monotonic() - t0
    h.errors += daemon_errors(h)


def daemon_errors(h: Harness) -> list[str]:
    import json

    out = []
    with contextlib.suppress(FileNotFoundError):
        for line in (h.root / ".nexus" / "events.jsonl").read_text().splitlines():
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                if e.get("kind") == "daemon" and e.get("state") == "error":
                    out.append(str(e.get("message")))
    return out


@contextlib.contextmanager
def person_at_work(ws: Path, commits: list[str], seed: int = 1) -> Iterator[Callable[[], None]]:
    """A person committing their own file every ~0.2 s and running `git gc` every ~2 s, on a
    thread, while the block runs.  The subjects of their commits are appended to `commits`
    (one that never went through after a minute of retries as "!reason", and one an agent's
    result commit took first as "~subject")."""
    stop = threading.Event()
    rng = random.Random(seed)
    failures: list[str] = []

    env = {**os.environ, **PERSON}

    def work() -> None:
        n = 0
        last_gc = time.monotonic()
        while not stop.is_set():
            n += 1
            note = ws / "notes" / "person.txt"
            note.parent.mkdir(exist_ok=True)
            with note.open("a") as fh:
                fh.write(f"note {n}\n")
            deadline = time.monotonic() + 60  # a person retries while the index or HEAD is busy
            why = ""
            while time.monotonic() < deadline:
                add = subprocess.run(["git", "add", "notes/person.txt"], cwd=ws, env=env,
                                     capture_output=True, text=True)  # fmt: skip
                c = subprocess.run(
                    ["git", "commit", "-qm", f"person's note {n}", "--", "notes/person.txt"],
                    cwd=ws, env=env, capture_output=True, text=True,
                )  # fmt: skip
                if add.returncode == 0 and c.returncode == 0:
                    commits.append(f"person's note {n}")
                    break
                if "nothing to commit" in c.stdout + c.stderr:
                    # An agent's result commit took it: nexus commits the files that changed
                    # outside its own paths while an agent ran (docs/reliability.md).
                    commits.append(f"~person's note {n}")
                    break
                why = (add.stderr + c.stderr).strip()[-300:]
                time.sleep(rng.uniform(0.05, 0.2))
            else:
                failures.append(f"the person's commit {n} never went through: {why}")
            if time.monotonic() - last_gc > 2:
                subprocess.run(["git", "gc", "--quiet"], cwd=ws, capture_output=True)
                last_gc = time.monotonic()
            time.sleep(rng.uniform(0.1, 0.3))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield lambda: None
    finally:
        stop.set()
        thread.join(timeout=60)
        commits.extend(f"!{f}" for f in failures)


def person_commits_kept(ws: Path, commits: list[str]) -> list[str]:
    """Problems with the person's commits: any that HEAD's history no longer holds."""
    problems = [c[1:] for c in commits if c.startswith("!")]
    subjects = set(git(ws, "log", "--format=%s").splitlines())
    problems += [
        f"the commit {c!r} is not in HEAD's history"
        for c in commits
        if not c.startswith(("!", "~")) and c not in subjects
    ]
    notes = git(ws, "show", "HEAD:notes/person.txt") if commits else ""
    problems += [f"note {n} is not in HEAD's notes/person.txt"
                 for n in range(1, len(commits) + 1) if f"note {n}\n" not in notes]  # fmt: skip
    return problems


# -- checking ---------------------------------------------------------------------------------


def replay(entries: list[Any]) -> tuple[dict[str, str], list[str]]:
    """Fold the journal's transitions (oldest first) per task: the last status of each and
    every discontinuity (a transition from a status the task was not in)."""
    state: dict[str, str] = {}
    problems = []
    for e in entries:
        for tid, src, dst in e.transitions:
            if tid in state and state[tid] != src:
                problems.append(
                    f"journal: {tid} {src} -> {dst} in {e.commit[:10]}, but it was {state[tid]}"
                )
            state[tid] = dst
    return state, problems


def journal_entries(ws: Path) -> list[Any]:
    from nexus.journal import LOG_FORMAT, parse_log

    return parse_log(git(ws, "log", "--reverse", f"--format={LOG_FORMAT}"))


def stray_files(ws: Path) -> list[str]:
    """Temp and lock files left behind (call when nothing runs)."""
    out = []
    for folder, dirs, files in os.walk(ws):
        rel = os.path.relpath(folder, ws)
        if rel == ".git":
            dirs[:] = [d for d in dirs if d in ("refs",)]
        for name in files:
            if name.endswith((".tmp", ".lock")) and name not in ("daemon.lock", "lock"):
                out.append(os.path.join(rel, name))
    return sorted(out)


def check(h: Harness) -> Verdict:
    """Everything the harness promises, as a list of problems (empty when all is well)."""
    from nexus.store import Workspace

    ws = h.root
    problems: list[str] = []
    scan = Workspace(ws).scan()
    problems += [f"does not parse: {b}" for b in scan.broken]
    files = {tid: str(t.status) for tid, t in scan.tasks.items()}
    missing = set(h.ids) - set(files)
    problems += [f"task {tid} is gone" for tid in sorted(missing)]
    problems += [
        f"task {tid} is {s}, not complete" for tid, s in sorted(files.items()) if s != "complete"
    ]

    entries = journal_entries(ws)
    final, jumps = replay(entries)
    problems += jumps
    for tid, status in files.items():
        if final.get(tid, "pending") != status:
            problems.append(f"journal replays {tid} to {final.get(tid)}, its file says {status}")

    # A run cut off (daemon killed: in_progress -> ready; agent killed: in_progress -> failed)
    # may have done its side effect; each such record allows one more `end` line.
    cut: collections.Counter[str] = collections.Counter()
    interrupted: set[str] = set()
    failed: set[str] = set()
    for e in entries:
        for tid, src, dst in e.transitions:
            if src == "in_progress" and dst in ("ready", "failed", "pending"):
                cut[tid] += 1
                (interrupted if dst == "ready" else failed).add(tid)
    ends = collections.Counter(tid for kind, tid, _, _ in ledger_lines(h) if kind == "end")
    reruns = 0
    for tid in h.ids:
        if ends[tid] == 0 and files.get(tid) == "complete":
            problems.append(f"{tid} is complete but its agent never finished (ledger)")
        elif ends[tid] > 1 + cut[tid]:
            problems.append(
                f"{tid}'s side effect happened {ends[tid]} times; the journal records "
                f"{cut[tid]} interruption(s)"
            )
        reruns += max(ends[tid] - 1, 0)
    for tid in h.agent_kills:
        # A killed agent fails its run; if the daemon was killed too before recording that,
        # the run is recorded as interrupted instead.  Either way the journal must say so,
        # unless the kill came too late to matter (the agent had written its end line).
        if cut[tid] == 0 and not (files.get(tid) == "complete" and ends[tid] == 1):
            problems.append(f"{tid}'s agent was killed but the journal records no failure")
    fsck = subprocess.run(
        ["git", "fsck", "--no-progress", "--no-dangling"], cwd=ws, capture_output=True, text=True
    )
    if fsck.returncode or fsck.stdout.strip():
        problems.append(f"git fsck: {(fsck.stdout + fsck.stderr).strip()[:500]}")
    dirty = git(ws, "status", "--porcelain", "--", "tasks", "nexus.yaml", "agents", "scratchpads")
    if dirty.strip():
        problems.append(f"uncommitted changes to nexus's files:\n{dirty[:500]}")
    problems += [f"stray file: {p}" for p in stray_files(ws)]
    for body_note in ("a run finished after the task was set to complete",):
        hit = [tid for tid, t in scan.tasks.items() if body_note in _text(ws, t.path)]
        problems += [f"{tid}: a completed run was applied twice ({body_note})" for tid in hit]
    return Verdict(problems, len(files), len(interrupted), len(failed), reruns, len(entries))


def _text(ws: Path, rel: str) -> str:
    return (ws / rel).read_text(encoding="utf-8", errors="replace")


def counts(h: Harness) -> Mapping[str, int]:
    return {"kills": h.kills, "agent_kills": len(h.agent_kills), "tasks": len(h.ids)}


# -- the long run -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--agent-kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--person", action="store_true", help="a person commits and runs git gc")
    ap.add_argument("--keep", action="store_true", help="keep the workspace for inspection")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="nexus-crash-"))
    h = build(tmp, args.tasks, seed=args.seed)
    person: list[str] = []
    with (
        person_at_work(h.root, person, args.seed)
        if args.person
        else contextlib.nullcontext(lambda: None)
    ):
        run_with_kills(h, kills=args.kills, seed=args.seed, agent_kills=args.agent_kills)
    v = check(h)
    v.problems += person_commits_kept(h.root, person)
    load = os.getloadavg()
    print(
        f"crash harness, seed {args.seed}: {len(h.ids)} tasks, {h.kills} daemon kills, "
        f"{len(h.agent_kills)} agent kills, {h.duration:.1f} s "
        f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})"
    )
    print(v.summary())
    if person:
        print(f"the person made {len(person)} commits (and ran git gc); all kept")
    if h.errors:
        print(f"{len(h.errors)} daemon error event(s), e.g. {h.errors[0]}")
    for p in v.problems:
        print("PROBLEM:", p)
    print(f"workspace: {tmp}" if args.keep else "", end="")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if v.problems else 0


if __name__ == "__main__":
    sys.exit(main())

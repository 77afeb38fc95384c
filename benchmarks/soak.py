"""Soak (issue 6): the daemon runs a large workspace for a long time while a person keeps editing.

    python -m benchmarks.soak --tasks 2000 --minutes 10

`nexus watch --workers 8` runs a workspace of script agents (built by benchmarks.crash, each
agent sleeping 1-3 s) while a "person" edits task files without pause: adds tasks, edits
bodies, marks pending tasks complete in an editor, and reopens complete ones with
`nexus retry`.  Every `--every` seconds the daemon's RSS, open file descriptors
(/proc/PID/fd) and threads (/proc/PID/status) are sampled, with the person's edit→commit
latency (a new task file saved → in HEAD).  It prints a table and a verdict per measure,
comparing the first and the last third of the run: flat, or growing (a leak).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import crash


@dataclass
class Sample:
    t: float
    rss_mb: float
    fds: int
    threads: int
    done: int
    latencies: list[float] = field(default_factory=list)  # edit→commit, seconds


def proc_status(pid: int) -> tuple[float, int, int]:
    """(RSS in MB, open fds, threads) of a live process."""
    rss, threads = 0.0, 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


class Person:
    """One edit at a time, as a person would make them, chosen by a seeded RNG."""

    def __init__(self, h: crash.Harness, seed: int) -> None:
        self.h = h
        self.rng = random.Random(seed)
        self.added = 0
        self.counts: dict[str, int] = {}

    def files(self) -> list[Path]:
        return sorted((self.h.root / "tasks").rglob("*.md"))

    def status(self, path: Path) -> str:
        for line in path.read_text().splitlines():
            if line.startswith("status:"):
                return line.split(":", 1)[1].strip()
        return "pending"

    def edit(self) -> float | None:
        """Make one edit; the edit→commit latency when it was a new task, else None."""
        kind = self.rng.choice(["add", "add", "body", "complete", "retry"])
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "add":
            return self.add()
        files = self.files()
        want = {"body": "complete", "complete": "pending", "retry": "complete"}[kind]
        picks = [p for p in self.rng.sample(files, min(40, len(files))) if self.status(p) == want]
        if not picks:
            return None
        path = picks[0]
        text = path.read_text()
        if kind == "body":
            path.write_text(text + f"\nA note added by the person at {time.time():.0f}.\n")
        elif kind == "complete":
            path.write_text(text.replace("status: pending", "status: complete", 1))
        else:
            subprocess.run(
                [sys.executable, "-m", "nexus", "retry", path.stem],
                cwd=self.h.root,
                capture_output=True,
            )
        return None

    def add(self) -> float | None:
        self.added += 1
        tid = f"p{self.added:05d}"
        path = self.h.root / "tasks" / "p" / f"{tid}.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(
            f"---\nid: {tid}\ntitle: Added by the person {self.added}\nengine: script\n"
            f"script: [{{sleep: 0.5}}, {{result: ok}}]\n---\nNew work.\n"
        )
        t0 = time.monotonic()
        rel = path.relative_to(self.h.root).as_posix()
        while time.monotonic() - t0 < 60:
            r = subprocess.run(
                ["git", "cat-file", "-e", f"HEAD:{rel}"], cwd=self.h.root, capture_output=True
            )
            if r.returncode == 0:
                return time.monotonic() - t0
            time.sleep(0.02)
        return None


def verdict(name: str, first: list[float], last: list[float], slack: float) -> str:
    a, b = statistics.mean(first), statistics.mean(last)
    grew = b - a > slack and b > a * 1.2
    return (
        f"{name}: first third {a:.1f}, last third {b:.1f} -> "
        f"{'GROWING (leak?)' if grew else 'flat'}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--every", type=float, default=20, help="seconds between samples")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="nexus-soak-"))
    h = crash.build(tmp, args.tasks, seed=args.seed, pause=(1.0, 3.0))
    person = Person(h, args.seed)
    daemon = crash.start_daemon(h)
    samples: list[Sample] = []
    t0 = time.monotonic()
    next_sample = t0 + 5  # after start-up
    pending: list[float] = []
    try:
        while time.monotonic() - t0 < args.minutes * 60:
            if daemon.poll() is not None:
                raise RuntimeError(f"the daemon exited ({daemon.returncode})")
            lat = person.edit()
            if lat is not None:
                pending.append(lat)
            if time.monotonic() >= next_sample:
                rss, fds, threads = proc_status(daemon.pid)
                samples.append(
                    Sample(time.monotonic() - t0, rss, fds, threads, crash.done_count(h), pending)
                )
                pending = []
                next_sample += args.every
            time.sleep(person.rng.uniform(0.2, 0.6))
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
    load = os.getloadavg()
    print(
        f"soak: {args.tasks} tasks + {person.added} added, {args.minutes:g} min, "
        f"person's edits {person.counts}, load average at the end {load[0]:.2f} "
        f"{load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"{'t (s)':>6} {'RSS MB':>7} {'fds':>4} {'threads':>7} {'done':>5} "
        f"{'edit→commit p50 ms':>19} {'max ms':>7}"
    )
    for s in samples:
        p50 = f"{statistics.median(s.latencies) * 1000:.0f}" if s.latencies else "-"
        mx = f"{max(s.latencies) * 1000:.0f}" if s.latencies else "-"
        print(f"{s.t:6.0f} {s.rss_mb:7.1f} {s.fds:4d} {s.threads:7d} {s.done:5d} {p50:>19} {mx:>7}")
    third = max(len(samples) // 3, 1)
    first, last = samples[:third], samples[-third:]
    lat_first = [x for s in first for x in s.latencies] or [0.0]
    lat_last = [x for s in last for x in s.latencies] or [0.0]
    lines = [
        verdict("RSS MB", [s.rss_mb for s in first], [s.rss_mb for s in last], 10),
        verdict("open fds", [s.fds for s in first], [s.fds for s in last], 5),
        verdict("threads", [s.threads for s in first], [s.threads for s in last], 5),
        verdict("edit→commit ms", [x * 1000 for x in lat_first], [x * 1000 for x in lat_last], 500),
    ]
    for line in lines:
        print(line)
    fsck = subprocess.run(
        ["git", "fsck", "--no-progress", "--no-dangling"],
        cwd=h.root,
        capture_output=True,
        text=True,
    )
    print("git fsck:", "clean" if not fsck.returncode and not fsck.stdout.strip() else fsck.stdout)
    print(f"daemon exit code after SIGTERM: {daemon.returncode}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if any("GROWING" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())

"""The machine's floor under each nexus operation, measured in the same workspace:

* `git commit` of one changed file (the cheapest possible state change), and of K new files
  (the cheapest possible "create K tasks");
* an inotify round trip: a tiny watcher process (watchdog, as `nexus watch` uses) is told about
  a file write; the clock stops when its event line arrives;
* reading every task file with no parsing, in a fresh `python -S` process (the least a Python
  CLI that answers from the files can do).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import git, objects_size

READ_ALL = """
import os, sys
n = 0
for folder, _, files in os.walk(sys.argv[1]):
    for f in files:
        with open(os.path.join(folder, f), "rb") as fh:
            n += len(fh.read())
print(n)
"""

WATCHER = """
import sys, time
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

class Echo(FileSystemEventHandler):
    def on_any_event(self, event):
        if not event.is_directory and event.event_type in ("modified", "created", "closed"):
            sys.stdout.write(event.src_path + "\\n")
            sys.stdout.flush()

observer = Observer()
observer.schedule(Echo(), sys.argv[1], recursive=True)
observer.start()
print("ready", flush=True)
sys.stdin.read()
observer.stop()
"""


def read_files(folder: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-S", "-c", READ_ALL, str(folder)], check=True, capture_output=True
        )
        times.append(time.perf_counter() - t)
    return times


def commit_one(root: Path, path: Path, runs: int) -> tuple[list[float], int]:
    """(times of `git commit` of one changed file, repo growth per commit in bytes).  `path`
    should be a task file that nothing else changes (a complete task): the commit then
    rewrites the same trees a nexus state change does (its shard, tasks/, the root)."""
    text = path.read_text()
    rel = str(path.relative_to(root))
    before = objects_size(root)
    times = []
    for k in range(runs):
        path.write_text(f"{text}\nfloor {k}\n")
        t = time.perf_counter()
        git(root, "commit", "-qm", f"floor {k}", "--no-verify", "--", rel)
        times.append(time.perf_counter() - t)
    return times, (objects_size(root) - before) // max(runs, 1)


def commit_many(root: Path, k: int, runs: int) -> list[float]:
    """`git add` + `git commit` of `k` new small files (the files are written untimed)."""
    times = []
    for r in range(runs):
        folder = root / "floor" / str(r)
        folder.mkdir(parents=True)
        for i in range(k):
            (folder / f"f{i}.md").write_text(f"---\ntitle: floor {r} {i}\n---\n")
        t = time.perf_counter()
        git(root, "add", "--", str(folder))
        git(root, "commit", "-qm", f"floor many {r}", "--no-verify")
        times.append(time.perf_counter() - t)
    return times


def inotify_round_trip(folder: Path, samples: int) -> list[float]:
    """Time from writing a file to a separate watcher process reporting the event."""
    target = folder / "floor-watch"
    target.mkdir(exist_ok=True)
    child = subprocess.Popen(
        [sys.executable, "-c", WATCHER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin and child.stdout
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the inotify watcher did not start")
        times = []
        for k in range(samples):
            path = target / f"f{k}.txt"
            t = time.perf_counter()
            path.write_text("x")
            while child.stdout.readline().rstrip("\n") != str(path):
                pass
            times.append(time.perf_counter() - t)
            time.sleep(0.02)  # let the close/modify events of this write drain
        return times
    finally:
        child.stdin.close()
        child.wait(timeout=10)

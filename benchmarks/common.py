"""Helpers shared by the benchmark scripts: building large workspaces fast, timing commands."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"

# Figures are for nexus as installed, byte-compiled: with PYTHONDONTWRITEBYTECODE set (some
# shells and CI images set it) every timed command would compile the modules changed since
# their last .pyc, ~50 ms at start-up.  The commands inherit this environment.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def nexus_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "nexus", *args]


def build_workspace(root: Path, n: int, seed: int = 7) -> list[str]:
    """A workspace of `n` tasks written straight to disk (as `nexus add` lays them out) and
    committed once.  A tenth are complete; the rest form chains and diamonds."""
    from nexus.scaffold import init

    rng = random.Random(seed)
    init(root, goal=f"benchmark with {n} tasks")
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        tid = "".join(rng.choice(ALPHABET) for _ in range(8))
        if tid not in seen:
            seen.add(tid)
            ids.append(tid)
    for i, tid in enumerate(ids):
        deps = [ids[j] for j in {i - 1, i - 7} if j >= 0 and i % 5] if i else []
        status = "complete" if i < n // 10 else "pending"
        folder = root / "tasks" / tid[0]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{tid}.md").write_text(
            f"---\nid: {tid}\ntitle: Benchmark task {i}\nkind: task\nstatus: {status}\n"
            f"size: M\nrole: code\ndeps: [{', '.join(deps)}]\ncreated: '2026-01-01T00:00:00Z'\n"
            f"---\nDescription of task {i}.\n"
        )
    git(root, "add", "-A")
    git(root, "commit", "-qm", "benchmark tasks", "--no-verify")
    # One reconcile so the workspace starts consistent (promotions committed).
    subprocess.run(nexus_argv("resume"), cwd=root, capture_output=True, check=True)
    return ids


def git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    return subprocess.run(
        ["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True
    ).stdout


def time_command(
    argv: Sequence[str],
    cwd: Path,
    runs: int,
    before: Callable[[], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> list[float]:
    out = []
    for _ in range(runs):
        if before:
            before()
        t = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True, env=env)
        out.append(time.perf_counter() - t)
    return out


def objects_size(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root / ".git" / "objects"):
        for f in files:
            total += os.path.getsize(os.path.join(folder, f))
    return total


def summary(samples: Sequence[float], unit: float = 1000.0) -> str:
    med = statistics.median(samples) * unit
    lo, hi = min(samples) * unit, max(samples) * unit
    return f"median {med:8.1f}  (min {lo:.1f}, max {hi:.1f}, n={len(samples)})"


def drop_caches(root: Path) -> None:
    """A cold run: nexus's own caches removed (as in a fresh clone: the parse cache, the
    problems kept for a digest, the settled fingerprint), and the kernel's page cache dropped
    when we are allowed to (root on Linux); otherwise only nexus's caches."""
    for name in ("cache.bin", "problems.bin", "settled"):
        (root / ".nexus" / name).unlink(missing_ok=True)
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass

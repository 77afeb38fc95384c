"""What checking a budget costs: reading the spending from a journal of N recorded runs cold
(no `.nexus/spend.json`: every commit read, as `nexus cost` does), warm (HEAD unchanged: one
`git rev-parse`) and after one more run (only the new commit read).

    python -m benchmarks.budgets [--commits 5000] [--runs 7]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import git, summary


def build_journal(root: Path, commits: int) -> None:
    """`commits` commits on top of the workspace's, each recording a $0.01 run of one of 50
    tasks (written with git fast-import: building them through the daemon would take hours)."""
    parent = git(root, "rev-parse", "HEAD").strip()
    branch = git(root, "symbolic-ref", "HEAD").strip()
    out = []
    for i in range(commits):
        msg = (
            f"nexus: run t{i % 50}\n\nNexus-Transition: t{i % 50} in_progress -> complete\n"
            "Nexus-Engine: script\nNexus-Cost-USD: 0.010000\nNexus-Tokens: 10/5\n"
            "Nexus-Actor: daemon\n"
        ).encode()
        data = f"run {i}\n".encode()
        out.append(
            f"commit {branch}\ncommitter N <n@example.com> {1700000000 + i} +0000\n".encode()
        )
        out.append(f"data {len(msg)}\n".encode() + msg)
        if i == 0:
            out.append(f"from {parent}\n".encode())
        out.append(f"M 100644 inline tasks/runs.txt\ndata {len(data)}\n".encode() + data)
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(out), check=True)
    git(root, "reset", "-q", "--hard", branch)


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    from nexus.scaffold import init
    from nexus.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        ws = init(Path(tmp) / "proj")
        build_journal(ws.root, args.commits)
        svc = Service(ws)
        cache = ws.runtime / "spend.json"

        def cold() -> None:
            cache.unlink(missing_ok=True)
            svc.spending()

        def one_more_run() -> None:
            runs = ws.root / "tasks" / "runs.txt"
            runs.write_text(runs.read_text() + "x\n")
            git(ws.root, "commit", "-qam", "nexus: x\n\nNexus-Cost-USD: 0.5\nNexus-Actor: daemon")

        def after_one_more_run() -> None:
            one_more_run()
            svc.spending()

        print(f"spending from a journal of {args.commits} recorded runs (seconds → ms)")
        print(f"  cold (every commit read)      {summary(timed(cold, max(3, args.runs // 2)))}")
        print(f"  warm (HEAD unchanged)         {summary(timed(svc.spending, args.runs))}")
        print(f"  one new run (commit + check)  {summary(timed(after_one_more_run, args.runs))}")
        print(f"  the commit alone              {summary(timed(one_more_run, args.runs))}")


if __name__ == "__main__":
    main()

"""Core figures for issue 2: list/status at 1,000 and 10,000 tasks (cold and warm), the cost
of one state change (file write + commit) in-process and through the CLI, repo growth per
state change, and `nexus --help` start-up.

    python -m benchmarks.core [--sizes 1000,10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    build_workspace,
    drop_caches,
    nexus_argv,
    objects_size,
    summary,
    time_command,
)


def state_change_in_process(root: Path, runs: int, synced: bool) -> tuple[list[float], int]:
    """Complete ready tasks through the service: write + commit (+ promotion).  With `synced`
    each change first syncs the workspace (what a CLI command does); without, it uses the
    caller's snapshot (what the daemon does between file events)."""
    from nexus.service import Service
    from nexus.store import Workspace
    from nexus.task import Status

    svc = Service(Workspace(root))
    snap = svc.snapshot()
    ready = [t.id for t in snap.tasks.values() if t.status is Status.READY]
    before = objects_size(root)
    times = []
    for tid in ready[:runs]:
        t = time.perf_counter()
        if synced:
            svc.set_status(tid, Status.COMPLETE, reason="benchmark")
        else:
            svc.mutate(
                lambda b, s, tid=tid: (b.move(tid, Status.COMPLETE, "benchmark"), "x")[1],
                snapshot=snap,
            )
            snap = svc.current()  # as the daemon does: it carries the dependency graph
        times.append(time.perf_counter() - t)
    return times, (objects_size(root) - before) // max(len(times), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nexus-bench-"))
    try:
        print(f"nexus --help start-up (ms): {summary(time_command(nexus_argv('--help'), tmp, 10))}")
        for n in (int(s) for s in args.sizes.split(",")):
            root = tmp / f"ws{n}"
            t = time.perf_counter()
            build_workspace(root, n)
            print(f"\n== {n} tasks (built in {time.perf_counter() - t:.1f}s)")
            for cmd in ("list", "status"):
                argv = nexus_argv(cmd, "--json")
                cold = time_command(argv, root, args.runs, before=lambda r=root: drop_caches(r))
                warm = time_command(argv, root, args.runs)
                print(f"{cmd:>6} --json cold (ms): {summary(cold)}")
                print(f"{cmd:>6} --json warm (ms): {summary(warm)}")
            runs = max(args.runs * 4, 20)
            times, growth = state_change_in_process(root, runs, synced=False)
            print(f"state change, daemon path (ms): {summary(times)}")
            print(f"repo growth per state change before gc: {growth / 1024:.1f} KB")
            times, _ = state_change_in_process(root, args.runs, synced=True)
            print(f"state change, synced first (ms): {summary(times)}")
            ready = [
                t["id"]
                for t in json.loads(
                    subprocess.run(
                        nexus_argv("list", "--status", "ready", "--json"),
                        cwd=root,
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                )
            ]
            cli = [
                time_command(nexus_argv("complete", tid), root, 1)[0] for tid in ready[: args.runs]
            ]
            print(f"state change, CLI `nexus complete` (ms): {summary(cli)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

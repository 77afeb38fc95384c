"""Side by side (issue 7): nexus against Backlog.md and against the machine's floor, on
workspaces of 100, 1,000 and 10,000 tasks, in one run.

    python -m benchmarks [--sizes 100,1000,10000] [--runs 5] [--many 1000] [--loop L]
                         [--out DIR] [--plots DIR] [--no-backlog] [--quick]

--quick is the CI mode: 100 tasks, one run, every operation once (K = 10 creates).
--loop L times a CLI loop of L creates and scales it to K (default L = K).
Prints a markdown table and the operations that grow worse than linearly or sit more than
3x above their floor; writes benchmarks.json and two PNGs into --out (PNGs into --plots).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import backlog, daemon, floor, report
from benchmarks.common import build_workspace, git, nexus_argv, objects_size, time_command
from nexus import warm


def log(message: str) -> None:
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"[{time.strftime('%H:%M:%S')} load {load}] {message}", file=sys.stderr, flush=True)


def listed(root: Path, status: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        nexus_argv("list", "--status", status, "--json"),
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    tasks: list[dict[str, Any]] = json.loads(out)
    return tasks


def plan_text(name: str, k: int) -> str:
    lines = [f"kind: plan\ngoal: benchmark plan {name}\ntasks:"]
    for i in range(k):
        deps = f"\n    deps: [{name}-{i - 1}]" if i % 5 else ""
        lines.append(
            f"  - key: {name}-{i}\n    title: Planned task {i}\n    size: M\n    role: code{deps}"
        )
    return "\n".join(lines) + "\n"


def measure_nexus(rec: report.Record, root: Path, n: int, runs: int) -> list[float]:
    """list, status, state change + growth, create one.  Returns the commit floor's times."""
    for cmd in ("list", "status"):
        argv = nexus_argv(cmd, "--json")
        time_command(argv, root, 1)  # warm nexus's cache and the page cache
        rec.add(cmd, n, "nexus", time_command(argv, root, runs))
    read = floor.read_files(root / "tasks", runs)
    rec.add("list", n, "floor", read)
    rec.add("status", n, "floor", read)

    changes = [t["id"] for t in listed(root, "ready")][: max(runs, 1 if runs == 1 else 10)]
    git(root, "gc", "-q")
    packed = objects_size(root)
    times = [time_command(nexus_argv("complete", tid), root, 1)[0] for tid in changes]
    rec.add("state_change", n, "nexus", times)
    rec.add("growth_before_gc", n, "nexus", [(objects_size(root) - packed) / len(changes)])
    git(root, "gc", "-q")
    rec.add("growth_after_gc", n, "nexus", [(objects_size(root) - packed) / len(changes)])

    rec.add(
        "create_one",
        n,
        "nexus",
        [time_command(nexus_argv("add", f"One more task {k}"), root, 1)[0] for k in range(runs)],
    )
    done = listed(root, "complete")[0]["path"]
    commits, growth = floor.commit_one(root, root / done, runs)
    rec.add("create_one", n, "floor", commits)
    rec.add("state_change", n, "floor", commits)
    rec.add("growth_before_gc", n, "floor", [growth])
    return commits


def measure_warm(rec: report.Record, root: Path, n: int, runs: int, k: int, loop: int) -> None:
    """list, status, state change, create one and the CLI loop again while `nexus watch` runs:
    served by its warm process (nexus/warm.py).  The daemon reacts to each change as it
    would to a person's; a pause between single commands lets it finish, as a person's typing
    would (the loop has none)."""
    env = {**os.environ, "NEXUS_WARM": "require"}
    watch = subprocess.Popen(
        nexus_argv("watch", "-q"),
        cwd=root,
        env={**os.environ, "PATH": path_without_claude()},  # agents must not really run
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def pause() -> None:
        time.sleep(0.3)

    try:
        socket = warm.socket_path(str(root))
        deadline = time.monotonic() + 120
        while not os.path.exists(socket):
            if time.monotonic() > deadline or watch.poll() is not None:
                raise RuntimeError(f"`nexus watch` started no warm server in {root}")
            time.sleep(0.05)
        time.sleep(2.0)  # its first sync
        for cmd in ("list", "status"):
            argv = nexus_argv(cmd, "--json")
            time_command(argv, root, 1, env=env)
            rec.add(cmd, n, "warm", time_command(argv, root, runs, pause, env))
        changes = [t["id"] for t in listed(root, "ready")][: max(runs, 1 if runs == 1 else 10)]
        times = [time_command(nexus_argv("complete", t), root, 1, pause, env)[0] for t in changes]
        rec.add("state_change", n, "warm", times)
        creates = [
            time_command(nexus_argv("add", f"Served task {k}"), root, 1, pause, env)[0]
            for k in range(runs)
        ]
        rec.add("create_one", n, "warm", creates)
        t = time.perf_counter()
        for i in range(loop):  # a script's loop: no pauses
            subprocess.run(nexus_argv("add", f"Served loop {i}"), cwd=root, env=env, check=True,
                           capture_output=True)  # fmt: skip
        rec.add("create_many_cli", n, "warm", [(time.perf_counter() - t) * k / loop])
    finally:
        watch.terminate()
        watch.wait(timeout=60)


def path_without_claude() -> str:
    folders = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(f for f in folders if not os.path.exists(os.path.join(f, "claude")))


def measure_daemon(rec: report.Record, root: Path, n: int, runs: int, commits: list[float]) -> None:
    rtt = floor.inotify_round_trip(root, max(runs * 4, 3))
    samples = min(max(runs * 8, 2), n // 2)
    rec.add("editor_save", n, "nexus", daemon.latency(samples, n))
    rec.add("editor_save", n, "floor", [statistics.median(rtt) + c for c in commits])
    ms, peak = daemon.overhead(n)
    rec.add("overhead", n, "nexus", [ms / 1000])
    rec.add("memory_peak", n, "nexus", [peak])
    rec.add("memory_idle", n, "nexus", [daemon.idle_memory(n)])


def measure_many(
    rec: report.Record, root: Path, n: int, runs: int, k: int, loop: int, commits: list[float]
) -> None:
    """Create K tasks by a CLI loop (L creates, scaled to K), then by plan approvals; last,
    as they grow the workspace."""
    t = time.perf_counter()
    for i in range(loop):
        subprocess.run(
            nexus_argv("add", f"Looped task {i}"), cwd=root, check=True, capture_output=True
        )
    rec.add("create_many_cli", n, "nexus", [(time.perf_counter() - t) * k / loop])
    approvals = min(runs, 3)
    times = []
    for r in range(approvals):
        plan = root / "plans" / f"bench-{r}.yaml"
        plan.parent.mkdir(exist_ok=True)
        plan.write_text(plan_text(f"p{r}", k))
        times += time_command(nexus_argv("approve", str(plan.relative_to(root))), root, 1)
    rec.add("create_many_plan", n, "nexus", times)
    rec.add("create_many_plan", n, "floor", floor.commit_many(root, k, approvals))
    # A loop of K processes can do no better than K one-file commits.
    rec.add("create_many_cli", n, "floor", [k * statistics.median(commits)])


def measure_backlog(rec: report.Record, tmp: Path, n: int, runs: int, binary: Path) -> None:
    root = tmp / f"backlog{n}"
    env = backlog.environment(tmp / "backlog-home")
    backlog.prepare(root, binary, env)
    ids = backlog.write_tasks(root, n)
    # Under heavy load Backlog.md 1.52 once listed 9,859 of 10,000 files (all on a retry).
    seen = [backlog.listed(root, binary, env) for _ in range(3)]
    if max(seen) != n:
        raise RuntimeError(f"Backlog.md lists {max(seen)} of the {n} task files written for it")
    if min(seen) != n:
        rec.meta.setdefault("warnings", []).append(f"Backlog.md listed {seen} of {n} tasks")
    argv = backlog.argv(binary, "task", "list", "--json")
    time_command(argv, root, 1, env=env)
    rec.add("list", n, "backlog", time_command(argv, root, runs, env=env))
    creates = [
        time_command(
            backlog.argv(binary, "task", "create", f"One more task {k}", "--plain"),
            root, 1, env=env,
        )[0]
        for k in range(runs)
    ]  # fmt: skip
    rec.add("create_one", n, "backlog", creates)
    todo = ids[n // 10 : n // 10 + runs]
    edits = [
        time_command(
            backlog.argv(binary, "task", "edit", tid, "-s", "Done", "--plain"), root, 1, env=env
        )[0]
        for tid in todo
    ]
    rec.add("state_change", n, "backlog", edits)


def versions() -> dict[str, str]:
    gitv = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return {"python": platform.python_version(), "git": gitv, "machine": platform.machine()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--many", type=int, default=1000, help="K: tasks created in bulk")
    ap.add_argument("--loop", type=int, help="L: creates timed in the CLI loop (default K)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    ap.add_argument("--plots", type=Path, help="folder for the PNGs (default: --out)")
    ap.add_argument("--no-backlog", action="store_true", help="nexus and floors only")
    ap.add_argument("--quick", action="store_true", help="CI: 100 tasks, one run, K = 10")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.runs, args.many = "100", 1, 10
    args.loop = min(args.loop or args.many, args.many)
    sizes = [int(s) for s in args.sizes.split(",")]
    binary = None if args.no_backlog else backlog.install()
    rec = report.Record(
        {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
            "sizes": sizes,
            "runs": args.runs,
            "many": args.many,
            "loop": args.loop,
            "cpus": os.cpu_count(),
            "backlog": None if binary is None else backlog.VERSION,
            "load": [],
            **versions(),
        }
    )
    tmp = Path(tempfile.mkdtemp(prefix="nexus-side-"))
    try:
        for n in sizes:
            rec.meta["load"].append({"tasks": n, "start": list(os.getloadavg())})
            root = tmp / f"ws{n}"
            log(f"{n} tasks: building the workspace")
            build_workspace(root, n)
            log(f"{n} tasks: list, status, state change, create one, floors")
            commits = measure_nexus(rec, root, n, args.runs)
            log(f"{n} tasks: the same, served by `nexus watch`")
            measure_warm(rec, root, n, args.runs, args.many, args.loop)
            log(f"{n} tasks: daemon (editor save, overhead, memory)")
            measure_daemon(rec, root, n, args.runs, commits)
            if binary is not None:
                log(f"{n} tasks: Backlog.md {backlog.VERSION}")
                measure_backlog(rec, tmp, n, args.runs, binary)
            log(f"{n} tasks: create {args.many} (CLI loop, plan approval)")
            measure_many(rec, root, n, args.runs, args.many, args.loop, commits)
            rec.meta["load"][-1]["end"] = list(os.getloadavg())
            rec.save(args.out)  # a long run cut short keeps what it measured
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    saved = rec.save(args.out)
    pngs = report.plot(rec, args.plots or args.out)
    print(report.summary(rec))
    print(f"wrote {saved} and {', '.join(str(p) for p in pngs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Daemon figures for issue 3.

* latency from a person saving a task file (a dep set complete) to the dependent being
  committed as ready, under `nexus watch`, on a 1,000-task workspace (p50, p95);
* orchestration overhead per task: `script` agents that do nothing, 8 workers, 1,000 and
  10,000 tasks (wall time / tasks);
* daemon memory (RSS) at 10,000 tasks.

    python -m benchmarks.daemon [--latency-samples 40] [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import git


def make_workspace(root: Path, n: int, runnable: bool) -> None:
    """`n` independent tasks.  runnable: no-op script agents; otherwise XL tasks (never run),
    in pairs where the second depends on the first."""
    from nexus.scaffold import init

    init(root, goal="daemon benchmark")
    for i in range(n):
        tid = f"t{i:05d}"
        folder = root / "tasks" / tid[-1]
        folder.mkdir(parents=True, exist_ok=True)
        if runnable:
            extra = "engine: script\nscript: [{result: ok}]\n"
            deps = ""
        else:
            extra = "size: XL\n"
            deps = f"deps: [t{i - 1:05d}]\n" if i % 2 else ""
        status = "ready" if not deps else "pending"
        (folder / f"{tid}.md").write_text(
            f"---\nid: {tid}\ntitle: Task {i}\nstatus: {status}\n{deps}{extra}---\n"
        )
    git(root, "add", "-A")
    git(root, "commit", "-qm", "tasks", "--no-verify")


def start_daemon(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "nexus", "watch", "-q", *args],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_until(cond, timeout: float = 60.0, step: float = 0.0005) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if cond():
            return time.perf_counter()
        time.sleep(step)
    raise TimeoutError("condition not met")


def latency(samples: int, n: int = 1000) -> list[float]:
    tmp = Path(tempfile.mkdtemp(prefix="nexus-lat-"))
    root = tmp / "ws"
    make_workspace(root, n, runnable=False)
    daemon = start_daemon(root)
    reflog = root / ".git" / "logs" / "HEAD"
    try:
        wait_until(lambda: (root / ".nexus" / "daemon.owner").exists())
        time.sleep(1.0)  # let the first full sync settle
        out = []
        for k in range(samples):
            a, b = f"t{2 * k:05d}", f"t{2 * k + 1:05d}"
            path = root / "tasks" / a[-1] / f"{a}.md"
            text = path.read_text().replace("status: ready", "status: complete")
            t0 = time.perf_counter()
            path.write_text(text)  # a person saves in an editor
            t1 = wait_until(lambda b=b: f"promote {b}" in reflog.read_text()[-4000:])
            out.append(t1 - t0)
            time.sleep(0.05)
        return out
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def overhead(n: int, workers: int = 8) -> tuple[float, float]:
    """(ms per task, peak RSS in MB) for `n` no-op tasks."""
    tmp = Path(tempfile.mkdtemp(prefix="nexus-ovh-"))
    root = tmp / "ws"
    make_workspace(root, n, runnable=True)
    try:
        t0 = time.perf_counter()
        daemon = start_daemon(root, "--until-idle", "--workers", str(workers))
        peak = 0.0
        while daemon.poll() is None:
            peak = max(peak, rss_mb(daemon.pid)) if os.path.exists(f"/proc/{daemon.pid}") else peak
            time.sleep(0.2)
        elapsed = time.perf_counter() - t0
        if daemon.returncode != 0:
            raise RuntimeError(f"nexus watch exited {daemon.returncode}")
        return elapsed / n * 1000, peak
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def idle_memory(n: int) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="nexus-mem-"))
    root = tmp / "ws"
    make_workspace(root, n, runnable=False)
    daemon = start_daemon(root)
    try:
        wait_until(lambda: (root / ".nexus" / "daemon.owner").exists())
        time.sleep(3)
        return rss_mb(daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latency-samples", type=int, default=40)
    ap.add_argument("--sizes", default="1000,10000")
    args = ap.parse_args()
    lat = sorted(latency(args.latency_samples))
    p95 = lat[max(int(len(lat) * 0.95) - 1, 0)]
    print(
        f"editor save -> dependent committed ready, 1000 tasks: p50 "
        f"{statistics.median(lat) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {lat[-1] * 1000:.0f} ms (n={len(lat)})"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        ms, peak = overhead(n)
        print(
            f"orchestration overhead, {n} no-op tasks, 8 workers: {ms:.1f} ms/task "
            f"(peak RSS {peak:.0f} MB)"
        )
    print(f"daemon RSS idle at 10000 tasks: {idle_memory(10000):.0f} MB")


if __name__ == "__main__":
    main()

"""Figures of the side-by-side run: the JSON record, a markdown table, the growth/floor flags
and the log-log plots (matplotlib, imported only here)."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYSTEMS = ("nexus", "warm", "backlog", "floor")
NAMES = {
    "nexus": "nexus",
    "warm": "nexus, watch running",  # commands served by `nexus watch`'s warm process
    "backlog": "Backlog.md",
    "floor": "floor",
}


@dataclass(frozen=True)
class Op:
    key: str
    label: str
    unit: str  # "s", "bytes" or "MB"
    floor: str = ""  # what the floor is, when there is one


OPS = (
    Op("list", "list all tasks (`list --json`)", "s", "read every task file, no parsing"),
    Op("status", "status of all tasks (`status --json`)", "s", "read every task file, no parsing"),
    Op("create_one", "create one task (CLI)", "s", "`git commit` of one changed file"),
    Op("create_many_cli", "create K tasks, CLI loop", "s", "K × `git commit` of one file"),
    Op("create_many_plan", "create K tasks, one plan approval", "s",
       "`git add` + `git commit` of K files"),
    Op("state_change", "state change (complete a task) incl. its commit", "s",
       "`git commit` of one changed file"),
    Op("editor_save", "editor save → dependent ready and committed (`nexus watch`)", "s",
       "inotify round trip + `git commit` of one file"),
    Op("overhead", "orchestration overhead per task (8 workers, no-op agents)", "s"),
    Op("growth_before_gc", "repo growth per state change, before `git gc`", "bytes",
       "growth per `git commit` of one changed file"),
    Op("growth_after_gc", "repo growth per state change, after `git gc`", "bytes"),
    Op("memory_idle", "daemon RSS, idle", "MB"),
    Op("memory_peak", "daemon RSS, peak during the overhead run", "MB"),
)  # fmt: skip
BY_KEY = {op.key: op for op in OPS}


def stats(samples: Sequence[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
        "samples": list(samples),
    }


class Record:
    """Every figure of one run, keyed op → size → system."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta
        self.ops: dict[str, dict[str, dict[str, Any]]] = {op.key: {} for op in OPS}

    def add(self, op: str, size: int, system: str, samples: Sequence[float]) -> None:
        if op not in BY_KEY or system not in SYSTEMS or not samples:
            raise ValueError(f"bad figure: {op} {system} {samples!r}")
        self.ops[op].setdefault(str(size), {})[system] = stats(samples)

    def median(self, op: str, size: int, system: str) -> float | None:
        cell = self.ops[op].get(str(size), {}).get(system)
        return None if cell is None else float(cell["median"])

    def as_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "ops": self.ops}

    @classmethod
    def load(cls, path: Path) -> Record:
        data = json.loads(path.read_text())
        rec = cls(data["meta"])
        rec.ops.update(data["ops"])
        return rec

    def save(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "benchmarks.json"
        path.write_text(json.dumps(self.as_json(), indent=1) + "\n")
        return path


def fmt(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value / 1024:.1f} KB"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def cell(rec: Record, op: Op, size: int, system: str) -> str:
    c = rec.ops[op.key].get(str(size), {}).get(system)
    if c is None:
        return "–"
    text = fmt(c["median"], op.unit)
    if c["n"] > 1:
        text += f" ({fmt(c['min'], op.unit)}–{fmt(c['max'], op.unit)})"
    return text


def ratio(rec: Record, op: str, size: int, other: str, mine_: str = "nexus") -> str:
    mine, theirs = rec.median(op, size, mine_), rec.median(op, size, other)
    if mine is None or not theirs:
        return "–"
    return f"{mine / theirs:.2f}"


def label(op: Op, meta: dict[str, Any]) -> str:
    text = op.label.replace("K", f"{meta['many']:,}")
    if op.key == "create_many_cli" and meta.get("loop", meta["many"]) != meta["many"]:
        text += f" ({meta['loop']:,} timed, scaled)"
    return text


def markdown(rec: Record) -> str:
    sizes = rec.meta["sizes"]
    lines = [
        "| operation | tasks | nexus | nexus, watch running | Backlog.md | floor "
        "| nexus / Backlog.md | watch running / Backlog.md | nexus / floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for op in OPS:
        name = label(op, rec.meta)
        for size in sizes:
            if str(size) not in rec.ops[op.key]:
                continue
            cells = [cell(rec, op, size, system) for system in SYSTEMS]
            ratios = [
                ratio(rec, op.key, size, "backlog"),
                ratio(rec, op.key, size, "backlog", "warm"),
                ratio(rec, op.key, size, "floor"),
            ]
            lines.append(f"| {name} | {size:,} | {' | '.join(cells + ratios)} |")
            name = "″"
    return "\n".join(lines)


def flags(rec: Record) -> list[str]:
    """Operations that grow worse than linearly (slope > 1.15 on log-log between two sizes)
    or sit more than 3× above their floor at the largest size."""
    out = []
    sizes = sorted(rec.meta["sizes"])
    for op in OPS:
        for a, b in itertools.pairwise(sizes):
            ta, tb = rec.median(op.key, a, "nexus"), rec.median(op.key, b, "nexus")
            if ta and tb and a != b:
                slope = math.log(tb / ta) / math.log(b / a)
                if slope > 1.15:
                    out.append(f"{op.key}: grows as n^{slope:.2f} from {a} to {b} tasks")
        r = ratio(rec, op.key, sizes[-1], "floor")
        if r != "–" and float(r) > 3:
            out.append(f"{op.key}: {r}× its floor at {sizes[-1]} tasks")
    return out


def plot(rec: Record, out: Path, prefix: str = "bench") -> list[Path]:
    """Two PNGs (times; space and memory): each operation against task count, log-log,
    nexus vs Backlog.md vs floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    groups = {
        f"{prefix}_times.png": [op for op in OPS if op.unit == "s"],
        f"{prefix}_space.png": [op for op in OPS if op.unit != "s"],
    }
    styles = {
        "nexus": ("o-", "C0"),
        "warm": ("D-", "C2"),
        "backlog": ("s--", "C3"),
        "floor": ("^:", "C7"),
    }
    scale = {"s": 1000.0, "bytes": 1 / 1024, "MB": 1.0}
    ylabel = {"s": "ms", "bytes": "KB", "MB": "MB"}
    written = []
    for name, ops in groups.items():
        cols = 4 if len(ops) > 4 else 2
        rows = math.ceil(len(ops) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
        for ax, op in zip(axes.flat, ops, strict=False):
            for system in SYSTEMS:
                pts = sorted(
                    (int(size), cells[system]["median"] * scale[op.unit])
                    for size, cells in rec.ops[op.key].items()
                    if system in cells
                )
                if pts:
                    fmt_, color = styles[system]
                    ax.plot(*zip(*pts, strict=True), fmt_, color=color, label=NAMES[system])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(label(op, rec.meta), fontsize=8, wrap=True)
            ax.set_xlabel("tasks in the workspace", fontsize=8)
            ax.set_ylabel(ylabel[op.unit], fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(ops) :]:
            ax.axis("off")
        fig.suptitle(f"nexus side by side ({rec.meta.get('date', '')})", fontsize=10)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def summary(rec: Record) -> str:
    found = flags(rec) or ["no operation grows worse than linearly or sits > 3x above its floor"]
    loads = "; ".join(
        f"{x['tasks']:,} tasks: {'/'.join(f'{v:.1f}' for v in x['start'])}"
        + (f" → {'/'.join(f'{v:.1f}' for v in x['end'])}" if "end" in x else "")
        for x in rec.meta["load"]
    )
    return "\n".join(
        [markdown(rec), "", *(f"* {line}" for line in found), "",
         f"load average (1/5/15 min) at start → end of each size: {loads}"]
    )  # fmt: skip


if __name__ == "__main__":
    import sys

    # Re-render a saved run: python -m benchmarks.report OUT/benchmarks.json [PLOTS_DIR]
    record = Record.load(Path(sys.argv[1]))
    print(summary(record))
    if len(sys.argv) > 2:
        plot(record, Path(sys.argv[2]))

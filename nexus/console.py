"""The console sink: a person's view of what the daemon does, one line per thing that happened.

Works the same in a terminal, over SSH and in a log file (no cursor tricks); colours only on a
terminal.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO

from nexus.events import Event

ICONS = {"complete": "✓", "failed": "✗", "ready": "↺", "cancelled": "–"}


class ConsoleSink:
    def __init__(self, out: IO[str] | None = None, verbose: bool = False) -> None:
        self.out = out or sys.stderr
        self.verbose = verbose
        self.color = hasattr(self.out, "isatty") and self.out.isatty()
        self._last_progress: tuple[int, int, int, float, int] | None = None
        self._lock = threading.Lock()

    def _say(self, text: str, color: str | None = None) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self.color and color:
            import click

            text = click.style(text, fg=color)
        with self._lock:
            print(f"{stamp} {text}", file=self.out, flush=True)

    def __call__(self, e: Event) -> None:
        d = e.data
        if e.kind == "agent_started":
            who = " · ".join(str(x) for x in (d.get("role"), d.get("engine"), d.get("model")) if x)
            again = f" · attempt {d.get('attempt')}" if (d.get("attempt") or 1) > 1 else ""
            resume = " · resuming session" if d.get("session") else ""
            self._say(f"▶ {e.task} {d.get('title', '')} [{who}{again}{resume}]", "cyan")
        elif e.kind == "agent_finished":
            status = str(d.get("status"))
            cost = f" ${d['cost_usd']:.4f}" if d.get("cost_usd") else ""
            why = f" — {d['reason']}" if d.get("reason") and status != "complete" else ""
            color = "green" if status == "complete" else "red" if status == "failed" else "yellow"
            icon = ICONS.get(status, "•")
            self._say(f"{icon} {e.task} {status} in {d.get('duration', 0):.1f}s{cost}{why}", color)
        elif (
            e.kind == "transition"
            and d.get("dst") in ("ready", "pending", "cancelled")
            and d.get("src") not in ("in_progress", "assigned")
        ):
            self._say(f"  {e.task}: {d.get('src')} → {d.get('dst')} ({d.get('reason')})")
        elif e.kind == "message":
            self._say(f"✉ {d.get('frm')} → {d.get('to')} ({d.get('type')})")
        elif e.kind == "agent_output" and self.verbose:
            self._say(f"  {e.task} │ {d.get('line', '')}")
        elif e.kind == "daemon":
            state = d.get("state")
            if state == "started":
                self._say(f"nexus watch: {d.get('workers')} workers (pid {d.get('pid')})")
            elif state in ("stopping", "error", "warning", "cancel", "recovering", "paused"):
                msg = d.get("message") or f"{d.get('running', 0)} agent(s) still running"
                self._say(f"{state}: {msg}", "yellow" if state != "error" else "red")
            elif state == "resumed":
                self._say(f"resumed: {d.get('message')}", "green")
        elif e.kind == "progress":
            running = d.get("running") or []
            key = (d.get("done", 0), d.get("total", 0), len(running), d.get("cost_usd", 0.0),
                   d.get("paused_by_budget", 0))  # fmt: skip
            if key != self._last_progress:
                self._last_progress = key
                cost = f" · ${key[3]:.4f}" if key[3] else ""
                held = f" · {key[4]} paused by budget" if key[4] else ""
                self._say(f"[{key[0]}/{key[1]} complete · {key[2]} running{cost}{held}]")

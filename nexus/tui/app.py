"""`nexus dashboard`: the live full-screen view of a workspace, drawn with Textual.

Shell.  Every `interval` seconds a worker thread asks `Source.look` whether anything moved
(a file edited, a commit, the daemon's published state); only then is the board rebuilt
(counts, running agents, the journal's recent transitions, costs, budgets) and redrawn.  The
running agents' elapsed times tick every second without touching the disk.

Read-only: it never writes a task file or commits; the daemon (or the next command) does that.
Keys: `q` or Ctrl-C quits (Textual restores the terminal), `r` looks again at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Footer, Static

from nexus.cli.render import COLOR, log_lines, rich_bar, running_rich
from nexus.errors import NexusError
from nexus.service import status_counts
from nexus.tui.view import COLUMNS, Board, Column, columns
from nexus.watcher import Wake, Watcher

if TYPE_CHECKING:
    from nexus.service import Service

RECENT = 10  # journal commits read for "recent transitions" (5 lines are shown)


class Source:
    """Builds the board from the workspace, and tells cheaply when there is nothing new: a
    watchdog observer flags edited files (task files, agents, nexus.yaml, scratchpads; as the
    daemon's watcher does), and each look stats git's HEAD and reflog and reads the daemon's
    small state file.  Only when one of them moved are the task files scanned again."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.watcher = Watcher(svc.ws.root, Wake())  # nothing sleeps on it: looks are polled
        self._quick: tuple[str, str] | None = None
        self._journal: tuple[str, list[str], dict[str, Any]] | None = None

    def start(self) -> None:
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()

    def look(self, force: bool = False) -> Board | None:
        """A new board, or None when nothing changed since the last look."""
        svc = self.svc
        daemon = svc.daemon_state()
        git = _stats(svc.repo.git_dir, ("HEAD", "logs/HEAD", "packed-refs"))
        quick = (repr(sorted(daemon.items())) if daemon else "", git)
        edited = self.watcher.foreign_changes()
        if not (force or edited or quick != self._quick):
            return None
        self._quick = quick
        svc.ws.reload_config()  # nexus.yaml may be what changed (a raised budget, a new name)
        snap = svc.snapshot()
        if force or self._journal is None or self._journal[0] != git:
            recent = log_lines(svc.log(extra=[f"--max-count={RECENT}"]))
            self._journal = (git, recent, svc.cost(by=["role"]))
        counts, progress = status_counts(snap.tasks)
        return Board(
            name=svc.ws.config.name,
            goal=svc.ws.config.goal,
            counts=counts,
            progress=progress,
            columns=columns(snap.tasks),
            agents=svc.running_agents(daemon, snap),
            daemon=daemon,
            recent=self._journal[1],
            cost=self._journal[2],
            budget=svc.budget(snap).to_json(),
            broken=[e.path for e in snap.broken],
        )


def _stats(folder: Path, names: tuple[str, ...]) -> str:
    out = []
    for name in names:
        try:
            st = (folder / name).stat()
        except OSError:
            continue
        out.append(f"{name}:{st.st_mtime_ns},{st.st_size},{st.st_ino}")
    return " ".join(out)


class Dashboard(App[int]):
    TITLE = "nexus dashboard"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("r", "look_again", "look again"),
    ]
    CSS = """
    #head { height: auto; padding: 0 1; }
    #banner { height: auto; padding: 0 1; background: $error; color: $text; display: none; }
    #banner.shown { display: block; }
    #board { height: 1fr; min-height: 6; }
    .column { width: 1fr; height: 100%; border: round $primary-darken-1; padding: 0 1; }
    #lower { height: auto; max-height: 12; }
    #agents { width: 3fr; height: auto; border: round $primary-darken-1; padding: 0 1; }
    #cost { width: 2fr; height: auto; border: round $primary-darken-1; padding: 0 1; }
    #recent { height: auto; max-height: 7; border: round $primary-darken-1; padding: 0 1; }
    """

    def __init__(self, source: Source, interval: float, now: Callable[[], Any]) -> None:
        super().__init__()
        self.source = source
        self.interval = interval
        self.now = now
        self.board: Board | None = None
        self._looking = False
        self._rested = 0.0  # monotonic time before which no periodic look starts

    def compose(self) -> ComposeResult:
        yield Static(id="head")
        yield Static(id="banner")
        with Horizontal(id="board"):
            for status in COLUMNS:
                yield Static(id=f"col-{status}", classes="column")
        with Horizontal(id="lower"):
            yield Static(id="agents")
            yield Static(id="cost")
        yield Static(id="recent")
        yield Footer()

    async def on_mount(self) -> None:
        for widget_id, title in (("agents", "agents"), ("cost", "cost"), ("recent", "recent")):
            self.query_one(f"#{widget_id}", Static).border_title = title
        await self.look(force=True)
        self.set_interval(self.interval, self.look)
        self.set_interval(1.0, self.tick)

    async def action_look_again(self) -> None:
        await self.look(force=True)

    async def look(self, force: bool = False) -> None:
        # One look at a time, and after a slow one (a large workspace that keeps changing)
        # a pause as long as it took: the dashboard never takes more than half a core.
        if self._looking or (not force and time.monotonic() < self._rested):
            return
        self._looking = True
        began = time.monotonic()
        try:
            board = await asyncio.to_thread(self.source.look, force)
        except (NexusError, OSError) as exc:
            self.show_banner(f"cannot read the workspace: {exc}")
            return
        finally:
            self._looking = False
            self._rested = 2 * time.monotonic() - began
        if board is not None:
            self.draw(board)

    def tick(self) -> None:
        if self.board is not None and self.board.agents:
            self.query_one("#agents", Static).update(self.agents_view(self.board))

    def show_banner(self, text: str | None) -> None:
        banner = self.query_one("#banner", Static)
        banner.set_class(text is not None, "shown")
        banner.update(text or "")

    def draw(self, board: Board) -> None:
        self.board = board
        self.query_one("#head", Static).update(head_view(board))
        self.show_banner(board.budget_banner)
        for column in board.columns:
            widget = self.query_one(f"#col-{column.status}", Static)
            # The count first: on a narrow terminal the name is what gets cut ("3 in pro…").
            widget.border_title = f"{column.count} {column.title}"
            widget.update(column_view(column))
        self.query_one("#agents", Static).update(self.agents_view(board))
        self.query_one("#cost", Static).update(cost_view(board.cost))
        self.query_one("#recent", Static).update(
            Text("\n".join(board.recent[:5]) or "no transitions yet", no_wrap=True)
        )

    def agents_view(self, board: Board) -> Any:
        return running_rich(board.agents, board.daemon, self.now())


def head_view(board: Board) -> Text:
    daemon = ("● nexus watch is running", "green") if board.daemon else ("○ no nexus watch", "dim")
    text = Text.assemble(
        (board.name, "bold"),
        (f" — {board.goal}" if board.goal else "", ""),
        "   ",
        daemon,
        "\n",
        rich_bar(board.progress, 30),
        f" {board.progress * 100:.0f}%  {board.counts.get('complete', 0)}/{board.total} complete",
    )
    if board.broken:
        text.append(f"   {len(board.broken)} file(s) could not be read: ", "red")
        text.append(", ".join(board.broken[:3]), "red")
    return text


def column_view(column: Column) -> Group:
    """Cards as on the web page: the title, then id · role · size."""
    color = COLOR.get(column.status, "")
    lines = []
    for t in column.cards:
        meta = " · ".join(x for x in (t.role, str(t.size)) if x)
        lines.append(Text(t.title, no_wrap=True, overflow="ellipsis"))
        lines.append(Text.assemble((t.id, color), (f" {meta}", "dim"), no_wrap=True))
    if column.more:
        lines.append(Text(f"+{column.more} more", "dim"))
    return Group(*lines)


def cost_view(cost: Any) -> Text:
    if not cost.get("runs"):
        return Text("no run has recorded a cost yet", "dim")
    text = Text(f"total ${cost['usd']:.4f}  ({cost['runs']} runs)\n", "bold")
    for row in cost.get("by", {}).get("role", [])[:6]:
        text.append(f"{row['key']:<10} ${row['usd']:.4f}  {row['runs']} runs\n")
    text.rstrip()
    return text


def run(svc: Service, interval: float) -> int:
    """Run the dashboard until the person quits; the exit code."""
    source = Source(svc)
    source.start()
    try:
        app = Dashboard(source, interval, svc.now)
        app.run(mouse=False)
    finally:
        source.stop()
    return app.return_code or 0

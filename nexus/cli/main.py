"""The `nexus` command: the group, global options and exit codes.

Exit codes: 0 ok, 1 nexus error (a message saying what to do, no traceback), 2 usage error,
3 unexpected error (a crash log is written and its path printed), 130 interrupted.

Only click is imported at start-up; each command imports what it needs when it runs, so
`nexus --help` stays fast.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class LazyGroup(click.Group):
    """Commands live in submodules that are imported only when listed or run."""

    modules = (
        "nexus.cli.tasks",
        "nexus.cli.messages",
        "nexus.cli.agents",
        "nexus.cli.run",
        "nexus.cli.plan",
        "nexus.cli.mcp",
        "nexus.cli.web",
        "nexus.cli.history",
        "nexus.cli.dashboard",
    )

    def _load(self) -> None:
        if getattr(self, "_loaded", False):
            return
        import importlib

        for name in self.modules:
            importlib.import_module(name)
        self._loaded = True

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        # Import modules in order only until the command turns up: `nexus list` should not
        # pay for importing the web, MCP and planning commands (~30 ms).
        import importlib

        for name in self.modules:
            if cmd_name in self.commands:
                break
            importlib.import_module(name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--workspace",
    metavar="DIR",
    envvar="NEXUS_WORKSPACE",
    help="Workspace to use (default: the nearest folder above with a nexus.yaml).",
)
@click.version_option(package_name="nexus-agents", prog_name="nexus")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None) -> None:
    """nexus: a filesystem-native orchestrator for AI coding agents.

    A workspace is a git repository of markdown task files; every state change is a commit
    with Nexus-* trailers, so `git log` is the audit log.
    """
    ctx.obj = {"workspace": workspace}


def main(argv: list[str] | None = None) -> int:
    from nexus.errors import NexusError

    try:
        # In non-standalone mode click returns the code given to ctx.exit() instead of raising.
        code = cli.main(args=argv, prog_name="nexus", standalone_mode=False)
        if isinstance(code, int):
            return code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE if isinstance(exc, click.UsageError) else EXIT_ERROR
    except (click.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except NexusError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        return EXIT_OK
    except Exception:
        path = write_crash_log(argv if argv is not None else sys.argv[1:])
        click.echo(
            f"nexus crashed (a bug in nexus, not in your workspace). Details: {path}\n"
            "Please attach that file to a bug report.",
            err=True,
        )
        return EXIT_CRASH
    return EXIT_OK


def write_crash_log(argv: list[str]) -> Path:
    """A crash report for a bug report: version, command line and traceback, with secrets
    (secret-looking environment values, `--token`) masked; readable by its owner only."""
    from nexus import __version__
    from nexus.redact import option_secrets, redact, redact_argv

    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    folder = base / "nexus" / "crashes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    report = (
        f"nexus {__version__} on Python {sys.version.split()[0]} ({sys.platform})\n"
        f"command: nexus {' '.join(redact_argv(argv))}\n\n{_traceback()}"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(redact(report, os.environ, option_secrets(argv)))
    return path


def run() -> Any:
    sys.exit(main())


def _traceback() -> str:
    import traceback  # ~7 ms of imports: only a crash pays for them

    return traceback.format_exc()

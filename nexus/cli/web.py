"""`nexus serve`: the web dashboard, REST API and live feed (nexus/web/)."""

from __future__ import annotations

import click

from nexus.cli.main import cli
from nexus.cli.tasks import service


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0: any free."
)
@click.option(
    "--token",
    envvar="NEXUS_TOKEN",
    help="Require this token on every request (needed for any host but loopback).",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, token: str | None, log_level: str) -> None:
    """Serve the dashboard and the REST API of this workspace until stopped (Ctrl-C).

    Listens on 127.0.0.1 by default.  Any other address needs a token (--token or NEXUS_TOKEN):
    programs send `Authorization: Bearer <token>`; a browser opens /?token=<token> once.
    """
    from nexus.errors import NexusError
    from nexus.web.app import bind, create_app, is_loopback, serve

    if not is_loopback(host) and not token:
        raise NexusError(
            f"refusing to listen on {host} without a token: anyone who can reach it could "
            "read and change your tasks",
            fix="pass --token SECRET (or set NEXUS_TOKEN), or listen on 127.0.0.1",
        )
    root = service(ctx, actor="web").ws.root
    app = create_app(root, token=token)
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise NexusError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            fix="choose another --port (0 picks a free one)",
        ) from None
    bound = sock.getsockname()[1]
    where = f"[{host}]" if ":" in host else host
    click.echo(f"serving {root} on http://{where}:{bound}/", err=True)
    if token:
        click.echo(f"open http://{where}:{bound}/?token=<your token> in a browser", err=True)
    click.echo("Ctrl-C stops", err=True)
    serve(app, sock, log_level)

"""Message commands: send, inbox (scratchpad mailboxes; see nexus/scratchpads.py)."""

from __future__ import annotations

import sys

import click

from nexus.cli.main import cli
from nexus.cli.tasks import emit_json, service, synced
from nexus.scratchpads import TYPES, newest, pad_path, summary


@cli.command()
@click.argument("frm", metavar="FROM")
@click.argument("to")
@click.argument("text")
@click.option("--type", "kind", default="note", show_default=True, type=click.Choice(TYPES))
@click.option("--task", help="Id (or unique prefix) of the task the message is about.")
@click.option("--json", "as_json", is_flag=True, help="Print the message as JSON.")
@click.pass_context
def send(
    ctx: click.Context, frm: str, to: str, text: str, kind: str, task: str | None, as_json: bool
) -> None:
    """Append a message from FROM to TO in scratchpads/FROM_to_TO.md and commit it.

    TO is a role (a file in agents/) or `all` (every role); FROM is a role, `user`, `prime` or
    `nexus`.  TEXT `-` reads the message from stdin; text that is JSON is kept as a json block.
    A person may instead append to the file with an editor: the next nexus command commits it.
    """
    if text == "-":
        text = sys.stdin.read()
    message = service(ctx).send_message(frm, to, text, kind, task)
    path = pad_path(message.frm, message.to)
    if as_json:
        emit_json({**message.to_json(), "path": path})
    else:
        click.echo(f"sent {message.id} ({summary(message)}) to {path}")


@cli.command()
@click.argument("role")
@click.option("--all", "show_all", is_flag=True, help="Show messages already read too.")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Show only the newest N (0: all).",
)
@click.option("--mark-read", is_flag=True, help="Mark the messages shown as read.")
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@click.pass_context
def inbox(
    ctx: click.Context, role: str, show_all: bool, limit: int, mark_read: bool, as_json: bool
) -> None:
    """Messages to ROLE (its mailboxes and broadcasts to `all`), oldest first: unread ones
    unless --all.  Read state is kept in .nexus/ (not in git): after a fresh clone every old
    message counts as unread once."""
    svc, _ = synced(ctx)
    unread = svc.inbox(role, limit=None)
    shown, left_out = newest(svc.inbox(role, False, None) if show_all else unread, limit)
    new = {m.id for m in unread}
    marked = [m.id for m in shown if m.id in new] if mark_read else []
    if marked:
        svc.mark_read(role, marked)
    if as_json:
        messages = [{**m.to_json(), "unread": m.id in new} for m in shown]
        emit_json({"role": role, "messages": messages, "left_out": left_out, "marked_read": marked})
        return
    if not shown:
        click.echo(f"no {'' if show_all else 'unread '}messages for {role}", err=True)
    for m in shown:
        flag = "" if m.id in new or not show_all else " (read)"
        click.echo(f"{m.id}  {summary(m)}{flag}")
        click.echo("\n".join("    " + line for line in m.payload.split("\n")) + "\n")
    if left_out:
        click.echo(f"{left_out} older message(s) not shown (--limit 0 shows all)", err=True)
    if marked:
        click.echo(f"marked {len(marked)} message(s) read", err=True)

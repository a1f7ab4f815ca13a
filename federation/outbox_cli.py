"""``fedspace outbox list|retry``: what is waiting to reach peers, and a second chance for
messages that failed (after the operator fixed the cause)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar, cast

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from federation.outbox import STATES, State, list_messages, retry_failed
from fedspace.cliutil import ConfigOption, fail, open_database

T = TypeVar("T")
outbox_app = typer.Typer(help="Messages to federation peers and their delivery.",
                         no_args_is_help=True)
console = Console()


def _run(op: Callable[[AsyncConnection], Awaitable[T]], config: ConfigOption,
         *, write: bool = False) -> T:
    async def main() -> T:
        db = await open_database(config)
        try:
            async with (db.write() if write else db.read()) as conn:
                return await op(conn)
        finally:
            await db.close()

    return asyncio.run(main())


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else ""


@outbox_app.command("list")
def list_(
    state: Annotated[str | None, typer.Option(help=f"only: {', '.join(STATES)}")] = None,
    limit: Annotated[int, typer.Option(min=1, help="newest N messages")] = 100,
    config: ConfigOption = None,
) -> None:
    """List outbox messages, newest first."""
    if state is not None and state not in STATES:
        fail(f"unknown state {state!r}; choose from {', '.join(STATES)}")
    only = cast(State | None, state)
    rows = _run(lambda c: list_messages(c, state=only, limit=limit), config)
    table = Table("id", "peer", "kind", "state", "attempts", "next attempt", "last answer")
    for m in rows:
        answer = " ".join(str(x) for x in (m.last_status, m.last_error) if x is not None)
        table.add_row(str(m.id), m.peer, m.kind, m.state, str(m.attempts),
                      _when(m.next_attempt_ms), answer)
    console.print(table)


@outbox_app.command("retry")
def retry(
    message_id: Annotated[int | None, typer.Argument(metavar="ID", help="message id")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="every failed message")]
    = False,
    config: ConfigOption = None,
) -> None:
    """Queue failed messages again, with a fresh retry horizon."""
    if (message_id is None) == (not all_failed):
        fail("give a message ID or --all-failed")
    count = _run(lambda c: retry_failed(c, message_id), config, write=True)
    if message_id is not None and count == 0:
        fail(f"message {message_id} does not exist or has not failed")
    console.print(f"{count} message{'' if count == 1 else 's'} queued again "
                  "(a running server sends them within federation.poll_seconds)",
                  highlight=False)

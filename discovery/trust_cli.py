"""``fedspace trust …``: whom this instance trusts (``issuer`` now, federation peers later).

Changes go to the database; running servers pick them up within seconds (see
``discovery.trust``), so no restart is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from discovery.trust import TrustError, TrustStore
from fedspace.cliutil import ConfigOption, fail, settings_from
from fedspace.db import Database

T = TypeVar("T")
trust = typer.Typer(help="Manage whom this instance trusts.", no_args_is_help=True)
issuer_app = typer.Typer(
    help="Foreign OpenID providers whose users may sign in here as guests.",
    no_args_is_help=True)
trust.add_typer(issuer_app, name="issuer")
console = Console()


def _run(config: ConfigOption, op: Callable[[TrustStore], Awaitable[T]]) -> T:
    settings = settings_from(config)

    async def main() -> T:
        db = Database(settings.database_url)
        try:
            await db.migrate()
            return await op(TrustStore(db, settings))
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except TrustError as exc:
        fail(str(exc))


@issuer_app.command("add")
def issuer_add(
    issuer: Annotated[str, typer.Argument(help="issuer URL, exactly as tokens carry it")],
    domain: Annotated[str, typer.Option(help="domain of its users' addresses (paris.test)")],
    config: ConfigOption = None,
) -> None:
    """Trust an issuer: its users may sign in here as guests named user@DOMAIN."""
    added = _run(config, lambda s: s.add(issuer, domain))
    console.print(f"trusting [bold]{added.issuer}[/] for {added.domain}", highlight=False)


@issuer_app.command("remove")
def issuer_remove(issuer: str, config: ConfigOption = None) -> None:
    """Stop trusting an issuer: its tokens are refused from now on."""
    _run(config, lambda s: s.remove(issuer))
    console.print(f"no longer trusting {issuer}", highlight=False)


@issuer_app.command("list")
def issuer_list(config: ConfigOption = None) -> None:
    """List trusted issuers (from the configuration and from this command)."""
    table = Table("issuer", "domain", "source", "added")
    for t in _run(config, lambda s: s.list()):
        added = datetime.fromtimestamp(t.added_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") \
            if t.added_ms else ""
        table.add_row(t.issuer, t.domain, "configuration" if t.configured else "database",
                      added)
    console.print(table)

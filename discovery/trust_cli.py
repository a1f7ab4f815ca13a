"""``fedspace trust …``: whom this instance trusts (foreign ``issuer``s, federation ``peer``s).

Changes go to the database; running servers pick them up within seconds (see
``discovery.trust`` and ``federation.peers``), so no restart is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from discovery.trust import TrustError, TrustStore
from federation.peers import Peer, PeerError, PeerPolicy
from fedspace.cliutil import ConfigOption, fail, settings_from
from fedspace.db import Database
from fedspace.settings import Settings

T = TypeVar("T")
trust = typer.Typer(help="Manage whom this instance trusts.", no_args_is_help=True)
issuer_app = typer.Typer(
    help="Foreign OpenID providers whose users may sign in here as guests.",
    no_args_is_help=True)
trust.add_typer(issuer_app, name="issuer")
peer_app = typer.Typer(
    help="Federation peers (instances by domain) allowed or denied to share with us.",
    no_args_is_help=True)
trust.add_typer(peer_app, name="peer")
console = Console()


def _run(config: ConfigOption, op: Callable[[Any], Awaitable[T]],
         store: Callable[[Database, Settings], Any] = TrustStore) -> T:
    settings = settings_from(config)

    async def main() -> T:
        db = Database(settings.database_url)
        try:
            await db.migrate()
            return await op(store(db, settings))
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except (TrustError, PeerError) as exc:
        fail(str(exc))


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") if ms else ""


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
        table.add_row(t.issuer, t.domain, "configuration" if t.configured else "database",
                      _when(t.added_ms))
    console.print(table)


@peer_app.command("add")
def peer_add(
    domain: Annotated[str, typer.Argument(help="the peer's domain (paris.test[:port])")],
    deny: Annotated[bool, typer.Option("--deny", help="refuse this peer instead")] = False,
    config: ConfigOption = None,
) -> None:
    """Allow a peer to federate with this instance (or, with --deny, refuse it)."""
    added = _run(config, lambda p: p.add(domain, "deny" if deny else "allow"), PeerPolicy)
    console.print(f"{'denying' if deny else 'allowing'} peer [bold]{added.domain}[/]",
                  highlight=False)


@peer_app.command("remove")
def peer_remove(domain: str, config: ConfigOption = None) -> None:
    """Forget a peer: the default policy (federation.allowlist_only) applies to it again."""
    _run(config, lambda p: p.remove(domain), PeerPolicy)
    console.print(f"peer {domain.lower()} removed", highlight=False)


@peer_app.command("list")
def peer_list(config: ConfigOption = None) -> None:
    """List allowed and denied peers (from the configuration and from this command)."""
    peers, allowlist_only = _run(config, _listing, PeerPolicy)
    table = Table("peer", "policy", "source", "added")
    for p in peers:
        table.add_row(p.domain, p.policy, "configuration" if p.configured else "database",
                      _when(p.added_ms))
    console.print(table)
    console.print(f"other peers are {'refused' if allowlist_only else 'allowed'} "
                  "(federation.allowlist_only)", highlight=False)


async def _listing(policy: PeerPolicy) -> tuple[list[Peer], bool]:
    return await policy.list(), policy.settings.allowlist_only

"""``fedspace invite …`` and ``fedspace contacts list``: OCM invites from a shell.

``create``, ``list``, ``revoke`` and ``contacts list`` only touch the database, server
running or not. ``accept`` talks to the inviter's instance itself rather than through the
running server's API (which would need the user's credentials): it signs the Invite
Acceptance Request with this instance's federation key from ``<data_dir>`` — the files are
the key store, so the running server publishes the very key the CLI signs with — and the
peer verifies it by fetching that key from the running server, which must therefore be
reachable at this instance's domain. Run it with the server's settings (same data_dir,
database, domain and outbound settings). A new contact counts for ``require_invite`` in the
running server within ``federation.peer_cache_seconds``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from discovery.service import Directory, DirectoryError, User
from federation.component import FederationComponent
from federation.invites import MAX_LIFETIME, InviteError, Invites
from fedspace.cliutil import ConfigOption, fail, settings_from
from fedspace.db import Database
from fedspace.internal import InternalTokens
from fedspace.metrics import Metrics
from fedspace.outbound import Outbound
from fedspace.runtime import Context
from fedspace.sqltypes import now_ms

T = TypeVar("T")
invite_app = typer.Typer(help="OCM invites: become contacts with someone at another instance.",
                         no_args_is_help=True)
contacts_app = typer.Typer(help="Federated contacts made by accepted invites.",
                           no_args_is_help=True)
console = Console(highlight=False)
UserOption = Annotated[str, typer.Option("--user", help="the local user (username)")]


def _run(config: ConfigOption, username: str,
         op: Callable[[Invites, User], Awaitable[T]]) -> T:
    settings = settings_from(config)

    async def main() -> T:
        db = Database(settings.database_url)
        outbound = Outbound(settings.outbound)
        try:
            await db.migrate()
            # The CLI mints no internal tokens: a throwaway secret, no file side effects.
            ctx = Context(settings=settings, db=db, tokens=InternalTokens(
                secrets.token_bytes(32)), metrics=Metrics(), outbound=outbound)
            directory = Directory(db)
            user = await directory.get_user(username)
            return await op(Invites(FederationComponent(ctx), directory), user)
        finally:
            await outbound.aclose()
            await db.close()

    try:
        return asyncio.run(main())
    except (InviteError, DirectoryError) as exc:
        fail(str(exc))
    except OSError as exc:  # e.g. the federation keys are not readable by this account
        fail(f"cannot use this instance's files: {exc}")


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") if ms else ""


@invite_app.command("create")
def create(
    user: UserOption,
    description: Annotated[str, typer.Option(help="a note for yourself")] = "",
    expires: Annotated[int | None, typer.Option(
        min=1, max=MAX_LIFETIME, help="lifetime in seconds (default 7 days)")] = None,
    config: ConfigOption = None,
) -> None:
    """Make an invite; send its token and this instance's domain to the invitee."""
    invite, token = _run(config, user,
                         lambda i, u: i.create(u.id, description, expires))
    domain = settings_from(config).domain.lower()
    console.print(f"invite [bold]{invite.id}[/] from {user}@{domain}, valid until "
                  f"{_when(invite.expires_ms)} UTC; the invitee accepts it with provider "
                  f"{domain} and this token:")
    print(token)


@invite_app.command("list")
def list_(user: UserOption, config: ConfigOption = None) -> None:
    """List a user's invites (tokens are never shown again)."""
    now = now_ms()
    table = Table("id", "description", "created", "expires", "state", "accepted by")
    for i in _run(config, user, lambda invites, u: invites.list(u.id)):
        table.add_row(i.id, i.description, _when(i.created_ms), _when(i.expires_ms),
                      i.state(now), i.accepted_by or "")
    console.print(table)


@invite_app.command("revoke")
def revoke(invite_id: Annotated[str, typer.Argument(metavar="ID")], user: UserOption,
           config: ConfigOption = None) -> None:
    """Revoke an invite: its token stops working (contacts it made stay)."""
    _run(config, user, lambda i, u: i.revoke(u.id, invite_id))
    console.print(f"revoked invite {invite_id}")


@invite_app.command("accept")
def accept(
    user: UserOption,
    provider: Annotated[str, typer.Option(help="the inviter's domain (zurich.test)")],
    token: Annotated[str | None, typer.Option(
        help="the invite token (prompted for when left out, keeping it out of the "
             "shell history)")] = None,
    config: ConfigOption = None,
) -> None:
    """Accept an invite made at another instance: its user becomes your contact."""
    secret = token or typer.prompt("invite token", hide_input=True)
    contact = _run(config, user, lambda i, u: i.accept_outgoing(u.id, secret, provider))
    console.print(f"{user} and [bold]{contact.name}[/] ({contact.address}) are contacts now")


@contacts_app.command("list")
def contacts_list(user: UserOption, config: ConfigOption = None) -> None:
    """List a user's federated contacts."""
    table = Table("address", "name", "email", "provider", "since")
    for c in _run(config, user, lambda i, u: i.contacts(u.id)):
        table.add_row(c.address, c.name, c.email, c.peer, _when(c.created_ms))
    console.print(table)

"""``fedspace share …``: share with users of other instances from a terminal.

``list`` is an operator's view read from the database (every share, or one user's, with
where its delivery stands). ``create``, ``role`` and ``remove`` act as a user, through the
running instance's Graph API with her app password (``FEDSPACE_PASSWORD``, else a prompt):
creating a share needs the instance's storage provider, and going through the API keeps
one code path — the same checks, the same transaction — for the web, clients and this CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from discovery.models import users
from fedspace.cliutil import ConfigOption, fail, open_database, settings_from
from fedspace.outbound import ssl_context
from registry.roles import ROLES

from .outgoing import list_shares

share_app = typer.Typer(help="Shares with users of other instances.", no_args_is_help=True)
console = Console()

UserOption = Annotated[str, typer.Option("--user", "-u", help="act as this local user")]
PasswordOption = Annotated[str, typer.Option(
    "--password", envvar="FEDSPACE_PASSWORD", prompt=True, hide_input=True,
    help="the user's app password (also FEDSPACE_PASSWORD)")]
UrlOption = Annotated[str | None, typer.Option(
    "--url", help="the instance's public URL (default: from the settings)")]


@share_app.command("list")
def list_(
    user: Annotated[str | None, typer.Option("--user", "-u", help="only this user's")] = None,
    config: ConfigOption = None,
) -> None:
    """List shares with other instances and their delivery state, newest first."""
    async def main() -> list[dict[str, Any]]:
        db = await open_database(config)
        try:
            async with db.read() as conn:
                sharer = None
                if user is not None:
                    sharer = await conn.scalar(select(users.c.id).where(users.c.username == user))
                    if sharer is None:
                        fail(f"no user {user!r}")
                return await list_shares(conn, sharer)
        finally:
            await db.close()

    table = Table("provider id", "drive", "recipient", "role", "state", "shared",
                  "last answer", "next attempt")
    for s in asyncio.run(main()):
        delivery = s.get("delivery") or {}
        answer = " ".join(str(v) for v in (delivery.get("lastStatus"),
                                           delivery.get("lastError")) if v)
        table.add_row(s["providerId"], s["driveId"], s["recipient"], s["role"], s["state"],
                      s["sharedDateTime"], answer, delivery.get("nextAttemptDateTime") or "")
    console.print(table)


@share_app.command("create")
def create(
    space: Annotated[str, typer.Argument(help="drive id or name")],
    recipient: Annotated[str, typer.Argument(help="address, e.g. marie@paris.test")],
    path: Annotated[str, typer.Option(help="folder to share; the whole space if empty")] = "",
    role: Annotated[str, typer.Option(help="viewer or editor")] = "viewer",
    user: UserOption = ..., password: PasswordOption = ..., url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Share a space, or one of its folders, with a user of another instance."""
    if role not in ("viewer", "editor"):
        fail("users of other instances can be viewers or editors")
    body = {"recipients": [{"objectId": recipient, "@libre.graph.recipient.type": "federated"}],
            "roles": [ROLES[role].id]}
    with _client(config, url, user, password) as client:
        drive = _drive(client, space)
        folder = path.strip("/")
        target = (f"/graph/v1beta1/drives/{drive}/root:/{folder}:/invite" if folder
                  else f"/graph/v1beta1/drives/{drive}/root/invite")
        entry = _answer(client.post(target, json=body))["value"][0]
    shared = entry.get("@libre.graph.drive.id", drive)
    state = (entry.get("@fedspace.share") or {}).get("state", "queued")
    console.print(f"shared drive {shared} with {recipient} as {role}: {state}", highlight=False)


@share_app.command("role")
def change_role(
    drive: Annotated[str, typer.Argument(help="the shared drive's id")],
    recipient: Annotated[str, typer.Argument(help="the recipient's address")],
    role: Annotated[str, typer.Argument(help="viewer or editor")],
    user: UserOption = ..., password: PasswordOption = ..., url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Change what a user of another instance may do in a shared drive."""
    if role not in ("viewer", "editor"):
        fail("users of other instances can be viewers or editors")
    with _client(config, url, user, password) as client:
        _answer(client.patch(_permission(drive, recipient), json={"roles": [ROLES[role].id]}))
    console.print(f"{recipient} is now {role} of {drive}", highlight=False)


@share_app.command("remove")
def remove(
    drive: Annotated[str, typer.Argument(help="the shared drive's id")],
    recipient: Annotated[str, typer.Argument(help="the recipient's address")],
    user: UserOption = ..., password: PasswordOption = ..., url: UrlOption = None,
    config: ConfigOption = None,
) -> None:
    """Unshare: the recipient loses access at once and her instance is told."""
    with _client(config, url, user, password) as client:
        _answer(client.delete(_permission(drive, recipient)))
    console.print(f"unshared {drive} with {recipient}", highlight=False)


@contextlib.contextmanager
def _client(config: ConfigOption, url: str | None, user: str,
            password: str) -> Iterator[httpx.Client]:
    """A client of the instance as ``user``; unreachable → one line, no traceback."""
    settings = settings_from(config)
    base = url or settings.public_url
    ca = str(settings.outbound.ca_file) if settings.outbound.ca_file else None
    try:
        with httpx.Client(base_url=base, auth=(user, password), timeout=30,
                          verify=ssl_context(ca)) as client:
            yield client
    except httpx.HTTPError as exc:
        fail(f"cannot reach the instance at {base}: {exc}")


def _permission(drive: str, recipient: str) -> str:
    return f"/graph/v1beta1/drives/{drive}/root/permissions/f:{recipient.strip().lower()}"


def _drive(client: httpx.Client, space: str) -> str:
    """The id of the caller's drive named ``space`` (an id is taken as it is)."""
    drives = _answer(client.get("/graph/v1.0/me/drives"))["value"]
    for d in drives:
        if space in (d["id"], d["name"], d["driveAlias"]):
            return str(d["id"])
    fail(f"no drive {space!r} among yours")


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON answer, or one line saying why the instance refused."""
    if response.is_success:
        return response.json() if response.content else {}
    try:
        problem = response.json()
        detail = problem.get("detail") or problem.get("title") or response.reason_phrase
    except ValueError:
        detail = response.reason_phrase
    fail(f"{response.status_code}: {detail}")

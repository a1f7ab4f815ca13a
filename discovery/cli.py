"""``fedspace users …`` and ``fedspace groups …``: manage the directory from a shell."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from discovery.service import Directory, DirectoryError
from fedspace.cliutil import ConfigOption, fail, open_database

T = TypeVar("T")
users = typer.Typer(help="Manage local users and their app passwords.", no_args_is_help=True)
app_password = typer.Typer(help="Per-user app passwords for WebDAV/Basic clients.",
                           no_args_is_help=True)
groups = typer.Typer(help="Manage groups (space roles can be granted to groups).",
                     no_args_is_help=True)
users.add_typer(app_password, name="app-password")
console = Console()


def _run(config: ConfigOption, op: Callable[[Directory], Awaitable[T]]) -> T:
    async def main() -> T:
        db = await open_database(config)
        try:
            return await op(Directory(db))
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except DirectoryError as exc:
        fail(str(exc))


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") if ms else "never"


@users.command("add")
def users_add(
    username: str,
    display_name: Annotated[str | None, typer.Option(help="shown in clients")] = None,
    email: Annotated[str | None, typer.Option()] = None,
    admin: Annotated[bool, typer.Option(help="may set quotas")] = False,
    password: Annotated[bool, typer.Option(help="prompt for an account password")] = False,
    password_stdin: Annotated[bool, typer.Option(
        help="read the account password from standard input (its first line)")] = False,
    config: ConfigOption = None,
) -> None:
    """Add a user."""
    if password and password_stdin:
        fail("--password and --password-stdin exclude each other")
    secret: str | None = None
    if password:
        secret = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    elif password_stdin:  # like `docker login --password-stdin`: no prompt, no echo
        secret = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not secret:
            fail("--password-stdin: no password on standard input (its first line is empty)")
    user = _run(config, lambda d: d.add_user(username, display_name=display_name, email=email,
                                             password=secret, is_admin=admin))
    console.print(f"added user [bold]{user.username}[/] id={user.id}")


@users.command("passwd")
def users_passwd(username: str, config: ConfigOption = None) -> None:
    """Set a user's account password (for the login page; never accepted over Basic)."""
    secret = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    _run(config, lambda d: d.set_password(username, secret))
    console.print(f"password of {username} changed")


@users.command("list")
def users_list(config: ConfigOption = None) -> None:
    """List users."""
    table = Table("username", "id", "display name", "admin", "disabled")
    for u in _run(config, lambda d: d.list_users()):
        table.add_row(u.username, u.id, u.display_name, "yes" if u.is_admin else "",
                      "yes" if u.disabled else "")
    console.print(table)


@users.command("disable")
def users_disable(username: str, config: ConfigOption = None) -> None:
    """Disable a user: every credential stops working."""
    _run(config, lambda d: d.set_disabled(username, True))
    console.print(f"disabled {username}")


@users.command("enable")
def users_enable(username: str, config: ConfigOption = None) -> None:
    """Enable a disabled user."""
    _run(config, lambda d: d.set_disabled(username, False))
    console.print(f"enabled {username}")


@app_password.command("create")
def app_password_create(
    username: str,
    label: Annotated[str, typer.Option(help="what it is for")] = "app password",
    config: ConfigOption = None,
) -> None:
    """Create an app password; it is shown once."""
    pw, secret = _run(config, lambda d: d.create_app_password(username, label))
    console.print(f"app password [bold]{pw.id}[/] for {username} ({pw.label}):")
    print(secret)


@app_password.command("list")
def app_password_list(username: str, config: ConfigOption = None) -> None:
    """List a user's app passwords with their last use."""
    table = Table("id", "label", "created", "last used")
    for pw in _run(config, lambda d: d.list_app_passwords(username)):
        table.add_row(pw.id, pw.label, _when(pw.created_ms), _when(pw.last_used_ms))
    console.print(table)


@app_password.command("revoke")
def app_password_revoke(username: str, password_id: str, config: ConfigOption = None) -> None:
    """Revoke an app password."""
    _run(config, lambda d: d.revoke_app_password(username, password_id))
    console.print(f"revoked {password_id}")


@groups.command("add")
def groups_add(name: str, display_name: Annotated[str | None, typer.Option()] = None,
               config: ConfigOption = None) -> None:
    """Add a group."""
    gid = _run(config, lambda d: d.add_group(name, display_name))
    console.print(f"added group [bold]{name}[/] id={gid}")


@groups.command("list")
def groups_list(config: ConfigOption = None) -> None:
    """List groups with their member counts."""
    table = Table("name", "id", "display name", "members")
    for name, gid, display, count in _run(config, lambda d: d.list_groups()):
        table.add_row(name, gid, display, str(count))
    console.print(table)


@groups.command("add-member")
def groups_add_member(group: str, username: str, config: ConfigOption = None) -> None:
    """Add a user to a group."""
    _run(config, lambda d: d.add_member(group, username))
    console.print(f"{username} is a member of {group}")

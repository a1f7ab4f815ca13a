"""``fedspace idp rotate-keys`` (server running or not) and ``fedspace idp hash-secret``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from argon2 import PasswordHasher

from discovery.idp.keys import KeyStore
from fedspace.cliutil import ConfigOption, settings_from
from fedspace.keyfiles import DEFAULT_GRACE

idp = typer.Typer(help="The embedded OpenID Connect provider.", no_args_is_help=True)


@idp.command("rotate-keys")
def keys_rotate(
    config: ConfigOption = None,
    grace: Annotated[int, typer.Option(
        min=0, help="seconds the new key is published before it signs")] = DEFAULT_GRACE,
) -> None:
    """Publish a new signing key now; it signs after the grace period."""
    d = settings_from(config).discovery
    assert d.keys_dir is not None
    key = KeyStore(d.keys_dir, d.access_token_ttl).rotate(grace)
    when = datetime.fromtimestamp(key.not_before, UTC).isoformat(timespec="seconds")
    typer.echo(f"new key {key.kid} published; signs from {when}")


@idp.command("hash-secret")
def hash_secret() -> None:
    """Print the Argon2 hash of a confidential client's secret (for ``secret_hash``)."""
    secret = typer.prompt("client secret", hide_input=True, confirmation_prompt=True)
    typer.echo(PasswordHasher().hash(secret))

"""``fedspace keys rotate``: rotate the federation signing key, server running or not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from federation.httpsig import DEFAULT_FRESHNESS
from federation.keys import KeyStore
from fedspace.cliutil import ConfigOption, settings_from
from fedspace.keyfiles import DEFAULT_GRACE

keys = typer.Typer(help="The instance's federation (OCM request signing) keys.",
                   no_args_is_help=True)


@keys.command("rotate")
def rotate(
    config: ConfigOption = None,
    grace: Annotated[int, typer.Option(
        min=0, help="seconds the new key is published before it signs")] = DEFAULT_GRACE,
) -> None:
    """Publish a new signing key now; it signs after the grace period."""
    store = KeyStore.in_data_dir(settings_from(config).data_dir, DEFAULT_FRESHNESS)
    key = store.rotate(grace)
    when = datetime.fromtimestamp(key.not_before, UTC).isoformat(timespec="seconds")
    typer.echo(f"new key {key.kid} published; signs from {when}")

"""``fedspace discover ADDRESS``: show how an account's IdP and registry are found.

Uses the instance's outbound settings (``FEDSPACE_OUTBOUND__ALLOW_HTTP=1`` and friends for
local, plain-http use), so it sees exactly what the server would.
"""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.table import Table

from discovery.client import Discovery, DiscoveryClient, DiscoveryError
from fedspace.cliutil import ConfigOption, fail, settings_from
from fedspace.outbound import Outbound

ENDPOINTS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")
console = Console(highlight=False)


def discover(address: str, config: ConfigOption = None) -> None:
    """Discover ADDRESS (user@domain): WebFinger, its issuer and registry, the OIDC endpoints."""
    settings = settings_from(config)

    async def main() -> Discovery:
        outbound = Outbound(settings.outbound)
        try:
            return await DiscoveryClient(outbound, cache_seconds=0).discover(address)
        finally:
            await outbound.aclose()

    try:
        found = asyncio.run(main())
    except DiscoveryError as exc:
        for step in exc.steps:
            console.print(f"  {step}")
        fail(f"{exc.kind}: {exc}")
    for step in found.steps:
        console.print(f"  {step}")
    table = Table(show_header=False, box=None)
    table.add_row("address", found.address)
    table.add_row("issuer", found.issuer)
    table.add_row("registry", found.registry)
    for name in ENDPOINTS:
        value = found.openid_configuration.get(name)
        if isinstance(value, str):
            table.add_row(name, value)
    console.print(table)

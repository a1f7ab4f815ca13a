"""The ``fedspace`` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated

import typer

from discovery.cli import groups, users
from discovery.discover_cli import discover
from discovery.idp.cli import idp
from discovery.trust_cli import trust
from federation.cli import keys
from federation.invites_cli import contacts_app, invite_app
from federation.outbox_cli import outbox_app
from federation.share_cli import share_app
from fedspace.cliutil import ConfigOption, fail, settings_from
from fedspace.runtime import SERVICES
from scenarios.bench.cli import bench
from scenarios.demo import demo
from scenarios.rig_cli import rig
from scenarios.scenario_cli import scenario_app

app = typer.Typer(help="fedspace: federated storage spaces.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(users, name="users")
app.add_typer(groups, name="groups")
app.command()(discover)
app.add_typer(trust, name="trust")
app.add_typer(idp, name="idp")
app.add_typer(outbox_app, name="outbox")
app.add_typer(share_app, name="share")
app.add_typer(keys, name="keys")
app.add_typer(invite_app, name="invite")
app.add_typer(contacts_app, name="contacts")
app.add_typer(rig, name="rig")
app.add_typer(scenario_app, name="scenario")
app.command("demo")(demo)
app.command("bench")(bench)


@app.command()
def serve(
    only: Annotated[list[str] | None, typer.Option(
        help=f"run only these services (repeatable): {', '.join(SERVICES)}")] = None,
    config: ConfigOption = None,
) -> None:
    """Run an instance: every service in one process, or only some with --only."""
    from fedspace import logs
    from fedspace.app import Instance

    settings = settings_from(config)
    logs.configure(settings.log.level, settings.log.format)
    selected = only or list(SERVICES)
    unknown = sorted(set(selected) - set(SERVICES))
    if unknown:
        fail(f"unknown service {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    if "registry" in selected and "discovery" not in selected:
        fail("the registry authenticates callers through discovery: add --only discovery")

    async def main() -> None:
        instance = Instance(settings, selected)
        try:
            await instance.start()
        except OSError as exc:
            await instance.stop()
            fail(f"cannot start: {exc}")
        typer.echo(f"fedspace serving {', '.join(selected)} at {settings.public_url} "
                   f"(gRPC {instance.ctx.grpc_address})", err=True)
        try:
            await instance.wait()
        finally:
            await instance.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@app.command()
def migrate(config: ConfigOption = None) -> None:
    """Bring the database schema up to date (also done on every start)."""
    from fedspace.cliutil import open_database

    async def main() -> None:
        db = await open_database(config)
        await db.close()

    asyncio.run(main())
    typer.echo("database is up to date")


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective settings (secrets masked) as JSON."""
    typer.echo(json.dumps(settings_from(config).masked(), indent=2))

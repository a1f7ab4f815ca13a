"""``fedspace scenario list|run``: scripted user stories against a running rig.

``run`` reads the rig's ``rig.json`` (written by ``fedspace rig up``), plays the story over
HTTPS with one transcript line per step, and exits 1 naming the failing step and why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedspace.cliutil import fail

from .agent import Account, Site, World
from .peer_stories import peer_down, untrusted_peer
from .rig_machine import StateLock
from .rigfile import RigFile, RigFileError, load_rig
from .seed_story import einstein_marie
from .stories import decline, invite_flow, permission_change
from .transcript import ScenarioFailed, Transcript

Story = Callable[[World, Transcript], Awaitable[None]]
SCENARIOS: dict[str, tuple[str, Story]] = {
    "einstein-marie": ("the seed story: share, accept, sync, edit, unshare", einstein_marie),
    "decline": ("Marie declines; access ends on both sides; the folder is offered anew", decline),
    "permission-change": ("viewer → editor → viewer, enforced at paris", permission_change),
    "invite-flow": ("OCM invite, contacts on both sides, a share with the contact", invite_flow),
    "peer-down": ("paris is down while Einstein shares; delivered once it is back", peer_down),
    "untrusted-peer": ("a domain outside the circle of trust is refused both ways",
                       untrusted_peer),
}
DEFAULT_RIG = Path(".fedspace-rig") / "rig.json"

scenario_app = typer.Typer(help="Scripted user stories against a rig.", no_args_is_help=True)
console = Console()


def world_of(rig: RigFile) -> World:
    """What a scenario needs to know of a rig."""
    sites = {d.name: Site(d.name, d.cloud_url, d.issuer, {
        u.username: Account(u.username, u.password, u.app_password, u.address)
        for u in d.users}, d.trusted) for d in rig.domains}
    return World(sites, rig.names(), rig.ca_file, rig.state_dir)


async def play(name: str, world: World, transcript: Transcript) -> None:
    """Run the scenario ``name``; ScenarioFailed names the failing step."""
    await SCENARIOS[name][1](world, transcript)


@scenario_app.command("list")
def list_() -> None:
    """The scenarios there are."""
    for name, (about, _) in SCENARIOS.items():
        console.print(f"{name:20} {about}", highlight=False)


@scenario_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="a scenario from `fedspace scenario list`")],
    rig: Annotated[Path, typer.Option(help="the rig's rig.json")] = DEFAULT_RIG,
) -> None:
    """Play a scenario against a running rig, one line per step."""
    if name not in SCENARIOS:
        fail(f"no scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    try:
        found = load_rig(rig)
    except RigFileError as exc:
        fail(str(exc))
    if found.status != "ready" or StateLock(Path(found.state_dir)).running_pid() is None:
        fail(f"{rig}: the rig is not running (start it with `fedspace rig up`)")
    console.print(f"[bold]{name}[/] against {', '.join(d.name for d in found.domains)}")
    try:
        asyncio.run(play(name, world_of(found), Transcript(console)))
    except ScenarioFailed as exc:
        console.print(f"[red]{name} failed[/] at {exc}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"[green]{name} passed[/]")


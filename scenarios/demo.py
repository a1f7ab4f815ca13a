"""``fedspace demo``: the README's main job — two domains over HTTPS, the seed story played
with its transcript, then the rig keeps serving with directions to explore it."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from .rig_cli import StateOption, checked, serve
from .rig_machine import DEFAULT_DOMAINS, DEFAULT_STATE, ENV_FILE, RIG_JSON
from .rigfile import RigFile
from .scenario_cli import play, world_of
from .transcript import ScenarioFailed, Transcript

if TYPE_CHECKING:
    from .rig import Rig

STORY = "einstein-marie"
console = Console()


def demo(
    state: StateOption = DEFAULT_STATE,
    port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="port for every host; default 443 if it can be bound, "
        "else the first free of 8443…", show_default=False)] = None,
    leave: Annotated[bool, typer.Option(
        "--exit", help="stop after the story (for CI and scripts)")] = False,
) -> None:
    """Start zurich.test and paris.test, play the seed story, then keep serving."""
    domains, _, state = checked(list(DEFAULT_DOMAINS), state)

    async def story(rig: Rig) -> bool:
        console.print(f"\n[bold]{STORY}[/]: ARCHITECTURE.md §3, step by step")
        try:
            await play(STORY, world_of(rig.info), Transcript(console))
        except ScenarioFailed as exc:
            console.print(f"[red]{STORY} failed[/] at {exc}", highlight=False)
            raise typer.Exit(1) from None
        console.print(f"[green]{STORY} passed[/]\n")
        if not leave:
            explore(rig.info)
        return not leave

    serve(state, domains, port, None, story)


def explore(info: RigFile) -> None:
    """Where to go from here: the URLs, a curl and an rclone example."""
    zurich = info.domain("zurich.test")
    einstein = zurich.user("einstein")
    env = shlex.quote(str(Path(info.state_dir) / ENV_FILE))
    state = shlex.quote(info.state_dir)
    rig_json = shlex.quote(str(Path(info.state_dir) / RIG_JSON))
    graph = f"{zurich.cloud_url}/graph/v1.0/me/drives"
    console.print(
        "[bold]Explore[/]\n"
        f"  . {env}\n"
        f"  rig_curl -u einstein:{einstein.app_password} {graph}\n"
        f"  rig_curl -u einstein:$RIG_EINSTEIN_APP_PASSWORD -X PROPFIND -H 'Depth: 1' "
        f"{zurich.cloud_url}/dav/spaces/<drive id>/\n"
        "  rclone (needs the names in /etc/hosts: `fedspace rig up --write-hosts` as root):\n"
        f"    rclone --ca-cert {shlex.quote(info.ca_file)} lsf :webdav: --webdav-url "
        f"{zurich.cloud_url}/dav/spaces/<drive id> --webdav-vendor owncloud "
        f"--webdav-user einstein --webdav-pass $(rclone obscure {einstein.app_password})\n"
        "  Sign in at the clouds in a browser with the chromium flags above.\n"
        "  More stories against this rig (`fedspace scenario list`):\n"
        f"    fedspace scenario run decline --rig {rig_json}\n"
        f"  An outage: fedspace rig stop paris.test --state {state}   (then rig start …)",
        highlight=False, soft_wrap=True)

"""``fedspace rig up|down|stop|start``: the multi-domain rig from a terminal (see
``scenarios.rig``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from fedspace.cliutil import fail
from scenarios import rig_control
from scenarios.compose import compose_cmd
from scenarios.rig_machine import (
    DEFAULT_DOMAINS,
    DEFAULT_STATE,
    ENV_FILE,
    RIG_JSON,
    RigError,
    StateLock,
    check_domains,
    check_state_dir,
)
from scenarios.rigfile import RigFile, RigFileError, load_rig

if TYPE_CHECKING:
    from scenarios.rig import Rig

# After the rig is up: what to do before serving (e.g. the demo's scenario); False: stop.
Then = Callable[["Rig"], Awaitable[bool]]
HOSTS_FILE = Path("/etc/hosts")
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0

rig = typer.Typer(help="Several complete domains on this machine, over HTTPS with a test CA.",
                  no_args_is_help=True)
rig.command("compose")(compose_cmd)
StateOption = Annotated[Path, typer.Option(
    "--state", help="folder for data, certificates, rig.json and env.sh (kept between runs)")]
_out = Console()


@rig.command()
def up(
    domain: Annotated[list[str] | None, typer.Option(
        "--domain", "-d", help="a domain to run (repeatable); default zurich.test, paris.test",
        show_default=False)] = None,
    untrusted: Annotated[list[str] | None, typer.Option(
        help="one more domain that the others do not trust (repeatable), to see what is "
        "refused", show_default=False)] = None,
    state: StateOption = DEFAULT_STATE,
    port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="port for every host; default 443 if it can be bound, "
        "else the first free of 8443…", show_default=False)] = None,
    detach: Annotated[bool, typer.Option(
        help="run in the background; return once rig.json says ready")] = False,
    write_hosts: Annotated[bool, typer.Option(
        help="also add the rig names to /etc/hosts while running (root only)")] = False,
) -> None:
    """Start one complete instance per domain (cloud.D, idp.D, D) and seed users and trust."""
    domains, strangers, state = checked(domain or list(DEFAULT_DOMAINS), state, untrusted)
    if write_hosts and os.geteuid() != 0:
        fail("--write-hosts edits /etc/hosts and needs root; without it, use the printed "
             "--resolve/--host-resolver-rules flags (or source env.sh)")
    if detach:
        _detach(state, domains, strangers, port, write_hosts)
        return
    serve(state, domains, port, HOSTS_FILE if write_hosts else None, untrusted=strangers)


def checked(domains: list[str], state: Path, untrusted: list[str] | None = None
            ) -> tuple[list[str], list[str], Path]:
    """Valid domains (trusted, untrusted) and a usable state folder with no rig running
    from it, or exit 2."""
    try:
        names = check_domains([*domains, *(untrusted or [])])
        state = check_state_dir(state)
    except RigError as exc:
        fail(str(exc))
    domains, strangers = names[:len(domains)], names[len(domains):]
    pid = StateLock(state).running_pid()
    if pid is not None:
        fail(f"a rig is already running from {state} (pid {pid}); stop it with "
             f"`fedspace rig down --state {state}` or use another --state")
    return domains, strangers, state


def serve(state: Path, domains: list[str], port: int | None, hosts_file: Path | None,
          then: Then | None = None, *, untrusted: list[str] | None = None) -> None:
    """Run the rig in the foreground until Ctrl-C (or ``then`` says stop)."""
    from fedspace import logs

    logs.configure("warning", "text")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(state, domains, untrusted or [], port, hosts_file, then))


async def _run(state: Path, domains: list[str], untrusted: list[str], port: int | None,
               hosts_file: Path | None, then: Then | None = None) -> None:
    """Start the rig, show it, run ``then`` (if any; False: stop now), then serve until
    stopped."""
    from scenarios.rig import Rig  # here: the whole instance stack is a heavy import

    done: list[str] = []
    with _out.status("starting the rig") as status:
        def progress(step: str) -> None:
            if done:
                _out.print(f"[green]✓[/] {done[-1]}", highlight=False)
            done.append(step)
            status.update(step)

        try:
            async with Rig.start(state, domains, port=port, untrusted=untrusted,
                                 hosts_file=hosts_file, progress=progress) as running:
                status.stop()
                _out.print(f"[green]✓[/] {done.pop()}", highlight=False)
                done.clear()
                show(running.info)
                if then is not None and not await then(running):
                    return
                _out.print("Ctrl-C or `fedspace rig down` stops it.", highlight=False)
                ended = await _until_stopped(running)
                _out.print(f"{ended} ended by itself; stopping …" if ended else "stopping …",
                           highlight=False)
        except (RigError, OSError) as exc:
            status.stop()
            fail(str(exc))


async def _until_stopped(running: Rig) -> str | None:
    """Until SIGINT/SIGTERM (None), or until a domain's server ends on its own (its name;
    not one stopped with ``fedspace rig stop``)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    signalled, ended = asyncio.create_task(stop.wait()), asyncio.create_task(running.wait())
    try:
        await asyncio.wait([signalled, ended], return_when=asyncio.FIRST_COMPLETED)
    finally:
        signalled.cancel()
        ended.cancel()
    return ended.result() if ended.done() and not ended.cancelled() else None


def _detach(state: Path, domains: list[str], untrusted: list[str], port: int | None,
            write_hosts: bool) -> None:
    """Start ``rig up`` in a new session, logging to rig.log; wait for rig.json."""
    args = [sys.executable, "-m", "fedspace", "rig", "up", "--state", str(state)]
    args += [a for d in domains for a in ("--domain", d)]
    args += [a for d in untrusted for a in ("--untrusted", d)]
    args += ["--port", str(port)] if port else []
    args += ["--write-hosts"] if write_hosts else []
    log_file = state / "rig.log"
    with log_file.open("ab") as log:
        child = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,  # noqa: S603
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, "COLUMNS": "160"})
    deadline = time.monotonic() + READY_TIMEOUT
    with _out.status("starting the rig in the background"):
        while True:
            if child.poll() is not None:
                fail(f"the rig did not start: {_last_line(log_file)} (log: {log_file})")
            with contextlib.suppress(RigFileError):
                info = load_rig(state / RIG_JSON)
                if info.pid == child.pid and info.status == "ready":
                    break
            if time.monotonic() > deadline:
                child.terminate()
                fail(f"the rig was not ready within {READY_TIMEOUT:g} s (log: {log_file})")
            time.sleep(0.1)
    show(info)
    _out.print(f"running in the background (pid {child.pid}, log {log_file}); stop it with "
               f"`fedspace rig down --state {shlex.quote(str(state))}`", highlight=False)


def _last_line(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].removeprefix("error: ") if lines else "(no output)"


@rig.command()
def down(state: StateOption = DEFAULT_STATE) -> None:
    """Stop the rig running from --state (it shuts down cleanly, then exits)."""
    state = state.expanduser().absolute()
    lock = StateLock(state)
    pid = lock.running_pid()
    if pid is None:
        fail(f"no rig is running from {state}")
    if pid <= 0:
        fail(f"the rig's pid file {lock.path} is unreadable; stop the process by hand")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while lock.running_pid() is not None:
        if time.monotonic() > deadline:
            fail(f"the rig (pid {pid}) did not stop within {STOP_TIMEOUT:g} s; "
                 f"`kill -9 {pid}` ends it")
        time.sleep(0.1)
    _out.print(f"rig stopped (pid {pid})", highlight=False)


@rig.command()
def stop(domain: Annotated[str, typer.Argument(help="the domain to take down")],
         state: StateOption = DEFAULT_STATE) -> None:
    """Stop one domain of the running rig (its hosts refuse connections), to play an
    outage; `fedspace rig start` brings it back with its data."""
    _control(state, "stop", domain)


@rig.command()
def start(domain: Annotated[str, typer.Argument(help="the stopped domain")],
          state: StateOption = DEFAULT_STATE) -> None:
    """Start a domain stopped with `fedspace rig stop` again."""
    _control(state, "start", domain)


def _control(state: Path, op: rig_control.Op, domain: str) -> None:
    state = state.expanduser().absolute()
    if StateLock(state).running_pid() is None:
        fail(f"no rig is running from {state}")
    try:
        _out.print(asyncio.run(rig_control.request(state, op, domain)), highlight=False)
    except RigError as exc:
        fail(str(exc))


def show(info: RigFile) -> None:
    """The tables printed when a rig is ready: hosts and URLs, users, outside-tool flags."""
    hosts = Table(title="fedspace rig", title_justify="left")
    for column in ("domain", "role", "address", "URL"):
        hosts.add_column(column, overflow="fold")
    for d in info.domains:
        for h in d.hosts:
            url = f"https://{h.name}" + ("" if h.port == 443 else f":{h.port}")
            hosts.add_row(d.name if d.trusted else f"{d.name} (untrusted)", h.role,
                          h.address, url)
    _out.print(hosts)
    _out.print("[bold]users[/] (test credentials: account password, then app password for "
               "HTTP Basic)", highlight=False)
    for d in info.domains:
        for u in d.users:
            _out.print(f"  {u.address} ({u.display_name})  {u.password}  {u.app_password}",
                       highlight=False, soft_wrap=True)
    state = Path(info.state_dir)
    first = info.domains[0]
    _out.print(
        f"CA: {info.ca_file}\n"
        f"shell: . {shlex.quote(str(state / ENV_FILE))}   then e.g. "
        f"rig_curl {first.cloud_url}/healthz\n"
        f"curl {shlex.join(info.tools.curl[:4])} … {first.cloud_url}/healthz "
        f"(all flags in {state / RIG_JSON})\n"
        f"chromium {shlex.join(info.tools.chromium)}", highlight=False, soft_wrap=True)

"""The multi-domain rig: N complete instances on loopback addresses, over real HTTPS.

Each domain D gets one ``Instance`` serving ``cloud.D``, ``idp.D`` and ``D`` (WebFinger and
OCM discovery of ``user@D``), each on its own address ``127.77.<n>.1/2/3`` — Linux routes
all of 127/8 to lo, so this needs no configuration — and all on one port: 443 when it may
be bound, else the first free of 8443…, or the one asked for. fedspace's own clients reach
rig names through ``outbound.hosts`` (no ``/etc/hosts``) and verify against the rig CA.

The domains form a closed federation (``federation.allowlist_only``): each trusts the
others' issuers and allows them as peers. ``untrusted`` domains run the same way but no other
domain trusts them (they trust the others, so what they try is refused by the receiver).
One domain can be stopped and started again while the rig runs (``rig_control``).

``async with Rig.start(state_dir, domains, port=0) as rig:`` is the API tests and scenarios
use; ``fedspace rig up`` wraps it. State (SQLite, blobs, keys, CA) stays in ``state_dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from federation.ocm import ENDPOINT_PATH
from fedspace.app import Instance
from fedspace.settings import Settings
from scenarios import rig_control, rig_seed
from scenarios.ca import Leaf, TestCA
from scenarios.rig_machine import (
    DEFAULT_DOMAINS,
    DEFAULT_STATE,
    ENV_FILE,
    RIG_JSON,
    RigError,
    StateLock,
    check_domains,
    check_state_dir,
    choose_port,
    host_plan,
    remove_hosts,
    write_hosts,
)
from scenarios.rigfile import (
    VERSION,
    DomainInfo,
    RigFile,
    RigFileError,
    RigHost,
    RigUser,
    Tools,
    env_script,
    load_rig,
    tool_flags,
)

__all__ = ["DEFAULT_DOMAINS", "DEFAULT_STATE", "Rig", "RigDomain", "RigError", "load_rig"]

HOSTS_MARK = "# fedspace-rig"
Progress = Callable[[str], None]


@dataclass
class RigDomain:
    """One running domain: its URLs and credentials (``info``), settings and instance."""

    info: DomainInfo
    settings: Settings
    instance: Instance

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def cloud_url(self) -> str:
        return self.info.cloud_url

    @property
    def issuer(self) -> str:
        return self.info.issuer

    def component(self, name: str) -> Any:
        """A service component (``discovery``, ``federation``, …) of the instance."""
        return self.instance.ctx.components[name]


def _url(host: str, port: int) -> str:
    return f"https://{host}" if port == 443 else f"https://{host}:{port}"


def _rig_secret(state_dir: Path) -> bytes:
    path = state_dir / "rig-secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class RigSettings(Settings):
    """Settings from arguments only: a developer's ``FEDSPACE_*`` environment or
    ``FEDSPACE_CONFIG`` file is meant for their own instance, not for every rig domain."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _settings(state_dir: Path, domain: str, hosts: list[RigHost], names: dict[str, str],
              ca_file: Path, leaf: tuple[Path, Path], discovery: dict[str, object],
              trusted: bool) -> Settings:
    cloud, *extra = hosts
    data_dir = state_dir / domain
    return RigSettings(**{
        "domain": domain, "public_url": _url(cloud.name, cloud.port), "data_dir": data_dir,
        "database_url": f"sqlite+aiosqlite:///{(data_dir / 'fedspace.db').as_posix()}",
        "http": {"host": cloud.address, "port": cloud.port,
                 "extra_hosts": [h.address for h in extra],
                 "tls_cert_file": leaf[0], "tls_key_file": leaf[1]},
        "grpc": {"host": cloud.address, "port": 0},
        "log": {"level": "warning", "format": "text"},
        "outbound": {"allow_http": False, "allow_private_addresses": True, "hosts": names,
                     "ca_file": ca_file},
        "discovery": discovery,
        # Trusted domains federate only with each other; an untrusted one with anyone.
        "federation": {"allowlist_only": trusted},
    })


class Rig:
    """A running rig; ``start`` it as an async context manager."""

    def __init__(self, state_dir: Path, info: RigFile, domains: dict[str, RigDomain],
                 started: list[Instance]) -> None:
        self.state_dir = state_dir
        self.info = info
        self.domains = domains
        self.stopped: set[str] = set()  # domains taken down with stop_domain
        self._started = started  # what the rig stops on exit
        self._changed = asyncio.Event()

    @property
    def rig_json(self) -> Path:
        return self.state_dir / RIG_JSON

    def __getitem__(self, domain: str) -> RigDomain:
        return self.domains[domain]

    def _domain(self, name: str) -> RigDomain:
        if name not in self.domains:
            raise RigError(f"no domain {name!r} in this rig ({', '.join(self.domains)})")
        return self.domains[name]

    async def stop_domain(self, name: str) -> str:
        """Stop one domain's instance (all its hosts refuse connections) to play an
        outage; its data stays."""
        running = self._domain(name)
        if name in self.stopped:
            raise RigError(f"{name} is already stopped")
        self.stopped.add(name)
        self._changed.set()
        self._started.remove(running.instance)
        await running.instance.stop()
        return f"{name} stopped"

    async def start_domain(self, name: str) -> str:
        """Start a stopped domain again, on the same addresses, port and data."""
        running = self._domain(name)
        if name not in self.stopped:
            raise RigError(f"{name} is running")
        instance = Instance(running.settings, signals=False)
        try:
            await instance.start()
        except OSError as exc:
            await instance.stop()
            raise RigError(f"{name} did not start: {exc}") from None
        running.instance = instance
        self._started.append(instance)
        self.stopped.discard(name)
        self._changed.set()
        return f"{name} started"

    async def _control(self, op: rig_control.Op, name: str) -> str:
        return await (self.stop_domain(name) if op == "stop" else self.start_domain(name))

    async def wait(self) -> str:
        """Until a domain's server ends by itself (not through ``stop_domain``): its name."""
        while True:
            self._changed.clear()
            waits = {asyncio.create_task(d.instance.wait()): name
                     for name, d in self.domains.items() if name not in self.stopped}
            changed = asyncio.create_task(self._changed.wait())
            try:
                done, _ = await asyncio.wait([*waits, changed],
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in [*waits, changed]:
                    task.cancel()
            ended = [waits[t] for t in done if t in waits and waits[t] not in self.stopped]
            if ended:
                return ended[0]

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, state_dir: Path | str = DEFAULT_STATE,
                    domains: Sequence[str] = DEFAULT_DOMAINS, *, port: int | None = None,
                    untrusted: Sequence[str] = (), hosts_file: Path | None = None,
                    progress: Progress = lambda _: None) -> AsyncIterator[Rig]:
        """Start, seed, write rig.json/env.sh; on exit stop everything and mark it stopped.

        ``port``: None → 443 if it can be bound, else 8443…; 0 → any port free on every
        rig address; N → exactly N. ``untrusted``: more domains the others do not trust.
        ``hosts_file``: add the rig names there while running."""
        names = check_domains([*domains, *untrusted])
        strangers = set(names[len(domains):])
        state = check_state_dir(Path(state_dir))
        lock = StateLock(state)
        lock.acquire()
        started: list[Instance] = []
        rig: Rig | None = None
        control: asyncio.AbstractServer | None = None
        try:
            rig = await cls._start(state, names, strangers, port, hosts_file, progress,
                                   started)
            control = await rig_control.serve(state, rig._control)
            yield rig
        finally:
            if control is not None:
                control.close()
                await control.wait_closed()
            if rig is not None:
                progress("stopping")
            # Idle keep-alive TLS connections between the instances would hold each server's
            # graceful shutdown for its full timeout: close the clients' side first.
            for instance in started:
                await instance.ctx.outbound.aclose()
            for instance in reversed(started):  # reverse: uvicorn restores signal handlers
                await instance.stop()
            if hosts_file is not None:
                remove_hosts(hosts_file, f"{HOSTS_MARK} {state}")
            if rig is not None:
                rig.info.status = "stopped"
                rig.info.save(rig.rig_json)
            lock.release()

    @classmethod
    async def _start(cls, state: Path, names: list[str], strangers: set[str],
                     port: int | None, hosts_file: Path | None, progress: Progress,
                     started: list[Instance]) -> Rig:
        plan = host_plan(names, 0)
        port = choose_port([h.address for hosts in plan.values() for h in hosts], port)
        plan = host_plan(names, port)
        progress(f"certificates (test CA in {state / 'tls'})")
        ca, leaves, bundle = _tls(state, plan)
        name_map = {h.name: f"{h.address}:{h.port}" for hosts in plan.values() for h in hosts}
        urls = {d: (_url(f"cloud.{d}", port), _url(f"idp.{d}", port)) for d in names}
        secret = _rig_secret(state)
        previous = _previous_users(state / RIG_JSON)
        trusted = [d for d in names if d not in strangers]
        domains: dict[str, RigDomain] = {}
        for d in names:
            progress(f"starting {d} on {', '.join(h.address for h in plan[d])} port {port}")
            leaf = leaves[d]
            # OIDC clients and relying parties only within the circle of trust
            circle = {x: urls[x] for x in ([d] if d in strangers else trusted)}
            settings = _settings(state, d, plan[d], dict(name_map), ca.cert_file,
                                 (leaf.cert_file, leaf.key_file),
                                 rig_seed.discovery_config(d, circle, secret),
                                 d not in strangers)
            instance = Instance(settings, signals=False)
            try:
                await instance.start()
            except OSError as exc:
                await instance.stop()
                raise RigError(f"{d}: {exc}; choose another --port") from None
            started.append(instance)
            cloud, issuer = urls[d]
            info = DomainInfo(d, cloud, issuer, issuer, f"{cloud}{ENDPOINT_PATH}", plan[d], [],
                              trusted=d not in strangers)
            domains[d] = RigDomain(info, settings, instance)
        issuers = {d: urls[d][1] for d in names}
        for d, running in domains.items():
            progress(f"seeding {d}")
            trusts = names if d in strangers else trusted
            user = await rig_seed.seed(running.instance, d, issuers, trusts, previous.get(d))
            running.info.users.append(user)
        infos = [r.info for r in domains.values()]
        curl, chromium = tool_flags(infos, str(ca.cert_file), port,
                                    [leaves[d].spki_sha256 for d in names])
        tools = Tools(curl, chromium, str(state / ENV_FILE), str(bundle))
        info = RigFile(VERSION, "ready", os.getpid(), str(state), str(ca.cert_file), port, infos,
                       tools, str(hosts_file) if hosts_file else None)
        if hosts_file is not None:
            remove_hosts(hosts_file, f"{HOSTS_MARK} {state}")  # left by a killed run
            write_hosts(hosts_file, [h for hs in plan.values() for h in hs],
                        f"{HOSTS_MARK} {state}")
        rig = cls(state, info, domains, started)
        (state / ENV_FILE).write_text(env_script(info, rig.rig_json))
        info.save(rig.rig_json)
        progress("ready")
        return rig


def _tls(state: Path, plan: dict[str, list[RigHost]]) -> tuple[TestCA, dict[str, Leaf], Path]:
    """The CA, one leaf per domain, and a bundle of the system roots plus the CA."""
    ca = TestCA(state / "tls")
    leaves = {d: ca.leaf(d, [h.name for h in hosts]) for d, hosts in plan.items()}
    bundle = state / "tls" / "ca-bundle.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes() + ca.cert_file.read_bytes())
    return ca, leaves, bundle


def _previous_users(path: Path) -> dict[str, RigUser]:
    """Users of the last run (to keep app passwords that still work), if any."""
    try:
        old = load_rig(path)
    except RigFileError:
        return {}
    return {d.name: d.users[0] for d in old.domains if d.users}

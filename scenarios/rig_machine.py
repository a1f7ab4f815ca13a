"""Machine-level plumbing of the rig: domain and state-dir checks, the state lock (pid
file), loopback address plan and port choice, and ``/etc/hosts`` lines."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from discovery.trust import TrustError, check_domain
from scenarios.rigfile import RigHost

DEFAULT_DOMAINS = ("zurich.test", "paris.test")
DEFAULT_STATE = Path(".fedspace-rig")  # relative: under the current directory
FALLBACK_PORTS = range(8443, 8464)
PID_FILE, RIG_JSON, ENV_FILE = "rig.pid", "rig.json", "env.sh"


class RigError(Exception):
    """The rig cannot start (or stop) as asked; the message is one actionable line."""


def check_domains(domains: Sequence[str]) -> list[str]:
    """Lower-cased, valid, distinct domains whose host names do not collide."""
    if not domains:
        raise RigError("no domain given")
    if len(domains) > 254:
        raise RigError("at most 254 domains (one 127.77.<n>.0/24 block each)")
    checked: list[str] = []
    for domain in domains:
        try:
            name = check_domain(domain)
        except TrustError as exc:
            raise RigError(str(exc)) from None
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(name)
            raise RigError(f"invalid domain {domain!r}: an IP address, not a DNS name")
        if "." not in name or name.split(".", 1)[0] in ("cloud", "idp"):
            raise RigError(f"invalid domain {domain!r}: use a name such as zurich.test "
                           "(the rig adds cloud. and idp. itself)")
        if name in checked:
            raise RigError(f"domain {name} given twice")
        checked.append(name)
    hosts = [h for d in checked for h in (d, f"cloud.{d}", f"idp.{d}")]
    clash = sorted({h for h in hosts if hosts.count(h) > 1})
    if clash:
        raise RigError(f"domains overlap: {', '.join(clash)} would be served twice")
    return checked


def check_state_dir(state_dir: Path) -> Path:
    """The absolute state folder, created and proven writable."""
    state_dir = state_dir.expanduser().absolute()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        probe = state_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RigError(f"state dir {state_dir} is not writable ({exc.strerror}); "
                       "choose another with --state") from None
    return state_dir


def host_plan(domains: Sequence[str], port: int) -> dict[str, list[RigHost]]:
    """cloud.D, idp.D, D on 127.77.<n>.1, .2, .3 (n = position of D, from 1)."""
    return {d: [RigHost(f"cloud.{d}", "cloud", f"127.77.{n}.1", port),
                RigHost(f"idp.{d}", "idp", f"127.77.{n}.2", port),
                RigHost(d, "domain", f"127.77.{n}.3", port)]
            for n, d in enumerate(domains, start=1)}


def _bind_all(addresses: Sequence[str], port: int) -> int:
    """Bind ``port`` on every address (0: the first address picks); return the port."""
    socks: list[socket.socket] = []
    try:
        for address in addresses:
            socks.append(socket.create_server((address, port)))
            port = socks[0].getsockname()[1]
        return port
    finally:
        for sock in socks:
            sock.close()


def choose_port(addresses: Sequence[str], port: int | None) -> int:
    """One port free on every address: ``port`` itself, any (0), or 443 else 8443…"""
    if port:
        try:
            return _bind_all(addresses, port)
        except OSError as exc:
            raise RigError(f"cannot listen on port {port} of the rig addresses "
                           f"({exc.strerror}); choose another --port") from None
    candidates = [0] * 20 if port == 0 else [443, *FALLBACK_PORTS]
    for candidate in candidates:
        try:
            return _bind_all(addresses, candidate)
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:  # not Linux: 127/8 beyond .1 needs aliases
                raise RigError(f"cannot use the loopback addresses {addresses[0]}…: "
                               f"{exc.strerror} (add them as lo aliases first)") from None
    raise RigError(f"no free port for the rig among 443 and {FALLBACK_PORTS.start}-"
                   f"{FALLBACK_PORTS.stop - 1}; pass --port")


class StateLock:
    """``rig.pid`` held with flock while a rig runs from the folder: a second ``rig up``
    is refused, and a stale file from a killed rig does not count."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / PID_FILE
        self._fd: int | None = None

    def running_pid(self) -> int | None:
        """The pid of the rig running from this folder, None if there is none."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode().strip()
            return int(text) if text.isdigit() else -1
        finally:
            os.close(fd)  # also releases the probe lock
        return None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = self.running_pid()
            where = self.path.parent
            raise RigError(f"a rig is already running from {where} (pid {pid}); stop it with "
                           f"`fedspace rig down --state {where}` or use another --state") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


def write_hosts(hosts_file: Path, entries: Sequence[RigHost], mark: str) -> None:
    lines = "".join(f"{h.address}\t{h.name}\t{mark}\n" for h in entries)
    text = hosts_file.read_text() if hosts_file.exists() else ""
    hosts_file.write_text(text + ("" if not text or text.endswith("\n") else "\n") + lines)


def remove_hosts(hosts_file: Path, mark: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        kept = [line for line in hosts_file.read_text().splitlines(keepends=True)
                if not line.rstrip("\n").endswith(mark)]
        hosts_file.write_text("".join(kept))

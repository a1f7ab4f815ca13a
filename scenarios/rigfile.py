"""``rig.json``: what a running rig is made of, for test suites, scripts and outside tools.

The rig writes it when every instance is up and seeded (``status: "ready"``) and marks it
``"stopped"`` on shutdown. It names every host with its loopback address and port, the URLs
of each domain, the seeded users with their passwords and app passwords (test credentials,
by design), the CA file, and the exact flags curl and Chromium need to reach the rig
without ``/etc/hosts``. ``env.sh`` next to it exports the same for a shell.

Dataclasses (plain to use) validated by pydantic when loaded, so a broken file is one line.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import TypeAdapter, ValidationError

from fedspace.outbound import MappedTransport, ssl_context

VERSION = 1
Role = Literal["cloud", "idp", "domain"]
Status = Literal["starting", "ready", "stopped"]


class RigFileError(ValueError):
    """rig.json is missing, unreadable or malformed; the message is one actionable line."""


@dataclass(frozen=True)
class RigHost:
    name: str
    role: Role
    address: str
    port: int


@dataclass(frozen=True)
class RigUser:
    username: str
    address: str  # user@domain
    display_name: str
    password: str  # the account password (login form)
    app_password: str  # HTTP Basic for WebDAV/Graph clients


@dataclass(frozen=True)
class DomainInfo:
    name: str
    cloud_url: str
    idp_url: str
    issuer: str
    ocm_endpoint: str
    hosts: list[RigHost]
    users: list[RigUser]
    trusted: bool = True  # False: an `--untrusted` domain the others refuse to federate with

    def host(self, role: Role) -> RigHost:
        return next(h for h in self.hosts if h.role == role)

    def user(self, username: str) -> RigUser:
        found = next((u for u in self.users if u.username == username), None)
        if found is None:
            raise KeyError(f"no user {username!r} in {self.name}")
        return found


@dataclass(frozen=True)
class Tools:
    """Arguments for outside tools; ``shlex.join`` them for a shell."""

    curl: list[str]
    chromium: list[str]
    env_file: str
    ca_bundle: str  # system roots plus the rig CA (SSL_CERT_FILE for everything else)


@dataclass
class RigFile:
    version: int
    status: Status
    pid: int
    state_dir: str
    ca_file: str
    port: int
    domains: list[DomainInfo]
    tools: Tools
    hosts_file: str | None = None  # where --write-hosts added lines, if it did

    def domain(self, name: str) -> DomainInfo:
        found = next((d for d in self.domains if d.name == name), None)
        if found is None:
            raise KeyError(f"no domain {name!r} in this rig")
        return found

    def user(self, address: str) -> RigUser:
        """``einstein@zurich.test`` → its entry."""
        username, _, domain = address.partition("@")
        return self.domain(domain).user(username)

    def names(self) -> dict[str, str]:
        """The name map: host → ``addr:port`` (``outbound.hosts``, ``MappedTransport``)."""
        return {h.name: f"{h.address}:{h.port}" for d in self.domains for h in d.hosts}

    def transport(self, **kwargs: Any) -> MappedTransport:
        """An httpx transport reaching rig hosts by name, verifying against the rig CA."""
        return MappedTransport(self.names(), verify=ssl_context(self.ca_file), **kwargs)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport(), **kwargs)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def save(self, path: Path) -> None:
        """Atomically, so a reader polling for readiness never sees half a file."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json())
        tmp.chmod(0o600)  # it holds (test) credentials
        tmp.replace(path)


_ADAPTER = TypeAdapter(RigFile)


def load_rig(path: Path | str) -> RigFile:
    """Read and validate rig.json; RigFileError with one line saying what is wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RigFileError(f"{path}: not found (is the rig up? `fedspace rig up`)") from None
    except OSError as exc:
        raise RigFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        rig = _ADAPTER.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise RigFileError(f"{path}: not a valid rig.json: {where}: {first['msg']}") from None
    if rig.version != VERSION:
        raise RigFileError(f"{path}: rig.json version {rig.version}, expected {VERSION}")
    return rig


def tool_flags(domains: list[DomainInfo], ca_file: str, port: int,
               spki_pins: list[str]) -> tuple[list[str], list[str]]:
    """curl and Chromium arguments that reach every rig host by name.

    curl: ``--resolve host:port:addr`` for each host; when the rig is not on 443, also
    ``--connect-to host:443:addr:port`` so port-less URLs (``https://zurich.test/.well-known/
    webfinger``, as discovery builds them) work too. Chromium: host resolver rules (the URL
    keeps its port) and the SPKI pins of the leaf keys, or import the CA instead."""
    hosts = [h for d in domains for h in d.hosts]
    curl = ["--cacert", ca_file]
    for h in hosts:
        curl += ["--resolve", f"{h.name}:{h.port}:{h.address}"]
    if port != 443:
        for h in hosts:
            curl += ["--connect-to", f"{h.name}:443:{h.address}:{h.port}"]
    rules = ", ".join(f"MAP {h.name} {h.address}" for h in hosts)
    chromium = [f"--host-resolver-rules={rules}",
                f"--ignore-certificate-errors-spki-list={','.join(spki_pins)}"]
    return curl, chromium


def _var(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", text).upper()


def env_script(rig: RigFile, rig_json: Path) -> str:
    """A POSIX shell file to source: CA variables, URLs, credentials and ``rig_curl``."""
    q = shlex.quote
    lines = [
        "# fedspace rig environment: source it (. ./env.sh); rewritten by every `rig up`",
        f"export FEDSPACE_RIG={q(str(rig_json))}",
        f"export FEDSPACE_RIG_CA={q(rig.ca_file)}",
        # The bundle keeps the system roots, so other https sites still work in this shell.
        *(f"export {v}={q(rig.tools.ca_bundle)}" for v in (
            "CURL_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")),
        f"export NODE_EXTRA_CA_CERTS={q(rig.ca_file)}",
        f"export FEDSPACE_RIG_CURL_ARGS={q(shlex.join(rig.tools.curl))}",
        f"export FEDSPACE_RIG_CHROMIUM_ARGS={q(shlex.join(rig.tools.chromium))}",
    ]
    for d in rig.domains:
        lines += [f"export RIG_{_var(d.name)}_CLOUD={q(d.cloud_url)}",
                  f"export RIG_{_var(d.name)}_IDP={q(d.idp_url)}"]
        for u in d.users:
            lines += [f"export RIG_{_var(u.username)}_PASSWORD={q(u.password)}",
                      f"export RIG_{_var(u.username)}_APP_PASSWORD={q(u.app_password)}"]
    lines += [f'rig_curl() {{ curl {shlex.join(rig.tools.curl)} "$@"; }}', ""]
    return "\n".join(lines)

"""Which peer instances may federate with this one.

Two sources are merged, like trusted issuers (``discovery.trust``): the configuration
(``federation.allow_peers`` / ``deny_peers``, fixed for the life of the process, and winning
over the table) and the ``federation_peers`` table, which ``fedspace trust peer …`` changes
at runtime, possibly from another process. Decisions come from memory; the table is re-read
once ``federation.peer_cache_seconds`` have passed, so a change made elsewhere applies
within that time and one made through this object at once.

Trust is by domain (checked against request signatures by the caller), never by address.

With ``federation.require_invite`` a peer that is not explicitly allowed must also have an
accepted OCM invite with one of our users (a row in ``ocm_contacts``, either direction).
The set of such peers is cached with the peer table, and ``contact_added`` updates it at
once. The invite flow itself is how a peer earns that contact, so decisions made for it
(``decide(…, inviting=True)``) skip this rule (deny lists and ``allowlist_only`` still apply).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from fedspace.db import Database
from fedspace.settings import Settings
from fedspace.sqltypes import now_ms

from .models import federation_peers, ocm_contacts
from .settings import check_peer_domain

Policy = Literal["allow", "deny"]
_DONE: dict[Policy, str] = {"allow": "allowed", "deny": "denied"}


class PeerError(ValueError):
    """A peer policy change was refused; the message says why."""


@dataclass(frozen=True, slots=True)
class Peer:
    domain: str
    policy: Policy
    configured: bool = False  # from the configuration: cannot be changed at runtime
    added_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


def check_domain(domain: str) -> str:
    try:
        return check_peer_domain(domain)
    except ValueError as exc:
        raise PeerError(str(exc)) from None


class PeerPolicy:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings.federation
        self._peers: dict[str, Peer] = {}
        self._fresh_until = 0.0
        # Peers with at least one contact; loaded only while require_invite is on.
        self._contact_peers: frozenset[str] | None = None
        self._lock = asyncio.Lock()

    @property
    def require_invite(self) -> bool:
        """Only peers explicitly allowed or with an accepted OCM invite may federate."""
        return self.settings.require_invite

    def accepts_unsigned(self, domain: str) -> bool:
        """Whether this (legacy) peer may send unsigned requests; ``decide`` still applies."""
        return domain.lower() in self.settings.accept_unsigned_from

    def _configured(self) -> dict[str, Peer]:
        peers = {d: Peer(d, "allow", configured=True) for d in self.settings.allow_peers}
        peers.update({d: Peer(d, "deny", configured=True) for d in self.settings.deny_peers})
        return peers

    async def _reload(self) -> None:
        contacts = None
        async with self.db.read() as conn:
            rows = (await conn.execute(select(federation_peers))).all()
            if self.settings.require_invite:
                contacts = frozenset((await conn.execute(
                    select(ocm_contacts.c.peer).distinct())).scalars())
        merged = {r.domain: Peer(r.domain, r.policy, added_ms=r.added_ms) for r in rows}
        merged.update(self._configured())  # the configuration wins over the table
        self._peers = merged
        self._contact_peers = contacts
        self._fresh_until = time.monotonic() + self.settings.peer_cache_seconds

    def _stale(self) -> bool:
        return time.monotonic() >= self._fresh_until or (
            self.settings.require_invite and self._contact_peers is None)

    async def _current(self) -> dict[str, Peer]:
        if self._stale():
            async with self._lock:  # one re-read, however many requests are waiting
                if self._stale():
                    await self._reload()
        return self._peers

    def contact_added(self, domain: str) -> None:
        """An invite with ``domain`` was accepted in this process: it counts at once."""
        if self._contact_peers is not None:
            self._contact_peers = self._contact_peers | {domain.lower()}

    async def decide(self, domain: str, *, inviting: bool = False) -> Decision:
        """May this peer federate with us (send or receive shares and notifications)?
        ``inviting``: for the invite flow, which ``require_invite`` must not block (it is
        how a peer gets its first contact)."""
        try:
            domain = check_peer_domain(domain)
        except ValueError:
            return Decision(False, "invalid peer domain")
        peer = (await self._current()).get(domain)
        source = "configuration" if peer and peer.configured else "trust peer list"
        if peer and peer.policy == "deny":
            return Decision(False, f"{domain} is denylisted ({source})")
        if peer:
            return Decision(True, f"{domain} is allowlisted ({source})")
        if self.settings.allowlist_only:
            return Decision(False, f"{domain} is not on the allowlist "
                                   "(federation.allowlist_only is on)")
        if self.settings.require_invite and not inviting:
            if domain not in (self._contact_peers or ()):
                return Decision(False, f"no accepted invite with {domain} "
                                       "(federation.require_invite is on)")
            return Decision(True, f"{domain} has an accepted invite "
                                  "(federation.require_invite is on)")
        return Decision(True, "open federation (federation.allowlist_only is off)")

    async def list(self) -> list[Peer]:
        return sorted((await self._current()).values(), key=lambda p: p.domain)

    async def add(self, domain: str, policy: Policy = "allow") -> Peer:
        """Allow or deny a peer; an existing entry changes its policy."""
        domain = check_domain(domain)
        if domain in self._configured():
            raise PeerError(f"peer {domain} is set by the configuration; change it there")
        entry = Peer(domain, policy, added_ms=now_ms())
        try:
            async with self.db.write() as conn:
                current = await conn.scalar(select(federation_peers.c.policy).where(
                    federation_peers.c.domain == domain))
                if current == policy:
                    raise PeerError(f"peer {domain} is already {_DONE[policy]}")
                if current is None:
                    await conn.execute(insert(federation_peers).values(
                        domain=domain, policy=policy, added_ms=entry.added_ms))
                else:
                    await conn.execute(update(federation_peers).where(
                        federation_peers.c.domain == domain).values(
                        policy=policy, added_ms=entry.added_ms))
        except IntegrityError:  # added concurrently by another process
            raise PeerError(f"peer {domain} was just added elsewhere; try again") from None
        await self._reload()
        return entry

    async def remove(self, domain: str) -> None:
        domain = check_domain(domain)
        if domain in self._configured():
            raise PeerError(f"peer {domain} is set by the configuration; remove it there")
        async with self.db.write() as conn:
            result = await conn.execute(
                delete(federation_peers).where(federation_peers.c.domain == domain))
        if result.rowcount == 0:
            raise PeerError(f"peer {domain} is not listed")
        await self._reload()

"""Shares sent to users of other instances: the origin side of OCM.

The registry keeps who may reach a space: a user of another instance is a ``federated``
member named by her address. This module keeps the OCM side of each such membership (an
``ocm_shares`` row: its ``providerId``, the hashed shared secret, what the recipient
decided) and queues, in the registry's transaction (an ``OutgoingListener``), the messages
that tell her instance:

* a new member → ``POST /shares`` (``protocol.name`` ``multi``, the WebDAV URL of the
  space, ``code`` and ``sharedSecret`` for the token endpoint);
* a role change → ``RESHARE_CHANGE_PERMISSION`` with the new ``permissions``;
* removal (or the space deleted) → ``SHARE_UNSHARED``; a share still waiting in the outbox
  is simply withdrawn, so the peer never hears of it;
* a new root eTag of a share she accepted → ``RESOURCE_CHANGED`` (our extension, the
  ``change-notifications`` capability), coalesced: while one waits in the outbox, newer
  changes replace its payload instead of queueing more.

Messages to a peer are addressed ``ocm:/<path>``: the peer's ``endPoint`` is discovered when
the message is sent (``FederationComponent.deliver``), so a peer that is down when the
share is made is discovered once it is back. The secret is sealed inside the queued
payload and unsealed only to be sent.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from sqlalchemy import bindparam, delete, insert, literal, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from fedspace.auth import Principal
from fedspace.sqltypes import now_ms
from registry.drives import Drive, Member, RootChange
from registry.graph import iso

from .models import ocm_shares, outbox
from .outbox import enqueue, enqueue_now, state_of
from .sealing import Sealer

if TYPE_CHECKING:
    from fedspace.runtime import Context
    from registry.service import RegistryService

    from .component import FederationComponent

SEALED = "$sealed"
CHANGED = "RESOURCE_CHANGED"
CHANGE_CAPABILITY = "change-notifications"
PERMISSIONS = {"viewer": ["read"], "editor": ["read", "write"]}


def secret_hash(secret: str) -> str:
    """How a share's secret is stored and looked up: it is random and 256 bits long, so a
    plain SHA-256 is enough (no salt or stretching needed against guessing)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def unseal(value: Any, sealer: Sealer) -> Any:
    """``value`` with every ``{"$sealed": …}`` replaced by what it seals (each sealed value
    opened once: a share carries its secret twice)."""
    opened: dict[str, str] = {}

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {SEALED}:
                token = value[SEALED]
                if token not in opened:
                    opened[token] = sealer.open(token)
                return opened[token]
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(value)


def delivery_state(share_state: str, message_state: str | None) -> str:
    """What the sharer sees: queued, delivered, accepted, declined or failed."""
    if share_state in ("accepted", "declined"):
        return share_state
    if message_state is None or message_state in ("queued", "delivering"):
        return "queued"
    return "failed" if message_state == "failed" else "delivered"


# Shares with the delivery of their ``share:<id>`` message: one query, not one per share.
_WITH_DELIVERY = select(
    ocm_shares, outbox.c.state.label("m_state"), outbox.c.attempts.label("m_attempts"),
    outbox.c.next_attempt_ms.label("m_next"), outbox.c.last_status.label("m_status"),
    outbox.c.last_error.label("m_error"),
).outerjoin(outbox, outbox.c.dedupe_key == literal("share:") + ocm_shares.c.id)
_OF_SPACE = _WITH_DELIVERY.where(ocm_shares.c.space_id == bindparam("space_id"))


async def list_shares(conn: AsyncConnection, sharer_id: str | None = None
                      ) -> list[dict[str, Any]]:
    """Shares (of one sharer, or all) with their delivery state, newest first."""
    query = _WITH_DELIVERY.order_by(ocm_shares.c.created_ms.desc())
    if sharer_id is not None:
        query = query.where(ocm_shares.c.sharer_id == sharer_id)
    return [described(row) for row in (await conn.execute(query))]


async def _refused(conn: AsyncConnection, share_id: str) -> bool:
    """Whether the peer refused the share outright (a 4xx): it holds nothing to unshare."""
    message = await state_of(conn, f"share:{share_id}")
    return (message is not None and message.state == "failed"
            and message.last_status is not None and 400 <= message.last_status < 500)


def described(row: Any) -> dict[str, Any]:
    """One share (a row of ``_WITH_DELIVERY``) as the sharer's API and ``fedspace share
    list`` show it."""
    out: dict[str, Any] = {
        "providerId": row.id, "driveId": row.space_id, "recipient": row.recipient,
        "peer": row.peer, "role": row.role, "state": delivery_state(row.state, row.m_state),
        "sharedDateTime": iso(row.created_ms), "updatedDateTime": iso(row.updated_ms)}
    if row.m_state is not None:
        out["delivery"] = {
            "attempts": row.m_attempts, "lastStatus": row.m_status, "lastError": row.m_error,
            "nextAttemptDateTime": iso(row.m_next)
            if row.m_state == "queued" and row.m_next else None}
    return out


class OutgoingShares:
    """The registry's ``OutgoingListener``, and the origin's view of its shares."""

    def __init__(self, federation: FederationComponent, registry: RegistryService) -> None:
        self.federation = federation
        self.settings = federation.settings
        self.registry = registry
        self.sealer = Sealer.in_data_dir(federation.settings.data_dir)

    # -- the registry's hooks (inside its transaction) ------------------------------------

    async def shared(self, conn: AsyncConnection, drive: Drive, member: Member,
                     sharer: Principal) -> None:
        await conn.run_sync(self.shared_now, drive, member, sharer)

    def shared_now(self, conn: Connection, drive: Drive, member: Member,
                   sharer: Principal) -> None:
        """``shared`` for a transaction run as one sync function (``Database.write_with``)."""
        row = conn.execute(select(ocm_shares).where(
            ocm_shares.c.space_id == drive.id, ocm_shares.c.recipient == member.id)).first()
        now = now_ms()
        if row is not None and row.state != "declined":
            if row.role != member.role:
                conn.execute(update(ocm_shares).where(ocm_shares.c.id == row.id)
                             .values(role=member.role, updated_ms=now))
                enqueue_now(conn, peer=row.peer, url="ocm:/notifications", kind="notification",
                            dedupe_key=f"perm:{row.id}:{uuid.uuid4().hex}",
                            payload=self._message(row.id, "RESHARE_CHANGE_PERMISSION",
                                                  {"permissions": PERMISSIONS[member.role]}))
            return
        if row is not None:  # declined before: this is a new share, with a new id
            conn.execute(delete(ocm_shares).where(ocm_shares.c.id == row.id))
        share_id, secret = str(uuid.uuid4()), secrets.token_urlsafe(32)
        peer = member.id.rpartition("@")[2]
        conn.execute(insert(ocm_shares).values(
            id=share_id, space_id=drive.id, recipient=member.id, peer=peer, role=member.role,
            secret_hash=secret_hash(secret), state="sent", sharer_id=sharer.id,
            created_ms=now, updated_ms=now))
        sealed = {SEALED: self.sealer.seal(secret)}
        me = f"{sharer.username}@{self.settings.domain}"
        enqueue_now(conn, peer=peer, url="ocm:/shares", kind="share",
                    dedupe_key=f"share:{share_id}", payload={
                        "shareWith": member.id, "name": drive.name,
                        "description": drive.description, "providerId": share_id,
                        "owner": me, "sender": me, "ownerDisplayName": sharer.display_name,
                        "senderDisplayName": sharer.display_name, "shareType": "user",
                        "resourceType": "file", "code": sealed,
                        "protocol": {"name": "multi", "webdav": {
                            "uri": f"{self.settings.public_url}/dav/spaces/{drive.id}",
                            "sharedSecret": sealed,
                            "permissions": PERMISSIONS[member.role], "requirements": []}}})

    async def unshared(self, conn: AsyncConnection, space_id: str, address: str) -> None:
        row = (await conn.execute(select(ocm_shares).where(
            ocm_shares.c.space_id == space_id, ocm_shares.c.recipient == address))).first()
        if row is None:
            return
        await conn.execute(delete(ocm_shares).where(ocm_shares.c.id == row.id))
        withdrawn = await self._withdraw(conn, row.id) or await _refused(conn, row.id)
        if not withdrawn and row.state != "declined":
            await self._notify(conn, row.id, row.peer, "SHARE_UNSHARED", {},
                               key=f"unshare:{row.id}")

    async def roots_changed(self, conn: AsyncConnection, changes: list[RootChange]) -> None:
        by_space = {c.space_id: c for c in changes}
        rows = (await conn.execute(select(ocm_shares.c.id, ocm_shares.c.peer,
                                          ocm_shares.c.space_id).where(
            ocm_shares.c.space_id.in_(by_space), ocm_shares.c.state == "accepted"))).all()
        for row in rows:
            change = by_space[row.space_id]
            payload = self._message(row.id, CHANGED, {
                "eTag": change.etag, "size": change.size,
                "lastModifiedDateTime": iso(change.modified_ms)})
            waiting = await conn.execute(update(outbox).where(
                outbox.c.kind == "change", outbox.c.state == "queued", outbox.c.peer == row.peer,
                outbox.c.dedupe_key.like(f"change:{row.id}:%"),
            ).values(payload=orjson.dumps(payload).decode()))
            if waiting.rowcount == 0:
                await enqueue(conn, peer=row.peer, url="ocm:/notifications", kind="change",
                              dedupe_key=f"change:{row.id}:{uuid.uuid4().hex}", payload=payload)

    def committed(self) -> None:
        self.federation.delivery.notify()

    async def refusal(self, peer: str) -> str | None:
        decision = await self.federation.peers.decide(peer)
        return None if decision.allowed else decision.reason

    async def describe(self, space_id: str) -> dict[str, dict[str, Any]]:
        def read(conn: Connection) -> dict[str, dict[str, Any]]:
            rows = conn.execute(_OF_SPACE, {"space_id": space_id}).all()
            return {row.recipient: described(row) for row in rows}

        return await self.federation.ctx.db.read_with(read)

    # -- the recipient's decision (POST /notifications from her instance) -----------------

    async def decided(self, peer: str, provider_id: str, accepted: bool) -> bool:
        """Record SHARE_ACCEPTED / SHARE_DECLINED; False if ``peer`` has no such share.

        Declining ends the recipient's access at once (her membership goes); the row
        stays, so the sharer sees that she declined.
        """
        async with self.federation.ctx.db.read() as conn:
            row = (await conn.execute(select(ocm_shares).where(
                ocm_shares.c.id == provider_id, ocm_shares.c.peer == peer))).first()
        if row is None:
            return False
        if accepted:
            if row.state == "sent":
                async with self.federation.ctx.db.write() as conn:
                    await conn.execute(update(ocm_shares).where(
                        ocm_shares.c.id == row.id, ocm_shares.c.state == "sent",
                    ).values(state="accepted", updated_ms=now_ms()))
            return True
        if row.state != "declined":
            async def record(conn: AsyncConnection) -> None:
                await conn.execute(update(ocm_shares).where(ocm_shares.c.id == row.id)
                                   .values(state="declined", updated_ms=now_ms()))
                await self._withdraw(conn, row.id, kinds=("notification", "change"))

            await self.registry.drop_federated_member(row.space_id, row.recipient, record)
        return True

    # -- the sharer's view ----------------------------------------------------------------

    async def list_for(self, sharer_id: str) -> list[dict[str, Any]]:
        async with self.federation.ctx.db.read() as conn:
            return await list_shares(conn, sharer_id)

    # -- queueing -------------------------------------------------------------------------

    @staticmethod
    def _message(share_id: str, kind: str, notification: dict[str, Any]) -> dict[str, Any]:
        return {"notificationType": kind, "resourceType": "file", "providerId": share_id,
                "notification": notification}

    async def _notify(self, conn: AsyncConnection, share_id: str, peer: str, kind: str,
                      notification: dict[str, Any], *, key: str) -> None:
        await enqueue(conn, peer=peer, url="ocm:/notifications", kind="notification",
                      dedupe_key=key, payload=self._message(share_id, kind, notification))

    @staticmethod
    async def _withdraw(conn: AsyncConnection, share_id: str,
                        kinds: Iterable[str] = ("share", "notification", "change")) -> bool:
        """Drop this share's messages still waiting in the outbox; True if the share
        itself was among them, never attempted (so the peer never heard of it)."""
        keys = {"share": f"share:{share_id}", "notification": f"perm:{share_id}:%",
                "change": f"change:{share_id}:%"}
        withdrawn = False
        for kind in kinds:
            query = delete(outbox).where(outbox.c.state == "queued",
                                         outbox.c.dedupe_key.like(keys[kind]))
            if kind == "share":
                query = query.where(outbox.c.attempts == 0)
            done = await conn.execute(query)
            withdrawn |= kind == "share" and done.rowcount > 0
        return withdrawn



def router(shares: OutgoingShares, ctx: Context) -> APIRouter:
    """``GET /api/v1/ocm/shares``: the caller's shares with other instances and where
    each stands (declined ones too, which the drive's permissions no longer list)."""
    r = APIRouter()

    @r.get("/api/v1/ocm/shares", include_in_schema=False)
    async def list_shares(request: Request) -> Response:
        principal = await ctx.auth.authenticate(request)
        return Response(orjson.dumps({"value": await shares.list_for(principal.id)}),
                        media_type="application/json")

    return r

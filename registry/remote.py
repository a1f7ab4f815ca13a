"""Remote spaces: shares received from other instances (a mixin of ``RegistryService``)."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from fedspace.auth import Principal
from fedspace.sqltypes import now_ms
from registry.drives import (
    Conflict,
    Drive,
    Invalid,
    RemoteShare,
    RemoteSpace,
    RemoteState,
    Unavailable,
    drive_alias,
)
from registry.models import next_seq, space_members, spaces
from registry.roles import Role


class RemoteSpaces:
    """Uses the core of ``RegistryService``: ``db``, ``bus``, ``_next_seq``, ``get_drive``,
    ``remote_listeners``."""

    async def register_remote_space(self, user_id: str, share: RemoteShare) -> tuple[str, bool]:
        """Record an incoming share as a pending remote space of ``user_id``.

        Idempotent on (origin, providerId): receiving the same share again changes nothing
        and returns the same space; the bool says whether it was created now.
        """
        space_id, now = str(uuid.uuid4()), now_ms()

        def write(conn: Connection) -> str | None:
            known = conn.scalar(_REMOTE_ID, {"domain": share.domain,
                                             "provider_id": share.provider_id})
            if known is not None:
                return str(known)
            conn.execute(insert(spaces).values(
                id=space_id, type="remote", name=share.name,
                alias=drive_alias("remote", share.name), description=share.description,
                quota_total=0, provider_id=None, root_id=space_id,
                etag=uuid.uuid4().hex, size=0, created_ms=now, modified_ms=now,
                change_seq=next_seq(conn), remote_url=share.url,
                remote_state="pending", remote_domain=share.domain,
                remote_provider_id=share.provider_id, remote_endpoint=share.endpoint,
                remote_sender=share.sender, remote_sender_name=share.sender_name,
                remote_owner=share.owner, remote_owner_name=share.owner_name,
                remote_secret=share.secret))
            conn.execute(insert(space_members).values(
                space_id=space_id, principal_type="user", principal_id=user_id,
                role=share.role, created_ms=now))
            return None

        try:  # one transaction in one round trip: every received share is one
            known = await self.db.write_with(write)
        except IntegrityError:  # the same share, received concurrently
            async with self.db.read() as conn:
                known = await self._remote_id(conn, share.domain, share.provider_id)
            if known is None:
                raise
        if known is not None:
            return known, False
        self.bus.memberships_changed({user_id})
        return space_id, True

    async def decide_remote(self, principal: Principal, space_id: str,
                            state: RemoteState) -> Drive:
        """Accept or decline a remote space; the listeners tell its origin.

        Pending spaces may be accepted or declined, accepted ones declined (the recipient
        leaves the share); a declined share cannot be taken back, as its origin may have
        dropped it. Repeating a decision is a no-op.
        """
        drive = await self.get_drive(principal, space_id)
        if drive.type != "remote":
            raise Invalid("only remote spaces are accepted or declined")
        if drive.remote_state == state:
            return drive
        if drive.remote_state == "declined":
            raise Conflict("the share was declined; ask its sender to share it again")
        if not self.remote_listeners:
            raise Unavailable("the federation service does not run with this registry")
        async with self.db.write() as conn:
            row = (await conn.execute(
                update(spaces).where(spaces.c.id == space_id,
                                     spaces.c.remote_state == drive.remote_state)
                .values(remote_state=state, change_seq=await self._next_seq(conn))
                .returning(spaces.c.remote_domain, spaces.c.remote_provider_id,
                           spaces.c.remote_endpoint))).first()
            if row is None:
                raise Conflict("the share was decided by another request; reload it")
            remote = RemoteSpace(space_id, row.remote_domain, row.remote_provider_id,
                                 row.remote_endpoint, state)
            for listener in self.remote_listeners:
                await listener.decided(conn, remote)
        for listener in self.remote_listeners:
            listener.committed()
        self.bus.memberships_changed({m.id for m in drive.members})
        return await self.get_drive(principal, space_id)

    async def remove_remote_space(self, domain: str, provider_id: str) -> bool:
        """The origin unshared: forget the remote space at once; False if unknown."""
        async with self.db.read() as conn:
            space_id = await self._remote_id(conn, domain, provider_id)
        if space_id is None:
            return False
        await self._forget(space_id)
        return True

    async def set_remote_role(self, domain: str, provider_id: str, role: Role) -> bool:
        """The origin changed the recipient's permissions; False if the share is unknown."""
        async with self.db.write() as conn:
            space_id = await self._remote_id(conn, domain, provider_id)
            if space_id is None:
                return False
            members = set((await conn.execute(
                update(space_members).where(space_members.c.space_id == space_id)
                .values(role=role.name).returning(space_members.c.principal_id))).scalars())
            await conn.execute(update(spaces).where(spaces.c.id == space_id).values(
                change_seq=await self._next_seq(conn)))
        self.bus.memberships_changed(members)
        return True

    async def set_remote_root(self, domain: str, provider_id: str, etag: str, size: int,
                              modified_ms: int) -> bool:
        """The origin's root state of a share changed; False if the share is unknown."""
        async with self.db.write() as conn:
            space_id = await self._remote_id(conn, domain, provider_id)
            if space_id is None:
                return False
            await conn.execute(update(spaces).where(spaces.c.id == space_id).values(
                etag=etag, size=size, modified_ms=modified_ms,
                change_seq=await self._next_seq(conn)))
        self.bus.drives_changed()
        return True

    @staticmethod
    async def _remote_id(conn: AsyncConnection, domain: str, provider_id: str) -> str | None:
        return await conn.scalar(_REMOTE_ID, {"domain": domain, "provider_id": provider_id})


_REMOTE_ID = select(spaces.c.id).where(spaces.c.remote_domain == bindparam("domain"),
                                       spaces.c.remote_provider_id == bindparam("provider_id"))

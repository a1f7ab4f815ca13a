"""Members of a space and their roles (a mixin of ``RegistryService``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from sqlalchemy import and_, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from fedspace.auth import Principal
from fedspace.permissions import Permission
from fedspace.sqltypes import now_ms
from registry.drives import (
    Conflict,
    Drive,
    Forbidden,
    Invalid,
    Member,
    NotFound,
    Unavailable,
)
from registry.models import space_members, spaces
from registry.roles import Role


class Memberships:
    """Uses the core of ``RegistryService``: ``db``, ``bus``, ``outgoing``, ``_next_seq``,
    ``_managed``, ``get_drive``."""

    async def add_members(self, principal: Principal, space_id: str,
                          recipients: Iterable[tuple[str, str]], role: Role) -> list[Member]:
        """Add or re-role (type, id) recipients; returns the resulting memberships."""
        drive = await self._managed(principal, space_id)
        if drive.type == "personal":
            raise Forbidden("members cannot be added to a personal space")
        if drive.disabled:
            raise Conflict("the space is disabled; restore it first")
        added = [Member(kind, pid, role.name) for kind, pid in dict.fromkeys(recipients)]
        federated = [m for m in added if m.type == "federated"]
        if federated:
            await self._can_federate(drive, role, [m.id for m in federated])
        existing = {(m.type, m.id) for m in drive.members}
        now = now_ms()
        async with self.db.write() as conn:
            for m in added:
                if (m.type, m.id) in existing:
                    await self._set_role(conn, drive, m, role.name)
                else:
                    await conn.execute(insert(space_members).values(
                        space_id=space_id, principal_type=m.type, principal_id=m.id,
                        role=m.role, created_ms=now))
            await conn.execute(update(spaces).where(spaces.c.id == space_id).values(
                change_seq=await self._next_seq(conn)))
            for m in federated:
                assert self.outgoing is not None
                await self.outgoing.shared(conn, drive, m, principal)
        if federated and self.outgoing is not None:
            self.outgoing.committed()
        self.bus.memberships_changed({m.id for m in added})
        return added

    async def _can_federate(self, drive: Drive, role: Role, addresses: list[str]) -> None:
        """Users of other instances may be viewers or editors of a project space or of
        a folder's share, when the federation service runs with this registry and its
        peer policy lets us federate with their instances (refused now, not after a
        delivery the peer would refuse anyway)."""
        if self.outgoing is None:
            raise Unavailable("the federation service does not run with this registry")
        if drive.type not in ("project", "share"):
            raise Invalid(f"a {drive.type} space cannot be shared with another instance")
        if role.name == "manager":
            raise Invalid("users of other instances can be viewers or editors, not managers")
        for address in addresses:
            refused = await self.outgoing.refusal(address.rpartition("@")[2])
            if refused:
                raise Forbidden(f"cannot share with {address}: {refused}")

    async def set_member_role(self, principal: Principal, space_id: str, permission_id: str,
                              role: Role) -> Member:
        drive = await self._managed(principal, space_id)
        member = self._member(drive, permission_id)
        changed = Member(member.type, member.id, role.name)
        if member.type == "federated":
            await self._can_federate(drive, role, [member.id])
        async with self.db.write() as conn:
            await self._set_role(conn, drive, member, role.name)
            if member.type == "federated" and member.role != role.name:
                assert self.outgoing is not None
                await self.outgoing.shared(conn, drive, changed, principal)
        if member.type == "federated" and self.outgoing is not None:
            self.outgoing.committed()
        self.bus.memberships_changed({member.id})
        return changed

    async def remove_member(self, principal: Principal, space_id: str, permission_id: str) -> None:
        drive = await self._managed(principal, space_id)
        member = self._member(drive, permission_id)
        self._keep_a_manager(drive, member, None)
        async with self.db.write() as conn:
            await conn.execute(delete(space_members).where(
                space_members.c.space_id == space_id,
                space_members.c.principal_type == member.type,
                space_members.c.principal_id == member.id))
            await conn.execute(update(spaces).where(spaces.c.id == space_id).values(
                change_seq=await self._next_seq(conn)))
            if member.type == "federated" and self.outgoing is not None:
                await self.outgoing.unshared(conn, space_id, member.id)
        if member.type == "federated" and self.outgoing is not None:
            self.outgoing.committed()
        self.bus.memberships_changed({member.id})
        left = [m for m in drive.members if m != member]
        if drive.type == "share" and all(m.role == "manager" for m in left):
            # Shared with nobody any more: the share space has no purpose left.
            assert drive.provider_id is not None
            await self._delete_share(space_id, drive.provider_id)

    async def drop_federated_member(
        self, space_id: str, address: str,
        also: Callable[[AsyncConnection], Awaitable[None]],
    ) -> None:
        """The recipient declined: her access ends, and ``also`` runs in the same
        transaction (the federation records the decision); no notification goes back."""
        async with self.db.write() as conn:
            await conn.execute(delete(space_members).where(
                space_members.c.space_id == space_id,
                space_members.c.principal_type == "federated",
                space_members.c.principal_id == address))
            await conn.execute(update(spaces).where(spaces.c.id == space_id).values(
                change_seq=await self._next_seq(conn)))
            await also(conn)
        self.bus.memberships_changed({address})

    async def list_members(self, principal: Principal, space_id: str) -> Drive:
        drive = await self.get_drive(principal, space_id)
        if not drive.role.permissions & Permission.LIST_MEMBERS:
            raise Forbidden("you may not list the members of this space")
        return drive

    @staticmethod
    def _member(drive: Drive, permission_id: str) -> Member:
        for m in drive.members:
            if m.permission_id == permission_id:
                return m
        raise NotFound(f"no permission {permission_id!r} on this drive")

    @staticmethod
    def _keep_a_manager(drive: Drive, member: Member, new_role: str | None) -> None:
        managers = [m.id for m in drive.members if m.role == "manager" and m.type == "user"]
        if managers == [member.id] and member.type == "user" and new_role != "manager":
            raise Conflict("the last manager of a space cannot be removed or demoted")

    async def _set_role(self, conn: AsyncConnection, drive: Drive, member: Member,
                        role: str) -> None:
        self._keep_a_manager(drive, member, role)
        await conn.execute(update(space_members).where(and_(
            space_members.c.space_id == drive.id,
            space_members.c.principal_type == member.type,
            space_members.c.principal_id == member.id)).values(role=role))
        await conn.execute(update(spaces).where(spaces.c.id == drive.id).values(
            change_seq=await self._next_seq(conn)))

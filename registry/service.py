"""Spaces, memberships and roles (logic only: no HTTP types).

Reads are single indexed queries over ``spaces`` and ``space_members`` (``registry.reads``);
providers are called only to create, delete or re-quota a space, never to list drives.

A ``share`` space is a folder of a personal or project space (its *base*) shared as a
space of its own: its members are the recipients plus the sharers as managers, while the
base space's members keep their own access. The provider roots it at the folder's node,
so one folder has one share space, found again when the folder is shared again.

A ``remote`` space is a share received from another instance (OCM): it has no provider
here, only the origin's WebDAV URL, and the recipient as its one member. It is *pending*
until she accepts or declines it; the federation service, a ``RemoteListener``, queues the
answer to the origin in the transaction that records the decision (the registry never
touches federation tables, and federation never touches the registry's).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from fedspace.auth import Principal
from fedspace.db import Database
from fedspace.rpc import spaces_pb2 as pb
from fedspace.sqltypes import now_ms
from registry.drives import (
    Conflict,
    Drive,
    Forbidden,
    Invalid,
    OutgoingListener,
    RemoteListener,
    RootChange,
    drive_alias,
)
from registry.events import EventBus
from registry.members import Memberships
from registry.models import counters, next_seq, space_members, spaces
from registry.providers import Providers
from registry.reads import DriveReads
from registry.remote import RemoteSpaces
from registry.settings import RegistrySettings
from registry.sharing import FolderSharing


class RegistryService(DriveReads, FolderSharing, Memberships, RemoteSpaces):
    def __init__(
        self, db: Database, settings: RegistrySettings, providers: Providers, bus: EventBus
    ) -> None:
        self.db = db
        self.settings = settings
        self.providers = providers
        self.bus = bus
        self.remote_listeners: list[RemoteListener] = []
        self.outgoing: OutgoingListener | None = None

    # -- sequencing ---------------------------------------------------------------

    async def init(self) -> None:
        async with self.db.write() as conn:
            exists = (
                await conn.execute(select(counters.c.value).where(counters.c.name == "change_seq"))
            ).first()
            if exists is None:
                await conn.execute(insert(counters).values(name="change_seq", value=0))

    @staticmethod
    async def _next_seq(conn: AsyncConnection) -> int:
        return await conn.run_sync(next_seq)

    # -- creating -----------------------------------------------------------------

    async def ensure_personal_space(self, principal: Principal) -> None:
        """First authenticated request of a local user: make sure the personal space exists."""
        if principal.kind != "user":
            return
        async with self.db.read() as conn:
            found = (
                await conn.execute(
                    select(spaces.c.id).where(spaces.c.personal_user_id == principal.id)
                )
            ).first()
        if found is None:
            with contextlib.suppress(Conflict):  # a concurrent first request created it
                await self._create(
                    principal,
                    "personal",
                    principal.display_name,
                    "",
                    self.settings.personal_quota,
                    alias=f"personal/{principal.username}",
                    personal_user_id=principal.id,
                )

    async def create_project(
        self, principal: Principal, name: str, description: str = "", quota: int | None = None
    ) -> Drive:
        if principal.kind != "user":
            raise Forbidden("guests cannot create spaces")
        if quota is not None and quota != self.settings.project_quota and not principal.is_admin:
            raise Forbidden("only administrators can choose a quota")
        space_id = await self._create(
            principal,
            "project",
            name,
            description,
            self.settings.project_quota if quota is None else quota,
            alias=drive_alias("project", name),
        )
        return await self.get_drive(principal, space_id)

    async def _create(
        self,
        principal: Principal,
        kind: str,
        name: str,
        description: str,
        quota: int,
        *,
        alias: str,
        personal_user_id: str | None = None,
    ) -> str:
        space_id = str(uuid.uuid4())
        handle = await self.providers.place()
        state = await self.providers.create_space(handle.id, space_id, quota)
        now = now_ms()
        try:
            async with self.db.write() as conn:
                await conn.execute(
                    insert(spaces).values(
                        id=space_id,
                        type=kind,
                        name=name,
                        alias=alias,
                        description=description,
                        quota_total=quota,
                        personal_user_id=personal_user_id,
                        provider_id=handle.id,
                        root_id=state.root_id,
                        etag=state.etag,
                        size=state.size,
                        created_ms=now,
                        modified_ms=now,
                        change_seq=await self._next_seq(conn),
                    )
                )
                await conn.execute(
                    insert(space_members).values(
                        space_id=space_id,
                        principal_type="user",
                        principal_id=principal.id,
                        role="manager",
                        created_ms=now,
                    )
                )
        except IntegrityError:
            await self.providers.delete_space(handle.id, space_id)
            raise Conflict(f"space {alias!r} exists already") from None
        except BaseException:
            await self.providers.delete_space(handle.id, space_id)
            raise
        self.bus.memberships_changed({principal.id})
        return space_id

    # -- changing -----------------------------------------------------------------

    async def _managed(self, principal: Principal, space_id: str) -> Drive:
        drive = await self.get_drive(principal, space_id)
        if drive.role.name != "manager":
            raise Forbidden("only managers of this space may do that")
        return drive

    async def update(
        self,
        principal: Principal,
        space_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        image: str | None = None,
        quota: int | None = None,
    ) -> Drive:
        drive = await self._managed(principal, space_id)
        if drive.disabled:
            raise Conflict("the space is disabled; restore it first")
        if quota is not None and quota != drive.quota_total:
            if not principal.is_admin:
                raise Forbidden("only administrators can change a quota")
            if drive.provider_id is None:
                raise Invalid("a remote space has no local quota")
            if drive.type == "share":
                raise Invalid("a share space uses the quota of the space it belongs to")
            await self.providers.set_quota(drive.provider_id, space_id, quota)
        values: dict[str, Any] = {
            k: v
            for k, v in (
                ("name", name),
                ("description", description),
                ("image", image),
                ("quota_total", quota),
            )
            if v is not None
        }
        if values:
            async with self.db.write() as conn:
                await conn.execute(
                    update(spaces)
                    .where(spaces.c.id == space_id)
                    .values(**values, modified_ms=now_ms(), change_seq=await self._next_seq(conn))
                )
            self.bus.drives_changed()
        return await self.get_drive(principal, space_id)

    async def disable(self, principal: Principal, space_id: str) -> None:
        drive = await self._managed(principal, space_id)
        if drive.type == "personal":
            raise Forbidden("personal spaces cannot be disabled")
        await self._set_disabled(drive, now_ms())

    async def restore(self, principal: Principal, space_id: str) -> Drive:
        drive = await self._managed(principal, space_id)
        if not drive.disabled:
            raise Conflict("the space is not disabled")
        await self._set_disabled(drive, None)
        return await self.get_drive(principal, space_id)

    async def _set_disabled(self, drive: Drive, when: int | None) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                update(spaces)
                .where(spaces.c.id == drive.id)
                .values(disabled_ms=when, change_seq=await self._next_seq(conn))
            )
        # Non-managers lose (or regain) sight of the space: their visibility changed.
        self.bus.memberships_changed({m.id for m in drive.members})

    async def purge(self, principal: Principal, space_id: str) -> None:
        drive = await self._managed(principal, space_id)
        if not drive.disabled:
            raise Conflict("disable the space before purging it")
        if drive.provider_id is not None:
            # The provider drops the shares of the space's folders with it.
            await self.providers.delete_space(drive.provider_id, space_id)
        await self._forget(space_id)

    async def _forget(self, space_id: str) -> None:
        """Delete a space and the share spaces of its folders from the registry."""
        async with self.db.write() as conn:
            gone = [
                space_id,
                *(
                    await conn.execute(
                        select(spaces.c.id).where(spaces.c.base_space_id == space_id)
                    )
                ).scalars(),
            ]
            members = (
                await conn.execute(
                    select(
                        space_members.c.space_id,
                        space_members.c.principal_type,
                        space_members.c.principal_id,
                    ).where(space_members.c.space_id.in_(gone))
                )
            ).all()
            await conn.execute(delete(space_members).where(space_members.c.space_id.in_(gone)))
            await conn.execute(delete(spaces).where(spaces.c.id.in_(gone)))
            federated = [m for m in members if m.principal_type == "federated"]
            if self.outgoing is not None:
                for m in federated:
                    await self.outgoing.unshared(conn, m.space_id, m.principal_id)
        if federated and self.outgoing is not None:
            self.outgoing.committed()
        self.bus.memberships_changed({m.principal_id for m in members})

    # -- provider feed ------------------------------------------------------------

    async def apply_states(self, provider_id: str, states: Iterable[pb.SpaceState]) -> int:
        """Record root changes streamed by a provider, in one transaction: one read of
        the spaces named, one write of those whose ETag or size differ (a resync after
        a restart sends every space, and nearly all are unchanged)."""
        latest = {s.space_id: s for s in states if not s.deleted}
        if not latest:
            return 0
        async with self.db.write() as conn:
            known = await conn.execute(_ROOTS, {"provider_id": provider_id, "ids": list(latest)})
            changed = [RootChange(s.space_id, s.etag, s.size, s.mtime_ns // 1_000_000)
                       for space_id, etag, size in known
                       if ((s := latest[space_id]).etag, s.size) != (etag, size)]
            if not changed:
                return 0
            last = await conn.run_sync(next_seq, len(changed))
            await conn.execute(_SET_ROOT, [
                {"space_id": c.space_id, "new_etag": c.etag, "new_size": c.size,
                 "new_modified_ms": c.modified_ms, "seq": last - len(changed) + 1 + i}
                for i, c in enumerate(changed)])
            if self.outgoing is not None:
                await self.outgoing.roots_changed(conn, changed)
        if self.outgoing is not None:
            self.outgoing.committed()
        self.bus.drives_changed()
        return len(changed)


# What the provider feed compares and writes, built once: a resync is a thousand batches.
_ROOTS = select(spaces.c.id, spaces.c.etag, spaces.c.size).where(
    spaces.c.provider_id == bindparam("provider_id"),
    spaces.c.id.in_(bindparam("ids", expanding=True)))
_SET_ROOT = update(spaces).where(spaces.c.id == bindparam("space_id")).values(
    etag=bindparam("new_etag"), size=bindparam("new_size"),
    modified_ms=bindparam("new_modified_ms"), change_seq=bindparam("seq"))

"""Sharing a folder as a ``share`` space (a mixin of ``RegistryService``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from fedspace.auth import Principal
from fedspace.rpc import spaces_pb2 as pb
from fedspace.sqltypes import now_ms
from registry.drives import Conflict, Drive, Invalid, Member, NotFound, drive_alias, folder_path
from registry.models import next_seq, space_members, spaces
from registry.roles import Role


class FolderSharing:
    """Uses the core of ``RegistryService``: ``db``, ``bus``, ``providers``, ``outgoing``,
    ``_next_seq``, ``_managed``, ``get_drive``, ``add_members``, ``_can_federate``,
    ``_forget``."""

    async def folder_of_item(self, drive: Drive, item_id: str) -> str:
        """Path of the folder ``item_id`` (a Graph item id, i.e. oc:fileid) in a drive."""
        if drive.type not in ("personal", "project") or drive.provider_id is None:
            raise Invalid("only folders of personal and project spaces can be shared")
        info = await self.providers.resolve_item(drive.provider_id, drive.id, item_id)
        if info is None:
            raise NotFound(f"no item {item_id!r} in this drive")
        if not info.is_dir:
            raise Invalid("only folders can be shared")
        return info.path

    async def share_folder(
        self,
        principal: Principal,
        space_id: str,
        path: str,
        recipients: Iterable[tuple[str, str]],
        role: Role,
    ) -> tuple[Drive, list[Member]]:
        """Share the folder ``path`` of a space; returns the share drive and the new members.

        Only managers may share (MANAGE_MEMBERS on the base space): a share widens who
        can reach the space's content, which is its managers' decision — as in oCIS,
        where editors of a project space cannot share. Recipients get viewer or editor;
        the sharer manages the share.
        """
        base = await self._managed(principal, space_id)
        if base.type not in ("personal", "project") or base.provider_id is None:
            raise Invalid("only folders of personal and project spaces can be shared")
        if base.disabled:
            raise Conflict("the space is disabled; restore it first")
        if role.name == "manager":
            raise Invalid(
                "a folder is shared with viewers or editors; the sharer manages the share"
            )
        folder = folder_path(path)
        added = [Member(kind, pid, role.name) for kind, pid in dict.fromkeys(recipients)]
        # A new share space is recorded with its members in one transaction; a folder
        # shared before, or a sharer naming herself, goes through ``add_members``.
        at_once = not any(m.type == "user" and m.id == principal.id for m in added)
        if at_once:
            federated = [m.id for m in added if m.type == "federated"]
            if federated:  # refused before anything is created
                await self._can_federate(replace(base, type="share"), role, federated)
        state = await self.providers.create_share(
            base.provider_id, str(uuid.uuid4()), base.id, folder
        )
        if at_once:
            drive = await self._create_share(principal, base, folder, state, added)
            if drive is not None:
                return drive, added
        created = await self._register_share(principal, base, folder, state)
        try:
            members = await self.add_members(principal, state.space_id, recipients, role)
        except BaseException:
            if created:
                await self._delete_share(state.space_id, base.provider_id)
            raise
        return await self.get_drive(principal, state.space_id), members

    async def _create_share(
        self, principal: Principal, base: Drive, folder: str, state: pb.SpaceState,
        added: list[Member],
    ) -> Drive | None:
        """Record a new share space, the sharer as its manager, ``added`` as members and
        the federation's messages to them, in one transaction; None (nothing written) if
        the registry knows the space already."""
        assert base.provider_id is not None
        now = now_ms()
        row = _share_space(base, folder, state, now)
        members = [Member("user", principal.id, "manager"), *added]
        federated = [m for m in added if m.type == "federated"]
        outgoing = self.outgoing
        if federated:
            assert outgoing is not None  # checked by _can_federate

        def write(conn: Connection) -> Drive | None:
            if conn.scalar(_KNOWN, {"space_id": state.space_id}) is not None:
                return None
            row["change_seq"] = next_seq(conn)
            conn.execute(insert(spaces), row)
            conn.execute(insert(space_members), [
                {"space_id": state.space_id, "principal_type": m.type, "principal_id": m.id,
                 "role": m.role, "created_ms": now} for m in members])
            # What get_drive would read back now, without reading it.
            drive = replace(base, **row, image=None, personal_user_id=None, members=members)
            for m in federated:
                outgoing.shared_now(conn, drive, m, principal)
            return drive

        try:
            drive = await self.db.write_with(write)
        except IntegrityError:
            # Another request shared the same folder at the same moment under another id.
            await self.providers.delete_space(base.provider_id, state.space_id)
            raise Conflict("the folder is being shared by another request; try again") from None
        except Exception:  # not when cancelled: the transaction may have committed
            await self.providers.delete_space(base.provider_id, state.space_id)
            raise
        if drive is None:
            return None
        if outgoing is not None and federated:
            outgoing.committed()
        self.bus.memberships_changed({principal.id, *(m.id for m in added)})
        return drive

    async def _register_share(
        self, principal: Principal, base: Drive, folder: str, state: pb.SpaceState
    ) -> bool:
        """Record the share space (unless known) with the sharer as a manager; True if new."""
        now = now_ms()
        try:
            async with self.db.write() as conn:
                known = await conn.scalar(_KNOWN, {"space_id": state.space_id}) is not None
                if not known:
                    row = _share_space(base, folder, state, now)
                    row["change_seq"] = await self._next_seq(conn)
                    await conn.execute(insert(spaces).values(row))
                else:  # its members change: listings must not keep the drive's old JSON
                    await conn.execute(update(spaces).where(spaces.c.id == state.space_id)
                                       .values(change_seq=await self._next_seq(conn)))
                await conn.execute(
                    delete(space_members).where(
                        space_members.c.space_id == state.space_id,
                        space_members.c.principal_type == "user",
                        space_members.c.principal_id == principal.id,
                    )
                )
                await conn.execute(
                    insert(space_members).values(
                        space_id=state.space_id,
                        principal_type="user",
                        principal_id=principal.id,
                        role="manager",
                        created_ms=now,
                    )
                )
        except IntegrityError:
            # Another request shared the same folder at the same moment under another id.
            assert base.provider_id is not None
            await self.providers.delete_space(base.provider_id, state.space_id)
            raise Conflict("the folder is being shared by another request; try again") from None
        self.bus.memberships_changed({principal.id})
        return not known

    async def _delete_share(self, space_id: str, provider_id: str) -> None:
        await self.providers.delete_space(provider_id, space_id)
        await self._forget(space_id)


def _share_space(base: Drive, folder: str, state: pb.SpaceState, now: int) -> dict[str, Any]:
    """The ``spaces`` row of a new share space of ``folder``, but its ``change_seq`` (its
    keys are ``Drive`` fields too)."""
    name = folder.rpartition("/")[2]
    return {"id": state.space_id, "type": "share", "name": name,
            "alias": drive_alias("share", name), "description": "", "quota_total": 0,
            "provider_id": base.provider_id, "root_id": state.root_id, "etag": state.etag,
            "size": state.size, "created_ms": now, "modified_ms": now,
            "base_space_id": base.id, "root_path": folder}


_KNOWN = select(spaces.c.id).where(spaces.c.id == bindparam("space_id"))

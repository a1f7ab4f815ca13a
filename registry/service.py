"""Spaces, memberships and roles (logic only: no HTTP types).

Reads are single indexed queries over ``spaces`` and ``space_members``; providers are
called only to create, delete or re-quota a space, never to list drives.

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
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from fedspace.auth import Principal
from fedspace.db import Database
from fedspace.permissions import Grant, Permission
from fedspace.rpc import spaces_pb2 as pb
from fedspace.sqltypes import now_ms
from registry.events import EventBus
from registry.models import counters, space_members, spaces
from registry.providers import Providers
from registry.roles import ROLES, Role, strongest
from registry.settings import RegistrySettings

SPACE_TYPES = ("personal", "project", "share", "remote")


class NotFound(LookupError):
    pass


class Forbidden(PermissionError):
    pass


class Conflict(Exception):
    pass


class Invalid(ValueError):
    pass


class Unavailable(RuntimeError):
    """A service this operation needs does not run in this process."""


RemoteState = Literal["pending", "accepted", "declined"]


@dataclass(frozen=True)
class RemoteShare:
    """An incoming share as the federation service validated it (``secret`` sealed)."""

    domain: str  # the origin instance (the verified signer)
    provider_id: str  # the share's id at the origin
    name: str
    description: str
    url: str  # the origin's WebDAV URL of the shared resource
    endpoint: str  # the origin's OCM endPoint, for notifications back
    sender: str
    sender_name: str | None
    owner: str
    owner_name: str | None
    role: str  # viewer | editor
    secret: str | None


@dataclass(frozen=True)
class RemoteSpace:
    """What a ``RemoteListener`` learns about a decided remote space."""

    id: str
    domain: str
    provider_id: str
    endpoint: str
    state: RemoteState


class RemoteListener(Protocol):
    """Told of the recipient's decision on a remote space (the federation service)."""

    async def decided(self, conn: AsyncConnection, space: RemoteSpace) -> None:
        """Called inside the transaction that records the decision."""

    def committed(self) -> None:
        """Called once that transaction has committed."""


@dataclass(frozen=True)
class Member:
    type: str  # "user" | "group"
    id: str
    role: str

    @property
    def permission_id(self) -> str:
        """Stable id of this membership in the Graph API (``u:<id>`` / ``g:<id>``)."""
        return f"{self.type[0]}:{self.id}"


@dataclass
class Drive:
    id: str
    type: str
    name: str
    alias: str
    description: str
    image: str | None
    quota_total: int
    personal_user_id: str | None
    provider_id: str | None
    root_id: str
    etag: str
    size: int
    created_ms: int
    modified_ms: int
    disabled_ms: int | None
    change_seq: int
    base_space_id: str | None
    root_path: str | None
    remote_url: str | None
    remote_state: RemoteState | None
    remote_sender: str | None
    remote_sender_name: str | None
    remote_owner: str | None
    remote_owner_name: str | None
    role: Role = ROLES["viewer"]
    members: list[Member] = field(default_factory=list)

    @property
    def disabled(self) -> bool:
        return self.disabled_ms is not None


@dataclass(frozen=True)
class Route:
    """Where a space's data lives and what the caller may do there."""

    grant: Grant
    provider_id: str


def principal_ids(principal: Principal) -> list[str]:
    return [principal.id, *principal.groups]


def _alias(kind: str, name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "space"
    return f"{kind}/{slug}"


_COLUMNS = [spaces.c[c] for c in (
    "id", "type", "name", "alias", "description", "image", "quota_total", "personal_user_id",
    "provider_id", "root_id", "etag", "size", "created_ms", "modified_ms", "disabled_ms",
    "change_seq", "base_space_id", "root_path", "remote_url", "remote_state", "remote_sender",
    "remote_sender_name", "remote_owner", "remote_owner_name")]
_BASE = spaces.alias("base")


def _folder_path(path: str) -> str:
    """A folder path as the provider names it ("a/b"), or Invalid."""
    folder = path.strip("/")
    if not folder:
        raise Invalid("the root of a space is shared by inviting members to the space "
                      "itself (…/root/invite)")
    if any(part in ("", ".", "..") for part in folder.split("/")):
        raise Invalid(f"{path!r} is not a normalised path inside the space")
    return folder


class RegistryService:
    def __init__(
        self, db: Database, settings: RegistrySettings, providers: Providers, bus: EventBus
    ) -> None:
        self.db = db
        self.settings = settings
        self.providers = providers
        self.bus = bus
        self.remote_listeners: list[RemoteListener] = []

    # -- sequencing ---------------------------------------------------------------

    async def init(self) -> None:
        async with self.db.write() as conn:
            exists = (await conn.execute(
                select(counters.c.value).where(counters.c.name == "change_seq"))).first()
            if exists is None:
                await conn.execute(insert(counters).values(name="change_seq", value=0))

    @staticmethod
    async def _next_seq(conn: AsyncConnection) -> int:
        return (await conn.execute(
            update(counters).where(counters.c.name == "change_seq")
            .values(value=counters.c.value + 1).returning(counters.c.value))).scalar_one()

    # -- reading ------------------------------------------------------------------

    def _visible(self, principal: Principal) -> Any:
        """Drives the principal can see: a member directly or through a group."""
        mine = select(space_members.c.space_id).where(
            space_members.c.principal_id.in_(principal_ids(principal)))
        return spaces.c.id.in_(mine)

    async def _drives(self, conn: AsyncConnection, principal: Principal, *where: Any,
                      order: Any = None) -> list[Drive]:
        """One query: the drives plus all their members (rows repeat per member)."""
        query = (
            select(*_COLUMNS, space_members.c.principal_type, space_members.c.principal_id,
                   space_members.c.role)
            .join(space_members, space_members.c.space_id == spaces.c.id)
            .where(self._visible(principal), *where)
        )
        if order is not None:
            query = query.order_by(*order)
        mine = set(principal_ids(principal))
        drives: dict[str, Drive] = {}
        my_roles: dict[str, list[str]] = {}
        for row in await conn.execute(query):
            m = row._mapping
            drive = drives.get(m["id"])
            if drive is None:
                drive = drives[m["id"]] = Drive(**{c.name: m[c.name] for c in _COLUMNS})
            drive.members.append(Member(m["principal_type"], m["principal_id"], m["role"]))
            if m["principal_id"] in mine:
                my_roles.setdefault(drive.id, []).append(m["role"])
        for drive in drives.values():
            drive.role = strongest(my_roles[drive.id])
        # A disabled space stays visible to its managers only (they restore or purge it).
        return [d for d in drives.values() if not d.disabled or d.role.name == "manager"]

    async def list_drives(
        self, principal: Principal, *, drive_type: str | None = None,
        order_by: str | None = None, descending: bool = False,
    ) -> list[Drive]:
        """The principal's drives; remote spaces only once accepted, unless remote ones are
        asked for (``drive_type="remote"``: all of them, pending and declined too, as the
        list a client shows to accept or decline from)."""
        where = [spaces.c.type == drive_type] if drive_type else [
            or_(spaces.c.type != "remote", spaces.c.remote_state == "accepted")]
        column = {"name": spaces.c.name,
                  "lastModifiedDateTime": spaces.c.modified_ms}.get(order_by or "")
        order = None
        if column is not None:
            order = [column.desc() if descending else column.asc(), spaces.c.id]
        async with self.db.read() as conn:
            drives = await self._drives(conn, principal, *where, order=order)
        return drives[: self.settings.max_page_size]

    async def get_drive(self, principal: Principal, space_id: str) -> Drive:
        """The drive if the principal is a member; NotFound otherwise (no existence leak)."""
        async with self.db.read() as conn:
            found = await self._drives(conn, principal, spaces.c.id == space_id)
        if not found:
            raise NotFound(f"no drive {space_id!r}")
        return found[0]

    async def route(self, principal: Principal, space_id: str) -> Route:
        """Grant + provider for one data-plane request (one indexed query)."""
        query = (
            select(spaces.c.provider_id, spaces.c.disabled_ms, space_members.c.role,
                   _BASE.c.disabled_ms.label("base_disabled_ms"))
            .join(space_members, space_members.c.space_id == spaces.c.id)
            .outerjoin(_BASE, _BASE.c.id == spaces.c.base_space_id)
            .where(spaces.c.id == space_id,
                   space_members.c.principal_id.in_(principal_ids(principal)))
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            raise NotFound(f"no space {space_id!r}")
        if rows[0].provider_id is None:
            raise NotFound(f"space {space_id!r} is a remote space: its data is served by the "
                           "instance it was shared from")
        role = strongest([r.role for r in rows])
        permissions = role.permissions
        if rows[0].disabled_ms is not None or rows[0].base_disabled_ms is not None:
            # A disabled space stays listable by its managers but its data is closed,
            # also through the shares of its folders.
            raise NotFound(f"space {space_id!r} is disabled")
        return Route(Grant(principal, space_id, permissions), rows[0].provider_id)

    # -- creating -----------------------------------------------------------------

    async def ensure_personal_space(self, principal: Principal) -> None:
        """First authenticated request of a local user: make sure the personal space exists."""
        if principal.kind != "user":
            return
        async with self.db.read() as conn:
            found = (await conn.execute(select(spaces.c.id).where(
                spaces.c.personal_user_id == principal.id))).first()
        if found is None:
            with contextlib.suppress(Conflict):  # a concurrent first request created it
                await self._create(principal, "personal", principal.display_name, "",
                                   self.settings.personal_quota,
                                   alias=f"personal/{principal.username}",
                                   personal_user_id=principal.id)

    async def create_project(
        self, principal: Principal, name: str, description: str = "", quota: int | None = None
    ) -> Drive:
        if principal.kind != "user":
            raise Forbidden("guests cannot create spaces")
        if quota is not None and quota != self.settings.project_quota and not principal.is_admin:
            raise Forbidden("only administrators can choose a quota")
        space_id = await self._create(
            principal, "project", name, description,
            self.settings.project_quota if quota is None else quota, alias=_alias("project", name))
        return await self.get_drive(principal, space_id)

    async def _create(self, principal: Principal, kind: str, name: str, description: str,
                      quota: int, *, alias: str, personal_user_id: str | None = None) -> str:
        space_id = str(uuid.uuid4())
        handle = await self.providers.place()
        state = await self.providers.create_space(handle.id, space_id, quota)
        now = now_ms()
        try:
            async with self.db.write() as conn:
                await conn.execute(insert(spaces).values(
                    id=space_id, type=kind, name=name, alias=alias, description=description,
                    quota_total=quota, personal_user_id=personal_user_id, provider_id=handle.id,
                    root_id=state.root_id, etag=state.etag, size=state.size, created_ms=now,
                    modified_ms=now, change_seq=await self._next_seq(conn)))
                await conn.execute(insert(space_members).values(
                    space_id=space_id, principal_type="user", principal_id=principal.id,
                    role="manager", created_ms=now))
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

    async def update(self, principal: Principal, space_id: str, *, name: str | None = None,
                     description: str | None = None, image: str | None = None,
                     quota: int | None = None) -> Drive:
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
        values: dict[str, Any] = {k: v for k, v in (
            ("name", name), ("description", description), ("image", image),
            ("quota_total", quota)) if v is not None}
        if values:
            async with self.db.write() as conn:
                await conn.execute(update(spaces).where(spaces.c.id == space_id).values(
                    **values, modified_ms=now_ms(), change_seq=await self._next_seq(conn)))
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
            await conn.execute(update(spaces).where(spaces.c.id == drive.id).values(
                disabled_ms=when, change_seq=await self._next_seq(conn)))
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
            gone = [space_id, *(await conn.execute(select(spaces.c.id).where(
                spaces.c.base_space_id == space_id))).scalars()]
            member_ids = set((await conn.execute(select(space_members.c.principal_id).where(
                space_members.c.space_id.in_(gone)))).scalars())
            await conn.execute(delete(space_members).where(space_members.c.space_id.in_(gone)))
            await conn.execute(delete(spaces).where(spaces.c.id.in_(gone)))
        self.bus.memberships_changed(member_ids)

    # -- sharing folders ----------------------------------------------------------

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

    async def share_folder(self, principal: Principal, space_id: str, path: str,
                           recipients: Iterable[tuple[str, str]],
                           role: Role) -> tuple[Drive, list[Member]]:
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
            raise Invalid("a folder is shared with viewers or editors; the sharer "
                          "manages the share")
        folder = _folder_path(path)
        state = await self.providers.create_share(
            base.provider_id, str(uuid.uuid4()), base.id, folder)
        created = await self._register_share(principal, base, folder, state)
        try:
            members = await self.add_members(principal, state.space_id, recipients, role)
        except BaseException:
            if created:
                await self._delete_share(state.space_id, base.provider_id)
            raise
        return await self.get_drive(principal, state.space_id), members

    async def _register_share(self, principal: Principal, base: Drive, folder: str,
                              state: pb.SpaceState) -> bool:
        """Record the share space (unless known) with the sharer as a manager; True if new."""
        name = folder.rpartition("/")[2]
        now = now_ms()
        try:
            async with self.db.write() as conn:
                known = (await conn.execute(select(spaces.c.id).where(
                    spaces.c.id == state.space_id))).first() is not None
                if not known:
                    await conn.execute(insert(spaces).values(
                        id=state.space_id, type="share", name=name, alias=_alias("share", name),
                        description="", quota_total=0, provider_id=base.provider_id,
                        root_id=state.root_id, etag=state.etag, size=state.size,
                        created_ms=now, modified_ms=now, change_seq=await self._next_seq(conn),
                        base_space_id=base.id, root_path=folder))
                await conn.execute(delete(space_members).where(
                    space_members.c.space_id == state.space_id,
                    space_members.c.principal_type == "user",
                    space_members.c.principal_id == principal.id))
                await conn.execute(insert(space_members).values(
                    space_id=state.space_id, principal_type="user", principal_id=principal.id,
                    role="manager", created_ms=now))
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

    # -- members ------------------------------------------------------------------

    async def add_members(self, principal: Principal, space_id: str,
                          recipients: Iterable[tuple[str, str]], role: Role) -> list[Member]:
        """Add or re-role (type, id) recipients; returns the resulting memberships."""
        drive = await self._managed(principal, space_id)
        if drive.type == "personal":
            raise Forbidden("members cannot be added to a personal space")
        if drive.disabled:
            raise Conflict("the space is disabled; restore it first")
        added = [Member(kind, pid, role.name) for kind, pid in dict.fromkeys(recipients)]
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
        self.bus.memberships_changed({m.id for m in added})
        return added

    async def set_member_role(self, principal: Principal, space_id: str, permission_id: str,
                              role: Role) -> Member:
        drive = await self._managed(principal, space_id)
        member = self._member(drive, permission_id)
        async with self.db.write() as conn:
            await self._set_role(conn, drive, member, role.name)
        self.bus.memberships_changed({member.id})
        return Member(member.type, member.id, role.name)

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
        self.bus.memberships_changed({member.id})
        left = [m for m in drive.members if m != member]
        if drive.type == "share" and all(m.role == "manager" for m in left):
            # Shared with nobody any more: the share space has no purpose left.
            assert drive.provider_id is not None
            await self._delete_share(space_id, drive.provider_id)

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

    # -- provider feed ------------------------------------------------------------

    async def apply_states(self, provider_id: str, states: Iterable[pb.SpaceState]) -> int:
        """Record root changes streamed by a provider; unchanged states are skipped."""
        changed = 0
        async with self.db.write() as conn:
            for s in states:
                if s.deleted:
                    continue
                result = await conn.execute(
                    update(spaces)
                    .where(spaces.c.id == s.space_id, spaces.c.provider_id == provider_id,
                           (spaces.c.etag != s.etag) | (spaces.c.size != s.size))
                    .values(etag=s.etag, size=s.size, modified_ms=s.mtime_ns // 1_000_000,
                            change_seq=await self._next_seq(conn)))
                changed += result.rowcount
        if changed:
            self.bus.drives_changed()
        return changed

    async def changes_since(self, principal: Principal, seq: int) -> list[Drive]:
        """Drives visible to the principal that changed after ``seq`` (SSE resume)."""
        async with self.db.read() as conn:
            return await self._drives(conn, principal, spaces.c.change_seq > seq,
                                      order=[spaces.c.change_seq])

    async def visible_ids(self, principal: Principal) -> set[str]:
        """Ids of the drives ``list_drives`` would show (disabled ones to managers only)."""
        query = (
            select(spaces.c.id, spaces.c.disabled_ms, space_members.c.role)
            .join(space_members, space_members.c.space_id == spaces.c.id)
            .where(space_members.c.principal_id.in_(principal_ids(principal)))
        )
        roles: dict[str, list[str]] = {}
        disabled: set[str] = set()
        async with self.db.read() as conn:
            for r in await conn.execute(query):
                roles.setdefault(r.id, []).append(r.role)
                if r.disabled_ms is not None:
                    disabled.add(r.id)
        return {sid for sid, names in roles.items()
                if sid not in disabled or strongest(names).name == "manager"}

    async def count_by_type(self) -> dict[str, int]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(spaces.c.type, func.count()).group_by(spaces.c.type))
            counted = {kind: int(n) for kind, n in rows}
        return {kind: counted.get(kind, 0) for kind in SPACE_TYPES}

    async def current_seq(self) -> int:
        async with self.db.read() as conn:
            return (await conn.execute(select(counters.c.value).where(
                counters.c.name == "change_seq"))).scalar_one()

    # -- remote spaces ------------------------------------------------------------

    async def register_remote_space(self, user_id: str, share: RemoteShare) -> tuple[str, bool]:
        """Record an incoming share as a pending remote space of ``user_id``.

        Idempotent on (origin, providerId): receiving the same share again changes nothing
        and returns the same space; the bool says whether it was created now.
        """
        space_id, now = str(uuid.uuid4()), now_ms()
        try:
            async with self.db.write() as conn:
                known = await self._remote_id(conn, share.domain, share.provider_id)
                if known is not None:
                    return known, False
                await conn.execute(insert(spaces).values(
                    id=space_id, type="remote", name=share.name,
                    alias=_alias("remote", share.name), description=share.description,
                    quota_total=0, provider_id=None, root_id=space_id,
                    etag=uuid.uuid4().hex, size=0, created_ms=now, modified_ms=now,
                    change_seq=await self._next_seq(conn), remote_url=share.url,
                    remote_state="pending", remote_domain=share.domain,
                    remote_provider_id=share.provider_id, remote_endpoint=share.endpoint,
                    remote_sender=share.sender, remote_sender_name=share.sender_name,
                    remote_owner=share.owner, remote_owner_name=share.owner_name,
                    remote_secret=share.secret))
                await conn.execute(insert(space_members).values(
                    space_id=space_id, principal_type="user", principal_id=user_id,
                    role=share.role, created_ms=now))
        except IntegrityError:  # the same share, received concurrently
            async with self.db.read() as conn:
                known = await self._remote_id(conn, share.domain, share.provider_id)
            if known is None:
                raise
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

    @staticmethod
    async def _remote_id(conn: AsyncConnection, domain: str, provider_id: str) -> str | None:
        return await conn.scalar(select(spaces.c.id).where(
            spaces.c.remote_domain == domain, spaces.c.remote_provider_id == provider_id))

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
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from fedspace.auth import Principal
from fedspace.db import Database
from fedspace.permissions import Grant
from fedspace.rpc import spaces_pb2 as pb
from fedspace.sqltypes import now_ms
from registry.drives import (
    MEMBER_TYPES,
    SPACE_TYPES,
    Conflict,
    Drive,
    Forbidden,
    Invalid,
    Member,
    NotFound,
    OutgoingListener,
    RemoteListener,
    RemoteTarget,
    RootChange,
    Route,
    drive_alias,
    principal_ids,
)
from registry.events import EventBus
from registry.members import Memberships
from registry.models import counters, next_seq, space_members, spaces
from registry.providers import Providers
from registry.remote import RemoteSpaces
from registry.roles import ROLES, strongest
from registry.settings import RegistrySettings
from registry.sharing import FolderSharing

# The columns a ``Drive`` is made of, in its field order: ``Drive(*row)``.
_COLUMNS = [spaces.c[f.name] for f in fields(Drive) if f.name in spaces.c]
_BY_RANK = list(ROLES.values())  # weakest first, as strongest() orders them
_RANK = {r.name: rank for rank, r in enumerate(_BY_RANK)}
_BASE = spaces.alias("base")
# Statements are built once with bind parameters: building a select per call cost ~15%
# of a WebDAV request's event-loop time, and a prebuilt one also keeps its cache key.
_IDS = bindparam("ids", expanding=True)  # principal_ids(): the member ids one acts as
_ROUTE = (
    select(
        spaces.c.provider_id,
        spaces.c.disabled_ms,
        spaces.c.remote_state,
        spaces.c.remote_url,
        spaces.c.remote_domain,
        spaces.c.remote_endpoint,
        spaces.c.remote_secret,
        space_members.c.role,
        _BASE.c.disabled_ms.label("base_disabled_ms"),
    )
    .join(space_members, space_members.c.space_id == spaces.c.id)
    .outerjoin(_BASE, _BASE.c.id == spaces.c.base_space_id)
    .where(
        spaces.c.id == bindparam("space_id"),
        # Every type, spelled out: the lookup becomes exact seeks on the primary key
        # (space, type, id) instead of a scan of all the principal's memberships.
        space_members.c.principal_type.in_(MEMBER_TYPES),
        space_members.c.principal_id.in_(_IDS),
    )
)
_VISIBLE_IDS = (
    select(spaces.c.id, spaces.c.disabled_ms, space_members.c.role)
    .join(space_members, space_members.c.space_id == spaces.c.id)
    .where(space_members.c.principal_id.in_(_IDS))
)
_LISTED = {  # list_drives' filter: by type, or all but remote spaces not accepted
    True: spaces.c.type == bindparam("drive_type"),
    False: or_(spaces.c.type != "remote", spaces.c.remote_state == "accepted"),
}
_ORDER = {"name": spaces.c.name, "lastModifiedDateTime": spaces.c.modified_ms}
# Drives and members read in full, for the drives a caller does not hold already.
_WANTED = bindparam("wanted", expanding=True)
_DRIVES = select(*_COLUMNS).where(spaces.c.id.in_(_WANTED))
_MEMBERS = select(
    space_members.c.space_id,
    space_members.c.principal_type,
    space_members.c.principal_id,
    space_members.c.role,
).where(space_members.c.space_id.in_(_WANTED))
_MANAGER = _RANK["manager"]
T = TypeVar("T")
# What a caller already holds of a drive at a change_seq (say, its JSON), or None.
Held = Callable[[str, int], T | None]


def _memberships(*where: Any, scoped: bool, order: Sequence[Any] = ()) -> Select[Any]:
    """(id, change_seq, disabled_ms, role) of the drives ``:ids`` are members of, directly
    or through a group (and within ``:scope`` when ``scoped``): one row per membership,
    in listing order (by id unless ``order`` says otherwise)."""
    query = (
        select(spaces.c.id, spaces.c.change_seq, spaces.c.disabled_ms, space_members.c.role)
        .join(space_members, space_members.c.space_id == spaces.c.id)
        .where(space_members.c.principal_id.in_(_IDS), *where)
        .order_by(*order, spaces.c.id)
    )
    if scoped:
        query = query.where(spaces.c.id.in_(bindparam("scope", expanding=True)))
    return query


@cache
def _listing(typed: bool, scoped: bool, order_by: str | None, descending: bool) -> Select[Any]:
    order = []
    if order_by is not None:
        order = [_ORDER[order_by].desc() if descending else _ORDER[order_by].asc()]
    return _memberships(_LISTED[typed], scoped=scoped, order=order)


@cache
def _one_drive(scoped: bool) -> Select[Any]:
    return _memberships(spaces.c.id == bindparam("space_id"), scoped=scoped)


@cache
def _changes(scoped: bool) -> Select[Any]:
    return _memberships(spaces.c.change_seq > bindparam("seq"), scoped=scoped,
                        order=[spaces.c.change_seq])


def _params(principal: Principal, **values: Any) -> dict[str, Any]:
    """Bind values of ``_memberships``: the principal's ids, its scope if it has one."""
    values["ids"] = principal_ids(principal)
    if principal.scope is not None:
        values["scope"] = list(principal.scope)
    return values


def _read(conn: Connection, memberships: Select[Any], params: dict[str, Any],
          held: Held[T] | None, limit: int | None) -> list[Drive | T]:
    """The drives ``memberships`` lists, each with the strongest role the principal holds in
    it, a disabled one only for its managers (they restore or purge it). A drive ``held``
    returns something for (at its change_seq) is not read: that comes back instead, so a
    listing whose drives did not change reads one row per membership and nothing more."""
    found: dict[str, list[Any]] = {}  # id → [change_seq, disabled_ms, rank]
    for space_id, seq, disabled_ms, role in conn.execute(memberships, params).all():
        entry = found.get(space_id)
        if entry is None:
            found[space_id] = [seq, disabled_ms, _RANK[role]]
        elif _RANK[role] > entry[2]:
            entry[2] = _RANK[role]
    out: list[Any] = []
    wanted: dict[str, tuple[int, int]] = {}  # id → (place in out, rank): to read in full
    for space_id, (seq, disabled_ms, rank) in found.items():
        if disabled_ms is not None and rank != _MANAGER:
            continue
        if limit is not None and len(out) == limit:
            break
        hit = held(space_id, seq) if held is not None else None
        if hit is None:
            wanted[space_id] = (len(out), rank)
        out.append(hit)
    if wanted:
        full = {"wanted": list(wanted)}
        # ``all()``: one fetch, where iterating a result fetches row by row (slower).
        drives = {row[0]: Drive(*row) for row in conn.execute(_DRIVES, full).all()}
        for space_id, kind, member, role in conn.execute(_MEMBERS, full).all():
            if space_id in drives:
                drives[space_id].members.append(Member(kind, member, role))
        for drive in drives.values():
            place, rank = wanted[drive.id]
            drive.role = _BY_RANK[rank]
            out[place] = drive
        if len(drives) < len(wanted):  # gone since (PostgreSQL: a snapshot per statement)
            out = [d for d in out if d is not None]
    return out


class RegistryService(FolderSharing, Memberships, RemoteSpaces):
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

    # -- reading ------------------------------------------------------------------

    async def _drives(self, memberships: Select[Any], principal: Principal, *,
                      held: Held[T] | None = None, limit: int | None = None,
                      **values: Any) -> list[Drive | T]:
        """One read (one thread hop): the drives ``memberships`` lists."""
        params = _params(principal, **values)
        return await self.db.read_with(
            lambda conn: _read(conn, memberships, params, held, limit))

    async def list_drives(
        self,
        principal: Principal,
        *,
        drive_type: str | None = None,
        order_by: str | None = None,
        descending: bool = False,
        held: Held[T] | None = None,
    ) -> list[Drive | T]:
        """The principal's drives; remote spaces only once accepted, unless remote ones are
        asked for (``drive_type="remote"``: all of them, pending and declined too, as the
        list a client shows to accept or decline from). A drive the caller ``held`` at its
        current change_seq is what ``held`` returned for it (the API's JSON of it)."""
        if order_by not in _ORDER:
            order_by, descending = None, False
        listed = _listing(bool(drive_type), principal.scope is not None, order_by, descending)
        values = {"drive_type": drive_type} if drive_type else {}
        return await self._drives(listed, principal, held=held,
                                  limit=self.settings.max_page_size, **values)

    async def get_drive(self, principal: Principal, space_id: str) -> Drive:
        """The drive if the principal is a member; NotFound otherwise (no existence leak)."""
        found = await self._drives(_one_drive(principal.scope is not None), principal,
                                   space_id=space_id)
        if not found:
            raise NotFound(f"no drive {space_id!r}")
        return found[0]

    async def route(self, principal: Principal, space_id: str) -> Route:
        """Grant + provider for one data-plane request (one indexed query)."""
        if principal.scope is not None and space_id not in principal.scope:
            raise NotFound(f"no space {space_id!r}")
        params = {"space_id": space_id, "ids": principal_ids(principal)}
        rows = await self.db.read_with(lambda conn: conn.execute(_ROUTE, params).all())
        if not rows:
            raise NotFound(f"no space {space_id!r}")
        role = strongest([r.role for r in rows])
        permissions = role.permissions
        first = rows[0]
        if first.provider_id is None:
            if first.remote_state == "declined":
                raise NotFound(f"space {space_id!r} is a remote space that was declined")
            if first.remote_state != "accepted":
                raise NotFound(f"space {space_id!r} is a remote space not accepted yet")
            target = RemoteTarget(space_id, first.remote_url, first.remote_domain,
                                  first.remote_endpoint, first.remote_secret)
            return Route(Grant(principal, space_id, permissions), None, target)
        if first.disabled_ms is not None or first.base_disabled_ms is not None:
            # A disabled space stays listable by its managers but its data is closed,
            # also through the shares of its folders.
            raise NotFound(f"space {space_id!r} is disabled")
        return Route(Grant(principal, space_id, permissions), first.provider_id)

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
        """Record root changes streamed by a provider; unchanged states are skipped."""
        changed: list[RootChange] = []
        async with self.db.write() as conn:
            for s in states:
                if s.deleted:
                    continue
                modified_ms = s.mtime_ns // 1_000_000
                result = await conn.execute(
                    update(spaces)
                    .where(
                        spaces.c.id == s.space_id,
                        spaces.c.provider_id == provider_id,
                        (spaces.c.etag != s.etag) | (spaces.c.size != s.size),
                    )
                    .values(
                        etag=s.etag,
                        size=s.size,
                        modified_ms=modified_ms,
                        change_seq=await self._next_seq(conn),
                    )
                )
                if result.rowcount:
                    changed.append(RootChange(s.space_id, s.etag, s.size, modified_ms))
            if changed and self.outgoing is not None:
                await self.outgoing.roots_changed(conn, changed)
        if changed:
            if self.outgoing is not None:
                self.outgoing.committed()
            self.bus.drives_changed()
        return len(changed)

    async def changes_since(self, principal: Principal, seq: int) -> list[Drive]:
        """Drives visible to the principal that changed after ``seq`` (SSE resume)."""
        return await self._drives(_changes(principal.scope is not None), principal, seq=seq)

    async def visible_ids(self, principal: Principal) -> set[str]:
        """Ids of the drives ``list_drives`` would show (disabled ones to managers only)."""
        params = {"ids": principal_ids(principal)}
        rows = await self.db.read_with(lambda conn: conn.execute(_VISIBLE_IDS, params).all())
        roles: dict[str, list[str]] = {}
        disabled: set[str] = set()
        for r in rows:
            roles.setdefault(r.id, []).append(r.role)
            if r.disabled_ms is not None:
                disabled.add(r.id)
        return {
            sid
            for sid, names in roles.items()
            if sid not in disabled or strongest(names).name == "manager"
        }

    async def count_by_type(self) -> dict[str, int]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(spaces.c.type, func.count()).group_by(spaces.c.type))
            counted = {kind: int(n) for kind, n in rows}
        return {kind: counted.get(kind, 0) for kind in SPACE_TYPES}

    async def current_seq(self) -> int:
        async with self.db.read() as conn:
            return (
                await conn.execute(select(counters.c.value).where(counters.c.name == "change_seq"))
            ).scalar_one()

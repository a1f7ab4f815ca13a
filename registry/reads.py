"""Reading the registry: drive listings, one drive, a data-plane route (a mixin of
``RegistryService``).

Every read is one prebuilt statement run in one thread hop (``Database.read_with``):
building a select per call cost ~15% of a WebDAV request's event-loop time, and a
prebuilt one also keeps its cache key. A listing reads one row per membership, and full
drive rows only for the drives whose JSON the caller does not hold at their change_seq.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, func, or_, select
from sqlalchemy.engine import Connection

from fedspace.auth import Principal
from fedspace.permissions import Grant
from registry.drives import (
    MEMBER_TYPES,
    SPACE_TYPES,
    Drive,
    Member,
    NotFound,
    RemoteTarget,
    Route,
    principal_ids,
)
from registry.models import counters, space_members, spaces
from registry.roles import ROLES, strongest

# The columns a ``Drive`` is made of, in its field order: ``Drive(*row)``.
_COLUMNS = [spaces.c[f.name] for f in fields(Drive) if f.name in spaces.c]
_BY_RANK = list(ROLES.values())  # weakest first, as strongest() orders them
_RANK = {r.name: rank for rank, r in enumerate(_BY_RANK)}
_BASE = spaces.alias("base")
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


class DriveReads:
    """Uses the core of ``RegistryService``: ``db``, ``settings``."""

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

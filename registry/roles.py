"""Space roles → permission sets: the one table that says what a role may do.

Role ids and names follow oCIS's unified roles so LibreGraph clients recognise them.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedspace.permissions import Permission as P


@dataclass(frozen=True)
class Role:
    name: str  # our short name: viewer | editor | manager
    id: str  # oCIS unified role id
    display_name: str
    description: str
    permissions: P
    actions: tuple[str, ...]  # LibreGraph action names, as in oCIS


_READ = P.LIST | P.DOWNLOAD | P.LIST_MEMBERS
_WRITE = P.UPLOAD | P.CREATE_FOLDER | P.DELETE | P.MOVE
_MANAGE = P.MANAGE_MEMBERS | P.UPDATE_SPACE | P.DISABLE_SPACE

_READ_ACTIONS = (
    "libre.graph/driveItem/path/read",
    "libre.graph/driveItem/quota/read",
    "libre.graph/driveItem/content/read",
    "libre.graph/driveItem/children/read",
    "libre.graph/driveItem/basic/read",
    "libre.graph/driveItem/permissions/read",
)
_WRITE_ACTIONS = (
    "libre.graph/driveItem/upload/create",
    "libre.graph/driveItem/children/create",
    "libre.graph/driveItem/standard/delete",
    "libre.graph/driveItem/path/update",
)
_MANAGE_ACTIONS = (
    "libre.graph/driveItem/permissions/create",
    "libre.graph/driveItem/permissions/update",
    "libre.graph/driveItem/permissions/delete",
    "libre.graph/drive/basic/update",
    "libre.graph/drive/permission/delete",
)

ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("viewer", "a8d5fe5e-96e3-418d-825b-534dbdf22b99", "Can view",
             "View and download.", _READ, _READ_ACTIONS),
        Role("editor", "58c63c02-1d89-4572-916a-870abc5a1b7d", "Can edit",
             "View, download, upload, edit, add and delete.", _READ | _WRITE,
             _READ_ACTIONS + _WRITE_ACTIONS),
        Role("manager", "312c0871-5ef7-4b3a-85b6-0e4074c64049", "Can manage",
             "View, download, upload, edit, add, delete and manage members.",
             _READ | _WRITE | _MANAGE, _READ_ACTIONS + _WRITE_ACTIONS + _MANAGE_ACTIONS),
    )
}
BY_ID: dict[str, Role] = {r.id: r for r in ROLES.values()}


def role(ref: str) -> Role | None:
    """Look a role up by its unified-role id or by its short name."""
    return BY_ID.get(ref) or ROLES.get(ref)


def strongest(names: list[str]) -> Role:
    """A user reached through several memberships (direct, groups) gets the strongest."""
    order = list(ROLES)
    return ROLES[max(names, key=order.index)]

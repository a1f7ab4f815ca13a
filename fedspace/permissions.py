"""What a caller may do inside a space: the vocabulary shared by registry and providers.

The registry turns a member's role into a ``Permission`` set (``registry.roles``); the
data plane only ever sees the resulting ``Grant``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fedspace.auth import Principal


class Permission(enum.Flag):
    NONE = 0
    LIST = enum.auto()  # stat and list folders (PROPFIND)
    DOWNLOAD = enum.auto()  # read file content (GET)
    UPLOAD = enum.auto()  # create and overwrite files (PUT), set properties (PROPPATCH)
    CREATE_FOLDER = enum.auto()  # MKCOL
    DELETE = enum.auto()
    MOVE = enum.auto()  # MOVE and rename inside the space
    LIST_MEMBERS = enum.auto()
    MANAGE_MEMBERS = enum.auto()
    UPDATE_SPACE = enum.auto()  # name, description, image
    DISABLE_SPACE = enum.auto()  # disable, restore and purge


@dataclass(frozen=True, slots=True)
class Grant:
    """A caller's access to one space, resolved by the registry for one request."""

    principal: Principal
    space_id: str
    permissions: Permission

    def allows(self, needed: Permission) -> bool:
        return needed in self.permissions

"""What the registry hands out: drives, members, routes, remote shares, and its errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from fedspace.auth import Principal
from fedspace.permissions import Grant
from registry.roles import ROLES, Role

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


class OutgoingListener(Protocol):
    """Told of federated members (users of other instances) coming, changing and going,
    inside the registry's transaction, so the OCM message commits with its cause (the
    federation service)."""

    async def shared(self, conn: AsyncConnection, drive: Drive, member: Member,
                     sharer: Principal) -> None:
        """A federated member was added, or its role changed."""

    def shared_now(self, conn: Connection, drive: Drive, member: Member,
                   sharer: Principal) -> None:
        """``shared`` inside a transaction run as one sync function (a new share)."""

    async def unshared(self, conn: AsyncConnection, space_id: str, address: str) -> None:
        """A federated member was removed (or its space deleted)."""

    async def roots_changed(self, conn: AsyncConnection, changes: list[RootChange]) -> None:
        """Root states of spaces changed (their federated members may hold them)."""

    def committed(self) -> None:
        """Called once a transaction that called the others has committed."""

    async def refusal(self, peer: str) -> str | None:
        """Why we may not share with the instance ``peer`` (its domain), or None."""

    async def describe(self, space_id: str) -> dict[str, dict[str, Any]]:
        """Each federated member's share and its delivery state, by address (JSON)."""


@dataclass(frozen=True)
class RootChange:
    space_id: str
    etag: str
    size: int
    modified_ms: int


MEMBER_TYPES = ("user", "group", "federated")


@dataclass(frozen=True)
class Member:
    type: str  # one of MEMBER_TYPES (federated: a user of another instance, by OCM address)
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
class RemoteTarget:
    """An accepted remote space, as the home gateway needs it to reach the origin."""

    space_id: str
    url: str  # the origin's WebDAV URL of the shared resource
    domain: str  # the origin instance
    endpoint: str  # its OCM endPoint
    secret: str | None  # sealed by the federation service


@dataclass(frozen=True)
class Route:
    """Where a space's data lives and what the caller may do there: a local provider, or
    (``remote``) the instance a remote space was shared from."""

    grant: Grant
    provider_id: str | None
    remote: RemoteTarget | None = None


def principal_ids(principal: Principal) -> list[str]:
    """The member ids a principal acts as: itself, its groups and, for a federated guest,
    its address (what an OCM share to ``user@domain`` names as a ``federated`` member)."""
    ids = [principal.id, *principal.groups]
    if principal.kind == "guest" and principal.username not in ids:
        ids.append(principal.username)
    return ids


def drive_alias(kind: str, name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "space"
    return f"{kind}/{slug}"




def folder_path(path: str) -> str:
    """A folder path as the provider names it ("a/b"), or Invalid."""
    folder = path.strip("/")
    if not folder:
        raise Invalid("the root of a space is shared by inviting members to the space "
                      "itself (…/root/invite)")
    if any(part in ("", ".", "..") for part in folder.split("/")):
        raise Invalid(f"{path!r} is not a normalised path inside the space")
    return folder

"""LibreGraph shapes of drives and permissions: request bodies and JSON rendering.

Drives are rendered as plain dicts serialised by orjson (no ``jsonable_encoder``); a
listing, the hot path, joins each drive's JSON as kept since its last change. Shapes
follow what oCIS serves so LibreGraph clients understand them.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal
from urllib.parse import quote

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from fedspace.settings import Settings
from registry.drives import Drive, Member
from registry.roles import ROLES, Role

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# oCIS's condition for roles that apply to a space root.
ROOT_CONDITION = "exists @Resource.Root"


def _no_control(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _image_path(value: str) -> str:
    """A relative path inside the space ("" clears the image)."""
    _no_control(value)
    path = value.strip().strip("/")
    if path and (path == ".." or path.startswith("../") or posixpath.normpath(path) != path):
        raise ValueError("must be a normalised path inside the space")
    return path


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
                 AfterValidator(_no_control)]
Description = Annotated[str, Field(max_length=4096), AfterValidator(_no_control)]
ImagePath = Annotated[str, Field(max_length=1024), AfterValidator(_image_path)]
RoleRefs = Annotated[list[str], Field(min_length=1, max_length=1,
                                      description="exactly one role id or short name")]


class _Body(BaseModel):
    # Clients send more LibreGraph fields than we act on; ignore them rather than fail.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class QuotaIn(_Body):
    total: int = Field(ge=0, description="bytes; 0 = unlimited")


class DriveCreate(_Body):
    name: Name
    description: Description = ""
    quota: QuotaIn | None = None
    drive_type: str = Field("project", alias="driveType")


class DrivePatch(_Body):
    name: Name | None = None
    description: Description | None = None
    quota: QuotaIn | None = None
    image: ImagePath | None = Field(None, description="path of the space image; '' clears it")


_ADDRESS = re.compile(r"^[^@\s]{1,64}@[a-z0-9.-]{1,253}(?::\d{1,5})?$")


class Recipient(_Body):
    """A user or group id, or (``federated``) a user of another instance by address."""

    object_id: str = Field(alias="objectId", min_length=1, max_length=320)
    type: Literal["user", "group", "federated"] = Field(
        "user", alias="@libre.graph.recipient.type")

    @model_validator(mode="after")
    def _federated(self) -> Recipient:
        if self.type == "federated":
            self.object_id = self.object_id.strip().lower()
            if not _ADDRESS.match(self.object_id):
                raise ValueError("a federated recipient's objectId is an address such as "
                                 "marie@paris.test")
        elif len(self.object_id) > 64:
            raise ValueError(f"a {self.type} objectId is at most 64 characters")
        return self


class Invite(_Body):
    recipients: list[Recipient] = Field(min_length=1, max_length=100)
    roles: RoleRefs


class PermissionPatch(_Body):
    roles: RoleRefs


# -- rendering ----------------------------------------------------------------------------


def iso(ms: int) -> str:
    """Milliseconds since the epoch → ISO 8601 UTC (``2024-05-01T12:00:00.000Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def quota(total: int, used: int) -> dict[str, Any]:
    """oCIS quota: total 0 is unlimited (no total/remaining); state by the used share."""
    if not total:
        return {"used": used, "state": "normal"}
    percent = used * 100 / total
    state = ("normal" if percent <= 75 else "nearing" if percent <= 90
             else "critical" if percent < 100 else "exceeded")
    return {"total": total, "used": used, "remaining": max(total - used, 0), "state": state}


def permission(member: Member, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One membership as a LibreGraph permission; display names only when given."""
    identity: dict[str, Any] = {"id": member.id}
    if names is not None and member.id in names:
        identity["displayName"] = names[member.id]
    if member.type == "federated":  # as oCIS shows users of other instances
        identity["@libre.graph.userType"] = "Federated"
        return {"id": member.permission_id, "roles": [ROLES[member.role].id],
                "grantedToV2": {"user": identity}}
    return {"id": member.permission_id, "roles": [ROLES[member.role].id],
            "grantedToV2": {member.type: identity}}


def remote(d: Drive) -> dict[str, Any]:
    """Where a remote space lives, whether it was accepted, and who shared it."""
    return {"webDavUrl": d.remote_url, "state": d.remote_state,
            "sender": {"id": d.remote_sender, "displayName": d.remote_sender_name},
            "owner": {"id": d.remote_owner, "displayName": d.remote_owner_name}}


def role_definition(role: Role, weight: int) -> dict[str, Any]:
    return {"id": role.id, "displayName": role.display_name, "description": role.description,
            "rolePermissions": [{"allowedResourceActions": list(role.actions),
                                 "condition": ROOT_CONDITION}],
            "@libre.graph.weight": weight}


ROLE_DEFINITIONS = [role_definition(r, i) for i, r in enumerate(ROLES.values(), 1)]


FRAGMENTS = 4096  # drives whose JSON a Renderer keeps (~1 KiB each)


class Renderer:
    """Builds drive JSON against this instance's public URL.

    A drive renders the same for each of its members until it changes, and every change
    bumps its ``change_seq``: listings reuse each drive's JSON while its change_seq holds
    (building it was most of a listing's time)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings  # public_url is final only once the listener is bound
        self._fragments: dict[str, tuple[int, bytes]] = {}  # id → (change_seq, JSON)
        self._fragments_url = ""  # the public URL they were rendered with

    @property
    def public_url(self) -> str:
        return self.settings.public_url

    def dav_url(self, drive_id: str) -> str:
        return f"{self.public_url}/dav/spaces/{drive_id}"

    def drive_url(self, drive_id: str) -> str:
        return f"{self.public_url}/graph/v1.0/drives/{drive_id}"

    def drive(self, d: Drive) -> dict[str, Any]:
        # Remote spaces too: the home gateway forwards to the origin (which needs a share
        # bearer that clients never see); ``@fedspace.remote`` still names the origin's URL.
        dav = self.dav_url(d.id)
        root: dict[str, Any] = {"id": d.root_id, "eTag": d.etag, "webDavUrl": dav,
                                "permissions": [permission(m) for m in d.members]}
        if d.disabled:
            root["deleted"] = {"state": "trashed"}  # how oCIS marks a disabled space
        if d.base_space_id:
            # A share: the shared folder and the drive it belongs to, in oCIS's shape
            # for a shared item (the folder's current path is the provider's to know).
            root["remoteItem"] = {"id": d.root_id, "name": d.name, "folder": {},
                                  "parentReference": {"driveId": d.base_space_id}}
        out: dict[str, Any] = {
            "id": d.id,
            "driveType": d.type,
            "driveAlias": d.alias,
            "name": d.name,
            "description": d.description,
            "quota": quota(d.quota_total, d.size),
            "root": root,
            "webUrl": f"{self.public_url}/#/spaces/{d.id}",
            "createdDateTime": iso(d.created_ms),
            "lastModifiedDateTime": iso(d.modified_ms),
            "managers": [{"id": m.id} for m in d.members
                         if m.role == "manager" and m.type == "user"],
            "syncable": not d.disabled,
        }
        if d.type == "remote":
            out["@fedspace.remote"] = remote(d)
        if d.personal_user_id:
            out["owner"] = {"user": {"id": d.personal_user_id}}
        if d.image:
            out["special"] = [{
                "name": posixpath.basename(d.image),
                "specialFolder": {"name": "image"},
                "webDavUrl": f"{dav}/{quote(d.image)}",
            }]
        return out

    def held(self, drive_id: str, change_seq: int) -> bytes | None:
        """The JSON of a drive at ``change_seq`` if rendered already (for
        ``RegistryService.list_drives``, which calls it from its reading thread)."""
        hit = self._fragments.get(drive_id)
        return hit[1] if hit is not None and hit[0] == change_seq else None

    def listing(self, drives: Iterable[Drive | bytes]) -> bytes:
        """``{"value": [...]}`` as orjson writes it, of drives and of the JSON ``held``
        returned; drives rendered here are kept for the next listing."""
        if self._fragments_url != self.public_url:
            self._fragments.clear()
            self._fragments_url = self.public_url
        parts = []
        for d in drives:
            if isinstance(d, Drive):
                part = orjson.dumps(self.drive(d))
                if len(self._fragments) >= FRAGMENTS:
                    self._fragments.clear()
                self._fragments[d.id] = (d.change_seq, part)
                d = part
            parts.append(d)
        return b'{"value":[' + b",".join(parts) + b"]}"

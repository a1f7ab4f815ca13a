"""Receiving OCM shares: ``POST {endPoint}/shares`` makes a pending ``remote`` space for a
local user, ``POST {endPoint}/notifications`` lets the origin unshare or change it, and
the recipient's decision goes back to the origin through the outbox.

Facts from cs3org/OCM-API (``IETF-RFC.md`` "Share Creation Notification", ``spec.yaml``
``NewShare``/``NewNotification``): required ``shareWith``, ``name``, ``providerId``,
``owner``, ``sender``, ``shareType``, ``resourceType``, ``protocol``; 201 with
``recipientDisplayName``; 400 for bad or unknown parameters, 501 for an unsupported share
or resource type. ``protocol`` is ``{name: "multi", webdav: {…}}``, ``{name: "webdav",
webdav: {…}}`` or the deprecated 1.0/1.1 ``{name: "webdav", options: {sharedSecret, …}}``,
whose resource is then the sender's advertised WebDAV path (discovery). ``webdav.uri`` may
be absolute (recommended) or relative to that path; older peers spell it ``url``.

Rules of this receiver (README design notes):

* ``shareWith`` is ``user@<our domain>`` or a bare username of an enabled local user;
  anything else is "unknown recipient", saying nothing about which accounts exist.
* Only ``shareType`` ``user`` and ``resourceType`` ``file`` (files and folders) — else 501.
* The WebDAV URL is https (http only with ``outbound.allow_http``) on the sender's own host
  family: the sender domain, ``cloud.<sender domain>``, or the host of the OCM
  ``endPoint`` the sender's discovery document names — a peer cannot point its recipients
  at a third party.
* Idempotent on (sender domain, providerId): the same share again answers 201 and the
  same body, and changes nothing (OCM defines only 201, and outbox retries must succeed).
* ``write`` among the permissions makes the recipient an editor, else a viewer.
* Notifications are honoured only from the domain the share came from. ``SHARE_UNSHARED``
  and ``RESHARE_UNDO`` remove the space at once and answer 201 even when it is already
  gone (a retried notification must not fail); a permission change
  (``RESHARE_CHANGE_PERMISSION``, alias ``SHARE_CHANGE_PERMISSION``) with the new
  ``permissions`` (a list, in ``notification`` or its ``protocol.webdav``) re-roles the
  recipient, 404 for an unknown share. ``RESOURCE_CHANGED`` (our ``change-notifications``
  extension) sets the remote space's eTag, size and modification time.
* ``SHARE_ACCEPTED`` / ``SHARE_DECLINED`` are about a share *we* sent
  (``federation.outgoing``): honoured only from the recipient's instance, else 404.
* Other types are not implemented here (501).
"""

# No ``from __future__ import annotations``: FastAPI resolves dependency annotations.

import time
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import orjson
from fastapi import APIRouter, Depends
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from discovery.service import Directory, User
from fedspace.outbound import OutboundError
from registry.drives import RemoteShare, RemoteSpace
from registry.roles import ROLES, Role
from registry.service import RegistryService

from . import httpsig
from .api import JSON, OcmRoute, SignedRequest, verified_request
from .ocm import ENDPOINT_PATH, OcmError
from .outbox import enqueue
from .outgoing import CHANGED, OutgoingShares
from .sealing import Sealer

if TYPE_CHECKING:
    from .component import FederationComponent

PERMISSIONS = frozenset({"read", "write", "share", "mfa-enforced"})
UNSHARE = frozenset({"SHARE_UNSHARED", "RESHARE_UNDO"})
CHANGE_PERMISSION = frozenset({"RESHARE_CHANGE_PERMISSION", "SHARE_CHANGE_PERMISSION"})
DECISIONS = {"accepted": "SHARE_ACCEPTED", "declined": "SHARE_DECLINED"}
M = TypeVar("M", bound=BaseModel)
DECIDED = {"SHARE_ACCEPTED": True, "SHARE_DECLINED": False}
UNKNOWN_RECIPIENT = OcmError(400, "unknown recipient", [("shareWith", "unknown recipient")])
UNKNOWN_SHARE = OcmError(404, "no such share with this peer", [("providerId", "unknown share")])


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


def _address(value: str) -> str:
    if "@" not in value.strip("@"):
        raise ValueError("must be an OCM address (user@server)")
    return value


Text = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_printable)]
Address = Annotated[str, Field(min_length=3, max_length=512), AfterValidator(_printable),
                    AfterValidator(_address)]
Permissions = Annotated[list[str], Field(max_length=8)]


class _Body(BaseModel):
    # Peers send more than we act on (webapp, datatx, code…): ignore it, don't fail.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class WebDav(_Body):
    uri: str | None = Field(None, min_length=1, max_length=2048)
    url: str | None = Field(None, min_length=1, max_length=2048)  # the older spelling
    shared_secret: str | None = Field(None, alias="sharedSecret", min_length=1,
                                      max_length=1024)
    permissions: Permissions = Field(default_factory=lambda: ["read"])
    requirements: list[str] = Field(default_factory=list, max_length=8)


class LegacyOptions(_Body):
    """The deprecated ``protocol.options`` (OCM 1.0/1.1); its ``permissions`` is opaque."""

    shared_secret: str = Field(alias="sharedSecret", min_length=1, max_length=1024)


class Protocol(_Body):
    name: Text
    webdav: WebDav | None = None
    options: LegacyOptions | None = None


class NewShare(_Body):
    share_with: Annotated[str, Field(alias="shareWith", min_length=1, max_length=512)]
    name: Text
    description: Annotated[str, Field(max_length=4096)] = ""
    provider_id: Annotated[Text, Field(alias="providerId")]
    owner: Address
    sender: Address
    owner_display_name: Annotated[Text | None, Field(alias="ownerDisplayName")] = None
    sender_display_name: Annotated[Text | None, Field(alias="senderDisplayName")] = None
    share_type: Annotated[Text, Field(alias="shareType")]
    resource_type: Annotated[Text, Field(alias="resourceType")]
    expiration: Annotated[int | None, Field(ge=0)] = None
    code: Annotated[str | None, Field(min_length=1, max_length=1024)] = None
    protocol: Protocol


class NewNotification(_Body):
    notification_type: Annotated[Text, Field(alias="notificationType")]
    resource_type: Annotated[Text, Field(alias="resourceType")] = "file"
    provider_id: Annotated[Text, Field(alias="providerId")]
    notification: dict[str, Any] = Field(default_factory=dict)


class RootState(_Body):
    """``notification`` of RESOURCE_CHANGED: the shared folder's new root state."""

    etag: Annotated[Text, Field(alias="eTag", max_length=64)]
    size: Annotated[int, Field(ge=0)]
    last_modified: Annotated[AwareDatetime, Field(alias="lastModifiedDateTime")]

    def modified_ms(self) -> int:
        return int(self.last_modified.timestamp() * 1000)


def parse(model: type[M], body: dict[str, Any]) -> M:
    """The body as ``model``, or 400 naming every offending field (dotted, by alias)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        fields = [(".".join(str(p) for p in e["loc"]) or "body", e["msg"])
                  for e in exc.errors()]
        raise OcmError(400, "invalid request", fields) from None


def role_for(permissions: list[str], field: str) -> Role:
    unknown = sorted(set(permissions) - PERMISSIONS)
    if unknown:
        raise OcmError(400, "invalid request",
                       [(field, f"unknown permission(s): {', '.join(unknown)}")])
    return ROLES["editor" if "write" in permissions else "viewer"]


def _webdav_prefix(document: dict[str, Any]) -> str | None:
    """The sender's advertised WebDAV path (or URL) for files, from discovery."""
    for resource in document.get("resourceTypes") or []:
        if isinstance(resource, dict) and resource.get("name") == "file":
            webdav = (resource.get("protocols") or {}).get("webdav")
            return webdav if isinstance(webdav, str) else None
    return None


class Receiver:
    """The receiving side of OCM shares, for one registry and user directory."""

    def __init__(self, federation: "FederationComponent", registry: RegistryService,
                 directory: Directory, outgoing: OutgoingShares | None) -> None:
        self.federation = federation
        self.outgoing = outgoing
        self.settings = federation.settings
        self.registry = registry
        self.directory = directory
        self.sealer = Sealer.in_data_dir(federation.settings.data_dir)

    # -- POST /shares ---------------------------------------------------------------------

    async def receive_share(self, signed: SignedRequest) -> dict[str, Any]:
        share = parse(NewShare, signed.body)
        if share.share_type != "user":
            raise OcmError(501, f"share type {share.share_type!r} is not implemented",
                           [("shareType", "not implemented")])
        if share.resource_type != "file":
            raise OcmError(501, f"resource type {share.resource_type!r} is not implemented",
                           [("resourceType", "not implemented")])
        if share.expiration is not None and share.expiration <= time.time():
            raise OcmError(400, "invalid request", [("expiration", "the share has expired")])
        webdav = share.protocol.webdav
        if webdav is None and share.protocol.options is None:
            raise OcmError(400, "invalid request",
                           [("protocol.webdav", "a webdav protocol is required")])
        role = role_for(webdav.permissions if webdav else ["read"],
                        "protocol.webdav.permissions")
        # ``code`` is exchanged at the origin's token endpoint; the secret itself is the
        # bearer for origins without one. Ours sends the same value in both.
        secret = share.code or (webdav.shared_secret if webdav else None) or (
            share.protocol.options.shared_secret if share.protocol.options else None)
        user = await self._recipient(share.share_with)
        endpoint, prefix, hosts = await self._origin(signed.sender)
        url = self._resource_url(webdav.uri or webdav.url if webdav else None, prefix,
                                 signed.sender, hosts)
        await self.registry.register_remote_space(user.id, RemoteShare(
            domain=signed.sender, provider_id=share.provider_id, name=share.name,
            description=share.description, url=url, endpoint=endpoint, sender=share.sender,
            sender_name=share.sender_display_name, owner=share.owner,
            owner_name=share.owner_display_name, role=role.name,
            secret=self.sealer.seal(secret) if secret else None))
        return {"recipientDisplayName": user.display_name}

    async def _recipient(self, share_with: str) -> User:
        name, at, domain = share_with.rpartition("@")
        if not at:
            name, domain = share_with, self.settings.domain
        if domain.lower() != self.settings.domain.lower():
            raise UNKNOWN_RECIPIENT
        user = await self.directory.find_user(name)
        if user is None or user.disabled:
            raise UNKNOWN_RECIPIENT
        return user

    async def _origin(self, domain: str) -> tuple[str, str | None, set[str]]:
        """The sender's OCM endPoint, advertised WebDAV prefix and the hosts it may use."""
        try:
            _, document = await self.federation.sender_keys.discover(domain)
        except (OutboundError, ValueError) as exc:
            raise OcmError(400, "cannot discover the sender's OCM API",
                           [("sender", str(exc)[:200])]) from None
        endpoint = document.get("endPoint")
        if not isinstance(endpoint, str) or not urlsplit(endpoint).hostname:
            raise OcmError(400, "the sender's OCM discovery has no endPoint",
                           [("sender", "no endPoint")])
        bare = domain.partition(":")[0]
        hosts = {bare, f"cloud.{bare}", urlsplit(endpoint).hostname or ""}
        return endpoint.rstrip("/"), _webdav_prefix(document), hosts

    def _resource_url(self, uri: str | None, prefix: str | None, domain: str,
                      hosts: set[str]) -> str:
        """The absolute WebDAV URL of the shared resource, checked against the rules."""
        field = "protocol.webdav.uri"
        if uri is None or not urlsplit(uri).scheme:
            if prefix is None:
                raise OcmError(400, "invalid request",
                               [(field, "required: the sender advertises no WebDAV path")])
            scheme = "http" if self.settings.outbound.allow_http else "https"
            base = urljoin(f"{scheme}://{domain}/", prefix)
            uri = urljoin(base.rstrip("/") + "/", (uri or "").lstrip("/"))
        parts = urlsplit(uri)
        allowed = ("https", "http") if self.settings.outbound.allow_http else ("https",)
        if parts.scheme not in allowed or not parts.hostname:
            raise OcmError(400, "invalid request",
                           [(field, f"must be an absolute {' or '.join(allowed)} URL")])
        if parts.username or parts.password or parts.query or parts.fragment:
            raise OcmError(400, "invalid request",
                           [(field, "must not carry credentials, a query or a fragment")])
        if parts.hostname.lower() not in hosts:
            raise OcmError(400, "invalid request",
                           [(field, "must be on the sender's own host")])
        return uri

    # -- POST /notifications --------------------------------------------------------------

    async def receive_notification(self, signed: SignedRequest) -> None:
        note = parse(NewNotification, signed.body)
        kind = note.notification_type.upper()
        if note.resource_type != "file":
            raise OcmError(501, f"resource type {note.resource_type!r} is not implemented",
                           [("resourceType", "not implemented")])
        if kind in UNSHARE:
            await self.registry.remove_remote_space(signed.sender, note.provider_id)
            return
        if kind in DECIDED:  # about a share we sent
            if self.outgoing is None or not await self.outgoing.decided(
                    signed.sender, note.provider_id, DECIDED[kind]):
                raise UNKNOWN_SHARE
            return
        if kind == CHANGED:
            change = parse(RootState, note.notification)
            if not await self.registry.set_remote_root(
                    signed.sender, note.provider_id, change.etag, change.size,
                    change.modified_ms()):
                raise UNKNOWN_SHARE
            return
        if kind not in CHANGE_PERMISSION:
            raise OcmError(501, f"notification type {note.notification_type!r} is not "
                           "implemented", [("notificationType", "not implemented")])
        permissions, field = self._permissions(note.notification)
        if not await self.registry.set_remote_role(
                signed.sender, note.provider_id, role_for(permissions, field)):
            raise UNKNOWN_SHARE

    @staticmethod
    def _permissions(notification: dict[str, Any]) -> tuple[list[str], str]:
        webdav = ((notification.get("protocol") or {}).get("webdav") or {}
                  if isinstance(notification.get("protocol"), dict) else {})
        for field, value in (("notification.permissions", notification.get("permissions")),
                             ("notification.protocol.webdav.permissions",
                              webdav.get("permissions") if isinstance(webdav, dict) else None)):
            if value is not None:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise OcmError(400, "invalid request", [(field, "must be a list of strings")])
                return value, field
        raise OcmError(400, "invalid request",
                       [("notification.permissions", "the new permissions are required")])

    # -- the recipient's decision (a registry RemoteListener) ------------------------------

    async def decided(self, conn: AsyncConnection, space: RemoteSpace) -> None:
        """Queue SHARE_ACCEPTED / SHARE_DECLINED in the transaction recording the decision."""
        await enqueue(conn, peer=space.domain, url=f"{space.endpoint}/notifications",
                      kind="notification", dedupe_key=f"remote:{space.id}:{space.state}",
                      payload={"notificationType": DECISIONS[space.state],
                               "resourceType": "file", "providerId": space.provider_id,
                               "notification": {}})

    def committed(self) -> None:
        self.federation.delivery.notify()


def share_sender(body: dict[str, Any]) -> str | None:
    """The domain a share speaks for: its ``sender``'s, else its ``owner``'s."""
    for key in ("sender", "owner"):
        value = body.get(key)
        if isinstance(value, str) and "@" in value:
            return httpsig.address_domain(value)
    return None


def router(receiver: Receiver) -> APIRouter:
    router = APIRouter(route_class=OcmRoute)
    fed = receiver.federation
    share_gate = verified_request(fed, claimed=share_sender)
    # A notification names no sender: only signed requests, and only about the signer's
    # own shares (the registry looks shares up by the signer's domain).
    notification_gate = verified_request(fed, claimed=lambda _: None)

    @router.post(f"{ENDPOINT_PATH}/shares", include_in_schema=False)
    async def shares(signed: SignedRequest = Depends(share_gate)) -> Response:
        answer = await receiver.receive_share(signed)
        return Response(orjson.dumps(answer), 201, media_type=JSON)

    @router.post(f"{ENDPOINT_PATH}/notifications", include_in_schema=False)
    async def notifications(signed: SignedRequest = Depends(notification_gate)) -> Response:
        await receiver.receive_notification(signed)
        return Response(b"{}", 201, media_type=JSON)

    return router

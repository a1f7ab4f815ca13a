"""LibreGraph drives API (``/graph/…``) and drive-change Server-Sent Events (HTTP only).

Routes authenticate, translate OData/LibreGraph requests into ``RegistryService`` calls
and render the results with ``registry.graph``; service exceptions become problem+json.
"""

# No ``from __future__ import annotations``: FastAPI must see the route signatures'
# annotations (``Caller`` is local to ``router``) as objects, not strings.
import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import grpc
import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.routing import APIRoute
from starlette.responses import Response, StreamingResponse

from discovery.service import Directory
from fedspace.auth import Principal
from fedspace.permissions import Permission
from fedspace.problem import Problem
from fedspace.runtime import Context
from registry.drives import (
    SPACE_TYPES,
    Conflict,
    Drive,
    Forbidden,
    Invalid,
    Member,
    NotFound,
    Unavailable,
    principal_ids,
)
from registry.graph import (
    ROLE_DEFINITIONS,
    DriveCreate,
    DrivePatch,
    Invite,
    PermissionPatch,
    Renderer,
    permission,
)
from registry.providers import NoProvider, NotAFolder
from registry.roles import ROLES, Role, role
from registry.service import RegistryService

_FILTER = re.compile(r"\s*driveType\s+eq\s+'([^']*)'\s*")
_ORDER = re.compile(r"\s*(name|lastModifiedDateTime)(?:\s+(asc|desc))?\s*")
_TRUE = frozenset({"t", "true", "1"})
# Seconds between SSE comments that keep proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0


class ServiceErrorRoute(APIRoute):
    """Maps the service's exceptions to problem+json, so handlers stay linear."""

    _STATUS: tuple[tuple[type[Exception], int], ...] = (
        (NotFound, 404), (Forbidden, 403), (Conflict, 409), (Invalid, 400), (NotAFolder, 400),
        (NoProvider, 503), (Unavailable, 503))

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except grpc.aio.AioRpcError as exc:
                raise Problem(503, f"the storage provider failed: {exc.code().name} "
                                   f"({exc.details()})") from None
            except Exception as exc:
                for kind, status in self._STATUS:
                    if isinstance(exc, kind):
                        raise Problem(status, str(exc)) from None
                raise

        return run


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers=headers, media_type="application/json")


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def parse_filter(expr: str | None) -> str | None:
    """``driveType eq 'project'`` → "project"; anything else is refused precisely."""
    if expr is None or not expr.strip():
        return None
    m = _FILTER.fullmatch(expr)
    if m is None:
        raise Problem(400, f"unsupported $filter expression {expr!r}: only "
                           "\"driveType eq '<type>'\" is supported")
    if m[1] not in SPACE_TYPES:
        raise Problem(400, f"unsupported driveType {m[1]!r} in $filter: use one of "
                           f"{', '.join(SPACE_TYPES)}")
    return m[1]


def parse_orderby(expr: str | None) -> tuple[str | None, bool]:
    """``name`` / ``lastModifiedDateTime desc`` → (field, descending)."""
    if expr is None or not expr.strip():
        return None, False
    m = _ORDER.fullmatch(expr)
    if m is None:
        raise Problem(400, f"unsupported $orderby expression {expr!r}: use name or "
                           "lastModifiedDateTime, optionally followed by asc or desc")
    return m[1], m[2] == "desc"


def _role(ref: str) -> Role:
    found = role(ref)
    if found is None:
        raise Problem(400, f"unknown role {ref!r}: use a unified role id or one of "
                           f"{', '.join(ROLES)}")
    return found


def _sse(event: str, data: dict[str, Any], seq: int | None = None) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def router(service: RegistryService, ctx: Context) -> APIRouter:
    render = Renderer(ctx.settings)
    r = APIRouter(route_class=ServiceErrorRoute)

    async def authenticate(request: Request) -> Principal:
        return await ctx.auth.authenticate(request)

    Caller = Annotated[Principal, Depends(authenticate)]

    def directory() -> Directory | None:
        """The user directory when discovery runs in this process."""
        discovery = ctx.components.get("discovery")
        return discovery.directory if discovery is not None else None

    async def names(ids: list[str]) -> dict[str, str] | None:
        d = directory()
        return await d.display_names(ids) if d is not None else None

    async def with_shares(space_id: str, members: list[Member],
                          found: dict[str, str] | None) -> list[dict[str, Any]]:
        """Permissions; those of users of other instances say where their share stands."""
        states: dict[str, dict[str, Any]] = {}
        if service.outgoing is not None and any(m.type == "federated" for m in members):
            states = await service.outgoing.describe(space_id)
        rendered = []
        for m in members:
            entry = permission(m, found)
            if m.id in states and m.type == "federated":
                entry["@fedspace.share"] = states[m.id]
            rendered.append(entry)
        return rendered

    # -- drives ---------------------------------------------------------------------------

    async def list_drives(request: Request) -> Response:
        """The hot route takes the bare request: FastAPI's parameter and dependency solving
        was a quarter of its event-loop time (its errors are all ``Problem``s already)."""
        p = await ctx.auth.authenticate(request)
        drive_type = parse_filter(request.query_params.get("$filter"))
        order_by, descending = parse_orderby(request.query_params.get("$orderby"))
        drives = await service.list_drives(p, drive_type=drive_type, order_by=order_by,
                                           descending=descending, held=render.held)
        return Response(render.listing(drives), media_type="application/json")

    r.add_api_route("/graph/v1.0/me/drives", list_drives, methods=["GET"])
    # oCIS serves all drives here to admins; we list the caller's drives on both.
    r.add_api_route("/graph/v1.0/drives", list_drives, methods=["GET"])

    @r.get("/graph/v1.0/drives/{drive_id}")
    async def get_drive(drive_id: str, p: Caller) -> Response:
        return _json(render.drive(await service.get_drive(p, drive_id)))

    @r.post("/graph/v1.0/drives")
    async def create_drive(body: DriveCreate, p: Caller) -> Response:
        if body.drive_type != "project":
            raise Problem(400, f"driveType {body.drive_type!r} cannot be created: only "
                               "project drives can")
        drive = await service.create_project(
            p, body.name, body.description, body.quota.total if body.quota else None)
        return _json(render.drive(drive), 201, {"Location": render.drive_url(drive.id)})

    @r.patch("/graph/v1.0/drives/{drive_id}")
    async def update_drive(
        drive_id: str, p: Caller, body: DrivePatch | None = None,
        restore: Annotated[str | None, Header()] = None,
    ) -> Response:
        changes = body.model_dump(exclude_unset=True) if body is not None else {}
        if _flag(restore):
            drive = await service.restore(p, drive_id)
            if not changes:
                return _json(render.drive(drive))
        quota = changes.get("quota") or {}
        drive = await service.update(
            p, drive_id, name=changes.get("name"), description=changes.get("description"),
            image=changes.get("image"), quota=quota.get("total"))
        return _json(render.drive(drive))

    @r.delete("/graph/v1.0/drives/{drive_id}", status_code=204)
    async def delete_drive(
        drive_id: str, p: Caller, purge: Annotated[str | None, Header()] = None
    ) -> Response:
        if _flag(purge):
            await service.purge(p, drive_id)
        else:
            await service.disable(p, drive_id)
        return Response(status_code=204)

    # -- remote spaces (shares received from other instances) -----------------------------

    @r.post("/graph/v1beta1/drives/{drive_id}/accept")
    async def accept_remote(drive_id: str, p: Caller) -> Response:
        return _json(render.drive(await service.decide_remote(p, drive_id, "accepted")))

    @r.post("/graph/v1beta1/drives/{drive_id}/decline")
    async def decline_remote(drive_id: str, p: Caller) -> Response:
        return _json(render.drive(await service.decide_remote(p, drive_id, "declined")))

    # -- permissions ----------------------------------------------------------------------

    async def check_invite(p: Principal, drive_id: str, body: Invite) -> tuple[Drive, Directory]:
        """The drive, if the caller may invite to it and every recipient exists.

        The caller's right is checked before answering whether a recipient exists, so
        non-managers cannot probe the directory.
        """
        drive = await service.get_drive(p, drive_id)
        if Permission.MANAGE_MEMBERS not in drive.role.permissions:
            raise Forbidden("only managers of this space may do that")
        d = directory()
        if d is None:
            raise Problem(503, "the user directory is not available to this registry")
        own = ctx.settings.domain.lower()
        for rcp in body.recipients:
            if rcp.type == "federated":
                if rcp.object_id.rpartition("@")[2] == own:
                    raise Problem(400, f"{rcp.object_id!r} is a user of this instance: "
                                       "invite her by user id")
                continue
            exists = d.user_exists if rcp.type == "user" else d.group_exists
            if not await exists(rcp.object_id):
                raise Problem(400, f"no such {rcp.type}: {rcp.object_id!r}")
        return drive, d

    @r.post("/graph/v1beta1/drives/{drive_id}/root/invite")
    async def invite(drive_id: str, body: Invite, p: Caller) -> Response:
        new_role = _role(body.roles[0])
        _, d = await check_invite(p, drive_id, body)
        members = await service.add_members(
            p, drive_id, [(rcp.type, rcp.object_id) for rcp in body.recipients], new_role)
        found = await d.display_names([m.id for m in members])
        return _json({"value": await with_shares(drive_id, members, found)})

    async def share(p: Principal, drive: Drive, path: str, body: Invite, new_role: Role,
                    d: Directory) -> Response:
        """Share a folder; each permission names the share drive it was granted on."""
        shared, members = await service.share_folder(
            p, drive.id, path, [(rcp.type, rcp.object_id) for rcp in body.recipients],
            new_role)
        found = await d.display_names([m.id for m in members])
        return _json({"value": [entry | {"@libre.graph.drive.id": shared.id}
                                for entry in await with_shares(shared.id, members, found)]})

    @r.post("/graph/v1beta1/drives/{drive_id}/items/{item_id}/invite")
    async def invite_item(drive_id: str, item_id: str, body: Invite, p: Caller) -> Response:
        new_role = _role(body.roles[0])
        drive, d = await check_invite(p, drive_id, body)
        path = await service.folder_of_item(drive, item_id)
        return await share(p, drive, path, body, new_role, d)

    @r.post("/graph/v1beta1/drives/{drive_id}/root:/{path:path}:/invite")
    async def invite_path(drive_id: str, path: str, body: Invite, p: Caller) -> Response:
        new_role = _role(body.roles[0])
        drive, d = await check_invite(p, drive_id, body)
        return await share(p, drive, path, body, new_role, d)

    @r.get("/graph/v1beta1/drives/{drive_id}/root/permissions")
    async def list_permissions(drive_id: str, p: Caller) -> Response:
        drive = await service.list_members(p, drive_id)
        found = await names([m.id for m in drive.members])
        mine = set(drive.role.actions)
        return _json({
            "@libre.graph.permissions.actions.allowedValues": list(drive.role.actions),
            # As oCIS: the roles whose actions the caller holds, i.e. may hand out.
            "@libre.graph.permissions.roles.allowedValues": [
                d for d, rl in zip(ROLE_DEFINITIONS, ROLES.values(), strict=True)
                if mine.issuperset(rl.actions)],
            "value": await with_shares(drive_id, drive.members, found),
        })

    @r.patch("/graph/v1beta1/drives/{drive_id}/root/permissions/{permission_id}")
    async def update_permission(
        drive_id: str, permission_id: str, body: PermissionPatch, p: Caller
    ) -> Response:
        member = await service.set_member_role(p, drive_id, permission_id, _role(body.roles[0]))
        return _json((await with_shares(drive_id, [member], await names([member.id])))[0])

    @r.delete("/graph/v1beta1/drives/{drive_id}/root/permissions/{permission_id}",
              status_code=204)
    async def delete_permission(drive_id: str, permission_id: str, p: Caller) -> Response:
        await service.remove_member(p, drive_id, permission_id)
        return Response(status_code=204)

    # -- change events --------------------------------------------------------------------

    @r.get("/graph/v1.0/me/drives/events")
    async def drive_events(
        p: Caller, last_event_id: Annotated[str | None, Header()] = None
    ) -> StreamingResponse:
        since: int | None = None
        if last_event_id is not None and last_event_id.strip():
            if not last_event_id.strip().isdigit():
                raise Problem(400, f"Last-Event-ID {last_event_id!r} is not an event id "
                                   "(a non-negative integer)")
            since = int(last_event_id)
        return StreamingResponse(
            _events(service, render, p, since), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return r


async def _events(service: RegistryService, render: Renderer, p: Principal,
                  since: int | None) -> AsyncIterator[bytes]:
    """Replay changes after ``since`` (if given), then stream them as they happen.

    The bus only wakes us; what changed is always read from the table (``change_seq``),
    so a coalesced wake-up loses nothing. Drives that became invisible are announced as
    ``drive-removed`` by comparing visible ids when a membership of ours changed.
    """
    sub = service.bus.subscribe(frozenset(principal_ids(p)))
    try:
        seq = since if since is not None else await service.current_seq()
        visible = await service.visible_ids(p)
        yield b"retry: 5000\n\n"  # first bytes: the subscription is live from here on
        while True:
            if sub.membership_changed:
                sub.membership_changed = False
                now_visible = await service.visible_ids(p)
                for gone in sorted(visible - now_visible):
                    yield _sse("drive-removed", {"id": gone})
                visible = now_visible
            drives: list[Drive] = await service.changes_since(p, seq)
            for drive in drives:
                seq = max(seq, drive.change_seq)
                visible.add(drive.id)
                yield _sse("drive-changed", render.drive(drive), drive.change_seq)
            try:
                await asyncio.wait_for(sub.event.wait(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield b": keep-alive\n\n"
            sub.event.clear()
    finally:
        sub.close()

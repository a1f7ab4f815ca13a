"""HTTP routes of the invite flow: the OCM endpoint ``POST /ocm/invite-accepted`` (OCM
error shape) and the users' own ``/api/v1/ocm/…`` (problem+json): make, list and revoke
invites, accept one made elsewhere, list contacts.

Only local users use the API: a federated guest's invites belong at her own instance, and a
credential scoped to shared spaces (an OCM share's bearer) manages nothing.
"""

# No ``from __future__ import annotations``: FastAPI resolves dependency annotations.

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from discovery.service import Directory
from fedspace.auth import Authenticator, Principal
from fedspace.problem import Problem
from fedspace.sqltypes import now_ms

from .api import JSON, OcmRoute, SignedRequest, verified_request
from .invites import MAX_LIFETIME, MAX_TOKEN, Contact, Invite, InviteError, Invites, Printable
from .invites import provider_domain as _provider_domain
from .models import ADDRESS_LENGTH
from .ocm import ENDPOINT_PATH
from .shares import parse

if TYPE_CHECKING:
    from .component import FederationComponent


class AcceptedInvite(BaseModel):
    """The Invite Acceptance Request (``spec.yaml`` ``AcceptedInvite``): all five required;
    ``email`` and ``name`` are informational and may be empty."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)
    recipient_provider: Annotated[Printable, Field(alias="recipientProvider", min_length=1,
                                                   max_length=512)]
    token: Annotated[Printable, Field(min_length=1, max_length=255)]
    user_id: Annotated[Printable, Field(alias="userID", min_length=1, max_length=255)]
    email: Annotated[Printable, Field(max_length=ADDRESS_LENGTH)]
    name: Annotated[Printable, Field(max_length=255)]


class InviteCreate(BaseModel):
    description: Annotated[Printable, Field(max_length=255)] = ""
    expires_in_seconds: Annotated[int | None, Field(alias="expiresInSeconds", ge=1,
                                                    le=MAX_LIFETIME)] = None


class InviteAccept(BaseModel):
    token: Annotated[Printable, Field(min_length=1, max_length=MAX_TOKEN)]
    provider_domain: Annotated[Printable, Field(alias="providerDomain", min_length=1,
                                                max_length=512)]


def recipient_provider(body: dict[str, Any]) -> str | None:
    """Whom an Invite Acceptance Request speaks for (the gate's ``claimed``): an unsigned
    legacy peer is identified by it, a signed one must be it."""
    value = body.get("recipientProvider")
    return _provider_domain(value) if isinstance(value, str) else None


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _invite(invite: Invite, now: int) -> dict[str, Any]:
    return {"id": invite.id, "description": invite.description,
            "createdDateTime": _iso(invite.created_ms),
            "expirationDateTime": _iso(invite.expires_ms), "state": invite.state(now),
            "acceptedDateTime": _iso(invite.accepted_ms), "acceptedBy": invite.accepted_by}


def _contact(contact: Contact) -> dict[str, Any]:
    return {"address": contact.address, "userID": contact.address.rpartition("@")[0],
            "providerDomain": contact.peer, "name": contact.name, "email": contact.email,
            "createdDateTime": _iso(contact.created_ms)}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


class InviteRoute(APIRoute):
    """Refusals of the ``Invites`` service as problem+json."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def invite_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except InviteError as exc:
                raise Problem(exc.status, exc.message) from None

        return invite_handler


def ocm_router(invites: Invites) -> APIRouter:
    router = APIRouter(route_class=OcmRoute)
    # require_invite must not block the way to a first invite.
    gate = verified_request(invites.federation, claimed=recipient_provider, inviting=True)

    @router.post(f"{ENDPOINT_PATH}/invite-accepted", include_in_schema=False)
    async def invite_accepted(signed: SignedRequest = Depends(gate)) -> Response:
        body = parse(AcceptedInvite, signed.body)
        answer = await invites.accept_incoming(
            body.token, body.recipient_provider, body.user_id, body.email, body.name,
            signer_domain=signed.sender)
        return Response(orjson.dumps(answer), 200, media_type=JSON)

    return router


def api_router(invites: Invites, auth: Authenticator) -> APIRouter:
    router = APIRouter(prefix="/api/v1/ocm", route_class=InviteRoute)

    async def caller(request: Request) -> Principal:
        principal = await auth.authenticate(request)
        if principal.kind != "user":
            raise Problem(403, "federated guests make and accept invites at their own "
                               "instance")
        if principal.scope is not None:
            raise Problem(403, "this credential only reaches shared spaces")
        return principal

    Caller = Annotated[Principal, Depends(caller)]

    @router.post("/invites", status_code=201)
    async def create_invite(principal: Caller, body: InviteCreate | None = None) -> Response:
        body = body or InviteCreate()
        invite, token = await invites.create(principal.id, body.description,
                                             body.expires_in_seconds)
        shape = _invite(invite, now_ms())
        return _json({"id": invite.id, "token": token,
                      "providerDomain": invites.settings.domain.lower(),
                      **{k: shape[k] for k in ("description", "createdDateTime",
                                               "expirationDateTime")}}, 201)

    @router.get("/invites")
    async def list_invites(principal: Caller) -> Response:
        now = now_ms()
        return _json({"value": [_invite(i, now) for i in await invites.list(principal.id)]})

    @router.delete("/invites/{invite_id}", status_code=204)
    async def revoke_invite(principal: Caller, invite_id: str) -> Response:
        await invites.revoke(principal.id, invite_id)
        return Response(status_code=204)

    @router.post("/invites/accept", status_code=201)
    async def accept_invite(principal: Caller, body: InviteAccept) -> Response:
        contact = await invites.accept_outgoing(principal.id, body.token,
                                                body.provider_domain)
        return _json(_contact(contact), 201)

    @router.get("/contacts")
    async def list_contacts(principal: Caller) -> Response:
        return _json({"value": [_contact(c) for c in await invites.contacts(principal.id)]})

    return router


def routers(federation: "FederationComponent", directory: Directory) -> list[APIRouter]:
    """Both routers over one ``Invites`` service (mounted with the user directory)."""
    invites = Invites(federation, directory)
    return [ocm_router(invites), api_router(invites, federation.ctx.auth)]

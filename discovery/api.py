"""HTTP routes of the discovery service (WebFinger, app passwords); logic lives elsewhere."""

# No ``from __future__ import annotations``: FastAPI must resolve the routes' local
# ``Caller`` annotation as an object, not a string.

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from discovery import webfinger
from discovery.basic import AppPasswordVerifier
from discovery.service import AppPassword, Directory, DirectoryError
from fedspace.auth import Authenticator, Principal
from fedspace.problem import Problem
from fedspace.settings import Settings

# RFC 7033 §5: WebFinger is for browsers too, so every answer (errors included) is CORS-open.
CORS = {"Access-Control-Allow-Origin": "*"}


def webfinger_router(settings: Settings) -> APIRouter:
    router = APIRouter()

    @router.get("/.well-known/webfinger", include_in_schema=False)
    async def get_webfinger(
        resource: str = "",
        rel: Annotated[list[str] | None, Query()] = None,
    ) -> Response:
        """Errors are problem+json: 400 for a missing/malformed resource, 404 for a
        domain this instance does not serve."""
        try:
            body = webfinger.jrd(settings, resource, rel or ())
        except webfinger.MalformedResource as exc:
            raise Problem(400, str(exc), headers=CORS) from None
        except webfinger.UnknownDomain as exc:
            raise Problem(404, str(exc), headers=CORS) from None
        return Response(orjson.dumps(body), media_type=webfinger.JRD, headers=CORS)

    return router


class AppPasswordCreate(BaseModel):
    label: str = Field("app password", min_length=1, max_length=255)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _shape(pw: AppPassword) -> dict[str, Any]:
    return {"id": pw.id, "label": pw.label, "createdDateTime": _iso(pw.created_ms),
            "lastUsedDateTime": _iso(pw.last_used_ms)}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def app_password_router(
    directory: Directory, auth: Authenticator, basic: AppPasswordVerifier
) -> APIRouter:
    """``/api/v1/me/app-passwords``: list (with last use), create (secret shown once), revoke."""
    router = APIRouter(prefix="/api/v1/me/app-passwords")

    async def caller(request: Request) -> Principal:
        principal = await auth.authenticate(request)
        if request.headers.get("authorization", "").lower().startswith("basic "):
            # A leaked app password must not be able to mint more of itself.
            raise Problem(403, "app passwords cannot manage app passwords: sign in with "
                               "OpenID Connect, or use `fedspace users app-password`")
        if principal.kind != "user":
            raise Problem(403, "federated guests have no app passwords on this instance")
        return principal

    Caller = Annotated[Principal, Depends(caller)]

    @router.get("")
    async def list_app_passwords(principal: Caller) -> Response:
        found = await directory.list_app_passwords(principal.username)
        return _json({"value": [_shape(pw) for pw in found]})

    @router.post("", status_code=201)
    async def create_app_password(principal: Caller, body: AppPasswordCreate) -> Response:
        pw, secret = await directory.create_app_password(principal.username, body.label)
        return _json({**_shape(pw), "password": secret}, 201)

    @router.delete("/{password_id}", status_code=204)
    async def revoke_app_password(principal: Caller, password_id: str) -> Response:
        try:
            await directory.revoke_app_password(principal.username, password_id)
        except DirectoryError:
            raise Problem(404, f"no app password {password_id!r}") from None
        basic.forget()
        return Response(status_code=204)

    return router

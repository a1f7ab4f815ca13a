"""Routing of ``/dav/spaces/{space_id}/…`` to the provider that holds the space.

Like oCIS's proxy: the gateway authenticates the caller, asks the registry for the
caller's grant and the space's provider, then either calls the in-process provider
directly or forwards the request to the provider's own data plane with the grant in a
short-lived internal token. A provider running alone accepts only such tokens.
"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fedspace.auth import Principal
from fedspace.internal import InvalidInternalToken
from fedspace.metrics import LabelledRoute
from fedspace.permissions import Grant, Permission
from fedspace.runtime import Context

DAV_METHODS = ["OPTIONS", "PROPFIND", "PROPPATCH", "GET", "HEAD", "PUT", "MKCOL", "DELETE",
               "MOVE", "COPY"]
GRANT_HEADER = "x-fedspace-grant"
# Hop-by-hop headers (RFC 9110 §7.6.1) and Host: never passed on by a forwarder.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding",
                        "upgrade", "host"})
# ... and those this forwarder sets itself.
_HOP = HOP_BY_HOP | {"authorization", GRANT_HEADER}


def dav_error(status: int, message: str) -> Response:
    from xml.sax.saxutils import escape

    body = ('<?xml version="1.0" encoding="utf-8"?>\n<d:error xmlns:d="DAV:" '
            f'xmlns:s="http://sabredav.org/ns"><s:message>{escape(message)}</s:message>'
            "</d:error>")
    return Response(body, status, media_type="application/xml; charset=utf-8")


def grant_claims(grant: Grant) -> dict[str, Any]:
    p = grant.principal
    return {"sub": p.id, "name": p.username, "dn": p.display_name, "groups": sorted(p.groups),
            "adm": p.is_admin, "kind": p.kind, "space": grant.space_id,
            "perm": grant.permissions.value}


def grant_from_claims(claims: dict[str, Any]) -> Grant:
    principal = Principal(claims["sub"], claims["name"], claims["dn"],
                          frozenset(claims["groups"]), claims["adm"], claims["kind"])
    return Grant(principal, claims["space"], Permission(claims["perm"]))


def routes(ctx: Context) -> list[LabelledRoute]:
    """Plain Starlette routes, put first in the app's own route list: matched before
    anything else and without an included router's extra layer (WebDAV is the hot path)."""
    registry = ctx.components.get("registry")
    provider = ctx.components.get("provider")
    local_id = provider.id if provider is not None else None
    client = httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5), follow_redirects=False)

    async def forward(request: Request, grant: Grant, provider_id: str, path: str) -> Response:
        handle = registry.providers.get(provider_id)
        if handle is None:
            return dav_error(503, "the provider holding this space is not available")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
        headers.append((GRANT_HEADER,
                        ctx.tokens.mint(f"provider:{provider_id}", grant_claims(grant))))
        url = f"{handle.dav_url.rstrip('/')}{request.url.path}"
        if request.url.query:
            url += "?" + request.url.query
        upstream = client.build_request(request.method, url, headers=headers,
                                        content=request.stream())
        try:
            response = await client.send(upstream, stream=True)
        except httpx.HTTPError:
            return dav_error(502, "the provider holding this space did not answer")
        out = {k: v for k, v in response.headers.items() if k.lower() not in _HOP}
        return StreamingResponse(response.aiter_raw(), response.status_code, headers=out,
                                 background=BackgroundTask(response.aclose))

    async def dav(request: Request) -> Response:
        space_id = request.path_params["space_id"]
        path = request.path_params.get("path", "")
        if registry is None:
            # Provider-only mode: only the gateway's signed grant opens the data plane.
            token = request.headers.get(GRANT_HEADER, "")
            try:
                grant = grant_from_claims(ctx.tokens.verify(token, f"provider:{local_id}"))
            except (InvalidInternalToken, KeyError, ValueError):
                return dav_error(401, "this provider accepts requests from its gateway only")
            if grant.space_id != space_id:
                return dav_error(403, "grant is for another space")
            return await provider.webdav.handle(request, grant, path)
        from registry.drives import NotFound

        principal = await ctx.auth.authenticate(request)
        try:
            route = await registry.service.route(principal, space_id)
        except NotFound as exc:
            return dav_error(404, str(exc))
        if route.remote is not None:
            federation = ctx.components.get("federation")
            if federation is None:
                return dav_error(503, "the federation service does not run with this registry")
            return await federation.remote_access.forward(request, route, path)
        if route.provider_id == local_id:
            return await provider.webdav.handle(request, route.grant, path)
        assert route.provider_id is not None
        return await forward(request, route.grant, route.provider_id, path)

    return [LabelledRoute("/dav/spaces/{space_id}", dav, methods=DAV_METHODS),
            LabelledRoute("/dav/spaces/{space_id}/{path:path}", dav, methods=DAV_METHODS)]

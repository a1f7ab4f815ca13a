"""HTTP routes of the discovery service (WebFinger); the logic lives in protocol modules."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from discovery import webfinger
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

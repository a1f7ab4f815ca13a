"""HTTP routes of the federation service: OCM discovery, our JWK Set, and the gate every
inbound OCM request passes (``verified_request``) with OCM-shaped errors (``OcmRoute``)."""

# No ``from __future__ import annotations``: FastAPI resolves dependency annotations.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import Response

from fedspace.problem import Problem

from . import httpsig, ocm
from .ocm import OcmError

if TYPE_CHECKING:
    from .component import FederationComponent

# Discovery documents and keys are public and read by browser-based tools too.
CORS = {"Access-Control-Allow-Origin": "*"}
JSON = "application/json"
MAX_BODY = 64 * 1024  # OCM payloads are small JSON objects
# Not an RFC 9421 signature at all (e.g. a draft-cavage one from an OCM 1.1 peer): such a
# request counts as unsigned, which legacy peers in ``accept_unsigned_from`` may send.
_UNSIGNED = frozenset({"no-signature", "malformed", "no-ocm-signature"})

Claimed = Callable[[dict[str, Any]], str | None]


def router(federation: "FederationComponent") -> APIRouter:
    router = APIRouter()

    async def discovery() -> Response:
        document = ocm.discovery_document(federation.settings.public_url, federation.features)
        return Response(orjson.dumps(document), media_type=JSON, headers=CORS)

    router.add_api_route("/.well-known/ocm", discovery, include_in_schema=False)
    router.add_api_route("/ocm-provider", discovery, include_in_schema=False)  # OCM 1.1

    @router.get(ocm.JWKS_PATH, include_in_schema=False)
    async def jwks() -> Response:
        return Response(orjson.dumps(federation.keys.public_jwks()), media_type=JSON,
                        headers=CORS)

    return router


# -- OCM endpoints ---------------------------------------------------------------------

def ocm_response(error: OcmError) -> Response:
    return Response(orjson.dumps(error.body()), error.status, media_type=JSON)


class OcmRoute(APIRoute):
    """Route class for the ``/ocm/*`` endpoints: every refusal in the OCM error shape,
    request validation failures as 400 with ``validationErrors``."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def ocm_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except OcmError as exc:
                return ocm_response(exc)
            except Problem as exc:
                return ocm_response(OcmError(exc.status, exc.detail))
            except RequestValidationError as exc:
                fields = [(".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), e["msg"])
                          for e in exc.errors()]
                return ocm_response(OcmError(400, "invalid request", fields))

        return ocm_handler


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """An inbound OCM request that passed the gate."""

    sender: str  # the peer's domain: the signer's, or the claimed one of an unsigned peer
    signed: bool
    keyid: str | None
    body: dict[str, Any]


def payload_sender(body: dict[str, Any]) -> str | None:
    """The server part of the payload's ``sender`` address (Share Creation Notification)."""
    sender = body.get("sender")
    return httpsig.address_domain(sender) if isinstance(sender, str) and "@" in sender else None


def target_uri(public_url: str, request: Request) -> str:
    """The URI the sender addressed: our public URL, the raw path and the query."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if raw else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{public_url.rstrip('/')}{path}{'?' + query if query else ''}"


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    too_large = OcmError(413, f"request body exceeds {limit} bytes")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OcmError(400, "request body is not valid JSON", [("body", str(exc))]) from None
    if not isinstance(payload, dict):
        raise OcmError(400, "request body must be a JSON object", [("body", "not an object")])
    return payload


def _form_object(body: bytes) -> dict[str, Any]:
    try:
        return dict(parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict"))
    except (UnicodeError, ValueError) as exc:
        raise OcmError(400, "request body is not a valid form", [("body", str(exc))]) from None


def verified_request(
    federation: "FederationComponent",
    *,
    claimed: Claimed = payload_sender,
    max_body: int = MAX_BODY,
    form: bool = False,
    inviting: bool = False,
) -> Callable[[Request], Awaitable[SignedRequest]]:
    """A FastAPI dependency for an OCM endpoint (on an ``OcmRoute``): the verified sender
    domain and the JSON object body, or an OCM error — 413 for a body over ``max_body``,
    401 for a missing or invalid signature, 403 for a peer the policy refuses or a payload
    claiming (``claimed``) to come from another domain than the signer's, 400 for a body
    that is not a JSON object. Unsigned requests pass only from a peer in
    ``federation.accept_unsigned_from``, identified by ``claimed``. Endpoints using it
    must not declare body parameters: the body is read here. With ``form``, an
    ``application/x-www-form-urlencoded`` body is accepted too (as a flat object). With
    ``inviting`` (the invite flow), ``require_invite`` does not apply.
    """
    policy = federation.peers

    def decode(request: Request, body: bytes) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "").partition(";")[0].strip()
        if form and content_type.lower() == "application/x-www-form-urlencoded":
            return _form_object(body)
        return _json_object(body)

    async def allow(domain: str) -> None:
        decision = await policy.decide(domain, inviting=inviting)
        if not decision.allowed:
            raise OcmError(403, f"peer not allowed: {decision.reason}",
                           [("sender", "PEER_NOT_ALLOWED")])

    async def resolve_key(keyid: str, refresh: bool) -> Ed25519PublicKey | None:
        await allow(httpsig.signer_domain(keyid))  # a refused peer costs no key fetch
        return await federation.sender_keys(keyid, refresh)

    async def dependency(request: Request) -> SignedRequest:
        body = await read_body(request, max_body)
        try:
            verified = await httpsig.verify(
                request.method, target_uri(federation.settings.public_url, request),
                request.headers, body, resolve_key=resolve_key, replay=federation.replay)
        except httpsig.SignatureError as exc:
            refusal = OcmError(401, f"signature rejected: {exc.detail}",
                               [("signature", exc.reason)])
            if exc.reason not in _UNSIGNED:
                raise refusal from None
            payload = decode(request, body)
            domain = claimed(payload)
            if domain is None or not policy.accepts_unsigned(domain):
                raise refusal from None
            await allow(domain)
            return SignedRequest(domain, False, None, payload)
        payload = decode(request, body)
        domain = claimed(payload)
        if domain is not None and domain != verified.domain:
            raise OcmError(403, f"signed by {verified.domain}, but the payload speaks "
                           f"for {domain}", [("sender", "SENDER_MISMATCH")])
        return SignedRequest(verified.domain, True, verified.keyid, payload)

    return dependency

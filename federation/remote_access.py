"""Remote spaces through the home gateway: the receiving side of OCM resource access.

A recipient's clients use ``/dav/spaces/<remote-id>/…`` at her own instance with her own
credentials; ``RemoteAccess.forward`` sends each request on to the origin's WebDAV URL
with a bearer for the share, so clients never see the share's secret and need no account
at the origin. The bearer is exchanged for the secret at the origin's ``tokenEndPoint``
(signed, OCM "Code Flow") and cached per space until shortly before it expires; an origin
without a token endpoint gets the secret itself (the spec's legacy access).

Her role here is enforced before anything leaves (a viewer's PUT stops at home), then the
origin applies its own. Bodies stream both ways through the guarded outbound client; only
207 multistatus answers are read whole, to rewrite their ``href``s from the origin's path
to ours, as are ``Destination`` (ours → the origin's) and ``Location`` (back).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from xml.sax.saxutils import escape

import httpx
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from fedspace.gateway import GRANT_HEADER, HOP_BY_HOP, dav_error
from fedspace.outbound import OutboundError, media_type
from fedspace.permissions import Permission as P

from .sealing import Sealer, SealError

if TYPE_CHECKING:
    from registry.drives import RemoteTarget, Route

    from .component import FederationComponent

log = logging.getLogger(__name__)

NEEDS = {"PROPFIND": P.LIST, "GET": P.DOWNLOAD, "HEAD": P.DOWNLOAD, "PUT": P.UPLOAD,
         "PROPPATCH": P.UPLOAD, "MKCOL": P.CREATE_FOLDER, "DELETE": P.DELETE, "MOVE": P.MOVE,
         "COPY": P.UPLOAD}
# Never sent on: hop-by-hop (RFC 9110 §7.6.1), our caller's credentials, what we rewrite
# or set ourselves, and what would leak our side's addresses.
_REQUEST_DROP = HOP_BY_HOP | {
    "authorization", "cookie", "destination", "accept-encoding", GRANT_HEADER, "forwarded",
    "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "origin", "referer"}
_RESPONSE_DROP = HOP_BY_HOP | {"set-cookie", "www-authenticate", "content-length"}
_XML = frozenset({"application/xml", "text/xml"})
MAX_MULTISTATUS = 64 * 1024 * 1024  # a 207 is read whole to rewrite it
LEGACY_TTL = 300.0  # re-discover an origin without a token endpoint this often
# An href element (any namespace prefix), its text, its end tag; WebDAV hrefs hold no markup.
_HREF = re.compile(rb"(<(?:[A-Za-z_][\w.-]*:)?href(?:\s[^>]*)?>)([^<]*)"
                   rb"(</(?:[A-Za-z_][\w.-]*:)?href\s*>)")
REFUSED = ("the instance this space was shared from refused access "
           "(the share may have been removed)")
UNREACHABLE = "the instance this space was shared from did not answer"


class Refused(Exception):
    """The origin will not give us access (the share is gone, or was never ours)."""


class Unreachable(Exception):
    """The origin cannot be asked right now."""


@dataclass(frozen=True, slots=True)
class Bearer:
    token: str
    until: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class Origin:
    """The shared resource's URL at the origin, in the forms the rewrites need."""

    base: str  # absolute, percent-encoded, no trailing slash
    netloc: str
    path: str  # decoded, no trailing slash

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        path = unquote(parts.path).rstrip("/")
        return cls(urlunsplit((parts.scheme, parts.netloc, quote(path), "", "")),
                   parts.netloc.lower(), path)

    def to_local(self, ref: str, local: str) -> str:
        """An origin URL or path inside the shared resource as our path; else unchanged."""
        parts = urlsplit(ref)
        if parts.netloc and parts.netloc.lower() != self.netloc:
            return ref
        path = unquote(parts.path)
        if path != self.path and not path.startswith(self.path + "/"):
            return ref
        out = local + quote(path[len(self.path):])
        return f"{out}?{parts.query}" if parts.query else out


def rewrite_hrefs(body: bytes, origin: Origin, local: str) -> bytes:
    """Every ``href`` element's text of a multistatus body mapped by ``origin.to_local``."""

    def one(match: re.Match[bytes]) -> bytes:
        ref = html.unescape(match.group(2).decode("utf-8", "replace")).strip()
        return match.group(1) + escape(origin.to_local(ref, local)).encode() + match.group(3)

    return _HREF.sub(one, body)


class BadDestination(Exception):
    pass


def destination(request: Request, origin: Origin, local: str) -> str | None:
    """The Destination header of a MOVE/COPY pointed at the origin (RFC 4918 §10.3)."""
    value = request.headers.get("destination")
    if value is None:
        return None
    parts = urlsplit(value)
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    if parts.netloc and parts.netloc not in hosts:
        raise BadDestination("the destination is on another server")
    if parts.path != local and not parts.path.startswith(local + "/"):
        raise BadDestination("the destination must be inside the same space")
    return origin.base + parts.path[len(local):]


class RemoteAccess:
    """Forwards the data plane of accepted remote spaces to their origins."""

    def __init__(self, federation: FederationComponent) -> None:
        self.federation = federation
        self.outbound = federation.ctx.outbound
        self.sealer = Sealer.in_data_dir(federation.settings.data_dir)
        self._bearers: dict[str, Bearer] = {}
        self._exchanging: dict[str, asyncio.Task[Bearer]] = {}

    async def forward(self, request: Request, route: Route, path: str) -> Response:
        target = route.remote
        assert target is not None
        method = request.method.upper()
        needed = NEEDS.get(method)
        if needed is not None and not route.grant.allows(needed):
            return dav_error(403, "your role in this space does not allow this")
        local = f"/dav/spaces/{target.space_id}"
        origin = Origin.of(target.url)
        raw = (request.scope.get("raw_path") or b"").decode("latin-1")
        rest = raw[len(local):] if raw.startswith(local) else ("/" + quote(path) if path else "")
        url = origin.base + rest + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _REQUEST_DROP}
        try:
            moved_to = destination(request, origin, local)
        except BadDestination as exc:
            return dav_error(502, str(exc))
        if moved_to is not None:
            headers["Destination"] = moved_to
        # Uploads stream through (and cannot be replayed); other bodies are small (the body
        # limit) and read first, so a stale bearer can be replaced and the request retried.
        body: bytes | AsyncIterable[bytes] = (
            request.stream() if method == "PUT" else await request.body())
        for attempt in (1, 2):
            try:
                bearer = await self.bearer(target)
                upstream = await self.outbound.stream(
                    method, url, content=body,
                    headers={**headers, "Authorization": f"Bearer {bearer.token}"})
            except Refused as exc:
                log.info("remote space %s: %s", target.space_id, exc)
                return dav_error(502, REFUSED)
            except (Unreachable, OutboundError) as exc:
                log.info("remote space %s: %s", target.space_id, exc)
                return dav_error(502, UNREACHABLE)
            except ClientDisconnect:  # while its upload streamed through
                return dav_error(400, "the client disconnected")
            if upstream.status_code != 401:
                return await self._answer(upstream, origin, local)
            await upstream.aclose()
            self.forget(target.space_id, bearer)
            if attempt == 2 or not isinstance(body, bytes):
                return dav_error(502, REFUSED)
        raise AssertionError("unreachable")

    async def _answer(self, upstream: httpx.Response, origin: Origin, local: str) -> Response:
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _RESPONSE_DROP}
        for name in ("location", "content-location"):
            if name in headers:
                headers[name] = origin.to_local(headers[name], local)
        if upstream.status_code != 207 or media_type(
                upstream.headers.get("content-type", "")) not in _XML:
            if "content-length" in upstream.headers:  # streamed as it came, not chunked
                headers["content-length"] = upstream.headers["content-length"]
            return StreamingResponse(upstream.aiter_raw(), upstream.status_code,
                                     headers=headers, background=BackgroundTask(upstream.aclose))
        body = bytearray()
        try:
            async for chunk in upstream.aiter_raw():
                body += chunk
                if len(body) > MAX_MULTISTATUS:
                    return dav_error(502, "the origin's answer is too large")
        except httpx.HTTPError:
            return dav_error(502, UNREACHABLE)
        finally:
            await upstream.aclose()
        return Response(rewrite_hrefs(bytes(body), origin, local), 207, headers=headers)

    # -- bearers ---------------------------------------------------------------------------

    async def bearer(self, target: RemoteTarget) -> Bearer:
        """A bearer for the remote space: cached, or one exchange shared by all callers."""
        cached = self._bearers.get(target.space_id)
        if cached is not None and cached.until > time.monotonic():
            return cached
        task = self._exchanging.get(target.space_id)
        if task is None:
            task = asyncio.create_task(self._exchange(target))
            self._exchanging[target.space_id] = task
            task.add_done_callback(lambda t: self._done(target.space_id, t))
        return await asyncio.shield(task)

    def _done(self, space_id: str, task: asyncio.Task[Bearer]) -> None:
        self._exchanging.pop(space_id, None)
        if task.cancelled() or task.exception() is not None:
            return
        if len(self._bearers) >= 10_000:
            self._bearers.clear()
        self._bearers[space_id] = task.result()

    def forget(self, space_id: str, bearer: Bearer) -> None:
        """Drop a bearer the origin refused (unless a newer one replaced it already)."""
        if self._bearers.get(space_id) == bearer:
            del self._bearers[space_id]

    async def _exchange(self, target: RemoteTarget) -> Bearer:
        if not target.secret:
            raise Refused("the share came without a secret")
        try:
            secret = self.sealer.open(target.secret)
        except SealError as exc:
            raise Refused(str(exc)) from None
        try:
            _, document = await self.federation.sender_keys.discover(target.domain)
        except (OutboundError, ValueError) as exc:
            raise Unreachable(f"cannot discover {target.domain}: {exc}") from None
        endpoint = document.get("tokenEndPoint")
        if not isinstance(endpoint, str) or not endpoint:
            return Bearer(secret, time.monotonic() + LEGACY_TTL)
        answer = await self.federation.post(endpoint, {
            "grant_type": "ocm_authorization_code", "client_id": self.federation.settings.domain,
            "code": secret})
        if answer.status_code in (400, 401, 403):
            raise Refused(f"token endpoint answered HTTP {answer.status_code}")
        token, expires = None, 0.0
        if answer.status_code == 200:
            try:
                data = answer.json()
                token, expires = data.get("access_token"), float(data.get("expires_in", 300))
            except (ValueError, TypeError, AttributeError):
                pass
        if not isinstance(token, str) or not token or expires <= 0:
            raise Unreachable(f"no token from {endpoint} (HTTP {answer.status_code})")
        return Bearer(token, time.monotonic() + expires - min(30.0, expires / 2))

"""The one guarded outbound HTTP client of an instance (ARCHITECTURE §6).

Every fetch of a URL that a peer or a user can influence — WebFinger, OIDC discovery, JWKS,
OCM — goes through ``Outbound``, so the rules live in one place: https only (plain http in an
explicit dev mode), no loopback/private targets (SSRF), a total time limit, a size limit,
redirects followed by hand and only within the same origin, and TLS always verified.
``stream`` is the one exception to the size limit and redirects: it proxies WebDAV bodies
of remote spaces (any size) and hands back what the peer answered, 3xx included.

Addresses are checked where the connection is made: the network backend resolves the name
once, checks every address, and connects to a checked one, so DNS rebinding between a check
and a connect is impossible. Because the request URL keeps the host *name*, the ``Host``
header, TLS SNI and certificate verification stay on that name, and pooled connections are
only reused for the same name. ``MappedTransport`` is the same mechanism without the checks:
a name map (``cloud.paris.test`` → ``127.0.0.1:8443``) instead of ``/etc/hosts``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import typing
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpcore
import httpx
import orjson

from fedspace.settings import OutboundSettings

log = logging.getLogger("fedspace.outbound")

Kind = typing.Literal[
    "scheme", "address", "dns", "tls", "timeout", "connect", "redirect", "status",
    "content-type", "too-large", "json",
]
MAX_REDIRECTS = 3
USER_AGENT = "fedspace"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def redact(url: str | httpx.URL) -> str:
    """The URL without query and fragment: what may appear in messages and logs."""
    return str(httpx.URL(url).copy_with(query=None, fragment=None))


class OutboundError(Exception):
    """An outbound fetch failed; ``kind`` says which rule or step, ``url`` which URL."""

    def __init__(self, kind: Kind, url: str | httpx.URL, cause: str) -> None:
        self.kind: Kind = kind
        self.url = str(url)
        self.cause = cause
        super().__init__(f"{redact(url) if self.url else '(no URL)'}: {cause}")


# -- connecting ----------------------------------------------------------------------------

Targets = Callable[[str, int], Awaitable[list[tuple[str, int]]]]


def split_target(target: str, default_port: int) -> tuple[str, int]:
    """``"10.0.0.1"``, ``"10.0.0.1:8443"``, ``"[::1]:8443"``, ``"::1"`` → (host, port)."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if target.count(":") == 1:
        host, port = target.split(":")
        return host, int(port)
    return target, default_port


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the addresses ``targets`` chooses for a name, trying each in turn."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend, targets: Targets) -> None:
        self._inner = inner
        self._targets = targets

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address, target_port in await self._targets(host, port):
            try:
                return await self._inner.connect_tcp(
                    address, target_port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # targets never returns an empty list
        raise failure

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class MappedTransport(httpx.AsyncHTTPTransport):
    """A transport that connects mapped host names to fixed addresses.

    ``hosts`` maps a name to ``"ip"`` or ``"ip:port"``; it is read on every connect, so later
    changes are honoured. Unmapped names are resolved as usual. Host header, SNI and
    certificate checks use the name from the URL.
    """

    def __init__(self, hosts: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hosts = hosts
        # httpx builds the httpcore pool; its network backend is the one place to pin
        # addresses without rewriting URLs (which would lose the name for pooling).
        pool = self._pool
        if not isinstance(pool, httpcore.AsyncConnectionPool):
            raise TypeError("MappedTransport does not support proxies")
        pool._network_backend = _PinnedBackend(pool._network_backend, self.targets)

    def mapped(self, host: str, port: int) -> tuple[str, int]:
        target = self.hosts.get(host.lower())
        return (host, port) if target is None else split_target(target, port)

    async def targets(self, host: str, port: int) -> list[tuple[str, int]]:
        return [self.mapped(host, port)]


def is_public(address: str) -> bool:
    """Whether an IP address is globally routable (not loopback/private/link-local/…)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _GuardedTransport(MappedTransport):
    """``MappedTransport`` that resolves names itself and refuses non-public addresses."""

    def __init__(self, settings: OutboundSettings, **kwargs: Any) -> None:
        super().__init__(settings.hosts, **kwargs)
        self.settings = settings

    async def targets(self, host: str, port: int) -> list[tuple[str, int]]:
        self.hosts = self.settings.hosts  # the settings object may get a new dict
        name, port = self.mapped(host, port)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                name, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise OutboundError("dns", host, f"cannot resolve {host}: {exc.strerror}") from None
        addresses = list(dict.fromkeys((str(info[4][0]), port) for info in infos))
        if not self.settings.allow_private_addresses:
            refused = [a for a, _ in addresses if not is_public(a)]
            if refused:
                raise OutboundError(
                    "address", host,
                    f"{host} resolves to a non-public address ({', '.join(refused)}); refused")
        return addresses


def ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """httpx's default trust store (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), plus
    ``ca_file`` when given; verification is never switched off."""
    context = httpx.create_ssl_context(verify=True, trust_env=True)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


# -- the client ----------------------------------------------------------------------------

def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _classify(exc: httpx.HTTPError, url: httpx.URL) -> OutboundError:
    tls = _tls_failure(exc)
    if tls is not None:
        reason = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or tls
        return OutboundError("tls", url, f"TLS failure: {reason}")
    if isinstance(exc, httpx.TimeoutException):
        return OutboundError("timeout", url, "timed out")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return OutboundError("scheme", url, f"unsupported URL: {exc}")
    if isinstance(exc, httpx.ConnectError):
        return OutboundError("connect", url, f"cannot connect: {exc or 'refused'}")
    return OutboundError("connect", url, f"connection failed: {type(exc).__name__} {exc}")


def media_type(content_type: str) -> str:
    """``"application/JSON; charset=utf-8"`` → ``"application/json"``."""
    return content_type.split(";", 1)[0].strip().lower()


class Outbound:
    """The guarded client. One per instance (``Context.outbound``); close with ``aclose``.

    It drives its transport directly rather than through ``httpx.AsyncClient``: no cookie
    jar shared between peers, no library log lines carrying full URLs, and redirects are
    decided here anyway.
    """

    def __init__(self, settings: OutboundSettings) -> None:
        self.settings = settings
        ca_file = str(settings.ca_file) if settings.ca_file else None
        # trust_env off: an environment proxy would connect for us, to unchecked addresses.
        self._transport = _GuardedTransport(
            settings, verify=ssl_context(ca_file), trust_env=False)

    async def get_json(
        self,
        url: str,
        *,
        accept: tuple[str, ...] = ("application/json",),
        headers: dict[str, str] | None = None,
    ) -> Any:
        """GET a JSON document: status 200, a media type in ``accept``, within the limits."""
        response = await self.request(
            "GET", url, headers={"Accept": ", ".join(accept), **(headers or {})})
        where = response.request.url
        if response.status_code != 200:
            raise OutboundError("status", where, f"HTTP {response.status_code}, expected 200")
        got = media_type(response.headers.get("Content-Type", ""))
        if got not in accept:
            raise OutboundError(
                "content-type", where,
                f"content type {got or '(none)'}, expected {' or '.join(accept)}")
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise OutboundError("json", where, f"invalid JSON: {exc}") from None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send a request under the guards; the body is read (size-limited), status unchecked.

        The returned response's ``request.url`` is the URL that answered (after redirects).
        """
        try:
            async with asyncio.timeout(self.settings.timeout):
                return await self._send(method, url, headers or {}, content)
        except TimeoutError:
            raise OutboundError("timeout", url,
                                f"no complete answer within {self.settings.timeout:g} s") from None

    async def _send(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None,
    ) -> httpx.Response:
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise OutboundError("scheme", url, f"invalid URL: {exc}") from None
        origin = (target.scheme, target.host, target.port)
        for hop in range(MAX_REDIRECTS + 1):
            response = await self._fetch(method, target, headers, content)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            try:
                following = target.join(location)
            except httpx.InvalidURL:
                raise OutboundError("redirect", target, "invalid redirect location") from None
            if (following.scheme, following.host, following.port) != origin:
                raise OutboundError(
                    "redirect", target, f"redirect to another origin ({redact(following)}) refused")
            if hop == MAX_REDIRECTS:
                raise OutboundError("redirect", target, f"more than {MAX_REDIRECTS} redirects")
            if response.status_code == 303 or (
                    response.status_code in (301, 302) and method == "POST"):
                method, content = ("HEAD" if method == "HEAD" else "GET"), None
            target = following
        raise AssertionError("unreachable")

    def _check_scheme(self, url: httpx.URL) -> None:
        allowed = ("https", "http") if self.settings.allow_http else ("https",)
        if url.scheme not in allowed or not url.host:
            raise OutboundError("scheme", url, f"{url.scheme or '(relative)'} URL not allowed "
                                f"(only {' and '.join(a + '://' for a in allowed)})")

    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | AsyncIterable[bytes] | None = None,
        read_timeout: float = 60.0,
    ) -> httpx.Response:
        """Send one request under the scheme, address and TLS rules and return the answer
        with its body unread: for proxying file bodies of any size, so no size limit, no
        total time limit (``read_timeout`` bounds each wait) and no redirects followed.
        The caller reads it (``aiter_raw``) and must ``aclose()`` it."""
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise OutboundError("scheme", url, f"invalid URL: {exc}") from None
        limits = httpx.Timeout(read_timeout, connect=self.settings.timeout)
        return await self._open(method, target, headers or {}, content, limits)

    async def _open(
        self, method: str, url: httpx.URL, headers: dict[str, str],
        content: bytes | AsyncIterable[bytes] | None, limits: httpx.Timeout,
    ) -> httpx.Response:
        """Send one request; the response body is not read yet."""
        self._check_scheme(url)
        request = httpx.Request(
            method, url, content=content,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers},
            extensions={"timeout": limits.as_dict()})
        log.debug("outbound request", extra={"method": method, "url": redact(url)})
        try:
            response = await self._transport.handle_async_request(request)
        except OutboundError as exc:  # raised while connecting: name the URL, not the host
            raise OutboundError(exc.kind, url, exc.cause) from None
        except httpx.HTTPError as exc:
            raise _classify(exc, url) from None
        response.request = request
        return response

    async def _fetch(
        self, method: str, url: httpx.URL, headers: dict[str, str], content: bytes | None,
    ) -> httpx.Response:
        """Send one request and read its body, stopping at ``max_response_bytes``."""
        response = await self._open(method, url, headers, content,
                                    httpx.Timeout(self.settings.timeout))
        request = response.request
        limit = self.settings.max_response_bytes
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise OutboundError("too-large", url,
                                    f"response of {declared} bytes exceeds {limit}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise OutboundError("too-large", url, f"response exceeds {limit} bytes")
        except httpx.HTTPError as exc:
            raise _classify(exc, url) from None
        finally:
            await response.aclose()
        headers_in = response.headers.copy()
        headers_in.pop("Content-Encoding", None)  # the body below is already decoded
        return httpx.Response(response.status_code, headers=headers_in, content=bytes(body),
                              request=request)

    async def aclose(self) -> None:
        await self._transport.aclose()

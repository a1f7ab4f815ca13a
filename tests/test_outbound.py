"""The guarded outbound client against real servers: every rule can be seen failing."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from peer_server import Peer, make_ca, serve_peer

from fedspace.outbound import MappedTransport, Outbound, OutboundError, is_public, ssl_context
from fedspace.settings import OutboundSettings

HOST = "cloud.paris.test"


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with serve_peer() as running:
        yield running


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_ca(tmp_path, [HOST, "idp.paris.test"])


@pytest.fixture
async def tls_peer(tls_files: tuple[Path, Path, Path]) -> AsyncIterator[Peer]:
    _, cert, key = tls_files
    async with serve_peer(tls=(cert, key)) as running:
        yield running


def settings(peer: Peer | None = None, **overrides: object) -> OutboundSettings:
    values: dict[str, object] = {"allow_http": True, "allow_private_addresses": True}
    values.update(overrides)
    s = OutboundSettings(**values)  # type: ignore[arg-type]
    if peer is not None:
        s.hosts[HOST] = peer.address()
    return s


@pytest.fixture
async def outbound_for() -> AsyncIterator:
    made: list[Outbound] = []

    def make(s: OutboundSettings) -> Outbound:
        made.append(Outbound(s))
        return made[-1]

    yield make
    for o in made:
        await o.aclose()


async def fails(outbound: Outbound, url: str, kind: str, **kw: object) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        await outbound.get_json(url, **kw)  # type: ignore[arg-type]
    assert caught.value.kind == kind, str(caught.value)
    return caught.value


async def test_get_json_through_name_map_keeps_host(peer: Peer, outbound_for) -> None:
    s = settings()
    outbound = outbound_for(s)
    s.hosts[HOST] = peer.address()  # set after the client exists: read on every connect
    peer.set(HOST, "/doc", {"ok": 1}, content_type="application/json; charset=utf-8")
    assert await outbound.get_json(f"http://{HOST}/doc?x=1") == {"ok": 1}
    assert peer.seen[-1].headers["host"] == HOST
    assert peer.seen[-1].url.query == "x=1"
    assert peer.seen[-1].headers["accept"] == "application/json"


async def test_accept_list_and_content_type(peer: Peer, outbound_for) -> None:
    outbound = outbound_for(settings(peer))
    peer.set(HOST, "/jrd", {"subject": "x"}, content_type="application/jrd+json")
    assert await outbound.get_json(f"http://{HOST}/jrd",
                                   accept=("application/jrd+json", "application/json"))
    error = await fails(outbound, f"http://{HOST}/jrd", "content-type")
    assert "application/jrd+json" in str(error)
    peer.set(HOST, "/html", b"<html>", content_type="text/html")
    await fails(outbound, f"http://{HOST}/html", "content-type")


async def test_status_and_json(peer: Peer, outbound_for) -> None:
    outbound = outbound_for(settings(peer))
    error = await fails(outbound, f"http://{HOST}/missing?secret=abc", "status")
    assert "404" in str(error) and HOST in str(error)
    assert "secret" not in str(error)  # query strings never appear in messages
    peer.set(HOST, "/broken", b"{not json")
    await fails(outbound, f"http://{HOST}/broken", "json")


async def test_https_only_unless_allowed(peer: Peer, outbound_for) -> None:
    outbound = outbound_for(settings(peer, allow_http=False))
    peer.set(HOST, "/doc", {})
    await fails(outbound, f"http://{HOST}/doc", "scheme")
    await fails(outbound, "ftp://example.org/x", "scheme")
    assert peer.hits[(HOST, "/doc")] == 0


async def test_private_addresses_refused(peer: Peer, outbound_for) -> None:
    outbound = outbound_for(settings(peer, allow_private_addresses=False))
    peer.set(HOST, "/doc", {})
    peer.set("127.0.0.1", "/doc", {})
    await fails(outbound, f"http://{HOST}/doc", "address")  # mapped names are checked too
    await fails(outbound, f"http://127.0.0.1:{peer.port}/doc", "address")
    await fails(outbound, f"http://localhost:{peer.port}/doc", "address")
    assert sum(peer.hits.values()) == 0


@pytest.mark.parametrize(("address", "public"), [
    ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.1", False), ("172.16.0.1", False),
    ("169.254.169.254", False), ("0.0.0.0", False), ("224.0.0.1", False), ("::1", False),
    ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False), ("100.64.0.1", False),
    ("8.8.8.8", True), ("2a00:1450:4001::1", True),
])
def test_is_public(address: str, public: bool) -> None:
    assert is_public(address) is public


async def test_dns_and_connect_failures(outbound_for) -> None:
    s = settings()
    with socket.socket() as sock:  # a port that was free: nobody listens there now
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    s.hosts["closed.test"] = f"127.0.0.1:{closed}"
    outbound = outbound_for(s)
    await fails(outbound, "http://nowhere.invalid/x", "dns")
    await fails(outbound, "http://closed.test/x", "connect")


async def test_size_limit(peer: Peer, outbound_for) -> None:
    outbound = outbound_for(settings(peer, max_response_bytes=1024))
    peer.set(HOST, "/ok", b'"' + b"a" * 1000 + b'"')
    assert len(await outbound.get_json(f"http://{HOST}/ok")) == 1000
    peer.set(HOST, "/declared", b'"' + b"a" * 2000 + b'"')
    await fails(outbound, f"http://{HOST}/declared", "too-large")
    peer.set(HOST, "/streamed", b'"' + b"a" * 5000 + b'"', chunks=10)  # no Content-Length
    await fails(outbound, f"http://{HOST}/streamed", "too-large")


async def test_redirects(peer: Peer, outbound_for) -> None:
    outbound = outbound_for(settings(peer))
    peer.set(HOST, "/final", {"done": True})
    for i in range(1, 4):
        peer.set(HOST, f"/r{i}", status=302, headers={"Location": f"/r{i + 1}"})
    peer.set(HOST, "/r4", status=301, headers={"Location": "/final"})
    assert await outbound.get_json(f"http://{HOST}/r2") == {"done": True}  # 3 redirects
    error = await fails(outbound, f"http://{HOST}/r1", "redirect")  # 4 redirects
    assert "more than 3" in str(error)
    peer.set(HOST, "/away", status=302, headers={"Location": "http://evil.test/final"})
    await fails(outbound, f"http://{HOST}/away", "redirect")
    peer.set(HOST, "/port", status=307,
             headers={"Location": f"http://{HOST}:{peer.port + 1}/final"})
    await fails(outbound, f"http://{HOST}/port", "redirect")
    assert peer.hits[("evil.test", "/final")] == 0


async def test_timeout_is_total(peer: Peer, outbound_for) -> None:
    outbound = outbound_for(settings(peer, timeout=0.2))
    peer.set(HOST, "/slow", {}, delay=3)
    error = await fails(outbound, f"http://{HOST}/slow", "timeout")
    assert "0.2 s" in str(error)


async def test_request_posts_and_returns_any_status(peer: Peer, outbound_for) -> None:
    outbound = outbound_for(settings(peer))
    peer.set(HOST, "/shares", {"message": "nope"}, status=400)
    peer.set(HOST, "/moved", status=308, headers={"Location": "/shares"})
    response = await outbound.request("POST", f"http://{HOST}/moved", content=b"{}",
                                      headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"message": "nope"}
    assert str(response.request.url) == f"http://{HOST}/shares"
    assert [r.method for r in peer.seen] == ["POST", "POST"]


async def test_tls_verified_by_name(tls_peer: Peer, tls_files, outbound_for) -> None:
    ca, _, _ = tls_files
    tls_peer.set(HOST, "/doc", {"tls": True})
    tls_peer.set("other.test", "/doc", {"tls": True})
    untrusting = outbound_for(settings(tls_peer, allow_http=False))
    error = await fails(untrusting, f"https://{HOST}/doc", "tls")
    assert "certificate" in str(error).lower()
    trusting = outbound_for(settings(tls_peer, allow_http=False, ca_file=ca))
    trusting.settings.hosts["other.test"] = tls_peer.address()
    assert await trusting.get_json(f"https://{HOST}/doc") == {"tls": True}
    await fails(trusting, "https://other.test/doc", "tls")  # certificate is not for that name


async def test_mapped_transport_alone(tls_peer: Peer, tls_files) -> None:
    ca, _, _ = tls_files
    tls_peer.set("idp.paris.test", "/x", {"sni": "ok"})
    transport = MappedTransport({"idp.paris.test": tls_peer.address()},
                                verify=ssl_context(str(ca)))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://idp.paris.test/x")
    assert response.json() == {"sni": "ok"}
    assert tls_peer.seen[-1].headers["host"] == "idp.paris.test"


async def test_stream_has_no_size_limit_and_follows_no_redirects(peer: Peer, outbound_for) -> None:
    outbound = outbound_for(settings(peer, max_response_bytes=1024))
    peer.set(HOST, "/big", b"a" * 50_000, chunks=5, content_type="application/octet-stream")
    response = await outbound.stream("GET", f"http://{HOST}/big")
    try:
        assert response.status_code == 200
        assert len(b"".join([c async for c in response.aiter_raw()])) == 50_000
    finally:
        await response.aclose()
    peer.set(HOST, "/moved", status=302, headers={"Location": "/big"})
    response = await outbound.stream("GET", f"http://{HOST}/moved")
    await response.aclose()
    assert (response.status_code, peer.hits[(HOST, "/big")]) == (302, 1)


async def test_stream_sends_a_streamed_body(peer: Peer, outbound_for) -> None:
    outbound = outbound_for(settings(peer))
    peer.set(HOST, "/put", status=201)

    async def body():  # type: ignore[no-untyped-def]
        for part in (b"abc", b"def"):
            yield part

    response = await outbound.stream("PUT", f"http://{HOST}/put", content=body(),
                                     headers={"Content-Length": "6"})
    await response.aclose()
    assert response.status_code == 201
    assert peer.seen[-1].headers["content-length"] == "6"


async def test_stream_keeps_the_address_and_scheme_rules(peer: Peer, outbound_for) -> None:
    private = outbound_for(settings(peer, allow_private_addresses=False))
    with pytest.raises(OutboundError) as caught:
        await private.stream("GET", f"http://{HOST}/x")
    assert caught.value.kind == "address"
    https_only = outbound_for(settings(peer, allow_http=False))
    with pytest.raises(OutboundError) as caught:
        await https_only.stream("GET", f"http://{HOST}/x")
    assert caught.value.kind == "scheme"
    assert sum(peer.hits.values()) == 0

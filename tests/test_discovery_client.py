"""Discovery of foreign accounts over real sockets: a scripted peer for every failure, and
two instances finding each other (ARCHITECTURE §3 steps 1-2, §4)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from peer_server import Peer, make_ca, serve_peer
from typer.testing import CliRunner

from discovery.client import DiscoveryClient, DiscoveryError
from discovery.webfinger import INSTANCE_REL, ISSUER_REL, JRD
from fedspace.cli import app
from fedspace.outbound import Outbound
from fedspace.settings import OutboundSettings

ISSUER = "http://idp.paris.test"
REGISTRY = "http://cloud.paris.test"
WEBFINGER = "/.well-known/webfinger"
OIDC = "/.well-known/openid-configuration"
NAMES = ("paris.test", "cloud.paris.test", "idp.paris.test")


def oidc_document(issuer: str = ISSUER) -> dict[str, str]:
    return {"issuer": issuer, "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/jwks"}


def publish(peer: Peer, *, host: str = "paris.test", issuer: str = ISSUER,
            registry: str = REGISTRY) -> None:
    """A well-behaved paris.test: WebFinger at ``host``, the IdP at idp.paris.test."""
    links = [{"rel": ISSUER_REL, "href": issuer}, {"rel": INSTANCE_REL, "href": registry},
             {"rel": "http://webfinger.net/rel/profile-page", "href": f"{registry}/u"}]
    peer.set(host, WEBFINGER, {"subject": "acct:marie@paris.test", "links": links},
             content_type=JRD)
    peer.set("idp.paris.test", OIDC, oidc_document())
    peer.set("idp.paris.test", "/jwks", {"keys": []})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with serve_peer() as running:
        yield running


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[..., DiscoveryClient]]:
    """``client_for(peer, cache_seconds=…, **outbound_settings)``: names map to the peer."""
    made: list[Outbound] = []

    def make(peer: Peer | None, cache_seconds: float = 60, **overrides: object) -> DiscoveryClient:
        values: dict[str, object] = {"allow_http": True, "allow_private_addresses": True}
        values.update(overrides)
        settings = OutboundSettings(**values)  # type: ignore[arg-type]
        if peer is not None:
            settings.hosts.update({name: peer.address() for name in NAMES})
        made.append(Outbound(settings))
        return DiscoveryClient(made[-1], cache_seconds)

    yield make
    for outbound in made:
        await outbound.aclose()


async def fails(client: DiscoveryClient, kind: str, address: str = "marie@paris.test"
                ) -> DiscoveryError:
    with pytest.raises(DiscoveryError) as caught:
        await client.discover(address)
    assert caught.value.kind == kind, str(caught.value)
    return caught.value


async def test_discover_and_cache(peer: Peer, client_for) -> None:
    publish(peer)
    client = client_for(peer)
    found = await client.discover("acct:marie@paris.test")
    assert found.address == "marie@paris.test"
    assert found.webfinger_url == "http://paris.test/.well-known/webfinger?resource=acct:marie@paris.test"
    assert (found.issuer, found.registry) == (ISSUER, REGISTRY)
    assert found.openid_configuration == oidc_document()
    assert any(ISSUER in step for step in found.steps)
    assert peer.seen[0].query_params["resource"] == "acct:marie@paris.test"
    assert "application/jrd+json" in peer.seen[0].headers["accept"]

    again = await client.discover("marie@paris.test")
    assert again.issuer == ISSUER
    assert any("cache" in step for step in again.steps)
    assert peer.hits[("paris.test", WEBFINGER)] == 1
    assert peer.hits[("idp.paris.test", OIDC)] == 1

    uncached = client_for(peer, cache_seconds=0)
    await uncached.discover("marie@paris.test")
    await uncached.discover("marie@paris.test")
    assert peer.hits[("paris.test", WEBFINGER)] == 3


async def test_falls_back_to_cloud_host(peer: Peer, client_for) -> None:
    publish(peer, host="cloud.paris.test")
    client = client_for(peer)
    client.outbound.settings.hosts["paris.test"] = f"127.0.0.1:{closed_port()}"
    found = await client.discover("marie@paris.test")
    assert found.webfinger_url.startswith("http://cloud.paris.test/.well-known/webfinger?")
    assert "cloud.paris.test" in found.steps[0] and "convention" in found.steps[0]


async def test_http_errors_do_not_fall_back(peer: Peer, client_for) -> None:
    publish(peer, host="cloud.paris.test")  # paris.test answers 404: that is an answer
    error = await fails(client_for(peer), "no-webfinger")
    assert "404" in str(error)
    assert peer.hits[("cloud.paris.test", WEBFINGER)] == 0


async def test_unreachable(client_for) -> None:
    error = await fails(client_for(None), "no-webfinger", "marie@nowhere.invalid")
    assert "cloud.nowhere.invalid" in str(error)
    assert error.steps and "nowhere.invalid" in error.steps[0]


@pytest.mark.parametrize("address", [
    "marie", "marie@", "@paris.test", "mailto:marie@paris.test", "marie@paris test", "",
])
async def test_bad_address(client_for, address: str) -> None:
    await fails(client_for(None), "address", address)


def _links_without(rel: str) -> Callable[[Peer], None]:
    def setup(peer: Peer) -> None:
        publish(peer)
        links = [{"rel": r, "href": "http://x.test"} for r in (ISSUER_REL, INSTANCE_REL)
                 if r != rel]
        peer.set("paris.test", WEBFINGER, {"links": links}, content_type=JRD)
    return setup


def _then(*changes: Callable[[Peer], None]) -> Callable[[Peer], None]:
    def setup(peer: Peer) -> None:
        publish(peer)
        for change in changes:
            change(peer)
    return setup


FAILURES: dict[str, tuple[Callable[[Peer], None], str, str]] = {
    "no webfinger": (lambda peer: None, "no-webfinger", "404"),
    "html webfinger": (_then(lambda p: p.set("paris.test", WEBFINGER, b"<html>",
                                             content_type="text/html")),
                       "content-type", "text/html"),
    "no issuer link": (_links_without(ISSUER_REL), "missing-link", "issuer"),
    "no instance link": (_links_without(INSTANCE_REL), "missing-link", "server-instance"),
    "jrd not an object": (_then(lambda p: p.set("paris.test", WEBFINGER, [1],
                                                content_type=JRD)),
                          "invalid-document", "links"),
    "issuer mismatch": (_then(lambda p: p.set("idp.paris.test", OIDC,
                                              oidc_document("http://idp.evil.test"))),
                        "issuer-mismatch", "idp.evil.test"),
    "issuer trailing slash": (_then(lambda p: p.set("idp.paris.test", OIDC,
                                                    oidc_document(ISSUER + "/"))),
                              "issuer-mismatch", "expected"),
    "no jwks_uri": (_then(lambda p: p.set("idp.paris.test", OIDC,
                                          {**oidc_document(), "jwks_uri": None})),
                    "invalid-document", "jwks_uri"),
    "no oidc document": (_then(lambda p: p.replies.pop(("idp.paris.test", OIDC))),
                         "no-openid-configuration", "404"),
    "redirect elsewhere": (_then(lambda p: p.set("paris.test", WEBFINGER, status=302, headers={
                               "Location": "http://evil.test/.well-known/webfinger"})),
                           "refused", "another origin"),
    "oversized": (_then(lambda p: p.set("paris.test", WEBFINGER, b" " * 4096 + b"{}",
                                        content_type=JRD, chunks=4)),
                  "refused", "exceeds"),
    "slow": (_then(lambda p: p.set("idp.paris.test", OIDC, oidc_document(), delay=3)),
             "timeout", "within"),
}


@pytest.mark.parametrize("case", FAILURES)
async def test_failures(peer: Peer, client_for, case: str) -> None:
    setup, kind, says = FAILURES[case]
    setup(peer)
    client = client_for(peer, timeout=0.3, max_response_bytes=1024)
    error = await fails(client, kind)
    assert says in str(error)


async def test_private_addresses_refused_unless_allowed(peer: Peer, client_for) -> None:
    publish(peer)
    error = await fails(client_for(peer, allow_private_addresses=False), "refused")
    assert "non-public" in str(error)
    assert sum(peer.hits.values()) == 0


async def test_jwks_cache_and_refresh(peer: Peer, client_for) -> None:
    publish(peer)
    client = client_for(peer)
    configuration = await client.openid_configuration(ISSUER)
    assert await client.openid_configuration(ISSUER) is configuration
    assert await client.jwks(configuration["jwks_uri"]) == {"keys": []}
    peer.set("idp.paris.test", "/jwks", {"keys": [{"kty": "OKP", "kid": "new"}]})
    assert await client.jwks(configuration["jwks_uri"]) == {"keys": []}
    assert (await client.jwks(configuration["jwks_uri"], refresh=True))["keys"][0]["kid"] == "new"
    assert (await client.jwks(configuration["jwks_uri"]))["keys"][0]["kid"] == "new"
    assert peer.hits[("idp.paris.test", "/jwks")] == 2
    peer.set("idp.paris.test", "/jwks", {"no": "keys"})
    with pytest.raises(DiscoveryError) as caught:
        await client.jwks(configuration["jwks_uri"], refresh=True)
    assert caught.value.kind == "invalid-document"
    peer.replies.pop(("idp.paris.test", "/jwks"))
    with pytest.raises(DiscoveryError) as caught:
        await client.jwks(configuration["jwks_uri"], refresh=True)
    assert caught.value.kind == "no-jwks"


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_ca(tmp_path, list(NAMES))


async def test_https_discovery(tls_files, client_for) -> None:
    """Without dev mode everything is https, verified against the (test) CA."""
    ca, cert, key = tls_files
    async with serve_peer(tls=(cert, key)) as peer:
        publish(peer, issuer="https://idp.paris.test", registry="https://cloud.paris.test")
        peer.set("idp.paris.test", OIDC, oidc_document("https://idp.paris.test"))
        found = await client_for(peer, allow_http=False, ca_file=ca).discover("marie@paris.test")
        assert found.webfinger_url.startswith("https://paris.test/")
        assert found.openid_configuration["issuer"] == "https://idp.paris.test"

        await fails(client_for(peer, allow_http=False), "tls")  # CA not trusted
        publish(peer)  # WebFinger now names an http:// issuer
        error = await fails(client_for(peer, allow_http=False, ca_file=ca), "refused")
        assert "http://" in str(error)


async def test_two_instances(start_instance, peer: Peer) -> None:
    """Zurich finds marie@paris.test through paris's own WebFinger (at cloud.paris.test)."""
    dev = {"allow_http": True, "allow_private_addresses": True}
    zurich = await start_instance("zurich", domain="zurich.test",
                                  public_url="http://cloud.zurich.test",
                                  discovery={"issuer": "http://idp.zurich.test"}, outbound=dev)
    paris = await start_instance("paris", domain="paris.test", public_url=REGISTRY,
                                 discovery={"issuer": ISSUER}, outbound=dev)
    hosts = zurich.instance.settings.outbound.hosts
    hosts["paris.test"] = f"127.0.0.1:{closed_port()}"
    hosts["cloud.paris.test"] = paris.url.removeprefix("http://")
    # The IdP document comes from the scripted peer so this test does not depend on how
    # the embedded IdP lays out its paths.
    hosts["idp.paris.test"] = peer.address()
    peer.set("idp.paris.test", OIDC, oidc_document())
    client = DiscoveryClient(zurich.instance.ctx.outbound, cache_seconds=60)
    found = await client.discover("marie@paris.test")
    assert (found.issuer, found.registry) == (ISSUER, REGISTRY)
    assert found.webfinger_url.startswith("http://cloud.paris.test/")
    assert found.openid_configuration["token_endpoint"] == f"{ISSUER}/token"
    hosts["zurich.test"] = hosts["cloud.paris.test"]  # paris does not serve zurich.test
    with pytest.raises(DiscoveryError) as caught:
        await client.discover("einstein@zurich.test")
    assert caught.value.kind == "no-webfinger" and "404" in str(caught.value)


async def test_cli(peer: Peer, tmp_path: Path) -> None:
    publish(peer)
    env = {"FEDSPACE_DATA_DIR": str(tmp_path), "FEDSPACE_OUTBOUND__ALLOW_HTTP": "1",
           "FEDSPACE_OUTBOUND__ALLOW_PRIVATE_ADDRESSES": "1",
           "FEDSPACE_OUTBOUND__HOSTS": json.dumps({n: peer.address() for n in NAMES})}
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, app, ["discover", "marie@paris.test"],
                                     env=env)
    assert result.exit_code == 0, result.output
    assert ISSUER in result.output and f"{ISSUER}/token" in result.output
    assert "WebFinger" in result.output

    peer.set("idp.paris.test", OIDC, oidc_document("http://idp.evil.test"))
    result = await asyncio.to_thread(runner.invoke, app, ["discover", "marie@paris.test"],
                                     env=env)
    assert result.exit_code == 2
    assert "issuer-mismatch" in result.output

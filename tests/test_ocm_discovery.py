"""OCM discovery over real sockets: our document (well-known and legacy path), our JWK Set,
and paris resolving zurich's signing keys — by keyid, after a rotation, through the 1.1
path and the ``cloud.<domain>`` convention, and throttled."""

from __future__ import annotations

import socket

import pytest
from conftest import DEV_OUTBOUND, federation
from peer_server import serve_peer

from federation.httpsig import SignatureError, make_keyid
from federation.ocm import Features, capability_list, discovery_document
from federation.resolver import SenderKeys
from fedspace.outbound import Outbound
from fedspace.settings import OutboundSettings


@pytest.fixture
def pair(zurich_paris):  # type: ignore[no-untyped-def]
    return zurich_paris


async def test_discovery_document_and_legacy_path(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, _ = pair
    client = zurich.client(None)
    r = await client.get("/.well-known/ocm")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["access-control-allow-origin"] == "*"
    doc = r.json()
    assert doc == {
        "enabled": True,
        "apiVersion": "1.4.0",
        "endPoint": f"{zurich.url}/ocm",
        "provider": "fedspace",
        "resourceTypes": [{"name": "file", "shareTypes": ["user"],
                           "protocols": {"webdav": "/dav/spaces/",
                                         "webdav-receive": {"uri": "absolute"}}}],
        "capabilities": ["change-notifications", "exchange-token", "http-sig", "invites",
                         "/invite-accepted", "notifications", "/notifications"],
        "criteria": ["must-use-http-sig"],
        "jwksUri": f"{zurich.url}/.well-known/jwks.json",
        "tokenEndPoint": f"{zurich.url}/ocm/token",
    }
    legacy = await client.get("/ocm-provider")
    assert legacy.status_code == 200 and legacy.json() == doc
    assert legacy.headers["access-control-allow-origin"] == "*"


async def test_capabilities_follow_features(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, _ = pair
    fed = federation(zurich)
    fed.features.capabilities -= {"invites", "change-notifications", "exchange-token"}
    fed.features.capabilities.add("enforce-mfa")
    doc = (await zurich.client(None).get("/.well-known/ocm")).json()
    assert doc["capabilities"] == ["enforce-mfa", "/mfa-capable", "http-sig", "notifications",
                                   "/notifications"]


def test_document_optional_members() -> None:
    features = Features({"invites", "exchange-token"}, {"must-invite"},
                        token_endpoint="https://cloud.zurich.test/ocm/token",
                        invite_accept_dialog="/accept")
    doc = discovery_document("https://cloud.zurich.test/", features)
    assert doc["endPoint"] == "https://cloud.zurich.test/ocm"
    assert doc["capabilities"] == ["exchange-token", "invites", "/invite-accepted"]
    assert doc["criteria"] == ["must-invite"]
    assert doc["tokenEndPoint"] == "https://cloud.zurich.test/ocm/token"
    assert doc["inviteAcceptDialog"] == "/accept"
    assert "tokenEndPoint" not in discovery_document("https://x.test", Features())
    assert capability_list([]) == []


async def test_jwks_publishes_public_keys_only(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, _ = pair
    r = await zurich.client(None).get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "*"
    (key,) = r.json()["keys"]
    assert key["kid"] == federation(zurich).keys.signing_key().kid
    assert set(key) == {"kty", "crv", "x", "kid", "use", "alg"}
    assert (key["kty"], key["crv"]) == ("OKP", "Ed25519")


async def test_paris_resolves_zurich_keys_and_rotation(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    zkeys = federation(zurich).keys
    resolver = SenderKeys(paris.instance.ctx.outbound, min_refresh_seconds=0)
    current = zkeys.signing_key()
    found = await resolver(make_keyid("zurich.test", current.kid), False)
    assert found is not None and found.public_bytes_raw() == current.public_key.public_bytes_raw()
    # the draft's JWK Set example spells kid as the whole keyid; the URL form works too
    assert await resolver(f"http://zurich.test/ocm#{current.kid}", False) is not None

    rotated = zkeys.rotate(grace=0)
    keyid = make_keyid("zurich.test", rotated.kid)
    assert await resolver(keyid, False) is None  # still cached
    new = await resolver(keyid, True)
    assert new is not None and new.public_bytes_raw() == rotated.public_key.public_bytes_raw()
    # the retired key stays verifiable for the freshness window
    assert await resolver(make_keyid("zurich.test", current.kid), False) is not None


async def test_refresh_is_throttled_per_domain(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    resolver = SenderKeys(paris.instance.ctx.outbound, min_refresh_seconds=60)
    zkeys = federation(zurich).keys
    assert await resolver(make_keyid("zurich.test", zkeys.signing_key().kid), False)
    rotated = zkeys.rotate(grace=0)
    assert await resolver(make_keyid("zurich.test", rotated.kid), True) is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_legacy_path_and_cloud_host_fallback() -> None:
    jwk = {"kty": "OKP", "crv": "Ed25519", "kid": "lyon.test#k1",
           "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    async with serve_peer() as peer:
        # lyon.test itself is down; cloud.lyon.test serves only the OCM 1.1 path, with
        # an endPoint but no jwksUri: the keys are where the draft puts them.
        peer.set("cloud.lyon.test", "/ocm-provider", {
            "enabled": True, "apiVersion": "1.1.0",
            "endPoint": f"http://cloud.lyon.test:{peer.port}/ocm"})
        peer.set("cloud.lyon.test", "/.well-known/jwks.json", {"keys": [
            {"kty": "RSA", "kid": "rsa", "n": "x", "e": "AQAB"}, jwk]})
        closed = f"127.0.0.1:{_closed_port()}"
        outbound = Outbound(OutboundSettings(**DEV_OUTBOUND, hosts={
            "lyon.test": closed, "cloud.lyon.test": peer.address(),
            "nowhere.test": closed, "cloud.nowhere.test": closed}))
        try:
            resolver = SenderKeys(outbound)
            assert await resolver("lyon.test#k1", False) is not None
            assert await resolver("lyon.test#other", False) is None
            assert peer.hits[("cloud.lyon.test", "/.well-known/ocm")] == 1
            # an unreachable peer is a clear refusal, remembered (no second fetch)
            with pytest.raises(SignatureError) as failure:
                await resolver("nowhere.test#k", False)
            assert failure.value.reason == "unknown-key"
            with pytest.raises(SignatureError):
                await resolver("nowhere.test#k", True)
        finally:
            await outbound.aclose()

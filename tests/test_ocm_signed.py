"""Inbound OCM requests through ``verified_request`` on a running instance (paris), sent by
another (zurich) over real sockets: signed requests pass with the signer's domain; forged,
tampered, replayed, unsigned, refused, mismatched and oversized ones get OCM-shaped errors;
and zurich's outbox delivers a message signed, exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from conftest import federation
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends

from federation import httpsig
from federation.api import OcmRoute, SignedRequest, verified_request
from federation.outbox import enqueue, state_of

LIMIT = 4096
SHARE = {"sender": "einstein@zurich.test", "shareWith": "marie@paris.test", "name": "a"}


@pytest.fixture
def pair(zurich_paris):  # type: ignore[no-untyped-def]
    return zurich_paris


@pytest.fixture
def probe(pair) -> tuple[str, list[SignedRequest]]:  # type: ignore[no-untyped-def]
    """An OCM endpoint on paris that records what passed the gate: (its URL, the log)."""
    _, paris = pair
    seen: list[SignedRequest] = []
    gate = verified_request(federation(paris), max_body=LIMIT)

    async def handle(signed: SignedRequest = Depends(gate)) -> dict[str, Any]:
        seen.append(signed)
        return {"sender": signed.sender}

    router = APIRouter(route_class=OcmRoute)
    router.add_api_route("/ocm/probe", handle, methods=["POST"])
    paris.instance.app.include_router(router)
    return f"{paris.url}/ocm/probe", seen


def signed_by(running, url: str, payload: object) -> tuple[dict[str, str], bytes]:  # type: ignore[no-untyped-def]
    body = orjson.dumps(payload)
    return dict(federation(running).sign("POST", url, {"Content-Type": "application/json"},
                                         body)), body


async def post(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, headers=headers, content=body)


def refused(r: httpx.Response, status: int, name: str, reason: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert isinstance(body["message"], str) and body["message"]
    assert body["validationErrors"] == [{"name": name, "message": reason}]


async def test_signed_request_is_accepted(pair, probe) -> None:  # type: ignore[no-untyped-def]
    zurich, _ = pair
    url, seen = probe
    r = await post(url, *signed_by(zurich, url, SHARE))
    assert r.status_code == 200, r.text
    assert r.json() == {"sender": "zurich.test"}
    (signed,) = seen
    assert signed.signed and signed.sender == "zurich.test" and signed.body == SHARE
    assert signed.keyid == f"zurich.test#{federation(zurich).keys.signing_key().kid}"


async def test_forged_tampered_and_replayed_are_401(pair, probe) -> None:  # type: ignore[no-untyped-def]
    zurich, _ = pair
    url, seen = probe
    kid = federation(zurich).keys.signing_key().kid
    body = orjson.dumps(SHARE)
    forged = httpsig.sign("POST", url, {"Content-Type": "application/json"}, body,
                          Ed25519PrivateKey.generate(), httpsig.make_keyid("zurich.test", kid))
    refused(await post(url, {"Content-Type": "application/json", **forged}, body),
            401, "signature", "bad-signature")

    headers, body = signed_by(zurich, url, SHARE)
    tampered = body.replace(b"marie", b"mario")
    refused(await post(url, headers, tampered), 401, "signature", "digest-mismatch")

    assert (await post(url, headers, body)).status_code == 200
    refused(await post(url, headers, body), 401, "signature", "replay")
    assert len(seen) == 1


async def test_unsigned_only_from_legacy_peers(pair, probe) -> None:  # type: ignore[no-untyped-def]
    _, paris = pair
    url, seen = probe
    plain = {"Content-Type": "application/json"}
    refused(await post(url, plain, orjson.dumps(SHARE)), 401, "signature", "no-signature")
    # a draft-cavage signature (OCM 1.1) is no RFC 9421 signature either
    cavage = {**plain, "Signature": 'keyId="https://zurich.test/ocm#signature",signature="x"'}
    refused(await post(url, cavage, orjson.dumps(SHARE)), 401, "signature", "malformed")
    assert seen == []

    paris.instance.settings.federation.accept_unsigned_from.append("zurich.test")
    r = await post(url, plain, orjson.dumps(SHARE))
    assert r.status_code == 200, r.text
    assert not seen[0].signed and seen[0].sender == "zurich.test" and seen[0].keyid is None
    other = {**SHARE, "sender": "someone@lyon.test"}
    refused(await post(url, plain, orjson.dumps(other)), 401, "signature", "no-signature")


async def test_policy_and_sender_mismatch_are_403(pair, probe) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    url, seen = probe
    mismatch = {**SHARE, "sender": "marie@paris.test"}
    refused(await post(url, *signed_by(zurich, url, mismatch)), 403, "sender", "SENDER_MISMATCH")

    await federation(paris).peers.add("zurich.test", "deny")
    refused(await post(url, *signed_by(zurich, url, SHARE)), 403, "sender", "PEER_NOT_ALLOWED")
    paris.instance.settings.federation.accept_unsigned_from.append("zurich.test")
    refused(await post(url, {"Content-Type": "application/json"}, orjson.dumps(SHARE)),
            403, "sender", "PEER_NOT_ALLOWED")
    assert seen == []


async def test_bad_bodies(pair, probe) -> None:  # type: ignore[no-untyped-def]
    zurich, _ = pair
    url, seen = probe
    big = {**SHARE, "description": "x" * LIMIT}
    r = await post(url, *signed_by(zurich, url, big))
    assert r.status_code == 413 and r.json()["message"].startswith("request body exceeds")

    async def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(8):
            yield b"x" * 1024

    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(url, content=chunks())
    assert r.status_code == 413, r.text

    headers, body = signed_by(zurich, url, [SHARE])
    refused(await post(url, headers, body), 400, "body", "not an object")
    assert seen == []


async def test_outbox_delivers_signed_exactly_once(pair, probe) -> None:  # type: ignore[no-untyped-def]
    zurich, _ = pair
    url, seen = probe
    async with zurich.instance.ctx.db.write() as conn:
        await enqueue(conn, peer="paris.test", url=url, kind="share", payload=SHARE,
                      dedupe_key="probe-1")
    federation(zurich).delivery.notify()
    async with asyncio.timeout(10):
        while True:
            async with zurich.instance.ctx.db.read() as conn:
                state = await state_of(conn, "probe-1")
            if state is not None and state.state not in ("queued", "delivering"):
                break
            await asyncio.sleep(0.05)
    assert state.state == "delivered" and state.last_status == 200, state
    (signed,) = seen
    assert signed.signed and signed.sender == "zurich.test" and signed.body == SHARE


async def test_outbox_gauges(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, _ = pair
    r = await zurich.client(None).get("/metrics")
    assert 'fedspace_outbox_messages{state="queued"} 0.0' in r.text

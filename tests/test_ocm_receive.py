"""Receiving OCM shares over real sockets: zurich signs, paris (user marie) registers a
pending remote space, refuses bad or unauthorised shares without registering anything,
tells zurich of marie's decision through its outbox, and follows zurich's notifications."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from conftest import federation
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends
from sqlalchemy import func, select

from federation import httpsig
from federation.api import OcmRoute, SignedRequest, verified_request
from federation.sealing import Sealer
from registry.models import space_members, spaces

DAV = "http://zurich.test/dav/spaces/s-1/papers"


def share(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "shareWith": "marie@paris.test", "name": "papers", "description": "drafts",
        "providerId": "p-1", "owner": "einstein@zurich.test",
        "sender": "einstein@zurich.test", "ownerDisplayName": "Albert Einstein",
        "senderDisplayName": "Albert Einstein", "shareType": "user", "resourceType": "file",
        "protocol": {"name": "multi", "webdav": {
            "uri": DAV, "sharedSecret": "s3cret", "permissions": ["read", "write"]}},
    }
    body.update(changes)
    return body


@pytest.fixture
async def pair(zurich_paris):  # type: ignore[no-untyped-def]
    _, paris = zurich_paris
    await paris.add_user("marie")
    return zurich_paris


@pytest.fixture
def zurich_inbox(pair) -> list[SignedRequest]:  # type: ignore[no-untyped-def]
    """Notifications zurich receives (its own endpoint is the sending side's task)."""
    zurich, _ = pair
    seen: list[SignedRequest] = []
    gate = verified_request(federation(zurich), claimed=lambda _: None)

    async def handle(signed: SignedRequest = Depends(gate)) -> dict[str, Any]:
        seen.append(signed)
        return {}

    router = APIRouter(route_class=OcmRoute)
    router.add_api_route("/ocm/notifications", handle, methods=["POST"], status_code=201)
    zurich.instance.app.router.routes.insert(0, router.routes[0])
    return seen


async def send(zurich, paris, path: str, payload: object) -> httpx.Response:  # type: ignore[no-untyped-def]
    url = f"{paris.url}/ocm/{path}"
    body = orjson.dumps(payload)
    headers = dict(federation(zurich).sign("POST", url, {"Content-Type": "application/json"},
                                           body))
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, headers=headers, content=body)


async def remote_count(paris) -> int:  # type: ignore[no-untyped-def]
    async with paris.instance.ctx.db.read() as conn:
        return int(await conn.scalar(
            select(func.count()).select_from(spaces).where(spaces.c.type == "remote")))


async def drives(paris, query: str = "") -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    r = await paris.client("marie").get(f"/graph/v1.0/me/drives{query}")
    assert r.status_code == 200, r.text
    return [d for d in r.json()["value"] if d["driveType"] == "remote"]


REMOTE = "?$filter=driveType eq 'remote'"


async def test_share_becomes_pending_remote_space(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    r = await send(zurich, paris, "shares", share())
    assert r.status_code == 201, r.text
    assert r.json() == {"recipientDisplayName": "Marie"}
    assert await drives(paris) == []  # pending: only listed when remote drives are asked for
    (drive,) = await drives(paris, REMOTE)
    assert drive["root"]["webDavUrl"] == f"{paris.url}/dav/spaces/{drive['id']}"  # the proxy
    assert drive["@fedspace.remote"] == {
        "webDavUrl": DAV, "state": "pending",
        "sender": {"id": "einstein@zurich.test", "displayName": "Albert Einstein"},
        "owner": {"id": "einstein@zurich.test", "displayName": "Albert Einstein"}}
    assert drive["name"] == "papers" and drive["description"] == "drafts"
    (perm,) = drive["root"]["permissions"]
    assert perm["roles"] == ["58c63c02-1d89-4572-916a-870abc5a1b7d"]  # editor: "write"

    await asyncio.sleep(1.1)  # a new signature (``created`` has second granularity)
    again = await send(zurich, paris, "shares", share())
    assert (again.status_code, again.json()) == (201, r.json())
    assert await remote_count(paris) == 1

    async with paris.instance.ctx.db.read() as conn:
        sealed = await conn.scalar(select(spaces.c.remote_secret))
    assert "s3cret" not in sealed
    assert Sealer.in_data_dir(paris.instance.settings.data_dir).open(sealed) == "s3cret"

    dav = await paris.client("marie").request("PROPFIND", f"/dav/spaces/{drive['id']}",
                                              headers={"Depth": "0"})
    assert dav.status_code == 404 and "remote space" in dav.text


async def test_legacy_and_relative_forms(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    legacy = share(providerId="p-legacy", protocol={"name": "webdav", "options": {
        "sharedSecret": "x", "permissions": "{http://open-cloud-mesh.org/ns}share-permissions"}})
    assert (await send(zurich, paris, "shares", legacy)).status_code == 201
    relative = share(providerId="p-rel", shareWith="marie",
                     protocol={"name": "webdav", "webdav": {"url": "s-2/a b"}})
    assert (await send(zurich, paris, "shares", relative)).status_code == 201
    urls = {d["@fedspace.remote"]["webDavUrl"] for d in await drives(paris, REMOTE)}
    assert urls == {"http://zurich.test/dav/spaces/", "http://zurich.test/dav/spaces/s-2/a b"}
    roles = {d["root"]["permissions"][0]["roles"][0] for d in await drives(paris, REMOTE)}
    assert roles == {"a8d5fe5e-96e3-418d-825b-534dbdf22b99"}  # viewer


def errors(r: httpx.Response, status: int) -> dict[str, str]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["message"]
    return {e["name"]: e["message"] for e in body["validationErrors"]}


async def test_refusals_register_nothing(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    for who in ("nobody@paris.test", "marie@lyon.test", "nobody"):
        assert errors(await send(zurich, paris, "shares", share(shareWith=who)), 400) == {
            "shareWith": "unknown recipient"}
    await paris.instance.ctx.components["discovery"].directory.set_disabled("marie", True)
    assert errors(await send(zurich, paris, "shares", share()), 400) == {
        "shareWith": "unknown recipient"}
    await paris.instance.ctx.components["discovery"].directory.set_disabled("marie", False)

    bad = share(name="", providerId=None, owner="einstein", expiration=-1)
    del bad["protocol"]
    found = errors(await send(zurich, paris, "shares", bad), 400)
    assert set(found) == {"name", "providerId", "owner", "expiration", "protocol"}

    for uri, why in (("ftp://zurich.test/x", "absolute"), ("http://evil.test/x", "own host"),
                     ("http://u:p@zurich.test/x", "credentials")):
        body = share(protocol={"name": "multi", "webdav": {"uri": uri}})
        assert why in errors(await send(zurich, paris, "shares", body), 400)[
            "protocol.webdav.uri"]
    body = share(protocol={"name": "multi", "webdav": {"uri": DAV, "permissions": ["fly"]}})
    assert "protocol.webdav.permissions" in errors(await send(zurich, paris, "shares", body), 400)

    assert errors(await send(zurich, paris, "shares", share(shareType="group")), 501) == {
        "shareType": "not implemented"}
    assert errors(await send(zurich, paris, "shares", share(resourceType="calendar")), 501) == {
        "resourceType": "not implemented"}
    assert await remote_count(paris) == 0


async def test_gate_refusals_register_nothing(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    url = f"{paris.url}/ocm/shares"
    body = orjson.dumps(share())
    plain = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=30) as client:
        assert errors(await client.post(url, headers=plain, content=body), 401) == {
            "signature": "no-signature"}
        headers = dict(federation(zurich).sign("POST", url, plain, body))
        assert errors(await client.post(url, headers=headers,
                                        content=body.replace(b"papers", b"paperz")), 401) == {
            "signature": "digest-mismatch"}
        kid = federation(zurich).keys.signing_key().kid
        forged = httpsig.sign("POST", url, plain, body, Ed25519PrivateKey.generate(),
                              httpsig.make_keyid("zurich.test", kid))
        assert errors(await client.post(url, headers={**plain, **forged}, content=body),
                      401) == {"signature": "bad-signature"}
        assert (await client.post(url, headers=headers, content=body)).status_code == 201
        assert errors(await client.post(url, headers=headers, content=body), 401) == {
            "signature": "replay"}
    assert await remote_count(paris) == 1


async def test_sender_mismatch_denied_and_oversized(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    lyon = share(sender="einstein@lyon.test", owner="einstein@lyon.test")
    assert errors(await send(zurich, paris, "shares", lyon), 403) == {"sender": "SENDER_MISMATCH"}
    big = share(description="x" * 70_000)
    assert (await send(zurich, paris, "shares", big)).status_code == 413
    await federation(paris).peers.add("zurich.test", "deny")
    assert errors(await send(zurich, paris, "shares", share()), 403) == {
        "sender": "PEER_NOT_ALLOWED"}
    assert await remote_count(paris) == 0


async def wait_delivered(zurich_inbox: list[SignedRequest], n: int) -> None:
    async with asyncio.timeout(10):
        while len(zurich_inbox) < n:
            await asyncio.sleep(0.05)


async def test_accept_and_decline_notify_the_origin(pair, zurich_inbox) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    marie = paris.client("marie")
    assert (await send(zurich, paris, "shares", share())).status_code == 201
    assert (await send(zurich, paris, "shares", share(providerId="p-2"))).status_code == 201
    ids = {d["id"] for d in await drives(paris, REMOTE)}
    first, second = sorted(ids)

    r = await marie.post(f"/graph/v1beta1/drives/{first}/accept")
    assert r.status_code == 200 and r.json()["@fedspace.remote"]["state"] == "accepted"
    assert (await marie.post(f"/graph/v1beta1/drives/{first}/accept")).status_code == 200
    await wait_delivered(zurich_inbox, 1)
    assert [d["id"] for d in await drives(paris)] == [first]  # accepted: listed by default

    r = await marie.post(f"/graph/v1beta1/drives/{second}/decline")
    assert r.status_code == 200 and r.json()["@fedspace.remote"]["state"] == "declined"
    await wait_delivered(zurich_inbox, 2)
    assert (await marie.post(f"/graph/v1beta1/drives/{second}/accept")).status_code == 409
    await asyncio.sleep(0.3)
    assert len(zurich_inbox) == 2
    assert all(s.signed and s.sender == "paris.test" for s in zurich_inbox)
    assert sorted((s.body["notificationType"], s.body["resourceType"]) for s in zurich_inbox) \
        == [("SHARE_ACCEPTED", "file"), ("SHARE_DECLINED", "file")]
    assert {s.body["providerId"] for s in zurich_inbox} == {"p-1", "p-2"}

    other = paris.client(None)
    assert (await other.post(f"/graph/v1beta1/drives/{first}/accept")).status_code == 401


async def test_notifications_from_the_origin(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    assert (await send(zurich, paris, "shares", share())).status_code == 201
    change = {"notificationType": "SHARE_CHANGE_PERMISSION", "resourceType": "file",
              "providerId": "p-1", "notification": {"permissions": ["read"]}}
    for pause in (0, 1.1):  # a repeated notification (signed anew) answers the same
        await asyncio.sleep(pause)
        r = await send(zurich, paris, "notifications", change)
        assert (r.status_code, r.json()) == (201, {})
    (drive,) = await drives(paris, REMOTE)
    assert drive["root"]["permissions"][0]["roles"] == ["a8d5fe5e-96e3-418d-825b-534dbdf22b99"]

    unknown = {**change, "providerId": "p-9"}
    assert errors(await send(zurich, paris, "notifications", unknown), 404) == {
        "providerId": "unknown share"}
    assert errors(await send(zurich, paris, "notifications", {"providerId": "p-1"}), 400) == {
        "notificationType": "Field required"}
    weird = {**change, "notificationType": "USER_REMOVED"}
    assert errors(await send(zurich, paris, "notifications", weird), 501) == {
        "notificationType": "not implemented"}

    unshare = {"notificationType": "SHARE_UNSHARED", "resourceType": "file", "providerId": "p-1"}
    for pause in (0, 1.1):
        await asyncio.sleep(pause)
        r = await send(zurich, paris, "notifications", unshare)
        assert (r.status_code, r.json()) == (201, {})
        assert await drives(paris, REMOTE) == [] and await remote_count(paris) == 0
    async with paris.instance.ctx.db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(space_members).where(
            space_members.c.principal_id == paris.users["marie"][0],
            space_members.c.space_id.not_in(select(spaces.c.id)))) == 0

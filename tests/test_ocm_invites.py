"""The OCM invite flow over real sockets: einstein@zurich invites, marie@paris accepts through
her own instance's API, and both end up with a contact; the refusals (replay, unknown or
expired token, revoked invite, wrong or missing signature, guests) store nothing;
``require_invite`` keeps a peer out until an invite is accepted; the CLI as an operator
runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import federation, make_settings
from sqlalchemy import func, insert, select, update
from starlette.requests import HTTPConnection
from test_ocm_receive import send, share

from federation.models import ocm_contacts, ocm_invites
from federation.peers import PeerPolicy
from fedspace.auth import Principal
from fedspace.db import Database

PROBLEM = "application/problem+json"


@pytest.fixture
async def pair(zurich_paris):  # type: ignore[no-untyped-def]
    zurich, paris = zurich_paris
    await zurich.add_user("einstein")
    await paris.add_user("marie")
    return zurich_paris


async def invite(running, user: str, **body: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    r = await running.client(user).post("/api/v1/ocm/invites", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def accept(running, user: str, token: str, provider: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return await running.client(user).post(
        "/api/v1/ocm/invites/accept", json={"token": token, "providerDomain": provider})


async def contacts(running, user: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    r = await running.client(user).get("/api/v1/ocm/contacts")
    assert r.status_code == 200, r.text
    return r.json()["value"]


async def contact_count(running) -> int:  # type: ignore[no-untyped-def]
    async with running.instance.ctx.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(ocm_contacts)))


def acceptance(token: str, **changes: str) -> dict[str, str]:
    return {"recipientProvider": "paris.test", "token": token, "userID": "marie",
            "email": "marie@paris.test", "name": "Marie Curie", **changes}


def errors(r: httpx.Response, status: int) -> dict[str, str]:
    assert r.status_code == status, r.text
    return {e["name"]: e["message"] for e in r.json()["validationErrors"]}


def problem(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    return str(r.json()["detail"])


async def test_invite_accepted_makes_contacts_on_both_sides(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    document = (await zurich.client(None).get("/.well-known/ocm")).json()
    assert {"invites", "/invite-accepted"} <= set(document["capabilities"])
    assert "inviteAcceptDialog" not in document

    made = await invite(zurich, "einstein", description="for Marie", expiresInSeconds=3600)
    assert made["providerDomain"] == "zurich.test" and made["description"] == "for Marie"
    assert len(made["token"]) >= 43 and made["expirationDateTime"] > made["createdDateTime"]
    async with zurich.instance.ctx.db.read() as conn:
        stored = await conn.scalar(select(ocm_invites.c.token_hash))
    assert made["token"] not in stored and len(stored) == 64

    r = await accept(paris, "marie", made["token"], "zurich.test")
    assert r.status_code == 201, r.text
    assert r.json() | {"createdDateTime": None} == {
        "address": "einstein@zurich.test", "userID": "einstein",
        "providerDomain": "zurich.test", "name": "Einstein", "email": "einstein@zurich.test",
        "createdDateTime": None}
    assert [c["address"] for c in await contacts(paris, "marie")] == ["einstein@zurich.test"]
    (theirs,) = await contacts(zurich, "einstein")
    assert (theirs["address"], theirs["name"], theirs["email"]) == (
        "marie@paris.test", "Marie", "marie@paris.test")

    listed = (await zurich.client("einstein").get("/api/v1/ocm/invites")).json()["value"]
    assert [(i["id"], i["state"], i["acceptedBy"]) for i in listed] == [
        (made["id"], "accepted", "marie@paris.test")]
    assert all("token" not in i for i in listed)

    await asyncio.sleep(1.1)  # a new signature (``created`` has second granularity)
    replay = await accept(paris, "marie", made["token"], "zurich.test")
    assert "already accepted" in problem(replay, 409)
    direct = await send(paris, zurich, "invite-accepted", acceptance(made["token"]))
    assert errors(direct, 409) == {"token": "already accepted"}
    assert await contact_count(zurich) == 1 and await contact_count(paris) == 1


async def test_unknown_expired_and_revoked_tokens_store_nothing(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    assert "does not know this invite token" in problem(
        await accept(paris, "marie", "no-such-token", "zurich.test"), 400)

    made = await invite(zurich, "einstein")
    async with zurich.instance.ctx.db.write() as conn:
        await conn.execute(update(ocm_invites).values(expires_ms=1))
    assert "does not know" in problem(await accept(paris, "marie", made["token"],
                                                   "zurich.test"), 400)
    assert errors(await send(paris, zurich, "invite-accepted", acceptance(made["token"])),
                  400) == {"token": "expired"}
    state = (await zurich.client("einstein").get("/api/v1/ocm/invites")).json()["value"]
    assert [i["state"] for i in state] == ["expired"]

    revoked = await invite(zurich, "einstein")
    einstein = zurich.client("einstein")
    assert (await einstein.delete(f"/api/v1/ocm/invites/{revoked['id']}")).status_code == 204
    assert (await einstein.delete(f"/api/v1/ocm/invites/{revoked['id']}")).status_code == 404
    assert (await paris.client("marie").delete(
        f"/api/v1/ocm/invites/{made['id']}")).status_code == 404  # not hers
    assert problem(await accept(paris, "marie", revoked["token"], "zurich.test"), 400)
    assert await contact_count(zurich) == 0 and await contact_count(paris) == 0


async def test_gate_and_validation(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    made = await invite(zurich, "einstein")
    lyon = acceptance(made["token"], recipientProvider="lyon.test")
    assert errors(await send(paris, zurich, "invite-accepted", lyon), 403) == {
        "sender": "SENDER_MISMATCH"}
    url = f"{zurich.url}/ocm/invite-accepted"
    async with httpx.AsyncClient(timeout=30) as client:
        unsigned = await client.post(url, json=acceptance(made["token"]))
    assert errors(unsigned, 401) == {"signature": "no-signature"}

    bad = acceptance(made["token"], name="Marie\x00", userID="")
    del bad["email"]
    assert set(errors(await send(paris, zurich, "invite-accepted", bad), 400)) == {
        "name", "userID", "email"}
    assert errors(await send(paris, zurich, "invite-accepted",
                             acceptance("x" * 43)), 400) == {"token": "unknown invite"}
    await federation(zurich).peers.add("paris.test", "deny")
    assert errors(await send(paris, zurich, "invite-accepted", acceptance(made["token"])),
                  403) == {"sender": "PEER_NOT_ALLOWED"}
    assert "may not federate" in problem(
        await accept(zurich, "einstein", made["token"], "paris.test"), 403)
    assert await contact_count(zurich) == 0

    await federation(zurich).peers.remove("paris.test")
    zurich.instance.settings.federation.accept_unsigned_from.append("paris.test")
    async with httpx.AsyncClient(timeout=30) as client:  # a legacy peer, named by the body
        legacy = await client.post(url, json=acceptance(made["token"], userID="marie-1"))
    assert legacy.status_code == 200, legacy.text
    assert legacy.json() == {"userID": "einstein", "email": "einstein@zurich.test",
                             "name": "Einstein"}


async def test_api_refusals(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, _ = pair
    anonymous = zurich.client(None)
    assert (await anonymous.get("/api/v1/ocm/invites")).status_code == 401
    einstein = zurich.client("einstein")
    r = await einstein.post("/api/v1/ocm/invites", json={"expiresInSeconds": 31 * 86400})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert (await einstein.post("/api/v1/ocm/invites")).status_code == 201  # all defaults
    for provider, why in (("zurich.test", "made at this instance"),
                          ("not a domain", "invalid provider domain"),
                          ("nowhere.test", "cannot reach the OCM API")):
        assert why in problem(await accept(zurich, "einstein", "t", provider),
                              400 if "nowhere" not in provider else 502)

    class Guests:
        scheme = "Guest"

        async def verify(self, conn: HTTPConnection) -> Principal | None:
            if "x-test-guest" not in conn.headers:
                return None
            return Principal("g-1", "marie@paris.test", "Marie", kind="guest")

    zurich.instance.ctx.auth.verifiers.insert(0, Guests())
    guest = zurich.client(None)
    for method, path in (("GET", "/api/v1/ocm/invites"), ("POST", "/api/v1/ocm/invites"),
                         ("GET", "/api/v1/ocm/contacts")):
        r = await guest.request(method, path, headers={"x-test-guest": "1"})
        assert "guests" in problem(r, 403)


async def test_require_invite_admits_a_peer_once_invited(pair) -> None:  # type: ignore[no-untyped-def]
    """Paris takes shares only from introduced peers; marie@paris invites einstein@zurich,
    whose acceptance reaches paris through its gate although zurich is not introduced yet."""
    zurich, paris = pair
    paris.instance.settings.federation.require_invite = True
    refused = await send(zurich, paris, "shares", share())
    assert errors(refused, 403) == {"sender": "PEER_NOT_ALLOWED"}
    assert "no accepted invite" in refused.json()["message"]

    made = await invite(paris, "marie")
    r = await accept(zurich, "einstein", made["token"], "paris.test")
    assert r.status_code == 201, r.text
    assert (await send(zurich, paris, "shares", share())).status_code == 201
    assert [c["address"] for c in await contacts(paris, "marie")] == ["einstein@zurich.test"]


async def test_require_invite_policy(db: Database, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, db.url.render_as_string(hide_password=False),
                             federation={"require_invite": True, "peer_cache_seconds": 3600,
                                         "deny_peers": ["evil.test"]})
    peers = PeerPolicy(db, settings)
    refused = await peers.decide("paris.test")
    assert not refused.allowed and refused.reason.startswith("no accepted invite")
    assert (await peers.decide("paris.test", inviting=True)).allowed
    assert not (await peers.decide("evil.test", inviting=True)).allowed  # deny lists apply
    await peers.add("rome.test")  # explicitly allowed: no invite needed
    assert (await peers.decide("rome.test")).allowed

    async with db.write() as conn:
        await conn.execute(insert(ocm_contacts).values(
            user_id="u-1", address="marie@paris.test", peer="paris.test", name="Marie",
            email="", created_ms=1))
    assert not (await peers.decide("paris.test")).allowed  # cached, until told or stale
    peers.contact_added("paris.test")
    assert (await peers.decide("paris.test")).allowed
    assert (await PeerPolicy(db, settings).decide("paris.test")).allowed  # from the table
    settings.federation.require_invite = False
    assert (await PeerPolicy(db, settings).decide("lyon.test")).allowed


def fedspace(running, *args: str, **env: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    settings = running.instance.settings
    hosts = orjson.dumps(settings.outbound.hosts).decode()
    full = {**os.environ, "FEDSPACE_DATA_DIR": str(settings.data_dir),
            "FEDSPACE_DATABASE_URL": settings.database_url, "FEDSPACE_DOMAIN": settings.domain,
            "FEDSPACE_OUTBOUND__ALLOW_HTTP": "true",
            "FEDSPACE_OUTBOUND__ALLOW_PRIVATE_ADDRESSES": "true",
            "FEDSPACE_OUTBOUND__HOSTS": hosts, "COLUMNS": "250", **env}
    full.pop("FEDSPACE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "fedspace", *args], env=full,
                          capture_output=True, text=True, timeout=60, check=False)


async def cli(running, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """In a thread: the instances answering the CLI run on this event loop."""
    return await asyncio.to_thread(fedspace, running, *args)


async def test_cli(pair) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = pair
    r = await cli(zurich, "invite", "create", "--user", "einstein", "--description", "Marie",
                  "--expires", "600")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    assert "zurich.test" in r.stdout
    r = await cli(zurich, "invite", "list", "--user", "einstein")
    assert r.returncode == 0 and "Marie" in r.stdout and "pending" in r.stdout
    assert token not in r.stdout

    r = await cli(paris, "invite", "accept", "--user", "marie", "--token", token,
                  "--provider", "zurich.test")
    assert r.returncode == 0, r.stderr
    assert "einstein@zurich.test" in r.stdout
    r = await cli(paris, "contacts", "list", "--user", "marie")
    assert r.returncode == 0 and "einstein@zurich.test" in r.stdout
    assert [c["address"] for c in await contacts(zurich, "einstein")] == ["marie@paris.test"]

    for args, message in (
        (("invite", "accept", "--user", "marie", "--token", token, "--provider",
          "zurich.test"), "already accepted"),
        (("invite", "revoke", "nope", "--user", "marie"), "no invite 'nope'"),
        (("invite", "list", "--user", "nobody"), "no such user"),
    ):
        r = await cli(paris, *args)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and message in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr

"""Sharing with a user of another instance, over real sockets: zurich's einstein shares a
folder with marie@paris.test; paris registers a pending remote space, marie accepts or
declines, zurich sees where each share stands, and role changes, content changes and
unsharing reach paris. Also: paris down while the share is made, and zurich restarted
with the share still queued — each share arrives exactly once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import httpx
import orjson
import pytest
from conftest import DEV_OUTBOUND, Running, federation
from sqlalchemy import func, select
from test_identity_two_domains import PASSWORD, Domain, bearer, login
from test_share_spaces import ok, project, wait_for

from federation.models import ocm_shares, outbox
from federation.outgoing import secret_hash, unseal
from fedspace.app import Instance
from registry.models import spaces
from registry.roles import ROLES

EDITOR, VIEWER = ROLES["editor"].id, ROLES["viewer"].id
FAST_RETRY = {"retry_base_seconds": 0.1, "retry_cap_seconds": 0.3}


def to_marie(role: str = EDITOR) -> dict[str, Any]:
    return {"recipients": [{"objectId": "Marie@Paris.test",
                            "@libre.graph.recipient.type": "federated"}], "roles": [role]}


class Story:
    def __init__(self, zurich: Running, paris: Running) -> None:
        self.zurich, self.paris = zurich, paris
        self.einstein = zurich.client("einstein")
        self.marie = paris.client("marie")
        self.project = self.share = ""

    def dav(self, path: str = "") -> str:
        return f"/dav/spaces/{self.project}/{path}"

    async def setup(self) -> None:
        self.project = await project(self.einstein, "Physics")
        await ok(self.einstein.request("MKCOL", self.dav("papers")), 201)
        await ok(self.einstein.put(self.dav("papers/relativity.txt"), content=b"E=mc2"), 201)

    async def share_papers(self, role: str = EDITOR) -> dict[str, Any]:
        r = await ok(self.einstein.post(
            f"/graph/v1beta1/drives/{self.project}/root:/papers:/invite", json=to_marie(role)),
            200)
        entry = r.json()["value"][0]
        self.share = entry["@libre.graph.drive.id"]
        return entry

    async def remote_drives(self) -> list[dict[str, Any]]:
        r = await ok(self.marie.get("/graph/v1.0/me/drives",
                                    params={"$filter": "driveType eq 'remote'"}), 200)
        return r.json()["value"]

    async def remote(self) -> dict[str, Any]:
        await wait_for(self._arrived, "the share to arrive at paris")
        return (await self.remote_drives())[0]

    async def _arrived(self) -> bool:
        return len(await self.remote_drives()) == 1

    async def my_shares(self) -> list[dict[str, Any]]:
        return (await ok(self.einstein.get("/api/v1/ocm/shares"), 200)).json()["value"]

    async def state_is(self, state: str) -> None:
        async def check() -> bool:
            shares = await self.my_shares()
            return bool(shares) and shares[0]["state"] == state

        await wait_for(check, f"the share to be {state}")


@pytest.fixture
async def story(start_instance) -> Story:  # type: ignore[no-untyped-def]
    zurich = await start_instance("zurich", domain="zurich.test", outbound=DEV_OUTBOUND,
                                  federation=FAST_RETRY)
    paris = await start_instance("paris", domain="paris.test", outbound=DEV_OUTBOUND)
    link(zurich, paris)
    await zurich.add_user("einstein")
    await paris.add_user("marie")
    s = Story(zurich, paris)
    await s.setup()
    return s


def link(zurich: Running, paris: Running) -> None:
    names = {"zurich.test": zurich.url.removeprefix("http://"),
             "paris.test": paris.url.removeprefix("http://")}
    for running in (zurich, paris):
        running.instance.settings.outbound.hosts.update(names)


async def test_share_accept_change_and_unshare(story: Story) -> None:
    entry = await story.share_papers()
    assert entry["grantedToV2"]["user"] == {"id": "marie@paris.test",
                                            "@libre.graph.userType": "Federated"}
    assert entry["@fedspace.share"]["state"] in ("queued", "delivered")

    remote = await story.remote()
    info = remote["@fedspace.remote"]
    assert info["state"] == "pending" and remote["name"] == "papers"
    assert info["webDavUrl"] == f"{story.zurich.url}/dav/spaces/{story.share}"
    assert info["sender"]["id"] == "einstein@zurich.test"
    await story.state_is("delivered")

    # The permissions of the share drive say where marie's share stands.
    perms = (await ok(story.einstein.get(
        f"/graph/v1beta1/drives/{story.share}/root/permissions"), 200)).json()["value"]
    marie = next(p for p in perms if p["id"] == "f:marie@paris.test")
    assert marie["@fedspace.share"]["state"] == "delivered"
    assert marie["roles"] == [EDITOR]

    await ok(story.marie.post(f"/graph/v1beta1/drives/{remote['id']}/accept"), 200)
    await story.state_is("accepted")

    # Einstein's edit reaches paris as the remote space's new eTag, without polling zurich.
    before = (await ok(story.einstein.get(f"/graph/v1.0/drives/{story.share}"),
                       200)).json()["root"]["eTag"]
    await ok(story.einstein.put(story.dav("papers/relativity.txt"), content=b"E=mc^2"), 204)

    async def etag_arrived() -> bool:
        origin = (await ok(story.einstein.get(f"/graph/v1.0/drives/{story.share}"),
                           200)).json()["root"]["eTag"]
        drives = (await ok(story.marie.get("/graph/v1.0/me/drives"), 200)).json()["value"]
        return origin != before and any(
            d["id"] == remote["id"] and d["root"]["eTag"] == origin for d in drives)

    await wait_for(etag_arrived, "the new eTag at paris")

    # A role change reaches paris.
    await ok(story.einstein.patch(
        f"/graph/v1beta1/drives/{story.share}/root/permissions/f:marie@paris.test",
        json={"roles": [VIEWER]}), 200)

    async def viewer_at_paris() -> bool:
        drive = (await ok(story.marie.get(f"/graph/v1.0/drives/{remote['id']}"), 200)).json()
        return [p["roles"] for p in drive["root"]["permissions"]] == [[VIEWER]]

    await wait_for(viewer_at_paris, "the new role at paris")

    # Unsharing removes the remote space at paris and the share at zurich.
    await ok(story.einstein.delete(
        f"/graph/v1beta1/drives/{story.share}/root/permissions/f:marie@paris.test"), 204)

    async def gone() -> bool:
        return await story.remote_drives() == []

    await wait_for(gone, "the remote space to go")
    assert await story.my_shares() == []


async def test_decline_ends_access_and_stays_visible(story: Story) -> None:
    await story.share_papers(VIEWER)
    remote = await story.remote()
    await ok(story.marie.post(f"/graph/v1beta1/drives/{remote['id']}/decline"), 200)
    await story.state_is("declined")
    perms = (await ok(story.einstein.get(
        f"/graph/v1beta1/drives/{story.share}/root/permissions"), 200)).json()["value"]
    assert [p["id"] for p in perms if p["id"].startswith("f:")] == []

    # Sharing again is a new share (a new providerId) that arrives pending.
    await story.share_papers(VIEWER)
    shares = await story.my_shares()
    assert len(shares) == 1 and shares[0]["state"] in ("queued", "delivered")

    async def pending_again() -> bool:
        drives = await story.remote_drives()
        return any(d["@fedspace.remote"]["state"] == "pending" for d in drives)

    await wait_for(pending_again, "the new share at paris")


async def test_whole_project_shared_and_refusals(story: Story) -> None:
    r = await ok(story.einstein.post(
        f"/graph/v1beta1/drives/{story.project}/root/invite", json=to_marie(VIEWER)), 200)
    assert r.json()["value"][0]["id"] == "f:marie@paris.test"
    remote = await story.remote()
    assert remote["name"] == "Physics"

    refused = [
        (to_marie(ROLES["manager"].id), 400, "not managers"),
        ({"recipients": [{"objectId": "einstein@zurich.test",
                          "@libre.graph.recipient.type": "federated"}], "roles": [VIEWER]},
         400, "user of this instance"),
        ({"recipients": [{"objectId": "not an address",
                          "@libre.graph.recipient.type": "federated"}], "roles": [VIEWER]},
         422, "address"),
    ]
    for body, status, words in refused:
        r = await story.einstein.post(
            f"/graph/v1beta1/drives/{story.project}/root/invite", json=body)
        assert (r.status_code, r.headers["content-type"]) == (
            status, "application/problem+json"), r.text
        assert words in r.text
    personal = next(d for d in (await ok(story.einstein.get("/graph/v1.0/me/drives"),
                                         200)).json()["value"] if d["driveType"] == "personal")
    r = await story.einstein.post(f"/graph/v1beta1/drives/{personal['id']}/root/invite",
                                  json=to_marie())
    assert r.status_code in (400, 403), r.text


async def test_share_to_a_refused_peer_is_refused_at_once(story: Story) -> None:
    await federation(story.zurich).peers.add("paris.test", "deny")
    for url in (f"/graph/v1beta1/drives/{story.project}/root/invite",
                f"/graph/v1beta1/drives/{story.project}/root:/papers:/invite"):
        r = await story.einstein.post(url, json=to_marie())
        assert (r.status_code, r.headers["content-type"]) == (
            403, "application/problem+json"), r.text
        assert "paris.test is denylisted" in r.json()["detail"]
    async with story.zurich.instance.ctx.db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(ocm_shares)) == 0
        assert await conn.scalar(select(func.count()).select_from(outbox)) == 0
        assert await conn.scalar(select(func.count()).select_from(spaces).where(
            spaces.c.type == "share")) == 0


async def test_unshare_before_delivery_withdraws_the_share(story: Story) -> None:
    await story.paris.instance.stop()
    await story.share_papers()
    await ok(story.einstein.delete(
        f"/graph/v1beta1/drives/{story.share}/root/permissions/f:marie@paris.test"), 204)
    async with story.zurich.instance.ctx.db.read() as conn:
        pending = await conn.scalar(select(func.count()).select_from(outbox).where(
            outbox.c.state.in_(("queued", "delivering"))))
    # Withdrawn unless an attempt had begun; then an unshare follows it.
    assert pending in (0, 2)


async def test_recipient_down_then_delivered_exactly_once(story: Story) -> None:
    paris_port = int(story.paris.url.rsplit(":", 1)[1])
    await story.paris.instance.stop()
    await story.share_papers()

    async def failing() -> bool:
        share = (await story.my_shares())[0]
        assert share["state"] == "queued"
        delivery = share.get("delivery", {})
        return bool(delivery.get("lastError") and delivery.get("nextAttemptDateTime"))

    await wait_for(failing, "a failed attempt, and the next one planned")

    # Zurich restarts too, with the share still queued.
    zurich_port = int(story.zurich.url.rsplit(":", 1)[1])
    await story.zurich.instance.stop()
    story.zurich.instance = await restart(story.zurich.instance, zurich_port)
    story.paris.instance = await restart(story.paris.instance, paris_port)
    story.einstein = story.zurich.client("einstein")
    story.marie = story.paris.client("marie")
    await story.state_is("delivered")
    await story.remote()
    async with story.paris.instance.ctx.db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(spaces).where(
            spaces.c.type == "remote")) == 1
    async with story.zurich.instance.ctx.db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(ocm_shares)) == 1


async def restart(instance: Instance, port: int) -> Instance:
    settings = instance.settings
    settings.http.port = port
    fresh = Instance(settings)
    await fresh.start()
    return fresh


async def test_outbox_payload_keeps_the_secret_sealed(story: Story) -> None:
    await story.paris.instance.stop()
    await story.share_papers()
    async with story.zurich.instance.ctx.db.read() as conn:
        payload = orjson.loads(await conn.scalar(
            select(outbox.c.payload).where(outbox.c.kind == "share")))
        stored = await conn.scalar(select(ocm_shares.c.secret_hash))
    sealed = payload["protocol"]["webdav"]["sharedSecret"]
    assert set(sealed) == {"$sealed"} and payload["code"] == sealed
    secret = unseal(sealed, federation(story.zurich).sealer)
    assert secret not in orjson.dumps(payload).decode() and secret_hash(secret) == stored


async def test_share_cli(story: Story) -> None:
    zurich = story.zurich.instance.settings

    async def fedspace(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FEDSPACE_DATA_DIR": str(zurich.data_dir),
               "FEDSPACE_DATABASE_URL": zurich.database_url, "COLUMNS": "250",
               "FEDSPACE_PASSWORD": story.zurich.users["einstein"][1]}
        env.pop("FEDSPACE_CONFIG", None)
        return await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "fedspace", *args], env=env,
            capture_output=True, text=True, timeout=60)

    who = ("--user", "einstein", "--url", story.zurich.url)
    done = await fedspace("share", "create", "Physics", "marie@paris.test", "--path",
                          "papers", "--role", "editor", *who)
    assert done.returncode == 0, done.stderr
    assert "with marie@paris.test as editor" in done.stdout
    await story.remote()
    await story.state_is("delivered")
    listed = await fedspace("share", "list", "--user", "einstein")
    assert "marie@paris.test" in listed.stdout and "delivered" in listed.stdout
    share = (await story.my_shares())[0]["driveId"]

    refused = await fedspace("share", "create", "Nope", "marie@paris.test", *who)
    assert refused.returncode == 2 and "no drive 'Nope'" in refused.stderr
    refused = await fedspace("share", "role", share, "marie@paris.test", "manager", *who)
    assert refused.returncode == 2 and "viewers or editors" in refused.stderr
    assert "Traceback" not in refused.stderr

    assert (await fedspace("share", "role", share, "marie@paris.test", "viewer",
                           *who)).returncode == 0
    assert (await fedspace("share", "remove", share, "marie@paris.test", *who)).returncode == 0
    assert await story.my_shares() == []
    down = await fedspace("share", "remove", share, "marie@paris.test", "--user", "einstein",
                          "--url", "http://127.0.0.1:9")
    assert down.returncode == 2 and "cannot reach" in down.stderr


async def test_recipient_uses_her_own_token_at_the_origin(story: Story) -> None:
    """Access path (b): zurich trusts paris's issuer, so Curie's paris token opens exactly
    what was shared with curie@paris.test — and nothing once it is unshared."""
    zurich = Domain("zurich.test", story.zurich)
    paris = Domain("paris.test", story.paris)
    paris.settings.discovery.resource_peers.append(zurich.url)
    await paris.discovery.directory.add_user("curie", display_name="Marie Curie",
                                             password=PASSWORD)
    await zurich.discovery.trust.add(paris.issuer, "paris.test")
    r = await ok(story.einstein.post(
        f"/graph/v1beta1/drives/{story.project}/root:/papers:/invite",
        json={"recipients": [{"objectId": "curie@paris.test",
                              "@libre.graph.recipient.type": "federated"}],
              "roles": [EDITOR]}), 200)
    share = r.json()["value"][0]["@libre.graph.drive.id"]
    token = (await login(paris, "curie", resource=zurich.url))["access_token"]
    async with httpx.AsyncClient(base_url=story.zurich.url, headers=bearer(token),
                                 timeout=30) as curie:
        drives = (await ok(curie.get("/graph/v1.0/me/drives"), 200)).json()["value"]
        assert [d["id"] for d in drives] == [share]
        await ok(curie.put(f"/dav/spaces/{share}/notes.txt", content=b"radium"), 201)
        await ok(curie.get(f"/dav/spaces/{share}/relativity.txt"), 200)
        await ok(curie.get(story.dav("papers/relativity.txt")), 404)  # not the project
        got = await ok(story.einstein.get(story.dav("papers/notes.txt")), 200)
        assert got.content == b"radium"
        await ok(story.einstein.delete(
            f"/graph/v1beta1/drives/{share}/root/permissions/f:curie@paris.test"), 204)
        await ok(curie.get(f"/dav/spaces/{share}/relativity.txt"), 404)

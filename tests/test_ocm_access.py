"""Access to shared spaces over real sockets: marie@paris.test works in a folder einstein
shared from zurich.test through her home gateway at paris (which exchanges the share's
secret at zurich's token endpoint and rewrites what names zurich), zurich's token endpoint
refuses what it must, a raw secret reaches its one space, and access ends at once.

The origin state (share space, federated member, ``ocm_shares`` row) is made directly in
zurich's tables, and the share message is signed here as zurich: this tests access, not
the sending side."""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from conftest import Running, federation
from dav_fixtures import multistatus_hrefs
from sqlalchemy import delete, insert, update

from federation.models import ocm_shares
from federation.outgoing import secret_hash
from federation.remote_access import REFUSED, UNREACHABLE, Origin, rewrite_hrefs
from fedspace.sqltypes import now_ms
from registry.models import space_members

ADDRESS = "marie@paris.test"
DEPTH0 = {"Depth": "0"}
FILEID = ('<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>'
          "<oc:fileid/></d:prop></d:propfind>")


async def ok(response: Any, *statuses: int) -> httpx.Response:
    r = await response
    assert r.status_code in statuses, (r.status_code, r.text)
    return r


async def signed_post(by: Running, url: str, body: bytes,
                      content_type: str = "application/json") -> httpx.Response:
    headers = dict(federation(by).sign("POST", url, {"Content-Type": content_type}, body))
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, headers=headers, content=body)


async def origin_share(zurich: Running, space_id: str, secret: str, *, role: str = "editor",
                       member: bool = True) -> str:
    """What zurich's sending side records for a share with marie: its ocm_shares row and
    (``member``) marie as a federated member of the space."""
    share_id, now = f"p-{secrets.token_hex(4)}", now_ms()
    async with zurich.instance.ctx.db.write() as conn:
        await conn.execute(insert(ocm_shares).values(
            id=share_id, space_id=space_id, recipient=ADDRESS, peer="paris.test", role=role,
            secret_hash=secret_hash(secret), state="sent", sharer_id="einstein",
            created_ms=now, updated_ms=now))
        if member:
            await conn.execute(insert(space_members).values(
                space_id=space_id, principal_type="federated", principal_id=ADDRESS,
                role=role, created_ms=now))
    return share_id


@dataclass
class Rig:
    zurich: Running
    paris: Running
    project: str = ""  # einstein's project space at zurich
    share: str = ""  # its folder /papers, shared (a share space at zurich)
    provider_id: str = ""
    secret: str = ""
    remote: str = ""  # marie's remote space at paris

    @property
    def einstein(self) -> httpx.AsyncClient:
        return self.zurich.client("einstein")

    @property
    def marie(self) -> httpx.AsyncClient:
        return self.paris.client("marie")

    def home(self, path: str = "") -> str:
        return f"/dav/spaces/{self.remote}/{path}"

    def origin(self, path: str = "") -> str:
        return f"/dav/spaces/{self.project}/papers/{path}"

    async def receive(self, uri: str, secret: str, provider_id: str) -> str:
        """zurich's share message at paris, accepted by marie: the remote space's id."""
        body = orjson.dumps({
            "shareWith": ADDRESS, "name": "papers", "providerId": provider_id,
            "owner": "einstein@zurich.test", "sender": "einstein@zurich.test",
            "shareType": "user", "resourceType": "file", "code": secret,
            "protocol": {"name": "multi", "webdav": {
                "uri": uri, "sharedSecret": secret, "permissions": ["read", "write"]}}})
        await ok(signed_post(self.zurich, f"{self.paris.url}/ocm/shares", body), 201)
        r = await ok(self.marie.get("/graph/v1.0/me/drives?$filter=driveType eq 'remote'"), 200)
        (remote,) = [d["id"] for d in r.json()["value"]
                     if d["@fedspace.remote"]["webDavUrl"] == uri]
        await ok(self.marie.post(f"/graph/v1beta1/drives/{remote}/accept"), 200)
        return remote


@pytest.fixture
async def rig(zurich_paris: tuple[Running, Running]) -> Rig:
    zurich, paris = zurich_paris
    await zurich.add_user("einstein")
    bob = await zurich.add_user("bob")
    await paris.add_user("marie")
    rig = Rig(zurich, paris)
    r = await ok(rig.einstein.post("/graph/v1.0/drives", json={"name": "Relativity"}), 201)
    rig.project = r.json()["id"]
    await ok(rig.einstein.request("MKCOL", rig.origin()), 201)
    await ok(rig.einstein.put(rig.origin("notes.txt"), content=b"E=mc2"), 201)
    r = await ok(rig.einstein.request("PROPFIND", rig.origin(), headers={"Depth": "0"},
                                      content=FILEID), 207)
    item = re.search(r"<oc:fileid>([^<]*)</oc:fileid>", r.text).group(1)  # type: ignore[union-attr]
    r = await ok(rig.einstein.post(
        f"/graph/v1beta1/drives/{rig.project}/items/{item}/invite",
        json={"recipients": [{"objectId": bob}], "roles": ["viewer"]}), 200)
    rig.share = r.json()["value"][0]["@libre.graph.drive.id"]
    rig.secret = secrets.token_urlsafe(32)
    rig.provider_id = await origin_share(zurich, rig.share, rig.secret)
    rig.remote = await rig.receive(f"{zurich.url}/dav/spaces/{rig.share}", rig.secret,
                                   rig.provider_id)
    return rig


async def test_marie_works_in_the_shared_folder_through_her_home(rig: Rig) -> None:
    marie, einstein = rig.marie, rig.einstein
    r = await ok(marie.get(f"/graph/v1.0/drives/{rig.remote}"), 200)
    assert r.json()["root"]["webDavUrl"] == f"{rig.paris.url}{rig.home()}".rstrip("/")
    assert r.json()["@fedspace.remote"]["webDavUrl"] == f"{rig.zurich.url}/dav/spaces/{rig.share}"

    r = await ok(marie.request("PROPFIND", rig.home(), headers={"Depth": "1"}), 207)
    hrefs = multistatus_hrefs(r.content)
    assert sorted(hrefs) == [rig.home(), rig.home("notes.txt")]
    assert rig.share not in r.text
    assert (await ok(marie.get(rig.home("notes.txt")), 200)).content == b"E=mc2"
    head = await ok(marie.head(rig.home("notes.txt")), 200)
    assert head.headers["content-length"] == "5" and head.headers["etag"]

    big = secrets.token_bytes(3 * 1024 * 1024 + 17)  # above every buffered limit
    await ok(marie.put(rig.home("data.bin"), content=big), 201)
    assert (await ok(einstein.get(rig.origin("data.bin")), 200)).content == big
    assert (await ok(marie.get(rig.home("data.bin")), 200)).content == big

    await ok(marie.request("MKCOL", rig.home("drafts")), 201)
    await ok(marie.request("MOVE", rig.home("data.bin"), headers={
        "Destination": f"{rig.paris.url}{rig.home('drafts/moved%20data.bin')}"}), 201)
    await ok(einstein.get(rig.origin("data.bin")), 404)
    assert (await ok(einstein.get(rig.origin("drafts/moved data.bin")), 200)).content == big
    await ok(marie.request("COPY", rig.home("notes.txt"), headers={
        "Destination": rig.home("drafts/copy.txt")}), 201)
    await ok(marie.request("DELETE", rig.home("notes.txt")), 204)
    await ok(einstein.get(rig.origin("notes.txt")), 404)

    r = await ok(marie.request("PROPFIND", rig.home("drafts/"), headers={"Depth": "1"}), 207)
    assert sorted(multistatus_hrefs(r.content)) == [
        rig.home("drafts/"), rig.home("drafts/copy.txt"), rig.home("drafts/moved%20data.bin")]
    elsewhere = await ok(marie.request("MOVE", rig.home("drafts/copy.txt"), headers={
        "Destination": f"{rig.paris.url}/dav/spaces/{rig.share}/x"}), 502)
    assert "same space" in elsewhere.text
    await ok(paris_anonymous(rig).request("PROPFIND", rig.home(), headers=DEPTH0), 401)


def paris_anonymous(rig: Rig) -> httpx.AsyncClient:
    return rig.paris.client(None)


async def test_token_endpoint(rig: Rig) -> None:
    zurich, paris = rig.zurich, rig.paris
    url = f"{zurich.url}/ocm/token"
    grant = {"grant_type": "ocm_authorization_code", "client_id": "paris.test",
             "code": rig.secret}
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(url, json=grant)
    assert r.status_code == 401 and r.json()["validationErrors"][0]["name"] == "signature"

    r = await ok(signed_post(paris, url, orjson.dumps(grant)), 200)
    answer = r.json()
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3600
    assert r.headers["cache-control"] == "no-store"
    form = urlencode({**grant, "grant_type": "authorization_code"}).encode()
    await ok(signed_post(paris, url, form, "application/x-www-form-urlencoded"), 200)

    bearer = {"Authorization": f"Bearer {answer['access_token']}", **DEPTH0}
    client = zurich.client(None)
    await ok(client.request("PROPFIND", f"/dav/spaces/{rig.share}", headers=bearer), 207)
    await ok(client.request("PROPFIND", f"/dav/spaces/{rig.project}", headers=bearer), 404)

    def refused(r: httpx.Response, status: int, error: str | None = None) -> None:
        assert r.status_code == status, r.text
        if error:
            assert r.json()["error"] == error

    lyon = orjson.dumps({**grant, "client_id": "lyon.test"})
    refused(await signed_post(paris, url, lyon), 403)  # client_id is not the signer
    own = orjson.dumps({**grant, "client_id": "zurich.test"})
    refused(await signed_post(zurich, url, own), 403, "unauthorized_client")  # not its share
    wrong = orjson.dumps({**grant, "code": "nope"})
    refused(await signed_post(paris, url, wrong), 400, "invalid_grant")
    odd = orjson.dumps({**grant, "grant_type": "password"})
    refused(await signed_post(paris, url, odd), 400, "unsupported_grant_type")
    async with zurich.instance.ctx.db.write() as conn:
        await conn.execute(update(ocm_shares).values(state="declined"))
    refused(await signed_post(paris, url, orjson.dumps({**grant, "x": 1})), 400, "invalid_grant")
    await ok(client.request("PROPFIND", f"/dav/spaces/{rig.share}", headers=bearer), 401)

    r = await ok(zurich.client(None).get("/.well-known/ocm"), 200)
    assert r.json()["tokenEndPoint"] == url and "exchange-token" in r.json()["capabilities"]


async def test_raw_secret_reaches_only_its_space(rig: Rig) -> None:
    client = rig.zurich.client(None)
    bearer = {"Authorization": f"Bearer {rig.secret}", **DEPTH0}
    r = await ok(client.request("PROPFIND", f"/dav/spaces/{rig.share}", headers={
        **bearer, "Depth": "1"}), 207)
    assert f"/dav/spaces/{rig.share}/notes.txt" in multistatus_hrefs(r.content)
    await ok(client.request("PROPFIND", f"/dav/spaces/{rig.project}", headers=bearer), 404)
    r = await ok(client.get("/graph/v1.0/me/drives", headers=bearer), 200)
    assert [d["id"] for d in r.json()["value"]] == [rig.share]
    r = await ok(client.get("/graph/v1.0/me/drives", headers={"Authorization": "Bearer nope"}),
                 401)
    assert "malformed token" in r.headers["www-authenticate"]  # left to the OIDC verifier


async def test_access_ends_at_once(rig: Rig) -> None:
    marie, db = rig.marie, rig.zurich.instance.ctx.db
    await ok(marie.request("PROPFIND", rig.home(), headers=DEPTH0), 207)  # bearer cached now
    async with db.write() as conn:
        await conn.execute(delete(space_members).where(
            space_members.c.principal_type == "federated"))
    await ok(marie.request("PROPFIND", rig.home(), headers=DEPTH0), 404)
    await ok(marie.get(rig.home("notes.txt")), 404)

    async with db.write() as conn:
        await conn.execute(insert(space_members).values(
            space_id=rig.share, principal_type="federated", principal_id=ADDRESS,
            role="editor", created_ms=now_ms()))
    await ok(marie.request("PROPFIND", rig.home(), headers=DEPTH0), 207)
    async with db.write() as conn:  # the share itself is gone: its bearers stop working
        await conn.execute(delete(ocm_shares))
    r = await ok(marie.request("PROPFIND", rig.home(), headers=DEPTH0), 502)
    assert REFUSED in r.text
    assert REFUSED in (await ok(marie.put(rig.home("late.txt"), content=b"x"), 502)).text


async def test_viewer_writes_stop_at_home(rig: Rig) -> None:
    change = orjson.dumps({"notificationType": "SHARE_CHANGE_PERMISSION",
                           "resourceType": "file", "providerId": rig.provider_id,
                           "notification": {"permissions": ["read"]}})
    await ok(signed_post(rig.zurich, f"{rig.paris.url}/ocm/notifications", change), 201)
    marie = rig.marie
    exchanges = count_exchanges(rig)
    for method, path, extra in (("PUT", "new.txt", {}), ("MKCOL", "dir", {}),
                                ("DELETE", "notes.txt", {}), ("PROPPATCH", "notes.txt", {}),
                                ("MOVE", "notes.txt", {"Destination": rig.home("n2.txt")}),
                                ("COPY", "notes.txt", {"Destination": rig.home("n2.txt")})):
        r = await ok(marie.request(method, rig.home(path), headers=extra, content=b"x"), 403)
        assert "role" in r.text
    assert exchanges == []  # refused before anything left paris
    assert (await ok(marie.get(rig.home("notes.txt")), 200)).content == b"E=mc2"
    await ok(rig.einstein.get(rig.origin("notes.txt")), 200)
    await ok(rig.einstein.get(rig.origin("n2.txt")), 404)


def count_exchanges(rig: Rig) -> list[str]:
    """The codes zurich's token endpoint is asked to exchange, from now on."""
    tokens = federation(rig.zurich).share_tokens
    seen: list[str] = []
    original = tokens.by_secret

    async def by_secret(secret: str):  # type: ignore[no-untyped-def]
        seen.append(secret)
        return await original(secret)

    tokens.by_secret = by_secret  # type: ignore[method-assign]
    return seen


async def test_origin_without_token_endpoint_gets_the_secret(rig: Rig) -> None:
    federation(rig.zurich).features.token_endpoint = None
    federation(rig.paris).sender_keys._documents.clear()  # rediscover zurich now
    seen = count_exchanges(rig)
    await ok(rig.marie.request("PROPFIND", rig.home(), headers=DEPTH0), 207)
    await ok(rig.marie.put(rig.home("legacy.txt"), content=b"ok"), 201)
    assert seen == [rig.secret, rig.secret]  # the raw secret as bearer, on each request
    await ok(rig.einstein.get(rig.origin("legacy.txt")), 200)


async def test_origin_unreachable(rig: Rig) -> None:
    with socket.socket() as sock:  # a port that was free: nobody listens there now
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    secret = secrets.token_urlsafe(32)
    provider_id = await origin_share(rig.zurich, rig.project, secret, member=False)
    remote = await rig.receive(f"http://127.0.0.1:{closed}/dav/spaces/{rig.project}", secret,
                               provider_id)
    r = await ok(rig.marie.request("PROPFIND", f"/dav/spaces/{remote}", headers=DEPTH0), 502)
    assert UNREACHABLE in r.text


def test_href_rewriting() -> None:
    origin = Origin.of("https://cloud.zurich.test/dav/spaces/s-1/a b/")
    body = (b'<?xml version="1.0"?><D:multistatus xmlns:D="DAV:"><D:response>'
            b"<D:href>/dav/spaces/s-1/a%20b/x%26y.txt</D:href></D:response><D:response>"
            b"<D:href>https://cloud.zurich.test/dav/spaces/s-1/a%20b/</D:href></D:response>"
            b"<D:response><D:href>/dav/spaces/s-1/other</D:href></D:response>"
            b'<href xmlns="DAV:">/dav/spaces/s-1/a%20b/c?q=1</href>'
            b"<oc:href-ish>/dav/spaces/s-1/a%20b</oc:href-ish></D:multistatus>")
    out = rewrite_hrefs(body, origin, "/dav/spaces/r-9").decode()
    assert re.findall(r"<(?!/)[^>]*href[^>]*>([^<]*)<", out) == [
        "/dav/spaces/r-9/x%26y.txt", "/dav/spaces/r-9/", "/dav/spaces/s-1/other",
        "/dav/spaces/r-9/c?q=1", "/dav/spaces/s-1/a%20b"]
    assert origin.to_local("https://elsewhere.test/dav/spaces/s-1/a%20b", "/r") == \
        "https://elsewhere.test/dav/spaces/s-1/a%20b"


async def test_concurrent_first_requests_share_one_exchange(rig: Rig) -> None:
    seen = count_exchanges(rig)
    results = await asyncio.gather(*(rig.marie.request("PROPFIND", rig.home(), headers=DEPTH0)
                                     for _ in range(5)))
    assert [r.status_code for r in results] == [207] * 5
    assert seen == [rig.secret]


async def test_with_the_real_sending_side(zurich_paris: tuple[Running, Running]) -> None:
    """The same access, with the share made by a Graph invite and delivered by zurich."""
    zurich, paris = zurich_paris
    await zurich.add_user("einstein")
    await paris.add_user("marie")
    einstein, marie = zurich.client("einstein"), paris.client("marie")
    r = await ok(einstein.post("/graph/v1.0/drives", json={"name": "Physics"}), 201)
    project = r.json()["id"]
    await ok(einstein.request("MKCOL", f"/dav/spaces/{project}/papers"), 201)
    await ok(einstein.put(f"/dav/spaces/{project}/papers/a.txt", content=b"alpha"), 201)
    r = await ok(einstein.post(f"/graph/v1beta1/drives/{project}/root:/papers:/invite", json={
        "recipients": [{"objectId": ADDRESS, "@libre.graph.recipient.type": "federated"}],
        "roles": ["editor"]}), 200)
    share = r.json()["value"][0]["@libre.graph.drive.id"]
    async with asyncio.timeout(15):
        while not (drives := (await ok(marie.get(
                "/graph/v1.0/me/drives?$filter=driveType eq 'remote'"), 200)).json()["value"]):
            await asyncio.sleep(0.05)
    remote = drives[0]["id"]
    await ok(marie.post(f"/graph/v1beta1/drives/{remote}/accept"), 200)
    r = await ok(marie.request("PROPFIND", f"/dav/spaces/{remote}/", headers={"Depth": "1"}),
                 207)
    assert sorted(multistatus_hrefs(r.content)) == [f"/dav/spaces/{remote}/",
                                                    f"/dav/spaces/{remote}/a.txt"]
    await ok(marie.put(f"/dav/spaces/{remote}/b.txt", content=b"beta"), 201)
    assert (await ok(einstein.get(f"/dav/spaces/{project}/papers/b.txt"), 200)).content == b"beta"
    await ok(einstein.delete(
        f"/graph/v1beta1/drives/{share}/root/permissions/f:{ADDRESS}"), 204)
    # At once: whether or not paris has heard of it yet, zurich no longer lets her in.
    await ok(marie.get(f"/dav/spaces/{remote}/a.txt"), 404, 502)

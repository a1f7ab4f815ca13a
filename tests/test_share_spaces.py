"""Share spaces: a folder of a space shared as a space of its own (Graph invite on an item,
WebDAV through the share, root state following the folder, unsharing)."""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx
from dav_fixtures import multistatus_hrefs, raw_request

from registry.roles import ROLES

EDITOR, VIEWER = ROLES["editor"].id, ROLES["viewer"].id
FILEID = ('<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>'
          "<oc:fileid/><oc:permissions/></d:prop></d:propfind>")
WAIT_SECONDS = 15.0


def invitation(user_id: str, role: str) -> dict:
    return {"recipients": [{"objectId": user_id, "@libre.graph.recipient.type": "user"}],
            "roles": [role]}


async def project(client: httpx.AsyncClient, name: str) -> str:
    r = await client.post("/graph/v1.0/drives", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def ok(response: Awaitable[httpx.Response], *statuses: int) -> httpx.Response:
    r = await response
    assert r.status_code in statuses, (r.status_code, r.text)
    return r


async def props(client: httpx.AsyncClient, url: str) -> dict[str, str]:
    r = await ok(client.request("PROPFIND", url, headers={"Depth": "0"}, content=FILEID), 207)
    return dict(re.findall(r"<oc:(fileid|permissions)>([^<]*)</oc:", r.text))


async def etag(client: httpx.AsyncClient, drive_id: str) -> str:
    r = await ok(client.get(f"/graph/v1.0/drives/{drive_id}"), 200)
    return r.json()["root"]["eTag"]


async def wait_for(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll until ``check`` holds; the registry learns root changes asynchronously."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def changed(client: httpx.AsyncClient, drive_id: str, old: str) -> None:
    async def check() -> bool:
        return await etag(client, drive_id) != old

    await wait_for(check, f"the eTag of drive {drive_id} to change")


class Rig:
    """alice's project with /papers/a.txt, shared with bob."""

    def __init__(self, instance) -> None:  # type: ignore[no-untyped-def]
        self.instance = instance
        self.alice, self.bob = instance.client("alice"), instance.client("bob")
        self.carol = instance.client("carol")
        self.bob_id = instance.users["bob"][0]
        self.project = ""
        self.share = ""

    async def setup(self, role: str = "editor") -> dict:
        self.project = await project(self.alice, "Research")
        await ok(self.alice.request("MKCOL", self.dav("papers")), 201)
        await ok(self.alice.put(self.dav("papers/a.txt"), content=b"alpha"), 201)
        item = (await props(self.alice, self.dav("papers")))["fileid"]
        r = await ok(self.alice.post(
            f"/graph/v1beta1/drives/{self.project}/items/{item}/invite",
            json=invitation(self.bob_id, role)), 200)
        [perm] = r.json()["value"]
        self.share = perm["@libre.graph.drive.id"]
        return perm

    def dav(self, path: str = "") -> str:
        return f"/dav/spaces/{self.project}/{path}"

    def shared(self, path: str = "") -> str:
        return f"/dav/spaces/{self.share}/{path}"


async def test_share_folder_with_editor(instance) -> None:
    rig = Rig(instance)
    perm = await rig.setup("editor")
    assert perm["roles"] == [EDITOR]
    assert perm["grantedToV2"] == {"user": {"id": rig.bob_id, "displayName": "Bob"}}
    assert rig.share not in ("", rig.project)

    listed = (await ok(rig.bob.get("/graph/v1.0/me/drives"), 200)).json()["value"]
    [drive] = [d for d in listed if d["driveType"] == "share"]
    assert drive["id"] == rig.share and drive["name"] == "papers"
    assert urlsplit(drive["root"]["webDavUrl"]).path == f"/dav/spaces/{rig.share}"
    assert drive["webUrl"] == f"{instance.instance.settings.public_url}/#/spaces/{rig.share}"
    assert drive["root"]["remoteItem"]["parentReference"] == {"driveId": rig.project}
    assert rig.project not in {d["id"] for d in listed}
    assert {p["id"]: p["roles"] for p in drive["root"]["permissions"]} == {
        f"u:{instance.users['alice'][0]}": [ROLES["manager"].id], f"u:{rig.bob_id}": [EDITOR]}

    r = await ok(rig.bob.request("PROPFIND", rig.shared(), headers={"Depth": "1"}), 207)
    assert multistatus_hrefs(r.content) == [rig.shared(), rig.shared("a.txt")]
    assert (await ok(rig.bob.get(rig.shared("a.txt")), 200)).content == b"alpha"
    root = await props(rig.bob, rig.shared())
    assert root["fileid"] == (await props(rig.alice, rig.dav("papers")))["fileid"]
    assert "D" not in root["permissions"]  # the share root cannot be deleted or moved

    await ok(rig.bob.put(rig.shared("b.txt"), content=b"from bob"), 201)
    await ok(rig.bob.request("MKCOL", rig.shared("sub")), 201)
    assert (await ok(rig.alice.get(rig.dav("papers/b.txt")), 200)).content == b"from bob"
    await ok(rig.alice.request("PROPFIND", rig.dav("papers/sub"), headers={"Depth": "0"}), 207)

    # Nothing outside the folder can be named through the share.
    await ok(rig.bob.request("PROPFIND", rig.dav(), headers={"Depth": "0"}), 404)
    await ok(rig.bob.get(rig.dav("papers/a.txt")), 404)
    port = urlsplit(instance.url).port
    auth = "Basic " + base64.b64encode(f"bob:{instance.users['bob'][1]}".encode()).decode()
    for escape in ("%2e%2e/papers/a.txt", "..%2fpapers"):
        status, _ = await raw_request(port, (
            f"GET /dav/spaces/{rig.share}/{escape} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {auth}\r\nConnection: close\r\n\r\n"))
        assert status == 400, escape
    r = await rig.bob.request("MOVE", rig.shared("b.txt"), headers={
        "Destination": f"{instance.url}{rig.dav('b.txt')}"})
    assert r.status_code == 502, r.text
    assert (await ok(rig.alice.get(rig.dav("papers/b.txt")), 200)).content == b"from bob"

    # The share root is the folder itself: it cannot be deleted or moved through the share.
    await ok(rig.bob.delete(rig.shared()), 403)
    await ok(rig.bob.request("MOVE", rig.shared(), headers={
        "Destination": f"{instance.url}{rig.shared('x')}"}), 403)
    await ok(rig.alice.request("PROPFIND", rig.dav("papers"), headers={"Depth": "0"}), 207)

    # Moves inside the share stay inside the folder.
    await ok(rig.bob.request("MOVE", rig.shared("b.txt"), headers={
        "Destination": f"{instance.url}{rig.shared('sub/b.txt')}"}), 201)
    assert (await ok(rig.alice.get(rig.dav("papers/sub/b.txt")), 200)).content == b"from bob"

    # Someone the folder is not shared with sees nothing.
    await ok(rig.carol.request("PROPFIND", rig.shared(), headers={"Depth": "0"}), 404)
    await ok(rig.carol.get(f"/graph/v1.0/drives/{rig.share}"), 404)


async def test_share_etag_follows_the_folder_only(instance) -> None:
    rig = Rig(instance)
    await rig.setup()
    sentinel = await project(rig.alice, "Sentinel")
    await ok(rig.alice.put(rig.dav("outside.txt"), content=b"0"), 201)

    before = await etag(rig.bob, rig.share)
    await ok(rig.alice.put(rig.dav("papers/a.txt"), content=b"alpha, edited"), 204)
    await changed(rig.bob, rig.share, before)
    folder = await ok(rig.alice.request("PROPFIND", rig.dav("papers"),
                                        headers={"Depth": "0"}), 207)
    assert f'"{await etag(rig.bob, rig.share)}"' in folder.text  # the folder's ETag

    # An edit outside the folder: wait until a later change (to another space) has
    # reached the registry, so any wrong touch of the share would have arrived too.
    before = await etag(rig.bob, rig.share)
    project_before = await etag(rig.alice, rig.project)
    sentinel_before = await etag(rig.alice, sentinel)
    await ok(rig.alice.put(rig.dav("outside.txt"), content=b"1"), 204)
    await ok(rig.alice.put(f"/dav/spaces/{sentinel}/s.txt", content=b"s"), 201)
    await changed(rig.alice, sentinel, sentinel_before)
    await changed(rig.alice, rig.project, project_before)
    assert await etag(rig.bob, rig.share) == before


async def test_rename_keeps_the_share_and_sharing_again_reuses_it(instance) -> None:
    rig = Rig(instance)
    await rig.setup()
    await ok(rig.alice.request("MOVE", rig.dav("papers"), headers={
        "Destination": f"{instance.url}{rig.dav('articles')}"}), 201)
    assert (await ok(rig.bob.get(rig.shared("a.txt")), 200)).content == b"alpha"
    await ok(rig.bob.put(rig.shared("c.txt"), content=b"gamma"), 201)
    assert (await ok(rig.alice.get(rig.dav("articles/c.txt")), 200)).content == b"gamma"
    r = await ok(rig.bob.request("PROPFIND", rig.shared(), headers={"Depth": "1"}), 207)
    assert set(multistatus_hrefs(r.content)) == {
        rig.shared(), rig.shared("a.txt"), rig.shared("c.txt")}

    # Sharing the same folder again (here by path) adds members to the same share space.
    carol_id = instance.users["carol"][0]
    listed = {"$filter": "driveType eq 'share'"}
    before = (await ok(rig.alice.get("/graph/v1.0/me/drives", params=listed), 200)).json()
    assert carol_id not in str(before)  # and the listing keeps this drive's JSON
    r = await ok(rig.alice.post(f"/graph/v1beta1/drives/{rig.project}/root:/articles:/invite",
                                json=invitation(carol_id, "viewer")), 200)
    [perm] = r.json()["value"]
    assert perm["@libre.graph.drive.id"] == rig.share and perm["roles"] == [VIEWER]
    assert (await ok(rig.carol.get(rig.shared("c.txt")), 200)).content == b"gamma"
    await ok(rig.carol.put(rig.shared("d.txt"), content=b"no"), 403)
    shares = (await ok(rig.alice.get("/graph/v1.0/me/drives", params=listed), 200)).json()
    assert [d["id"] for d in shares["value"]] == [rig.share]
    # Its members changed, so the kept JSON was not served again.
    granted = [p["grantedToV2"]["user"]["id"] for p in shares["value"][0]["root"]["permissions"]]
    assert carol_id in granted


async def test_viewer_share_is_read_only(instance) -> None:
    rig = Rig(instance)
    perm = await rig.setup("viewer")
    assert perm["roles"] == [VIEWER]
    assert (await ok(rig.bob.get(rig.shared("a.txt")), 200)).content == b"alpha"
    await ok(rig.bob.put(rig.shared("b.txt"), content=b"x"), 403)
    await ok(rig.bob.put(rig.shared("a.txt"), content=b"x"), 403)
    await ok(rig.bob.delete(rig.shared("a.txt")), 403)
    assert (await ok(rig.alice.get(rig.dav("papers/a.txt")), 200)).content == b"alpha"


async def test_share_errors(instance) -> None:
    rig = Rig(instance)
    await rig.setup()
    base = f"/graph/v1beta1/drives/{rig.project}"
    carol_id = instance.users["carol"][0]
    file_id = (await props(rig.alice, rig.dav("papers/a.txt")))["fileid"]
    folder_id = (await props(rig.alice, rig.dav("papers")))["fileid"]
    root_id = (await props(rig.alice, rig.dav()))["fileid"]

    async def problem(r: Awaitable[httpx.Response], status: int, fragment: str) -> None:
        got = await ok(r, status)
        assert got.headers["content-type"] == "application/problem+json"
        assert fragment in got.json()["detail"], got.json()

    await problem(rig.alice.post(f"{base}/items/{file_id}/invite",
                                 json=invitation(carol_id, "viewer")), 400, "only folders")
    await problem(rig.alice.post(f"{base}/root:/papers/a.txt:/invite",
                                 json=invitation(carol_id, "viewer")), 400, "not a folder")
    await problem(rig.alice.post(f"{base}/root:/nowhere:/invite",
                                 json=invitation(carol_id, "viewer")), 400, "not a folder")
    await problem(rig.alice.post(f"{base}/items/{folder_id}/invite",
                                 json=invitation(carol_id, "manager")), 400, "viewers or editors")
    await problem(rig.alice.post(f"{base}/items/{root_id}/invite",
                                 json=invitation(carol_id, "viewer")), 400, "root/invite")
    await problem(rig.alice.post(f"{base}/items/no-such-item/invite",
                                 json=invitation(carol_id, "viewer")), 404, "no item")
    await problem(rig.alice.post(f"{base}/items/{folder_id}/invite",
                                 json=invitation("nobody", "viewer")), 400, "no such user")
    # Sharing is for managers of the space: an editor may not, a stranger learns nothing.
    await ok(rig.alice.post(f"{base}/root/invite", json=invitation(rig.bob_id, "editor")), 200)
    await problem(rig.bob.post(f"{base}/items/{folder_id}/invite",
                               json=invitation(carol_id, "viewer")), 403, "managers")
    await problem(rig.carol.post(f"{base}/items/{folder_id}/invite",
                                 json=invitation(carol_id, "viewer")), 404, "no drive")


async def test_unshare_closes_access_and_deletes_the_share(instance) -> None:
    rig = Rig(instance)
    await rig.setup()
    carol_id = instance.users["carol"][0]
    await ok(rig.alice.post(f"/graph/v1beta1/drives/{rig.project}/root:/papers:/invite",
                            json=invitation(carol_id, "editor")), 200)
    perms = f"/graph/v1beta1/drives/{rig.share}/root/permissions"

    await ok(rig.alice.delete(f"{perms}/u:{rig.bob_id}"), 204)
    await ok(rig.bob.get(rig.shared("a.txt")), 404)
    await ok(rig.bob.get(f"/graph/v1.0/drives/{rig.share}"), 404)
    # carol is still a recipient: the share stays.
    assert (await ok(rig.carol.get(rig.shared("a.txt")), 200)).content == b"alpha"

    await ok(rig.alice.delete(f"{perms}/u:{carol_id}"), 204)
    await ok(rig.carol.get(rig.shared("a.txt")), 404)
    # Only the sharer is left: the share space is gone, the folder is not.
    await ok(rig.alice.get(f"/graph/v1.0/drives/{rig.share}"), 404)
    await ok(rig.alice.get(rig.shared("a.txt")), 404)
    assert (await ok(rig.alice.get(rig.dav("papers/a.txt")), 200)).content == b"alpha"

    # Sharing the folder again makes a new share space.
    r = await ok(rig.alice.post(f"/graph/v1beta1/drives/{rig.project}/root:/papers:/invite",
                                json=invitation(rig.bob_id, "viewer")), 200)
    again = r.json()["value"][0]["@libre.graph.drive.id"]
    assert again != rig.share
    assert (await ok(rig.bob.get(f"/dav/spaces/{again}/a.txt"), 200)).content == b"alpha"


async def test_purging_the_base_space_removes_its_shares(instance) -> None:
    rig = Rig(instance)
    await rig.setup()
    await ok(rig.alice.delete(f"/graph/v1.0/drives/{rig.project}"), 204)
    await ok(rig.bob.get(rig.shared("a.txt")), 404)  # disabled base: data closed
    await ok(rig.alice.delete(f"/graph/v1.0/drives/{rig.project}",
                              headers={"Purge": "T"}), 204)
    await ok(rig.bob.get(f"/graph/v1.0/drives/{rig.share}"), 404)
    await ok(rig.alice.get(f"/graph/v1.0/drives/{rig.share}"), 404)

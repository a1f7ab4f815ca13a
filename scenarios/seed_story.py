"""``einstein-marie``: ARCHITECTURE.md §3, step by step, against a live rig.

Einstein (zurich.test) finds his IdP and registry, logs in, lists his spaces, creates a
folder and a file and shares the folder with marie@paris.test as editor. Paris registers a
pending remote space; Marie opens the link at zurich and signs in with her paris identity,
accepts at home, lists and syncs the remote space through paris (download, then an upload
Einstein sees), sees Einstein's edit as a new eTag without polling zurich, and loses access
at once when he unshares.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from .agent import Account, Site, World, form_fields, idp_form, login, ok
from .transcript import StepFailed, Transcript, expect

WAIT_SECONDS = 20.0
WEBFINGER_ISSUER = "http://openid.net/specs/connect/1.0/issuer"
WEBFINGER_INSTANCE = "http://webfinger.owncloud/rel/server-instance"


async def until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll ``check`` until it returns something truthy (federation is asynchronous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise StepFailed(f"gave up after {WAIT_SECONDS:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


def pick(world: World) -> tuple[Site, Account, Site, Account]:
    zurich, paris = world.sites["zurich.test"], world.sites["paris.test"]
    return zurich, zurich.accounts["einstein"], paris, paris.accounts["marie"]


async def einstein_marie(world: World, t: Transcript) -> None:
    zurich, einstein, paris, marie = pick(world)
    state: dict[str, Any] = {}
    # A rig keeps its data between runs: each run shares a folder of its own.
    folder = f"papers-{secrets.token_hex(3)}"

    async def discover() -> tuple[None, str]:
        async with world.client() as c:
            scheme = urlsplit(zurich.cloud).scheme  # https in a rig
            jrd = ok(await c.get(f"{scheme}://{zurich.domain}/.well-known/webfinger",
                                 params={"resource": f"acct:{einstein.address}"}), 200).json()
        links = {link["rel"]: link["href"] for link in jrd.get("links", [])}
        expect(links.get(WEBFINGER_ISSUER) == zurich.issuer,
               f"WebFinger names issuer {links.get(WEBFINGER_ISSUER)!r}")
        expect(links.get(WEBFINGER_INSTANCE) == zurich.cloud,
               f"WebFinger names registry {links.get(WEBFINGER_INSTANCE)!r}")
        return None, f"issuer {zurich.issuer}, registry {zurich.cloud}"

    async def einstein_login() -> tuple[str, str]:
        tokens = await login(world, zurich, einstein)
        return tokens["access_token"], "code + PKCE through the login form: access token"

    await t.step(f"discover {einstein.address}", discover)
    e_token = await t.step("Einstein logs in at his IdP", einstein_login)
    e = world.client(base_url=zurich.cloud, token=e_token)

    async def spaces() -> tuple[str, str]:
        drives = ok(await e.get("/graph/v1.0/me/drives"), 200).json()["value"]
        personal = [d for d in drives if d["driveType"] == "personal"]
        expect(len(personal) == 1, "no personal space")
        return personal[0]["id"], f"{len(drives)} space(s), personal {personal[0]['id']}"

    home = await t.step("he lists his spaces at zurich", spaces)
    dav = f"/dav/spaces/{home}"

    async def create() -> tuple[None, str]:
        ok(await e.request("MKCOL", f"{dav}/{folder}"), 201)
        ok(await e.put(f"{dav}/{folder}/relativity.txt", content=b"E = mc^2\n"), 201)
        return None, f"MKCOL /{folder}, PUT /{folder}/relativity.txt"

    await t.step("he creates a folder and a file", create)

    async def share() -> tuple[str, str]:
        r = ok(await e.post(f"/graph/v1beta1/drives/{home}/root:/{folder}:/invite", json={
            "recipients": [{"objectId": marie.address,
                            "@libre.graph.recipient.type": "federated"}],
            "roles": ["editor"]}), 200).json()["value"][0]
        share_id = r["@libre.graph.drive.id"]
        drive = ok(await e.get(f"/graph/v1.0/drives/{share_id}"), 200).json()
        expect(drive["driveType"] == "share", "the share is not a share space")
        state["link"] = f"{drive['webUrl']}/"
        return share_id, f"share space {share_id}, link {state['link']}"

    share_id = await t.step(f"he shares /{folder} with {marie.address} as editor", share)

    async def marie_login() -> tuple[str, str]:
        tokens = await login(world, paris, marie)
        return tokens["access_token"], "code + PKCE at her own IdP"

    m_token = await t.step("Marie logs in at paris", marie_login)
    m = world.client(base_url=paris.cloud, token=m_token)

    async def registered() -> tuple[dict[str, Any], str]:
        async def pending() -> dict[str, Any] | None:
            drives = ok(await m.get("/graph/v1.0/me/drives",
                                    params={"$filter": "driveType eq 'remote'"}), 200)
            found = [d for d in drives.json()["value"] if d["name"] == folder]
            return found[0] if found else None

        remote = await until(pending, "the share at paris")
        info = remote["@fedspace.remote"]
        expect(info["state"] == "pending", f"state {info['state']!r}")
        expect(info["webDavUrl"] == f"{zurich.cloud}/dav/spaces/{share_id}",
               f"remote WebDAV URL {info['webDavUrl']!r}")
        return remote, f"pending remote space {remote['id']} → {info['webDavUrl']}"

    remote = await t.step("paris registers a remote space for Marie", registered)
    await t.step("Marie opens the link at zurich and signs in with her paris IdP",
                 lambda: _web_login(world, zurich, paris, marie, share_id))
    await _finish(t, e, m, remote, share_id, f"{home}/{folder}", marie.address)


async def _web_login(world: World, zurich: Site, paris: Site, marie: Account,
                     share_id: str) -> tuple[None, str]:
    async with world.client() as browser:
        page = ok(await browser.get(f"{zurich.cloud}/login"), 200)
        fields = form_fields(page.text)
        r = ok(await browser.post(f"{zurich.cloud}/login", data={
            "csrf": fields["csrf"], "next": fields.get("next", "/"), "action": "address",
            "address": marie.address}), 303)
        authorize = r.headers["location"]
        expect(authorize.startswith(f"{paris.issuer}/"), f"sent to {authorize[:80]}")
        back = await idp_form(browser, authorize, marie.username, marie.password)
        ok(await browser.get(back), 303)
        drives = ok(await browser.get(f"{zurich.cloud}/graph/v1.0/me/drives"), 200)
        ids = [d["id"] for d in drives.json()["value"]]
        expect(share_id in ids, "her zurich session does not list the share")
    return None, f"zurich trusts {paris.issuer}; her session lists the share"


async def _finish(t: Transcript, e: httpx.AsyncClient, m: httpx.AsyncClient,
                  remote: dict[str, Any], share_id: str, folder: str, address: str) -> None:
    """Steps 9-12; ``folder`` is the shared folder's path from the space id on."""
    async def accept() -> tuple[None, str]:
        ok(await m.post(f"/graph/v1beta1/drives/{remote['id']}/accept"), 200)

        async def told() -> bool:
            shares = ok(await e.get("/api/v1/ocm/shares"), 200).json()["value"]
            return any(s["driveId"] == share_id and s["state"] == "accepted" for s in shares)

        await until(told, "zurich to hear of it")
        return None, "accepted at paris; zurich's share says accepted"

    await t.step("Marie accepts; zurich is notified", accept)
    url = f"/dav/spaces/{remote['id']}"

    async def sync() -> tuple[None, str]:
        drives = ok(await m.get("/graph/v1.0/me/drives"), 200).json()["value"]
        mine = [d for d in drives if d["id"] == remote["id"]]
        expect(len(mine) == 1, "the accepted remote space is not in her drive list")
        listing = ok(await m.request("PROPFIND", f"{url}/", headers={"Depth": "1"}), 207)
        expect("relativity.txt" in listing.text, "the PROPFIND does not list relativity.txt")
        got = ok(await m.get(f"{url}/relativity.txt"), 200)
        expect(got.content == b"E = mc^2\n", "downloaded content differs")
        ok(await m.put(f"{url}/radium.txt", content=b"Ra\n"), 201)
        seen = ok(await e.get(f"/dav/spaces/{folder}/radium.txt"), 200)
        expect(seen.content == b"Ra\n", "Einstein does not see her upload")
        return None, "listed, downloaded relativity.txt, uploaded radium.txt; Einstein sees it"

    await t.step("Marie's client syncs the remote space through paris", sync)

    async def edit() -> tuple[None, str]:
        ok(await e.put(f"/dav/spaces/{folder}/relativity.txt",
                       content=b"E = mc^2 (revised)\n"), 204)

        async def arrived() -> str | None:
            origin = ok(await e.get(f"/graph/v1.0/drives/{share_id}"), 200).json()
            here = ok(await m.get(f"/graph/v1.0/drives/{remote['id']}"), 200).json()
            same = here["root"]["eTag"] == origin["root"]["eTag"] != remote["root"]["eTag"]
            return origin["root"]["eTag"] if same else None

        etag = await until(arrived, "the new eTag at paris")
        return None, f"remote eTag at paris is now {etag}"

    await t.step("Einstein edits; the remote eTag changes at paris", edit)

    async def unshare() -> tuple[None, str]:
        ok(await e.delete(f"/graph/v1beta1/drives/{share_id}/root/permissions/"
                          f"f:{address}"), 204)
        r = await m.get(f"{url}/relativity.txt")
        expect(r.status_code in (403, 404, 502), f"still readable ({r.status_code})")

        async def gone() -> bool:
            drives = ok(await m.get("/graph/v1.0/me/drives", params={
                "$filter": "driveType eq 'remote'"}), 200).json()["value"]
            return all(d["id"] != remote["id"] for d in drives)

        await until(gone, "the remote space to go")
        return None, f"access refused at once ({r.status_code}); the remote space is gone"

    await t.step("Einstein unshares: Marie loses access at once", unshare)
    await e.aclose()
    await m.aclose()


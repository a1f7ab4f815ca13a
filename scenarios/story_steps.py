"""The steps the stories after ``einstein-marie`` share: users signing in, folders made and
shared over OCM, what each side sees of a share (its state at the origin, the remote space
at the recipient's instance, her role there) and the clean-up.

``Cast`` is Einstein (zurich.test) and Marie (paris.test) signed in at their own
instances; ``Share`` one folder Einstein shared with her. Every helper that acts is a
transcript step; the others only look.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx

from .agent import Account, Site, World, login, ok
from .seed_story import pick, until
from .transcript import Transcript, expect

# LibreGraph permissions name roles by their oCIS unified role ids, as clients know them.
ROLE_IDS = {"viewer": "a8d5fe5e-96e3-418d-825b-534dbdf22b99",
            "editor": "58c63c02-1d89-4572-916a-870abc5a1b7d"}
ROLE_NAMES = {role_id: name for name, role_id in ROLE_IDS.items()}
REMOTE_ONLY = {"$filter": "driveType eq 'remote'"}
_DAV_MESSAGE = re.compile(r"<s:message>(.*?)</s:message>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Cast:
    """The two users of a story, signed in at their own instances."""

    zurich: Site
    einstein: Account
    paris: Site
    marie: Account
    e: httpx.AsyncClient  # Einstein's client, at zurich
    m: httpx.AsyncClient  # Marie's client, at paris
    home: str  # Einstein's personal space

    def mine(self, path: str) -> str:
        """Einstein's WebDAV path of ``path`` in his personal space."""
        return f"/dav/spaces/{self.home}/{path}"

    @property
    def her_permission(self) -> str:
        """Marie's permission id on Einstein's share space (a federated member)."""
        return f"f:{self.marie.address}"


@dataclass(frozen=True, slots=True)
class Share:
    """A folder Einstein shared with Marie: the share space at zurich, the OCM share's id
    (its providerId, new for every offer) and the remote space paris made of it."""

    folder: str
    file: str
    share_id: str
    provider_id: str
    remote_id: str = ""

    @property
    def at_paris(self) -> str:
        """The remote space's WebDAV root at paris, where Marie's clients reach it."""
        return f"/dav/spaces/{self.remote_id}"


@asynccontextmanager
async def session(world: World, t: Transcript, site: Site, account: Account,
                  title: str) -> AsyncIterator[httpx.AsyncClient]:
    """A step: ``account`` logs in at its own IdP; a client of its cloud with the token,
    closed when the story ends, however it ends."""
    async def token() -> tuple[str, str]:
        tokens = await login(world, site, account)
        return tokens["access_token"], "code + PKCE through the login form: access token"

    access = await t.step(title, token)
    async with world.client(base_url=site.cloud, token=access) as client:
        yield client


async def personal_space(t: Transcript, client: httpx.AsyncClient, title: str) -> str:
    """A step: the user lists her spaces; the id of her personal space."""
    async def personal() -> tuple[str, str]:
        drives = ok(await client.get("/graph/v1.0/me/drives"), 200).json()["value"]
        found = [d["id"] for d in drives if d["driveType"] == "personal"]
        expect(len(found) == 1, "no personal space")
        return found[0], f"{len(drives)} space(s), personal {found[0]}"

    return await t.step(title, personal)


@asynccontextmanager
async def signed_in(world: World, t: Transcript) -> AsyncIterator[Cast]:
    """Einstein and Marie log in, each at the IdP of their own instance."""
    zurich, einstein, paris, marie = pick(world)
    async with AsyncExitStack() as stack:
        e = await stack.enter_async_context(
            session(world, t, zurich, einstein, "Einstein logs in at zurich"))
        home = await personal_space(t, e, "he lists his spaces")
        m = await stack.enter_async_context(
            session(world, t, paris, marie, "Marie logs in at paris"))
        yield Cast(zurich, einstein, paris, marie, e, m, home)


# -- what the users see -------------------------------------------------------------------


async def remote_spaces(c: Cast) -> list[dict[str, Any]]:
    """Marie's remote spaces at paris, pending and declined ones too (the list a client
    shows her to accept or decline from)."""
    return list(ok(await c.m.get("/graph/v1.0/me/drives", params=REMOTE_ONLY),
                   200).json()["value"])


async def outgoing(sharer: httpx.AsyncClient, *, provider_id: str | None = None,
                   recipient: str | None = None) -> dict[str, Any] | None:
    """The sharer's OCM share ``provider_id`` (or her latest to ``recipient``) as her
    instance lists it, with where its delivery stands."""
    shares = ok(await sharer.get("/api/v1/ocm/shares"), 200).json()["value"]
    found = [s for s in shares if s["providerId"] == provider_id or (
        recipient is not None and s["recipient"] == recipient)]
    return max(found, key=lambda s: s["sharedDateTime"]) if found else None


async def role_at_paris(c: Cast, remote_id: str) -> str | None:
    """Marie's role in her remote space, as paris shows it in the drive's root
    permissions (she is its only member)."""
    drive = ok(await c.m.get(f"/graph/v1.0/drives/{remote_id}"), 200).json()
    roles = {r for p in drive["root"]["permissions"] for r in p["roles"]}
    return ROLE_NAMES.get(roles.pop()) if len(roles) == 1 else None


def dav_message(response: httpx.Response) -> str:
    """The ``s:message`` of a WebDAV error body: what a client would show the user."""
    found = _DAV_MESSAGE.search(response.text)
    return found[1].strip() if found else response.text[:200]


def problem_detail(response: httpx.Response) -> str:
    """The ``detail`` of a problem+json answer."""
    try:
        return str(response.json().get("detail") or response.text[:200])
    except ValueError:
        return response.text[:200]


# -- steps more than one story takes ------------------------------------------------------


def invitation(address: str, role: str) -> dict[str, Any]:
    """A Graph invite body for a user of another instance."""
    return {"recipients": [{"objectId": address, "@libre.graph.recipient.type": "federated"}],
            "roles": [role]}


async def create_folder(t: Transcript, client: httpx.AsyncClient, home: str, stem: str,
                        file: str, content: bytes, who: str = "Einstein") -> str:
    """A new folder with one file in ``home``; its name is fresh, as a rig outlives each
    run."""
    folder = f"{stem}-{secrets.token_hex(3)}"

    async def create() -> tuple[None, str]:
        ok(await client.request("MKCOL", f"/dav/spaces/{home}/{folder}"), 201)
        ok(await client.put(f"/dav/spaces/{home}/{folder}/{file}", content=content), 201)
        return None, f"MKCOL /{folder}, PUT /{folder}/{file}"

    await t.step(f"{who} creates a folder and a file", create)
    return folder


async def offer(t: Transcript, c: Cast, folder: str, file: str, role: str, recipient: str,
                title: str) -> Share:
    """Einstein shares ``folder`` with ``recipient`` (a federated recipient) as ``role``."""
    async def share() -> tuple[Share, str]:
        granted = ok(await c.e.post(f"/graph/v1beta1/drives/{c.home}/root:/{folder}:/invite",
                                    json=invitation(recipient, role)), 200).json()["value"][0]
        expect(granted["id"] == f"f:{recipient}", f"permission {granted['id']!r}")
        expect(granted["roles"] == [ROLE_IDS[role]], f"roles {granted['roles']!r}")
        state = granted["@fedspace.share"]
        expect(state["state"] in ("queued", "delivered"), f"the share is {state['state']!r}")
        made = Share(folder, file, granted["@libre.graph.drive.id"], state["providerId"])
        return made, (f"share space {made.share_id}, OCM share {made.provider_id} "
                      f"({state['state']})")

    return await t.step(title, share)


async def arrival(t: Transcript, c: Cast, share: Share, role: str,
                  title: str = "paris registers a pending remote space for Marie",
                  known: frozenset[str] = frozenset()) -> Share:
    """Wait for paris to register the share as a pending remote space (one not among
    ``known``) pointing at the share space, with Marie's role."""
    async def registered() -> tuple[Share, str]:
        async def pending() -> dict[str, Any] | None:
            return next((d for d in await remote_spaces(c)
                         if d["name"] == share.folder and d["id"] not in known
                         and d["@fedspace.remote"]["state"] == "pending"), None)

        remote = await until(pending, "the share at paris")
        url = remote["@fedspace.remote"]["webDavUrl"]
        expect(url == f"{c.zurich.cloud}/dav/spaces/{share.share_id}", f"remote URL {url!r}")
        held = await role_at_paris(c, remote["id"])
        expect(held == role, f"her role at paris is {held!r}, not {role}")
        return replace(share, remote_id=remote["id"]), (
            f"pending remote space {remote['id']} ({held}) → {url}")

    return await t.step(title, registered)


async def share_with_marie(t: Transcript, c: Cast, stem: str, file: str, content: bytes,
                           role: str, recipient: str | None = None) -> Share:
    """Einstein creates a folder with a file and shares it; paris registers it pending."""
    folder = await create_folder(t, c.e, c.home, stem, file, content)
    address = recipient or c.marie.address
    share = await offer(t, c, folder, file, role, address,
                        f"he shares /{folder} with {address} as {role}")
    return await arrival(t, c, share, role)


async def accept(t: Transcript, c: Cast, share: Share) -> None:
    """Marie accepts at home; paris tells zurich (SHARE_ACCEPTED)."""
    async def accepted() -> tuple[None, str]:
        drive = ok(await c.m.post(f"/graph/v1beta1/drives/{share.remote_id}/accept"),
                   200).json()
        expect(drive["@fedspace.remote"]["state"] == "accepted", "paris did not record it")

        async def told() -> bool:
            found = await outgoing(c.e, provider_id=share.provider_id)
            return found is not None and found["state"] == "accepted"

        await until(told, "zurich to hear of it")
        return None, "accepted at paris; zurich's share says accepted"

    await t.step("Marie accepts; zurich is notified", accepted)


async def read_through_paris(t: Transcript, c: Cast, share: Share, content: bytes) -> None:
    """Marie downloads the shared file through her own instance (the home gateway)."""
    async def read() -> tuple[None, str]:
        got = ok(await c.m.get(f"{share.at_paris}/{share.file}"), 200)
        expect(got.content == content, "downloaded content differs")
        return None, f"GET {share.file} through paris: {len(got.content)} bytes"

    await t.step("Marie reads the file through paris", read)


async def change_role(t: Transcript, c: Cast, share: Share, role: str, title: str) -> None:
    """Einstein changes Marie's role at zurich; paris learns it (RESHARE_CHANGE_PERMISSION)
    and shows it on her remote space."""
    async def change() -> tuple[None, str]:
        entry = ok(await c.e.patch(
            f"/graph/v1beta1/drives/{share.share_id}/root/permissions/{c.her_permission}",
            json={"roles": [role]}), 200).json()
        expect(entry["roles"] == [ROLE_IDS[role]], f"zurich answered roles {entry['roles']}")

        async def heard() -> bool:
            return await role_at_paris(c, share.remote_id) == role

        await until(heard, f"paris to show her the {role} role")
        return None, f"PATCH {c.her_permission} → {role}; her remote space at paris says {role}"

    await t.step(title, change)


async def unshare(t: Transcript, c: Cast, share: Share) -> None:
    """Einstein removes Marie's permission (the story's clean-up); paris drops the space."""
    async def removed() -> tuple[None, str]:
        ok(await c.e.delete(f"/graph/v1beta1/drives/{share.share_id}/root/permissions/"
                            f"{c.her_permission}"), 204)

        async def gone() -> bool:
            return all(d["id"] != share.remote_id for d in await remote_spaces(c))

        await until(gone, "the remote space to go")
        return None, f"permission {c.her_permission} removed; remote space gone at paris"

    await t.step(f"Einstein unshares /{share.folder}", removed)

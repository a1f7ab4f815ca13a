"""Stories about the other instance rather than the other user.

* ``peer-down``: paris is down while Einstein shares; zurich keeps the share queued and
  retries on its own, and the share reaches Marie once paris is back.
* ``untrusted-peer``: a domain outside the rig's circle of trust is refused both ways —
  Einstein cannot share with its users, its users' tokens are not accepted at zurich, and
  its shares are refused by zurich — each with a reason a person can act on, and nothing
  stored.
"""

from __future__ import annotations

from typing import Any

import httpx

from .agent import Site, World, ok
from .seed_story import until
from .story_steps import (
    accept,
    arrival,
    create_folder,
    invitation,
    offer,
    outgoing,
    personal_space,
    problem_detail,
    read_through_paris,
    session,
    signed_in,
    unshare,
)
from .transcript import StepFailed, Transcript, expect


async def answers(world: World, site: Site) -> bool:
    """Whether ``site``'s cloud accepts connections."""
    async with world.client() as c:
        try:
            await c.get(f"{site.cloud}/healthz")
        except httpx.TransportError:
            return False
    return True


async def peer_down(world: World, t: Transcript) -> None:
    """A share made while the recipient's instance is down arrives once it is back."""
    async with signed_in(world, t) as c:
        folder = await create_folder(t, c.e, c.home, "outage", "note.txt", b"hello\n")

        async def down() -> tuple[None, str]:
            message = await world.stop(c.paris.domain)
            expect(not await answers(world, c.paris), f"{c.paris.cloud} still answers")
            return None, f"{message}: {c.paris.cloud} refuses connections"

        await t.step(f"{c.paris.domain} goes down", down)
        try:
            share = await offer(t, c, folder, "note.txt", "editor", c.marie.address,
                                f"Einstein shares /{folder} with {c.marie.address}")

            async def retrying() -> tuple[None, str]:
                async def failed_once() -> dict[str, Any] | None:
                    found = await outgoing(c.e, provider_id=share.provider_id)
                    delivery = (found or {}).get("delivery") or {}
                    planned = delivery.get("lastError") and delivery.get("nextAttemptDateTime")
                    return found if planned else None

                found = await until(failed_once, "a failed delivery attempt")
                expect(found["state"] == "queued", f"the share is {found['state']!r}")
                d = found["delivery"]
                return None, (f"queued after {d['attempts']} attempt(s): {d['lastError']}; "
                              f"next at {d['nextAttemptDateTime']}")

            await t.step("zurich keeps the share queued and plans a retry", retrying)

            async def up() -> tuple[None, str]:
                return None, await world.start(c.paris.domain)

            await t.step(f"{c.paris.domain} comes back", up)
        finally:
            if not await answers(world, c.paris):  # never leave the rig broken
                await world.start(c.paris.domain)

        async def delivered() -> tuple[None, str]:
            async def arrived() -> dict[str, Any] | None:
                found = await outgoing(c.e, provider_id=share.provider_id)
                return found if found and found["state"] == "delivered" else None

            attempts = (await until(arrived, "the delivery"))["delivery"]["attempts"]
            return None, f"delivered after {attempts} attempts; nobody retried by hand"

        await t.step("zurich delivers the share on its next attempt", delivered)
        share = await arrival(t, c, share, "editor")
        await accept(t, c, share)

        await read_through_paris(t, c, share, b"hello\n")
        await unshare(t, c, share)


def stranger(world: World) -> Site:
    """The rig's first untrusted domain."""
    found = [s for s in world.sites.values() if not s.trusted]
    if not found:
        raise StepFailed("this rig has no untrusted domain: start it with "
                         "`fedspace rig up --untrusted rogue.test`")
    return found[0]


async def untrusted_peer(world: World, t: Transcript) -> None:
    """A domain outside the circle of trust is refused, in both directions."""
    zurich = world.sites["zurich.test"]
    einstein = zurich.accounts["einstein"]

    async def outsider() -> tuple[Site, str]:
        site = stranger(world)
        return site, f"{site.domain} is not in zurich's circle of trust"

    rogue = await t.step("the rig runs a domain nobody trusts", outsider)
    them = next(iter(rogue.accounts.values()))
    async with session(world, t, zurich, einstein, "Einstein logs in at zurich") as e:
        home = await personal_space(t, e, "he lists his spaces")
        folder = await create_folder(t, e, home, "secrets", "note.txt", b"hush\n")

        async def refused_share() -> tuple[None, str]:
            r = ok(await e.post(f"/graph/v1beta1/drives/{home}/root:/{folder}:/invite",
                                json=invitation(them.address, "editor")), 403)
            detail = problem_detail(r)
            expect(rogue.domain in detail, f"the refusal does not say why: {detail!r}")
            expect(await outgoing(e, recipient=them.address) is None, "a share was stored")
            drives = ok(await e.get("/graph/v1.0/me/drives"), 200).json()["value"]
            expect(not any(d["driveType"] == "share" and d["name"] == folder for d in drives),
                   "a share space was left behind")
            return None, f"403 {detail!r}; nothing stored"

        await t.step(f"Einstein tries to share /{folder} with {them.address}", refused_share)
        async with session(world, t, rogue, them,
                           f"{them.username} logs in at {rogue.domain}") as x:
            await _from_the_stranger(t, e, x, rogue, einstein.address)


async def _from_the_stranger(t: Transcript, e: httpx.AsyncClient,
                             x: httpx.AsyncClient, rogue: Site, einstein: str) -> None:
    async def token_refused() -> tuple[None, str]:
        r = ok(await e.get("/graph/v1.0/me/drives",
                           headers={"Authorization": x.headers["Authorization"]}), 401)
        return None, f"401 {problem_detail(r)!r}"

    await t.step(f"a {rogue.domain} token is refused at zurich", token_refused)
    home = await personal_space(t, x, f"the {rogue.domain} user lists her spaces")
    folder = await create_folder(t, x, home, "offer", "note.txt", b"psst\n",
                                 f"the {rogue.domain} user")

    async def share() -> tuple[str, str]:
        r = ok(await x.post(f"/graph/v1beta1/drives/{home}/root:/{folder}:/invite",
                            json=invitation(einstein, "editor")), 200)
        return r.json()["value"][0]["@libre.graph.drive.id"], f"{rogue.domain} queues it"

    share_id = await t.step(f"she shares /{folder} with {einstein}", share)

    async def refused() -> tuple[None, str]:
        async def failed() -> dict[str, Any] | None:
            found = await outgoing(x, recipient=einstein)
            return found if found and found["state"] == "failed" else None

        d = (await until(failed, "zurich's answer"))["delivery"]
        expect(d["lastStatus"] == 403, f"zurich answered {d['lastStatus']}")
        expect("not on the allowlist" in (d["lastError"] or ""), f"reason {d['lastError']!r}")
        return None, f"failed at once, not retried: {d['lastStatus']} {d['lastError']!r}"

    await t.step("zurich refuses the share; the sender sees why", refused)

    async def nothing() -> tuple[None, str]:
        drives = ok(await e.get("/graph/v1.0/me/drives",
                                params={"$filter": "driveType eq 'remote'"}), 200)
        expect(all(d["name"] != folder for d in drives.json()["value"]),
               "zurich registered the share")
        ok(await x.delete(f"/graph/v1beta1/drives/{share_id}/root/permissions/"
                          f"f:{einstein}"), 204)
        return None, "no remote space at zurich; the sender withdrew her failed share"

    await t.step("Einstein has nothing from the stranger", nothing)

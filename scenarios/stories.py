"""More user stories of ARCHITECTURE.md §3 against a live rig, after ``einstein-marie``.

Einstein (zurich.test) shares folders with Marie (paris.test) over OCM; each story plays
one thing that can happen to such a share, as the two users and their clients see it:

* ``decline``: Marie declines. Zurich's share list says so and her permission goes, paris
  keeps the share only as a declined offer, her access through paris is refused, and
  Einstein can offer the folder again — it arrives at paris as a new pending share.
* ``permission-change``: shared as viewer, Marie reads but cannot upload (paris refuses
  before anything reaches zurich); Einstein makes her an editor, paris hears of it
  (RESHARE_CHANGE_PERMISSION) and her upload goes through; back to viewer, and it is
  refused again.
* ``invite-flow``: the OCM invite flow first — Einstein invites, Marie accepts at paris,
  both list each other as contacts, the token works once — then a share with the contact.

A rig keeps its data between runs, so each run shares folders of its own, and every story
ends by unsharing.
"""

from __future__ import annotations

from typing import Any

from .agent import World, ok
from .seed_story import until
from .story_steps import (
    accept,
    arrival,
    change_role,
    dav_message,
    offer,
    outgoing,
    problem_detail,
    read_through_paris,
    remote_spaces,
    share_with_marie,
    signed_in,
    unshare,
)
from .transcript import Transcript, expect


async def decline(world: World, t: Transcript) -> None:
    """A declined share ends the recipient's access on both sides and can be offered anew."""
    async with signed_in(world, t) as c:
        share = await share_with_marie(t, c, "draft", "draft.txt", b"unfinished\n", "editor")

        async def declined_at_paris() -> tuple[None, str]:
            drive = ok(await c.m.post(f"/graph/v1beta1/drives/{share.remote_id}/decline"),
                       200).json()
            state = drive["@fedspace.remote"]["state"]
            expect(state == "declined", f"paris says {state!r}")
            return None, f"POST …/drives/{share.remote_id}/decline: the space is {state}"

        await t.step("Marie declines the share", declined_at_paris)

        async def declined_at_zurich() -> tuple[None, str]:
            async def told() -> bool:
                found = await outgoing(c.e, provider_id=share.provider_id)
                return found is not None and found["state"] == "declined"

            await until(told, "zurich to hear she declined")
            permissions = ok(await c.e.get(
                f"/graph/v1beta1/drives/{share.share_id}/root/permissions"), 200).json()["value"]
            ids = [p["id"] for p in permissions]
            expect(c.her_permission not in ids, "her permission is still on the share")
            return None, (f"share {share.provider_id} declined; permissions left: "
                          f"{', '.join(ids)}")

        await t.step("zurich's share list says declined and her permission is gone",
                     declined_at_zurich)

        async def kept_as_declined() -> tuple[None, str]:
            remote = [d for d in await remote_spaces(c) if d["id"] == share.remote_id]
            expect(len(remote) == 1, "the declined offer is not listed among remote spaces")
            state = remote[0]["@fedspace.remote"]["state"]
            expect(state == "declined", f"listed as {state!r}")
            drives = ok(await c.m.get("/graph/v1.0/me/drives"), 200).json()["value"]
            expect(all(d["id"] != share.remote_id for d in drives),
                   "the declined space is among her drives")
            again = ok(await c.m.post(f"/graph/v1beta1/drives/{share.remote_id}/accept"), 409)
            return None, (f"listed as declined among remote spaces only; accepting it now: "
                          f"409 {problem_detail(again)!r}")

        await t.step("paris keeps it only as a declined offer", kept_as_declined)

        async def locked_out() -> tuple[None, str]:
            got = ok(await c.m.get(f"{share.at_paris}/{share.file}"), 404)
            listed = ok(await c.m.request("PROPFIND", f"{share.at_paris}/",
                                          headers={"Depth": "1"}), 404)
            put = ok(await c.m.put(f"{share.at_paris}/radium.txt", content=b"Ra\n"), 404)
            return None, (f"GET, PROPFIND, PUT: {got.status_code}, {listed.status_code}, "
                          f"{put.status_code} ({dav_message(got)})")

        await t.step("Marie cannot reach the files through paris", locked_out)
        again = await offer(t, c, share.folder, share.file, "editor", c.marie.address,
                            f"Einstein shares /{share.folder} again")
        expect(again.provider_id != share.provider_id, "the new offer reuses the old share")
        again = await arrival(t, c, again, "editor", "a new pending share arrives at paris",
                              known=frozenset({share.remote_id}))
        await unshare(t, c, again)


async def permission_change(world: World, t: Transcript) -> None:
    """A role change at the origin reaches the recipient's instance, which enforces it."""
    async with signed_in(world, t) as c:
        share = await share_with_marie(t, c, "notes", "notes.txt", b"Po, Ra\n", "viewer")
        await accept(t, c, share)

        async def viewer() -> tuple[None, str]:
            got = ok(await c.m.get(f"{share.at_paris}/{share.file}"), 200)
            expect(got.content == b"Po, Ra\n", "downloaded content differs")
            refused = ok(await c.m.put(f"{share.at_paris}/polonium.txt", content=b"Po\n"), 403)
            message = dav_message(refused)
            expect("role" in message, f"the refusal does not say why: {message!r}")
            ok(await c.e.get(c.mine(f"{share.folder}/polonium.txt")), 404)
            return None, (f"GET {share.file}: 200; PUT polonium.txt: 403 {message!r}, "
                          "nothing reached zurich")

        await t.step("Marie reads through paris, but paris refuses her upload", viewer)
        await change_role(t, c, share, "editor", "Einstein makes her an editor; paris hears of it")

        async def upload() -> tuple[None, str]:
            ok(await c.m.put(f"{share.at_paris}/polonium.txt", content=b"Po\n"), 201)
            seen = ok(await c.e.get(c.mine(f"{share.folder}/polonium.txt")), 200)
            expect(seen.content == b"Po\n", "Einstein does not see her upload")
            return None, "PUT polonium.txt through paris: 201; Einstein downloads it"

        await t.step("her upload now goes through", upload)
        await change_role(t, c, share, "viewer",
                          "Einstein makes her a viewer again; paris hears of it")

        async def refused_again() -> tuple[None, str]:
            refused = ok(await c.m.put(f"{share.at_paris}/polonium.txt", content=b"Po 84\n"),
                         403)
            seen = ok(await c.e.get(c.mine(f"{share.folder}/polonium.txt")), 200)
            expect(seen.content == b"Po\n", "her refused upload changed the file")
            return None, f"PUT polonium.txt: 403 {dav_message(refused)!r}; the file is unchanged"

        await t.step("her next upload is refused again", refused_again)
        await unshare(t, c, share)


async def invite_flow(world: World, t: Transcript) -> None:
    """Contacts made through an OCM invite, then a share with the new contact."""
    async with signed_in(world, t) as c:
        async def invite() -> tuple[dict[str, Any], str]:
            made = ok(await c.e.post("/api/v1/ocm/invites",
                                     json={"description": "for Marie"}), 201).json()
            expect(made["providerDomain"] == c.zurich.domain,
                   f"the invite names provider {made['providerDomain']!r}")
            return made, (f"invite {made['id']}, token {made['token'][:6]}… (shown once), "
                          f"provider {made['providerDomain']}, until "
                          f"{made['expirationDateTime']}")

        made = await t.step("Einstein creates an invite at zurich", invite)
        token = {"token": made["token"], "providerDomain": made["providerDomain"]}

        async def accept_invite() -> tuple[None, str]:
            contact = ok(await c.m.post("/api/v1/ocm/invites/accept", json=token), 201).json()
            expect(contact["address"] == c.einstein.address, f"contact {contact['address']!r}")
            return None, (f"paris sent zurich the signed invite-accepted; her new contact "
                          f"{contact['address']} ({contact['name']})")

        await t.step("Marie accepts it at paris", accept_invite)

        async def contacts() -> tuple[str, str]:
            his = ok(await c.e.get("/api/v1/ocm/contacts"), 200).json()["value"]
            hers = ok(await c.m.get("/api/v1/ocm/contacts"), 200).json()["value"]
            expect(c.marie.address in [x["address"] for x in his],
                   f"zurich does not list {c.marie.address}")
            expect(c.einstein.address in [x["address"] for x in hers],
                   f"paris does not list {c.einstein.address}")
            invites = ok(await c.e.get("/api/v1/ocm/invites"), 200).json()["value"]
            mine = next((i for i in invites if i["id"] == made["id"]), None)
            expect(mine is not None and mine["state"] == "accepted"
                   and mine["acceptedBy"] == c.marie.address,
                   f"his invite reads {mine!r}")
            return c.marie.address, (f"zurich lists {c.marie.address}, paris lists "
                                     f"{c.einstein.address}; his invite: accepted by "
                                     f"{c.marie.address}")

        contact = await t.step("they list each other as contacts", contacts)

        async def twice() -> tuple[None, str]:
            replay = ok(await c.m.post("/api/v1/ocm/invites/accept", json=token), 409)
            detail = problem_detail(replay)
            expect("already accepted" in detail, f"the refusal says {detail!r}")
            return None, f"409 {detail!r}"

        await t.step("the same token cannot be used twice", twice)
        share = await share_with_marie(t, c, "letters", "letter.txt", b"Dear Marie,\n",
                                       "viewer", recipient=contact)
        await accept(t, c, share)

        await read_through_paris(t, c, share, b"Dear Marie,\n")
        await unshare(t, c, share)

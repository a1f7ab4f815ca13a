"""Federated guests: users of a trusted foreign issuer, provisioned on first sight."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from test_tokens_bearer import DOMAIN, SigningIdP, audience, bearer

from discovery.guests import guest_address


@pytest.fixture
async def idp() -> AsyncIterator[SigningIdP]:
    async with SigningIdP().running() as running:
        yield running


@pytest.mark.parametrize(("claims", "address"), [
    # A verified email in the issuer's own domain wins.
    ({"email": "Marie.Curie@Paris.test", "email_verified": True,
      "preferred_username": "marie"}, "marie.curie@paris.test"),
    # Unverified, or in another domain: the IdP cannot vouch for it.
    ({"email": "marie@paris.test", "email_verified": False,
      "preferred_username": "marie"}, "marie@paris.test"),
    ({"email": "marie@zurich.test", "email_verified": True,
      "preferred_username": "mc"}, "mc@paris.test"),
    ({"email": "marie@paris.test", "email_verified": "true"}, "sub-1@paris.test"),
    # preferred_username with an '@' (an address of who knows where): fall back to sub.
    ({"preferred_username": "marie@zurich.test"}, "sub-1@paris.test"),
    ({}, "sub-1@paris.test"),
])
def test_guest_address(claims: dict, address: str) -> None:
    assert guest_address(claims, "sub-1", DOMAIN) == address


async def test_guest_is_provisioned_once_and_sees_only_what_is_shared(
        start_instance, idp: SigningIdP) -> None:
    running = await start_instance(
        outbound={"allow_http": True, "allow_private_addresses": True},
        discovery={"trusted_issuers": [{"issuer": idp.issuer, "domain": DOMAIN}]})
    await running.add_user("alice")
    discovery = running.instance.ctx.components["discovery"]
    client, aud = running.client(None), audience(running)
    claims = {"sub": "m-42", "name": "Marie Curie", "preferred_username": "marie"}

    r = await client.get("/graph/v1.0/me/drives", headers=bearer(idp.token(aud, **claims)))
    assert r.status_code == 200, r.text
    assert r.json()["value"] == []  # no personal space for guests
    # Same (iss, sub) with a new token: the same guest.
    await client.get("/graph/v1.0/me/drives", headers=bearer(idp.token(aud, **claims)))
    guest = await discovery.guests.sign_in(idp.issuer, "m-42", claims, DOMAIN)
    assert (guest.address, guest.display_name) == ("marie@paris.test", "Marie Curie")
    # Another issuer's user with the same sub is someone else.
    assert guest.principal_id != (
        await discovery.guests.sign_in("https://idp.other.test", "m-42", {}, DOMAIN)
    ).principal_id
    assert (await discovery.guests.get(guest.principal_id)) == guest

    # Alice shares a project with the guest's principal id.
    alice = running.client("alice")
    drive = (await alice.post("/graph/v1.0/drives", json={"name": "Radium"})).json()
    r = await alice.put(f"/dav/spaces/{drive['id']}/notes.txt", content=b"polonium")
    assert r.status_code in (201, 204), r.text
    r = await alice.post(f"/graph/v1beta1/drives/{drive['id']}/root/invite", json={
        "recipients": [{"objectId": guest.principal_id}], "roles": ["viewer"]})
    assert r.status_code == 200, r.text
    granted = r.json()["value"][0]["grantedToV2"]["user"]
    assert granted == {"id": guest.principal_id, "displayName": "Marie Curie"}

    token = bearer(idp.token(aud, **claims))
    listed = (await client.get("/graph/v1.0/me/drives", headers=token)).json()["value"]
    assert [d["id"] for d in listed] == [drive["id"]]
    r = await client.get(f"/dav/spaces/{drive['id']}/notes.txt", headers=token)
    assert (r.status_code, r.content) == (200, b"polonium")
    # A viewer cannot write, and a guest cannot create spaces.
    r = await client.put(f"/dav/spaces/{drive['id']}/x.txt", content=b"x", headers=token)
    assert r.status_code == 403, r.text
    r = await client.post("/graph/v1.0/drives", json={"name": "Mine"}, headers=token)
    assert r.status_code == 403, r.text

"""Seed step 5: signing in at zurich with zurich's own IdP and with paris's (two instances,
real sockets, a scripted browser that follows no redirect by itself)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
from argon2 import PasswordHasher
from conftest import Running
from idp_fixtures import PASSWORD, form_fields
from sqlalchemy import select

from discovery.models import web_sessions
from discovery.settings import OidcClient, RelyingParty

OUTBOUND = {"allow_http": True, "allow_private_addresses": True}
RP_SECRET = "zurich-at-paris-secret"


@dataclass
class Pair:
    zurich: Running
    paris: Running
    paris_issuer: str

    def browser(self) -> httpx.AsyncClient:
        c = httpx.AsyncClient(timeout=30, follow_redirects=False)
        self.zurich.clients.append(c)  # closed by start_instance
        return c

    @property
    def discovery(self):  # type: ignore[no-untyped-def]
        return self.zurich.instance.ctx.components["discovery"]

    async def trust_paris(self) -> None:
        await self.discovery.trust.add(self.paris_issuer, "paris.test")


@pytest.fixture(name="paris")
async def paris_instance(start_instance: Callable) -> Running:
    """paris.test, with a database of its own."""
    return await start_instance("paris", domain="paris.test", outbound=OUTBOUND)


async def start_pair(start_instance: Callable, paris: Running, *, trusted: bool = True,
                     registered: bool = True) -> Pair:
    """zurich.test and paris.test; WebFinger for @paris.test reaches paris via the name map.
    URLs are known only after start, so the cross-registrations are added then (settings
    objects are live)."""
    zurich = await start_instance("zurich", domain="zurich.test",
                                  outbound={**OUTBOUND, "hosts": {}})
    zs, ps = zurich.instance.settings, paris.instance.settings
    zs.outbound.hosts["paris.test"] = urlsplit(paris.url).netloc
    ps.discovery.clients.append(OidcClient(
        client_id="zurich", public=False, redirect_uris=[f"{zurich.url}/oidc-callback"],
        secret_hash=PasswordHasher().hash(RP_SECRET)))
    if registered:
        zs.discovery.relying_parties.append(RelyingParty(
            issuer=ps.discovery.issuer, client_id="zurich", client_secret=RP_SECRET))
    directory = paris.instance.ctx.components["discovery"].directory
    await directory.add_user("marie", display_name="Marie Curie", password=PASSWORD)
    zdir = zurich.instance.ctx.components["discovery"].directory
    await zurich.add_user("einstein")
    await zdir.set_password("einstein", PASSWORD)
    pair = Pair(zurich, paris, ps.discovery.issuer)
    if trusted:
        await pair.trust_paris()
    return pair


async def start_login(browser: httpx.AsyncClient, cloud: str, address: str | None,
                      next_path: str | None = None) -> httpx.Response:
    """GET /login, submit the address (None: "sign in with this instance's account")."""
    page = await browser.get(f"{cloud}/login", params={"next": next_path} if next_path else {})
    assert page.status_code == 200, page.text
    fields = form_fields(page.text)
    data = {"csrf": fields["csrf"], "next": fields["next"]}
    data.update({"action": "address", "address": address} if address else {"action": "own"})
    return await browser.post(f"{cloud}/login", data=data)


async def idp_login(browser: httpx.AsyncClient, authorize_url: str, username: str,
                    password: str = PASSWORD) -> httpx.Response:
    """The IdP's login form, filled in; the response is the redirect back (or a page)."""
    page = await browser.get(authorize_url)
    if page.status_code == 302:  # still signed in at the IdP: straight back
        return page
    assert page.status_code == 200, page.text
    fields = form_fields(page.text)
    issuer = authorize_url.split("/authorize?", 1)[0]
    return await browser.post(f"{issuer}/login", data={
        "authz": fields["authz"], "csrf": fields["csrf"],
        "username": username, "password": password})


async def callback_url(browser: httpx.AsyncClient, cloud: str, address: str | None,
                       username: str, *, tamper: Callable[[str], str] = lambda u: u) -> str:
    """Everything up to the IdP's redirect to ``cloud``'s callback (not yet followed)."""
    r = await start_login(browser, cloud, address)
    assert r.status_code == 303, r.text
    r = await idp_login(browser, tamper(r.headers["location"]), username)
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith(f"{cloud}/oidc-callback?"), location
    return location


async def sign_in(browser: httpx.AsyncClient, cloud: str, address: str | None,
                  username: str) -> httpx.Response:
    return await browser.get(await callback_url(browser, cloud, address, username))


async def test_marie_signs_in_at_zurich_with_her_paris_idp(start_instance, paris) -> None:
    pair = await start_pair(start_instance, paris)
    zurich, marie = pair.zurich.url, pair.browser()

    r = await start_login(marie, zurich, "marie@paris.test", next_path="/#/spaces")
    assert r.status_code == 303, r.text
    authorize = r.headers["location"]
    assert authorize.startswith(f"{pair.paris_issuer}/authorize?"), authorize
    r = await idp_login(marie, authorize, "marie")
    assert r.status_code == 302, r.text
    r = await marie.get(r.headers["location"])
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/#/spaces"
    cookie = marie.cookies["fedspace_session"]
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/" in set_cookie
    # Only the cookie's SHA-256 is stored.
    async with pair.zurich.instance.ctx.db.read() as conn:
        stored = (await conn.execute(select(web_sessions.c.id_hash))).scalars().all()
    assert stored == [hashlib.sha256(cookie.encode()).hexdigest()]

    r = await marie.get(f"{zurich}/graph/v1.0/me/drives")
    assert (r.status_code, r.json()["value"]) == (200, []), r.text  # a guest owns nothing

    # Einstein shares a project with marie's guest principal at zurich.
    paris_dir = pair.paris.instance.ctx.components["discovery"].directory
    sub = (await paris_dir.get_user("marie")).id
    guest = await pair.discovery.guests.sign_in(pair.paris_issuer, sub, {}, "paris.test")
    assert guest.address == "marie@paris.test"
    einstein = pair.zurich.client("einstein")
    drive = (await einstein.post("/graph/v1.0/drives", json={"name": "Relativity"})).json()
    r = await einstein.put(f"/dav/spaces/{drive['id']}/notes.txt", content=b"E=mc2")
    assert r.status_code in (201, 204), r.text
    r = await einstein.post(f"/graph/v1beta1/drives/{drive['id']}/root/invite", json={
        "recipients": [{"objectId": guest.principal_id}], "roles": ["viewer"]})
    assert r.status_code == 200, r.text

    listed = (await marie.get(f"{zurich}/graph/v1.0/me/drives")).json()["value"]
    assert [d["id"] for d in listed] == [drive["id"]]
    r = await marie.request("PROPFIND", f"{zurich}/dav/spaces/{drive['id']}/",
                            headers={"Depth": "1"})
    assert r.status_code == 207 and "notes.txt" in r.text, r.text
    r = await marie.get(f"{zurich}/dav/spaces/{drive['id']}/notes.txt")
    assert (r.status_code, r.content) == (200, b"E=mc2")


async def test_einstein_signs_in_with_zurich_accounts(start_instance, paris) -> None:
    pair = await start_pair(start_instance, paris)
    zurich = pair.zurich.url
    # The "this instance's account" button, and a local address: both use zurich's own IdP.
    for address in (None, "einstein@zurich.test"):
        browser = pair.browser()
        r = await start_login(browser, zurich, address)
        assert r.headers["location"].startswith(
            f"{pair.zurich.instance.settings.discovery.issuer}/authorize?")
        r = await browser.get((await idp_login(browser, r.headers["location"], "einstein")
                               ).headers["location"])
        assert (r.status_code, r.headers["location"]) == (303, "/"), r.text
        r = await browser.get(f"{zurich}/graph/v1.0/me/drives")
        assert r.status_code == 200, r.text
        assert [d["driveType"] for d in r.json()["value"]] == ["personal"]


async def test_untrusted_issuer_is_refused_until_trusted(start_instance, paris) -> None:
    pair = await start_pair(start_instance, paris, trusted=False)
    browser = pair.browser()
    r = await start_login(browser, pair.zurich.url, "marie@paris.test")
    assert r.status_code == 403, r.text
    assert pair.paris_issuer in r.text and "does not trust" in r.text
    assert "fedspace_session" not in browser.cookies

    await pair.trust_paris()
    r = await sign_in(browser, pair.zurich.url, "marie@paris.test", "marie")
    assert r.status_code == 303, r.text
    assert (await browser.get(f"{pair.zurich.url}/graph/v1.0/me/drives")).status_code == 200
    # Trust withdrawn: her session stops working at once.
    await pair.discovery.trust.remove(pair.paris_issuer)
    assert (await browser.get(f"{pair.zurich.url}/graph/v1.0/me/drives")).status_code == 401


async def test_unregistered_and_undiscoverable_issuers(start_instance, paris) -> None:
    pair = await start_pair(start_instance, paris, registered=False)
    browser = pair.browser()
    r = await start_login(browser, pair.zurich.url, "marie@paris.test")
    assert r.status_code == 503, r.text
    assert pair.paris_issuer in r.text and "not registered" in r.text

    # nowhere.test reaches paris, which does not serve that domain: WebFinger says 404.
    pair.zurich.instance.settings.outbound.hosts["nowhere.test"] = urlsplit(
        pair.paris.url).netloc
    r = await start_login(browser, pair.zurich.url, "someone@nowhere.test")
    assert r.status_code == 502, r.text
    assert "WebFinger for acct:someone@nowhere.test" in r.text and "HTTP 404" in r.text

    r = await start_login(browser, pair.zurich.url, "not an address")
    assert r.status_code == 400, r.text

"""Issue acceptance: two instances (zurich.test, paris.test) on real sockets — code+PKCE
logins at each IdP, token-protected Graph and WebDAV calls, a paris user at zurich with
her paris token (refused until zurich trusts paris's issuer), app passwords, discovery."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx
import pytest
from idp_fixtures import PASSWORD, form_fields, pkce, query

from discovery.client import DiscoveryClient


@dataclass
class Domain:
    name: str
    running: object  # conftest.Running

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return self.running.instance.settings  # type: ignore[attr-defined]

    @property
    def issuer(self) -> str:
        return self.settings.discovery.issuer

    @property
    def url(self) -> str:
        return self.settings.public_url

    @property
    def discovery(self):  # type: ignore[no-untyped-def]
        return self.running.instance.ctx.components["discovery"]  # type: ignore[attr-defined]


async def login(domain: Domain, username: str, *, resource: str | None = None) -> dict:
    """The whole browser dance, scripted: authorize → login form → code → token."""
    verifier, challenge = pkce()
    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
    redirect_uri = f"{domain.url}/oidc-callback"
    params = {"response_type": "code", "client_id": "web", "redirect_uri": redirect_uri,
              "scope": "openid profile email offline_access", "state": state,
              "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"}
    if resource:
        params["resource"] = resource
    async with httpx.AsyncClient(timeout=30) as browser:
        page = await browser.get(f"{domain.issuer}/authorize", params=params)
        assert page.status_code == 200, (page.headers.get("location"), page.text)
        fields = form_fields(page.text)
        r = await browser.post(f"{domain.issuer}/login", data={
            "authz": fields["authz"], "csrf": fields["csrf"], "username": username,
            "password": PASSWORD})
        assert r.status_code == 302, r.text
        back = query(r.headers["location"])
        assert back["state"] == state
        data = {"grant_type": "authorization_code", "code": back["code"], "client_id": "web",
                "redirect_uri": redirect_uri, "code_verifier": verifier}
        if resource:
            data["resource"] = resource
        r = await browser.post(f"{domain.issuer}/token", data=data)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
async def domains(start_instance) -> tuple[Domain, Domain]:  # type: ignore[no-untyped-def]
    dev = {"allow_http": True, "allow_private_addresses": True}
    zurich = Domain("zurich.test", await start_instance(
        "zurich", domain="zurich.test", outbound=dev))
    paris = Domain("paris.test", await start_instance(
        "paris", domain="paris.test", outbound=dev))
    # The name map every fedspace client uses instead of DNS (the rig's job later on).
    names = {"zurich.test": zurich.url.removeprefix("http://"),
             "paris.test": paris.url.removeprefix("http://")}
    for d in (zurich, paris):
        d.settings.outbound.hosts.update(names)
    # Marie's IdP may mint tokens for zurich (RFC 8707 resource), as the seed needs.
    paris.settings.discovery.resource_peers.append(zurich.url)
    await zurich.discovery.directory.add_user("einstein", display_name="Albert Einstein",
                                              password=PASSWORD)
    await paris.discovery.directory.add_user("marie", display_name="Marie Curie",
                                             email="marie@paris.test", password=PASSWORD)
    return zurich, paris


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_logins_tokens_and_federated_access(domains) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = domains
    einstein = await login(zurich, "einstein")
    assert einstein["token_type"].lower() == "bearer" and einstein["refresh_token"]
    async with httpx.AsyncClient(base_url=zurich.url, timeout=30) as api:
        drives = (await api.get("/graph/v1.0/me/drives",
                                headers=bearer(einstein["access_token"]))).json()["value"]
        assert [d["driveType"] for d in drives] == ["personal"]
        dav = f"/dav/spaces/{drives[0]['id']}"
        r = await api.put(f"{dav}/hello.txt", content=b"hi",
                          headers=bearer(einstein["access_token"]))
        assert r.status_code == 201

        # Marie logs in at paris; her plain paris token is not meant for zurich.
        marie_home = await login(paris, "marie")
        r = await api.get("/graph/v1.0/me/drives", headers=bearer(marie_home["access_token"]))
        assert r.status_code == 401
        # A token for zurich (RFC 8707) is refused while zurich does not trust paris …
        marie = await login(paris, "marie", resource=zurich.url)
        r = await api.get("/graph/v1.0/me/drives", headers=bearer(marie["access_token"]))
        assert r.status_code == 401
        assert f"untrusted issuer {paris.issuer}" in r.headers["www-authenticate"]
        # … and accepted once it does: Marie is a federated guest who sees nothing yet.
        await zurich.discovery.trust.add(paris.issuer, "paris.test")
        r = await api.get("/graph/v1.0/me/drives", headers=bearer(marie["access_token"]))
        assert (r.status_code, r.json()["value"]) == (200, [])

        # Einstein shares a project with her; she reads it over WebDAV with her paris token.
        project = (await api.post("/graph/v1.0/drives", json={"name": "Relativity"},
                                  headers=bearer(einstein["access_token"]))).json()
        guest = next(iter(await _guests(zurich)))
        r = await api.post(f"/graph/v1beta1/drives/{project['id']}/root/invite",
                           headers=bearer(einstein["access_token"]), json={
                               "recipients": [{"objectId": guest}], "roles": ["editor"]})
        assert r.status_code == 200, r.text
        r = await api.put(f"/dav/spaces/{project['id']}/from-marie.txt", content=b"radium",
                          headers=bearer(marie["access_token"]))
        assert r.status_code == 201, r.text
        r = await api.get(f"/dav/spaces/{project['id']}/from-marie.txt",
                          headers=bearer(einstein["access_token"]))
        assert r.content == b"radium"
        # Her token opens nothing else: Einstein's personal space stays invisible.
        r = await api.get(f"{dav}/hello.txt", headers=bearer(marie["access_token"]))
        assert r.status_code == 404


async def _guests(domain: Domain) -> list[str]:
    from sqlalchemy import select

    from discovery.models import federated_identities

    async with domain.running.instance.ctx.db.read() as conn:  # type: ignore[attr-defined]
        rows = await conn.execute(select(federated_identities.c.principal_id))
        return [r.principal_id for r in rows]


async def test_app_passwords_for_webdav(domains) -> None:  # type: ignore[no-untyped-def]
    zurich, _ = domains
    token = (await login(zurich, "einstein"))["access_token"]
    async with httpx.AsyncClient(base_url=zurich.url, timeout=30) as api:
        r = await api.post("/api/v1/me/app-passwords", json={"label": "sync client"},
                           headers=bearer(token))
        assert r.status_code == 201, r.text
        pw = r.json()
        basic = ("einstein", pw["password"])
        drives = (await api.get("/graph/v1.0/me/drives", auth=basic)).json()["value"]
        r = await api.request("PROPFIND", f"/dav/spaces/{drives[0]['id']}/", auth=basic,
                              headers={"Depth": "0"})
        assert r.status_code == 207
        listed = (await api.get("/api/v1/me/app-passwords", headers=bearer(token))).json()
        assert [p["label"] for p in listed["value"]] == ["sync client"]
        assert listed["value"][0]["lastUsedDateTime"] is not None
        assert "password" not in listed["value"][0]  # shown once, at creation only
        # An app password can neither mint nor list app passwords.
        r = await api.get("/api/v1/me/app-passwords", auth=basic)
        assert r.status_code == 403
        # The account password is never accepted over Basic.
        r = await api.get("/graph/v1.0/me/drives", auth=("einstein", PASSWORD))
        assert r.status_code == 401
        r = await api.delete(f"/api/v1/me/app-passwords/{pw['id']}", headers=bearer(token))
        assert r.status_code == 204
        r = await api.get("/graph/v1.0/me/drives", auth=basic)
        assert r.status_code == 401


async def test_webfinger_and_discovery_across_domains(domains) -> None:  # type: ignore[no-untyped-def]
    zurich, paris = domains
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.get(f"{paris.url}/.well-known/webfinger",
                        params={"resource": "acct:marie@paris.test"})
        assert r.headers["content-type"] == "application/jrd+json"
        rels = {link["rel"]: link["href"] for link in r.json()["links"]}
        assert rels["http://openid.net/specs/connect/1.0/issuer"] == paris.issuer
        assert rels["http://webfinger.owncloud/rel/server-instance"] == paris.url
    client = DiscoveryClient(zurich.running.instance.ctx.outbound, 60)  # type: ignore[attr-defined]
    found = await client.discover("marie@paris.test")
    assert (found.issuer, found.registry) == (paris.issuer, paris.url)
    assert found.openid_configuration["code_challenge_methods_supported"] == ["S256"]

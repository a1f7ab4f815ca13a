"""The whole browser flow against a running instance: authorize → login → code → token
→ verify with JWKS → userinfo → refresh rotation → reuse revokes the family."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from authlib.oidc.core.util import create_half_hash
from idp_fixtures import CONF_CB, CONF_SECRET, WEB_CB, Rig, query, start_idp
from joserfc import jwt
from joserfc.jwk import KeySet


@pytest.fixture
async def idp_rig(start_instance: Callable) -> Rig:
    return await start_idp(start_instance)


async def _jwks(rig: Rig) -> KeySet:
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{rig.issuer}/jwks.json")
    assert r.status_code == 200
    return KeySet.import_key_set(r.json())


async def test_discovery_document(idp_rig: Rig) -> None:
    async with httpx.AsyncClient() as c:
        r = await c.get(f"{idp_rig.issuer}/.well-known/openid-configuration",
                        headers={"Origin": "https://elsewhere.example"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["access-control-allow-origin"] == "*"
    doc = r.json()
    assert doc["issuer"] == idp_rig.issuer
    for name in ("authorization", "token", "userinfo", "end_session"):
        assert doc[f"{name}_endpoint"].startswith(idp_rig.issuer + "/")
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["response_types_supported"] == ["code"]
    assert set(doc["scopes_supported"]) == {"openid", "profile", "email", "offline_access"}
    keys = (await httpx.AsyncClient().get(doc["jwks_uri"])).json()["keys"]
    assert keys and all("d" not in k and k["alg"] == "ES256" for k in keys)


async def test_full_flow(idp_rig: Rig) -> None:
    rig = idp_rig
    browser = rig.browser()
    params = rig.auth_params()
    page = await browser.get(f"{rig.issuer}/authorize", params=params)
    assert page.status_code == 200 and 'name="csrf"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    r = await rig.login(browser, params)
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(WEB_CB + "?")
    q = query(location)
    assert q["state"] == params["state"] and q["code"]

    token = await rig.redeem(q["code"], params)
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    body = token.json()
    assert body["token_type"] == "Bearer" and body["refresh_token"]

    keys = await _jwks(rig)
    at = jwt.decode(body["access_token"], keys, algorithms=["ES256"])
    assert at.header["typ"] == "at+jwt" and at.header["kid"]
    user = await rig.directory.get_user("einstein")
    claims = at.claims
    assert claims["iss"] == rig.issuer and claims["sub"] == user.id
    assert claims["aud"] == rig.url  # the instance's audience (its public URL)
    assert claims["client_id"] == "web" and claims["scope"] == "openid profile email"
    assert claims["preferred_username"] == "einstein"
    assert claims["email"] == "einstein@zurich.test"
    assert claims["exp"] > claims["iat"] and claims["jti"]

    idt = jwt.decode(body["id_token"], keys, algorithms=["ES256"])
    assert idt.claims["aud"] == "web" and idt.claims["iss"] == rig.issuer
    assert idt.claims["nonce"] == params["nonce"] and idt.claims["sub"] == user.id
    assert idt.claims["auth_time"] <= idt.claims["iat"]
    assert idt.claims["at_hash"] == create_half_hash(body["access_token"], "ES256").decode()

    async with httpx.AsyncClient() as c:
        info = await c.get(f"{rig.issuer}/userinfo",
                           headers={"Authorization": f"Bearer {body['access_token']}"})
        assert info.status_code == 200
        assert info.json() == {"sub": user.id, "preferred_username": "einstein",
                               "name": "Albert Einstein", "email": "einstein@zurich.test"}
        bad = await c.get(f"{rig.issuer}/userinfo", headers={"Authorization": "Bearer x.y.z"})
        assert bad.status_code == 401 and "invalid_token" in bad.headers["www-authenticate"]

    first = body["refresh_token"]
    r1 = await rig.refresh(first)
    assert r1.status_code == 200, r1.text
    second = r1.json()["refresh_token"]
    assert second != first and "access_token" in r1.json()
    # Reusing the rotated token fails and revokes the family, including the newest token.
    reuse = await rig.refresh(first)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    dead = await rig.refresh(second)
    assert dead.status_code == 400 and dead.json()["error"] == "invalid_grant"


async def test_session_skips_form_and_prompt_login_forces_it(idp_rig: Rig) -> None:
    rig = idp_rig
    browser = rig.browser()
    await rig.code_for(browser)
    again = await browser.get(f"{rig.issuer}/authorize", params=rig.auth_params())
    assert again.status_code == 302 and "code" in query(again.headers["location"])
    forced = await browser.get(f"{rig.issuer}/authorize",
                               params=rig.auth_params(prompt="login"))
    assert forced.status_code == 200 and 'name="password"' in forced.text
    other = rig.browser()
    none = await other.get(f"{rig.issuer}/authorize", params=rig.auth_params(prompt="none"))
    assert none.status_code == 302 and query(none.headers["location"])["error"] == \
        "login_required"


async def test_loopback_redirect_for_native_client(idp_rig: Rig) -> None:
    rig = idp_rig
    for uri in ("http://127.0.0.1:53117/callback", "http://[::1]:8123/callback"):
        code, params = await rig.code_for(client_id="cli", redirect_uri=uri)
        assert (await rig.redeem(code, params)).status_code == 200
    page = await rig.browser().get(f"{rig.issuer}/authorize", params=rig.auth_params(
        client_id="cli", redirect_uri="http://127.0.0.1:53117/other"))
    assert page.status_code == 400 and "location" not in page.headers


async def test_confidential_client_authenticates(idp_rig: Rig) -> None:
    rig = idp_rig
    code, params = await rig.code_for(client_id="conf", redirect_uri=CONF_CB)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CONF_CB,
            "code_verifier": rig.verifiers[params["state"]]}
    async with httpx.AsyncClient() as c:
        bad = await c.post(f"{rig.issuer}/token", data=data, auth=("conf", "wrong"))
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        anon = await c.post(f"{rig.issuer}/token", data={**data, "client_id": "conf"})
        assert anon.status_code == 401 and anon.json()["error"] == "invalid_client"
        ok = await c.post(f"{rig.issuer}/token", data=data, auth=("conf", CONF_SECRET))
        assert ok.status_code == 200, ok.text
        post = await c.post(f"{rig.issuer}/token", data={
            "grant_type": "refresh_token", "refresh_token": ok.json()["refresh_token"],
            "client_id": "conf", "client_secret": CONF_SECRET})
        assert post.status_code == 200, post.text


async def test_end_session(idp_rig: Rig) -> None:
    rig = idp_rig
    browser = rig.browser()
    code, params = await rig.code_for(browser)
    id_token = (await rig.redeem(code, params)).json()["id_token"]
    r = await browser.get(f"{rig.issuer}/end_session", params={
        "id_token_hint": id_token, "post_logout_redirect_uri": WEB_CB, "state": "s1"})
    assert r.status_code == 302 and r.headers["location"] == f"{WEB_CB}?state=s1"
    assert 'fedspace_idp_session=""' in r.headers["set-cookie"]
    # The session is gone: the next authorization shows the form again.
    page = await browser.get(f"{rig.issuer}/authorize", params=rig.auth_params())
    assert page.status_code == 200 and 'name="password"' in page.text
    evil = await browser.get(f"{rig.issuer}/end_session", params={
        "client_id": "web", "post_logout_redirect_uri": "https://evil.example/"})
    assert evil.status_code == 400 and "location" not in evil.headers

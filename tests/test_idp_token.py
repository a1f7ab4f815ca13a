"""Token endpoint refusals: PKCE, replay, client binding, expiry, RFC 8707 resources."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from idp_fixtures import PEER, Rig, pkce, start_idp
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import update

from discovery.models import oidc_codes


@pytest.fixture
async def idp_rig(start_instance: Callable) -> Rig:
    return await start_idp(start_instance)


async def test_pkce_mismatch(idp_rig: Rig) -> None:
    code, params = await idp_rig.code_for()
    r = await idp_rig.redeem(code, params, code_verifier=pkce()[0])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = await idp_rig.redeem(code, {**params}, code_verifier="")
    assert r.status_code == 400


async def test_missing_verifier_for_public_client(idp_rig: Rig) -> None:
    code, params = await idp_rig.code_for()
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{idp_rig.issuer}/token", data={
            "grant_type": "authorization_code", "code": code, "client_id": "web",
            "redirect_uri": params["redirect_uri"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_replayed_code_revokes_its_refresh_tokens(idp_rig: Rig) -> None:
    code, params = await idp_rig.code_for()
    first = await idp_rig.redeem(code, params)
    assert first.status_code == 200
    replay = await idp_rig.redeem(code, params)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    r = await idp_rig.refresh(first.json()["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_code_is_bound_to_client_and_redirect_uri(idp_rig: Rig) -> None:
    code, params = await idp_rig.code_for()
    wrong_client = await idp_rig.redeem(code, {**params, "client_id": "cli"})
    assert wrong_client.status_code == 400 and wrong_client.json()["error"] == "invalid_grant"
    wrong_uri = await idp_rig.redeem(code, {**params, "redirect_uri": params["redirect_uri"]
                                            + "x"})
    assert wrong_uri.json()["error"] == "invalid_grant"
    unknown = await idp_rig.redeem(code, {**params, "client_id": "nobody"})
    assert unknown.status_code in (400, 401) and unknown.json()["error"] == "invalid_client"


async def test_expired_code(idp_rig: Rig) -> None:
    code, params = await idp_rig.code_for()
    async with idp_rig.db.write() as conn:
        await conn.execute(update(oidc_codes).values(expires_ms=0))
    r = await idp_rig.redeem(code, params)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def _aud(rig: Rig, token: str) -> str:
    async with httpx.AsyncClient() as c:
        keys = KeySet.import_key_set((await c.get(f"{rig.issuer}/jwks.json")).json())
    return jwt.decode(token, keys, algorithms=["ES256"]).claims["aud"]


async def test_resource_indicators(idp_rig: Rig) -> None:
    rig = idp_rig
    code, params = await rig.code_for(resource=PEER)
    r = await rig.redeem(code, params)
    assert r.status_code == 200, r.text
    assert await _aud(rig, r.json()["access_token"]) == PEER
    # The refresh token stays bound to the granted resource.
    again = await rig.refresh(r.json()["refresh_token"])
    assert await _aud(rig, again.json()["access_token"]) == PEER
    # A token for a peer is not ours: our userinfo refuses it.
    async with httpx.AsyncClient() as c:
        info = await c.get(f"{rig.issuer}/userinfo",
                           headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert info.status_code == 401

    code, params = await rig.code_for()
    r = await rig.redeem(code, params, resource="https://evil.example")
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"
    code, params = await rig.code_for()
    r = await rig.redeem(code, params, resource=PEER)
    assert r.status_code == 200 and await _aud(rig, r.json()["access_token"]) == PEER


async def test_unsupported_grant_and_garbage(idp_rig: Rig) -> None:
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{idp_rig.issuer}/token", data={"grant_type": "password",
                                                          "client_id": "web"})
        assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
        r = await c.post(f"{idp_rig.issuer}/token", json={"grant_type": "refresh_token"})
        assert r.status_code == 400 and "error" in r.json()
        r = await c.post(f"{idp_rig.issuer}/token", data={
            "grant_type": "refresh_token", "refresh_token": "nope", "client_id": "web"})
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"

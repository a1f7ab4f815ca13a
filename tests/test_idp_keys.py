"""Signing keys on disk: permissions, thumbprint kids, rotation with a grace period, the
CLI, and access-token checks at userinfo."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from idp_fixtures import Rig, start_idp
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from typer.testing import CliRunner

from discovery.idp.keys import KeyStore


@pytest.fixture
async def idp_rig(start_instance: Callable) -> Rig:
    return await start_idp(start_instance)


def test_key_files_are_private_and_named_by_thumbprint(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys", token_ttl=300)
    key = store.signing_key()
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    path = tmp_path / "keys" / f"sig-{key.kid}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["crv"] == "P-256" and "d" in data
    assert ECKey.import_key(data).thumbprint() == key.kid
    assert [k["kid"] for k in store.jwks()["keys"]] == [key.kid]
    assert "d" not in store.jwks()["keys"][0]


def test_rotation_publishes_first_then_signs_then_retires(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path / "keys", token_ttl=300)
    old = store.signing_key()
    new = store.rotate(grace=600)
    published = {k["kid"] for k in store.jwks()["keys"]}
    assert published == {old.kid, new.kid}
    assert store.signing_key().kid == old.kid
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 601)
    assert store.signing_key().kid == new.kid
    assert {k["kid"] for k in store.jwks()["keys"]} == {old.kid, new.kid}  # still verifying
    monkeypatch.setattr(time, "time", lambda: now + 601 + 300)
    assert {k["kid"] for k in store.jwks()["keys"]} == {new.kid}
    store.rotate(grace=600)
    assert not (tmp_path / "keys" / f"sig-{old.kid}.json").exists()


def test_cli_rotates_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from discovery.idp.cli import keys_rotate

    app = typer.Typer()
    app.command()(keys_rotate)
    monkeypatch.setenv("FEDSPACE_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["--grace", "0"])
    assert result.exit_code == 0, result.output
    assert "published" in result.output
    assert len(list((tmp_path / "keys").glob("sig-*.json"))) == 2


def test_cli_hashes_client_secrets() -> None:
    import typer
    from argon2 import PasswordHasher

    from discovery.idp.cli import hash_secret

    app = typer.Typer()
    app.command()(hash_secret)
    result = CliRunner().invoke(app, [], input="s3cret\ns3cret\n")
    assert result.exit_code == 0, result.output
    assert PasswordHasher().verify(result.output.strip().splitlines()[-1], "s3cret")


async def _jwks(rig: Rig) -> dict:
    async with httpx.AsyncClient() as c:
        return (await c.get(f"{rig.issuer}/jwks.json")).json()


async def _signed_kid(rig: Rig) -> str:
    code, params = await rig.code_for()
    body = (await rig.redeem(code, params)).json()
    keys = KeySet.import_key_set(await _jwks(rig))
    kids = {jwt.decode(body[t], keys, algorithms=["ES256"]).header["kid"]
            for t in ("access_token", "id_token")}
    assert len(kids) == 1
    return kids.pop()


async def test_running_server_sees_rotation(idp_rig: Rig) -> None:
    rig = idp_rig
    before = await _signed_kid(rig)
    # Another process (the CLI) rotates the files; the server notices on its next use.
    other = KeyStore(rig.idp.keys.directory, token_ttl=300)
    upcoming = other.rotate(grace=600)
    assert {k["kid"] for k in (await _jwks(rig))["keys"]} == {before, upcoming.kid}
    assert await _signed_kid(rig) == before
    now = other.rotate(grace=0)
    assert await _signed_kid(rig) == now.kid


async def test_userinfo_refuses_foreign_and_mistyped_tokens(idp_rig: Rig) -> None:
    rig = idp_rig
    user = await rig.directory.get_user("einstein")
    claims = {"iss": rig.issuer, "sub": user.id, "aud": rig.url,
              "exp": int(time.time()) + 60, "iat": int(time.time()), "client_id": "web"}
    foreign = ECKey.generate_key("P-256")
    own = rig.idp.keys.signing_key()
    tokens = [
        jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": own.kid}, claims, foreign),
        jwt.encode({"alg": "ES256", "typ": "JWT", "kid": own.kid}, claims, own.key),
        jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": own.kid},
                   {**claims, "exp": int(time.time()) - 60}, own.key),
        jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": own.kid},
                   {**claims, "iss": "https://other.example"}, own.key),
    ]
    async with httpx.AsyncClient() as c:
        for token in tokens:
            r = await c.get(f"{rig.issuer}/userinfo", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, token
        good = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": own.kid},
                          {**claims, "scope": "openid"}, own.key)
        r = await c.get(f"{rig.issuer}/userinfo", headers={"Authorization": f"Bearer {good}"})
        assert r.status_code == 200 and r.json() == {"sub": user.id}
        r = await c.get(f"{rig.issuer}/userinfo")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")

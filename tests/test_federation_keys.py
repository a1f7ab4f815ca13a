"""Federation signing keys on disk: permissions, thumbprint kids, the published JWK Set,
rotation with a grace period and a freshness-long retirement, and the CLI."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from joserfc.jwk import OKPKey
from typer.testing import CliRunner

from federation.keys import KEYS_DIR, KeyStore
from fedspace.cli import app


def test_key_files_are_private_and_named_by_thumbprint(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "fk", freshness_seconds=300)
    key = store.signing_key()
    assert stat.S_IMODE((tmp_path / "fk").stat().st_mode) == 0o700
    path = tmp_path / "fk" / f"sig-{key.kid}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert (data["kty"], data["crv"]) == ("OKP", "Ed25519") and "d" in data
    assert OKPKey.import_key(data).thumbprint() == key.kid
    assert store.signing_key().kid == key.kid  # stable, not regenerated


def test_public_jwks_has_public_members_only(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "fk", freshness_seconds=300)
    key = store.signing_key()
    [jwk] = store.public_jwks()["keys"]
    assert jwk == {"kty": "OKP", "crv": "Ed25519", "x": jwk["x"], "kid": key.kid,
                   "use": "sig", "alg": "EdDSA"}
    published = OKPKey.import_key(jwk).public_key
    signature = key.private_key.sign(b"hello")
    published.verify(signature, b"hello")  # raises if the published key does not match


def test_rotation_publishes_first_then_signs_then_retires(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path / "fk", freshness_seconds=300)
    old = store.signing_key()
    new = store.rotate(grace=600)
    assert {k["kid"] for k in store.public_jwks()["keys"]} == {old.kid, new.kid}
    assert store.signing_key().kid == old.kid  # published, not yet signing
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 601)
    assert store.signing_key().kid == new.kid
    # the old key's last signatures are verifiable for the freshness window
    assert {k["kid"] for k in store.public_jwks()["keys"]} == {old.kid, new.kid}
    monkeypatch.setattr(time, "time", lambda: now + 601 + 300)
    assert {k["kid"] for k in store.public_jwks()["keys"]} == {new.kid}
    store.rotate(grace=600)
    assert not (tmp_path / "fk" / f"sig-{old.kid}.json").exists()


def test_running_store_sees_rotation_by_another_process(tmp_path: Path) -> None:
    server = KeyStore(tmp_path / "fk", freshness_seconds=300)
    old = server.signing_key()
    new = KeyStore(tmp_path / "fk", freshness_seconds=300).rotate(grace=0)
    assert server.signing_key().kid == new.kid
    assert {k["kid"] for k in server.public_jwks()["keys"]} == {old.kid, new.kid}


def test_cli_rotates_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDSPACE_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["keys", "rotate", "--grace", "0"])
    assert result.exit_code == 0, result.output
    assert "published" in result.output
    assert len(list((tmp_path / KEYS_DIR).glob("sig-*.json"))) == 2

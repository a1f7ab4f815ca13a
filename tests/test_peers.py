"""The federation peer policy: settings and table merged, applied without restart, and
``fedspace trust peer add|remove|list`` as a separate process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_settings
from pydantic import ValidationError

from federation.peers import Decision, PeerError, PeerPolicy
from federation.settings import FederationSettings, check_peer_domain
from fedspace.db import Database


def policy(db: Database, tmp_path: Path, **federation: object) -> PeerPolicy:
    return PeerPolicy(db, make_settings(tmp_path, db.url.render_as_string(hide_password=False),
                                        federation=federation))


@pytest.mark.parametrize(("domain", "normalized"), [
    ("Paris.Test", "paris.test"), ("cloud.paris.test:8443", "cloud.paris.test:8443"),
    ("localhost", "localhost")])
def test_valid_domains(domain: str, normalized: str) -> None:
    assert check_peer_domain(domain) == normalized


@pytest.mark.parametrize("domain", [
    "", "paris..test", "-paris.test", "paris_test", "https://paris.test", "paris.test:0",
    "paris.test:99999", "paris.test:", "user@paris.test", "paris.test/ocm", "a" * 64 + ".test"])
def test_invalid_domains(domain: str) -> None:
    with pytest.raises(ValueError, match="invalid peer domain"):
        check_peer_domain(domain)


def test_settings_lists_are_validated() -> None:
    assert FederationSettings(allow_peers=["Paris.Test"]).allow_peers == ["paris.test"]
    with pytest.raises(ValidationError, match="invalid peer domain"):
        FederationSettings(deny_peers=["not a domain"])
    with pytest.raises(ValidationError, match=r"both allowed and denied: paris\.test"):
        FederationSettings(allow_peers=["paris.test"], deny_peers=["PARIS.test"])


async def test_open_federation_with_a_denylist(db: Database, tmp_path: Path) -> None:
    peers = policy(db, tmp_path, deny_peers=["evil.test"])
    assert await peers.decide("paris.test") == Decision(
        True, "open federation (federation.allowlist_only is off)")
    assert await peers.decide("Evil.Test") == Decision(
        False, "evil.test is denylisted (configuration)")
    await peers.add("rome.test", "deny")
    assert await peers.decide("rome.test") == Decision(
        False, "rome.test is denylisted (trust peer list)")
    assert not (await peers.decide("not a domain")).allowed
    assert not peers.require_invite and not peers.accepts_unsigned("paris.test")


async def test_allowlist_only(db: Database, tmp_path: Path) -> None:
    peers = policy(db, tmp_path, allowlist_only=True, allow_peers=["zurich.test"],
                   require_invite=True, accept_unsigned_from=["legacy.test"])
    assert (await peers.decide("zurich.test")).allowed
    refused = await peers.decide("paris.test")
    assert not refused.allowed and "not on the allowlist" in refused.reason
    await peers.add("paris.test")
    assert await peers.decide("paris.test") == Decision(
        True, "paris.test is allowlisted (trust peer list)")
    assert peers.require_invite and peers.accepts_unsigned("Legacy.test")


async def test_changes_apply_elsewhere_without_restart(db: Database, tmp_path: Path) -> None:
    cached = policy(db, tmp_path, peer_cache_seconds=3600)
    fresh = policy(db, tmp_path, peer_cache_seconds=0)
    assert (await cached.decide("paris.test")).allowed
    await fresh.add("paris.test", "deny")
    assert not (await fresh.decide("paris.test")).allowed
    assert (await cached.decide("paris.test")).allowed  # until its TTL has passed
    await fresh.add("paris.test", "allow")  # changes the policy
    await fresh.remove("paris.test")
    await fresh.add("rome.test", "deny")
    assert [(p.domain, p.policy) for p in await fresh.list()] == [("rome.test", "deny")]
    assert not (await policy(db, tmp_path).decide("rome.test")).allowed


async def test_refused_changes(db: Database, tmp_path: Path) -> None:
    peers = policy(db, tmp_path, allow_peers=["zurich.test"])
    with pytest.raises(PeerError, match="set by the configuration"):
        await peers.add("zurich.test", "deny")
    with pytest.raises(PeerError, match="set by the configuration"):
        await peers.remove("zurich.test")
    with pytest.raises(PeerError, match="invalid peer domain"):
        await peers.add("paris..test")
    await peers.add("paris.test")
    with pytest.raises(PeerError, match="already allowed"):
        await peers.add("PARIS.test")
    with pytest.raises(PeerError, match="not listed"):
        await peers.remove("rome.test")


@pytest.fixture
def trust_peer(tmp_path: Path, database_url: str):
    env = {**os.environ, "FEDSPACE_DATA_DIR": str(tmp_path / "data"),
           "FEDSPACE_DATABASE_URL": database_url, "COLUMNS": "200"}
    env.pop("FEDSPACE_CONFIG", None)

    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fedspace", "trust", "peer", *args],
                              env={**env, **extra_env}, capture_output=True, text=True,
                              timeout=60, check=False)

    return run


def test_cli_add_list_remove(trust_peer) -> None:
    r = trust_peer("add", "Paris.test")
    assert r.returncode == 0, r.stderr
    assert "allowing peer paris.test" in r.stdout
    r = trust_peer("add", "rome.test:8443", "--deny")
    assert r.returncode == 0 and "denying peer rome.test:8443" in r.stdout
    r = trust_peer("list", FEDSPACE_FEDERATION__ALLOW_PEERS='["zurich.test"]',
                   FEDSPACE_FEDERATION__ALLOWLIST_ONLY="true")
    assert r.returncode == 0, r.stderr
    rows = [line.replace("│", " ").split() for line in r.stdout.splitlines() if ".test" in line]
    assert [row[:3] for row in rows] == [
        ["paris.test", "allow", "database"], ["rome.test:8443", "deny", "database"],
        ["zurich.test", "allow", "configuration"]]
    assert "other peers are refused" in r.stdout
    r = trust_peer("remove", "paris.test")
    assert r.returncode == 0 and "peer paris.test removed" in r.stdout
    r = trust_peer("list")
    assert "paris.test" not in r.stdout and "other peers are allowed" in r.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("add", "paris..test"), "invalid peer domain"),
    (("remove", "nowhere.test"), "is not listed"),
    (("add", "zurich.test", "--deny"), "set by the configuration"),
])
def test_cli_errors_are_one_clear_line(trust_peer, args: tuple[str, ...], message: str) -> None:
    r = trust_peer(*args, FEDSPACE_FEDERATION__ALLOW_PEERS='["zurich.test"]')
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr

"""``fedspace trust issuer add|list|remove`` as a separate process, like an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture
def trust(tmp_path: Path):
    env = {**os.environ, "FEDSPACE_DATA_DIR": str(tmp_path / "data"),
           "FEDSPACE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'fedspace.db'}",
           "COLUMNS": "200"}
    env.pop("FEDSPACE_CONFIG", None)

    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fedspace", "trust", "issuer", *args],
                              env={**env, **extra_env}, capture_output=True, text=True,
                              timeout=60, check=False)

    return run


def test_add_list_remove(trust) -> None:
    r = trust("add", "https://idp.paris.test", "--domain", "Paris.test")
    assert r.returncode == 0, r.stderr
    assert "trusting https://idp.paris.test for paris.test" in r.stdout
    r = trust("list", FEDSPACE_DISCOVERY__TRUSTED_ISSUERS=(
        '[{"issuer": "https://idp.zurich.test", "domain": "zurich.test"}]'))
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if "https://" in line]
    assert len(rows) == 2
    assert "https://idp.paris.test" in rows[0] and "paris.test" in rows[0]
    assert "database" in rows[0]
    assert "https://idp.zurich.test" in rows[1] and "configuration" in rows[1]

    r = trust("remove", "https://idp.paris.test")
    assert r.returncode == 0, r.stderr
    assert "no longer trusting https://idp.paris.test" in r.stdout
    assert "https://idp.paris.test" not in trust("list").stdout


@pytest.mark.parametrize(("args", "message"), [
    (("add", "http://idp.paris.test", "--domain", "paris.test"), "must be an https URL"),
    (("add", "https://idp.paris.test?x", "--domain", "paris.test"),
     "must not have a query or fragment"),
    (("add", "https://idp.paris.test", "--domain", "paris..test"), "invalid domain"),
    (("remove", "https://idp.nowhere.test"), "is not trusted"),
])
def test_errors_are_one_clear_line(trust, args: tuple[str, ...], message: str) -> None:
    r = trust(*args)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_add_twice_and_http_in_dev_mode(trust) -> None:
    assert trust("add", "https://idp.paris.test", "--domain", "paris.test").returncode == 0
    r = trust("add", "https://idp.paris.test", "--domain", "paris.test")
    assert r.returncode == 2 and "already trusted" in r.stderr
    r = trust("add", "http://127.0.0.1:9000", "--domain", "dev.test",
              FEDSPACE_OUTBOUND__ALLOW_HTTP="true")
    assert r.returncode == 0, r.stderr


def test_missing_domain_is_a_usage_error(trust) -> None:
    r = trust("add", "https://idp.paris.test")
    assert r.returncode == 2
    assert "--domain" in r.stderr

"""The runtime: migrations, settings, health endpoints, metrics, authentication, limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from fedspace.db import HEAD, Database, alembic_config, all_metadata
from fedspace.rpc import spaces_pb2 as pb
from fedspace.rpc.spaces_pb2_grpc import ProviderStub
from fedspace.settings import Settings


async def test_migrations_match_models(database_url: str) -> None:
    db = Database(database_url)
    await db.migrate()
    await db.migrate()  # idempotent on every start

    def diff(conn):  # type: ignore[no-untyped-def]
        return compare_metadata(MigrationContext.configure(conn), all_metadata())

    async with db.read() as conn:
        assert await conn.run_sync(diff) == []
    await db.close()


async def test_a_start_upgrades_an_older_schema_and_skips_a_current_one(
    database_url: str,
) -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD
    db = Database(database_url)
    await db.migrate()

    async def version() -> str:
        async with db.read() as conn:
            return str((await conn.exec_driver_sql(
                "SELECT version_num FROM alembic_version")).scalar())

    async with db.write() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0006"))
    assert await version() == "0006"
    await db.migrate()
    assert await version() == HEAD
    await db.close()


def test_settings_from_toml_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "fedspace.toml"
    config.write_text('domain = "zurich.test"\n[http]\nport = 9001\n[provider]\nid = "p7"\n')
    monkeypatch.setenv("FEDSPACE_CONFIG", str(config))
    monkeypatch.setenv("FEDSPACE_HTTP__PORT", "9002")  # env beats the file
    s = Settings()
    assert (s.domain, s.http.port, s.provider.id) == ("zurich.test", 9002, "p7")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedspace", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60)


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = {"FEDSPACE_DATA_DIR": str(tmp_path),
           "FEDSPACE_DATABASE_URL": "postgresql+asyncpg://u:hunter2@db/fedspace",
           "FEDSPACE_INTERNAL_SECRET": "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-xx"}
    out = _cli("config", "show", env=env)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert "hunter2" not in out.stdout and "s3cr3t" not in out.stdout
    assert shown["database_url"] == "postgresql+asyncpg://u:***@db/fedspace"


def test_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    out = _cli("config", "show", env={"FEDSPACE_HTTP__PORT": "eighty"})
    assert out.returncode == 2
    assert "http.port" in out.stderr and "Traceback" not in out.stderr
    out = _cli("serve", "--config", str(tmp_path / "missing.toml"), env={})
    assert out.returncode == 2 and "config file not found" in out.stderr


async def test_health_ready_metrics(instance) -> None:  # type: ignore[no-untyped-def]
    anon = instance.client(None)
    assert (await anon.get("/healthz")).text == "ok"
    assert (await anon.get("/readyz")).status_code == 200
    drives = await instance.client("alice").get("/graph/v1.0/me/drives")
    space = drives.json()["value"][0]["id"]
    await instance.client("alice").request("PROPFIND", f"/dav/spaces/{space}/",
                                           headers={"Depth": "0"})
    metrics = (await anon.get("/metrics")).text
    assert 'fedspace_http_requests_total{method="GET",route="/graph/v1.0/me/drives"' in metrics
    dav = 'method="PROPFIND",route="/dav/spaces/{space_id}/{path:path}",status="207"'
    assert dav in metrics
    assert "fedspace_http_request_duration_seconds_bucket" in metrics
    assert 'fedspace_spaces{type="personal"} 1.0' in metrics
    assert 'fedspace_bytes_stored{provider="provider-1"} 0.0' in metrics


async def test_no_anonymous_access(instance) -> None:  # type: ignore[no-untyped-def]
    anon = instance.client(None)
    for method, url in (("GET", "/graph/v1.0/me/drives"), ("PROPFIND", "/dav/spaces/x/"),
                        ("GET", "/dav/spaces/x/file.txt")):
        r = await anon.request(method, url)
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Basic")
        assert r.headers["content-type"] == "application/problem+json"


async def test_wrong_app_password_is_401(instance) -> None:  # type: ignore[no-untyped-def]
    c = instance.client(None)
    r = await c.get("/graph/v1.0/me/drives", auth=("alice", "not-the-password"))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    r = await c.get("/graph/v1.0/me/drives", headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401


async def test_body_limit(instance) -> None:  # type: ignore[no-untyped-def]
    limit = instance.instance.settings.http.max_body_size
    r = await instance.client("alice").post("/graph/v1.0/drives", content=b"x" * (limit + 1),
                                            headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["status"] == 413


async def test_grpc_refuses_calls_without_internal_token(instance) -> None:  # type: ignore[no-untyped-def]
    async with grpc.aio.insecure_channel(instance.instance.ctx.grpc_address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ProviderStub(channel).CreateSpace(pb.CreateSpaceRequest(space_id="evil"))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_urls_use_the_bound_port(instance) -> None:  # type: ignore[no-untyped-def]
    drives = (await instance.client("alice").get("/graph/v1.0/me/drives")).json()["value"]
    assert drives[0]["root"]["webDavUrl"].startswith(instance.url + "/dav/spaces/")


async def test_port_in_use_is_a_clear_error(instance, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_settings

    from fedspace.app import Instance

    port = int(instance.url.rsplit(":", 1)[1])
    other = Instance(make_settings(tmp_path / "other", f"sqlite+aiosqlite:///{tmp_path}/o.db",
                                   http={"host": "127.0.0.1", "port": port}))
    with pytest.raises(OSError, match=f"cannot listen for HTTP on 127.0.0.1:{port}"):
        await other.start()
    await other.stop()

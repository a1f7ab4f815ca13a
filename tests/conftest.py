"""Shared fixtures: a complete instance (real sockets, real SQLite or PostgreSQL, real
app passwords) and clients acting as its users."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from fedspace.app import Instance
from fedspace.settings import Settings

POSTGRES_URL = os.environ.get("FEDSPACE_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("FEDSPACE_TEST_REQUIRE_POSTGRES") == "1"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database per test: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fedspace.db'}"
        return
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("FEDSPACE_TEST_POSTGRES_URL is not set but PostgreSQL is required")
        pytest.skip("PostgreSQL not configured (set FEDSPACE_TEST_POSTGRES_URL)")
    name = f"fedspace_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(
        hide_password=False)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "http": {"host": "127.0.0.1", "port": 0},
        "grpc": {"host": "127.0.0.1", "port": 0},
        "log": {"level": "warning", "format": "text"},
    }
    return Settings(**{**values, **overrides})


@dataclass
class Running:
    """A started instance and Basic-auth clients for its users."""

    instance: Instance
    url: str
    users: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (id, app pw)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    async def add_user(self, name: str, *, admin: bool = False) -> str:
        directory = self.instance.ctx.components["discovery"].directory
        user = await directory.add_user(name, display_name=name.title(), is_admin=admin)
        _, secret = await directory.create_app_password(name, "tests")
        self.users[name] = (user.id, secret)
        return user.id

    def client(self, name: str | None, *, wire: bool = True) -> httpx.AsyncClient:
        """A client for ``name`` (None: anonymous) over the socket or in-process (ASGI)."""
        auth = (name, self.users[name][1]) if name else None
        if wire:
            c = httpx.AsyncClient(base_url=self.url, auth=auth, timeout=30)
        else:
            c = httpx.AsyncClient(transport=httpx.ASGITransport(self.instance.app),
                                  base_url=self.instance.settings.public_url, auth=auth)
        self.clients.append(c)
        return c


StartInstance = Callable[..., "Running"]


@pytest.fixture
async def start_instance(tmp_path: Path, database_url: str) -> AsyncIterator[Callable]:
    """Factory: ``await start_instance(**settings_overrides)`` → Running."""
    started: list[Running] = []

    async def start(name: str = "a", **overrides: object) -> Running:
        settings = make_settings(tmp_path / name, database_url, **overrides)
        inst = Instance(settings)
        await inst.start()
        running = Running(inst, inst.url)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        for c in running.clients:
            await c.aclose()
        await running.instance.stop()


@pytest.fixture
async def instance(start_instance: Callable) -> Running:
    """One instance with users alice, bob, carol (and admin root)."""
    running = await start_instance()
    for name in ("alice", "bob", "carol"):
        await running.add_user(name)
    await running.add_user("root", admin=True)
    return running

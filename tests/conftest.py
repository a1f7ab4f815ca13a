"""Shared fixtures: a complete instance (real sockets, real SQLite or PostgreSQL, real
app passwords) and clients acting as its users."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from fedspace.app import Instance
from fedspace.db import Database
from fedspace.settings import Settings
from registry.events import EventBus
from registry.service import RegistryService
from registry.settings import RegistrySettings

POSTGRES_URL = os.environ.get("FEDSPACE_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("FEDSPACE_TEST_REQUIRE_POSTGRES") == "1"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Each database-backed test runs on SQLite and on PostgreSQL."""
    if request.param == "postgres" and not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("FEDSPACE_TEST_POSTGRES_URL is not set but PostgreSQL is required")
        pytest.skip("PostgreSQL not configured (set FEDSPACE_TEST_POSTGRES_URL)")
    return str(request.param)


NewDatabase = Callable[[str], Awaitable[str]]


@pytest.fixture
async def databases(backend: str, tmp_path: Path) -> AsyncIterator[NewDatabase]:
    """Factory: ``await databases(name)`` → the URL of a fresh, empty database.

    Each instance of a test gets its own (two domains never share tables)."""
    created: list[str] = []
    admin_dsn = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(
        hide_password=False) if POSTGRES_URL else ""

    async def new(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}"
        db_name = f"fedspace_test_{uuid.uuid4().hex[:12]}"
        await _admin(admin_dsn, f'CREATE DATABASE "{db_name}"')
        created.append(db_name)
        return make_url(POSTGRES_URL).set(database=db_name).render_as_string(
            hide_password=False)

    yield new
    for db_name in created:
        await _admin(admin_dsn, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


async def _admin(dsn: str, sql: str) -> None:
    """CREATE/DROP DATABASE, retried: PostgreSQL refuses them while an autovacuum worker
    (which a non-superuser may not terminate) is connected to the database or template1."""
    for attempt in range(20):
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
            return
        except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
            if attempt == 19:
                raise
        finally:
            await conn.close()
        await asyncio.sleep(0.25)


@pytest.fixture
async def database_url(databases: NewDatabase) -> str:
    """A fresh database for tests that need just one."""
    return await databases("main")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated database of its own."""
    database = Database(database_url)
    await database.migrate()
    yield database
    await database.close()


@pytest.fixture
async def registry(db: Database) -> RegistryService:
    """The registry's logic on its own database, without providers or HTTP."""
    service = RegistryService(db, RegistrySettings(), None, EventBus())  # type: ignore[arg-type]
    await service.init()
    return service


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
async def start_instance(tmp_path: Path, databases: NewDatabase) -> AsyncIterator[Callable]:
    """Factory: ``await start_instance(**settings_overrides)`` → Running."""
    started: list[Running] = []

    async def start(name: str = "a", **overrides: object) -> Running:
        settings = make_settings(tmp_path / name, await databases(name), **overrides)
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


DEV_OUTBOUND = {"allow_http": True, "allow_private_addresses": True}


@pytest.fixture
async def zurich_paris(start_instance: Callable) -> tuple[Running, Running]:
    """zurich.test and paris.test, each resolving the other's domain through the name map
    (fedspace clients never use DNS for rig names)."""
    zurich = await start_instance("zurich", domain="zurich.test", outbound=DEV_OUTBOUND)
    paris = await start_instance("paris", domain="paris.test", outbound=DEV_OUTBOUND)
    names = {"zurich.test": zurich.url.removeprefix("http://"),
             "paris.test": paris.url.removeprefix("http://")}
    for running in (zurich, paris):
        running.instance.settings.outbound.hosts.update(names)
    return zurich, paris


def federation(running: Running):  # type: ignore[no-untyped-def]
    return running.instance.ctx.components["federation"]

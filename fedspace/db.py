"""Database engine, sessions and migrations shared by every service.

SQLite (WAL) is the embedded default and PostgreSQL the scale-out choice. Services use
SQLAlchemy Core (not the ORM) because hot paths are point reads and small listings
where the ORM costs an order of magnitude more.

SQLite allows one writer at a time; a deferred transaction that later writes can fail
with "database is locked" instead of waiting. ``Database.write()`` therefore serialises
writers inside the process with a lock and starts SQLite write transactions with
``BEGIN IMMEDIATE`` so writers from other processes wait on ``busy_timeout``.

Hot reads (a request's route, a stat, a listing) go through ``read_with``: with SQLite a
small pool of threads runs the whole read on plain pysqlite connections, one hop from the
event loop per read, where aiosqlite hops threads for every cursor call, BEGIN and
ROLLBACK (measured: 4-5 times the cost under concurrent requests). Hot writes (an
upload's commit) go through ``write_with`` the same way, on one writer connection: the
whole transaction is one hop, so the write lock is held for the transaction's work and
not for a dozen thread round trips.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import MetaData, create_engine, event, inspect
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in MIGRATIONS (a test holds it to Alembic's own answer): a start on
# a schema already there checks it with one query and never imports Alembic (~0.15 s).
HEAD = "0007"
READERS = 4  # threads (and pysqlite connections) for hot SQLite reads
T = TypeVar("T")


def all_metadata() -> list[MetaData]:
    """Every service's tables, in dependency order: what migrations must produce."""
    from discovery.models import metadata as discovery
    from federation.models import metadata as federation
    from provider.models import metadata as provider
    from registry.models import metadata as registry

    return [discovery, registry, provider, federation]


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._write_lock = asyncio.Lock()
        self._readers: tuple[Engine, ThreadPoolExecutor] | None = None
        self._writer: tuple[Engine, ThreadPoolExecutor] | None = None
        if self.is_sqlite:
            self._configure_sqlite()

    def _configure_sqlite(self) -> None:
        engines = [self.engine.sync_engine]
        if self.url.database and self.url.database != ":memory:":
            self._readers = _sync_engine(self.url, READERS, "fedspace-db-read")
            self._writer = _sync_engine(self.url, 1, "fedspace-db-write", fedspace_write=True)
            engines += [self._readers[0], self._writer[0]]
        for engine in engines:
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "begin", _sqlite_begin)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (one implicit transaction, rolled back at the end)."""
        async with self.engine.connect() as conn:
            yield conn

    async def read_with(self, read: Callable[[Connection], T]) -> T:
        """``read(connection)`` for a hot path, in one round trip (see the module notes),
        inside one read transaction like ``read()``: its statements share a snapshot."""
        if self._readers is None:
            async with self.read() as conn:
                return await conn.run_sync(read)
        engine, pool = self._readers

        def run() -> T:
            with engine.connect() as conn:
                return read(conn)

        return await asyncio.get_running_loop().run_in_executor(pool, run)

    async def write_with(self, write: Callable[[Connection], T]) -> T:
        """``write(connection)`` as one transaction in one round trip (a hot write), like
        ``write()``: committed when it returns, rolled back when it raises."""
        if self._writer is None:
            async with self.write() as conn:
                return await conn.run_sync(write)
        engine, pool = self._writer

        def run() -> T:
            with engine.begin() as conn:
                return write(conn)

        async with self._write_lock:
            future = asyncio.get_running_loop().run_in_executor(pool, run)
            try:
                return await asyncio.shield(future)
            finally:
                if not future.done():  # cancelled: keep the lock until the transaction ends
                    await asyncio.wait({future})

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block ends, rolled back on any error."""
        if self.is_sqlite:
            async with self._write_lock, self.engine.connect() as conn:
                conn = await conn.execution_options(fedspace_write=True)
                async with conn.begin():
                    yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (checked on every start)."""
        async with self.write() as conn:
            await conn.run_sync(_upgrade)

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def close(self) -> None:
        await self.engine.dispose()
        for engine, pool in filter(None, (self._readers, self._writer)):
            pool.shutdown(wait=True)
            engine.dispose()


def _sync_engine(url: URL, size: int, name: str,
                 **options: Any) -> tuple[Engine, ThreadPoolExecutor]:
    """A pysqlite engine with as many connections as the threads that use it."""
    engine = create_engine(url.set(drivername="sqlite+pysqlite"), pool_size=size,
                           max_overflow=0, execution_options=options,
                           connect_args={"timeout": 30, "check_same_thread": False})
    return engine, ThreadPoolExecutor(size, name)


def _sqlite_begin(conn: Connection) -> None:
    """Writes take the lock up front (``BEGIN IMMEDIATE``); reads begin deferred."""
    mode = "IMMEDIATE" if conn.get_execution_options().get("fedspace_write") else ""
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's events own BEGIN; pysqlite's implicit one is deferred.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    if inspect(connection).has_table("alembic_version") and connection.exec_driver_sql(
            "SELECT version_num FROM alembic_version").scalar() == HEAD:
        return
    from alembic import command

    command.upgrade(alembic_config(connection), "head")

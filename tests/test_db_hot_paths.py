"""``read_with`` and ``write_with``: the one-hop read and write of the hot paths keep the
transaction semantics of ``read()`` and ``write()`` on SQLite and PostgreSQL."""

import asyncio
import time

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from fedspace.db import Database
from registry.models import providers

ROW = {"id": "p-1", "grpc_address": "127.0.0.1:1", "dav_url": "http://127.0.0.1:1",
       "registered_ms": 1}


def _ids(conn: Connection) -> list[str]:
    return list(conn.execute(select(providers.c.id).order_by(providers.c.id)).scalars())


async def test_write_with_commits_what_it_returns(db: Database) -> None:
    def write(conn: Connection) -> int:
        conn.execute(insert(providers).values(**ROW))
        return len(_ids(conn))

    assert await db.write_with(write) == 1
    assert await db.read_with(_ids) == ["p-1"]


async def test_write_with_rolls_back_everything_when_it_raises(db: Database) -> None:
    def write(conn: Connection) -> None:
        conn.execute(insert(providers).values(**ROW))
        raise LookupError("refused after the first statement")

    with pytest.raises(LookupError):
        await db.write_with(write)
    assert await db.read_with(_ids) == []


async def test_a_cancelled_write_with_keeps_writers_in_order(db: Database) -> None:
    """The caller gives up while the transaction runs: the transaction still completes
    (or not) as a whole before the next writer starts."""
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow(conn: Connection) -> None:
        conn.execute(insert(providers).values(**ROW))
        loop.call_soon_threadsafe(started.set)
        time.sleep(0.2)

    task = asyncio.create_task(db.write_with(slow))
    await started.wait()
    task.cancel()

    async def second() -> list[str]:
        async with db.write() as conn:
            return await conn.run_sync(_ids)

    assert await second() == ["p-1"]
    with pytest.raises(asyncio.CancelledError):
        await task

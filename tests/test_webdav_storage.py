"""PosixDriver: checksums while streaming, cleanup on failure/cancel, crash sweep, copy."""

import asyncio
import hashlib
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from provider.storage import BlobTooLarge, PosixDriver


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_write_computes_size_and_checksums(tmp_path: Path) -> None:
    driver = PosixDriver(tmp_path)
    data = b"a" * 3_000_000  # crosses the 1 MiB writer chunk several times
    blob = await driver.write_blob("s", chunks(data[:1000], data[1000:]))
    assert blob.size == len(data)
    assert blob.sha1 == hashlib.sha1(data).hexdigest()
    assert blob.md5 == hashlib.md5(data).hexdigest()
    assert blob.adler32 == f"{zlib.adler32(data):08x}"
    path = driver.blob_path("s", blob.blob_id)
    assert path.parent.name == blob.blob_id[:2] and path.read_bytes() == data
    assert list((tmp_path / "s" / "tmp").iterdir()) == []


async def test_failure_and_limit_leave_nothing(tmp_path: Path) -> None:
    driver = PosixDriver(tmp_path)

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 2_000_000
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await driver.write_blob("s", broken())
    with pytest.raises(BlobTooLarge):
        await driver.write_blob("s", chunks(b"x" * 60, b"x" * 60), limit=100)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_cancellation_leaves_nothing(tmp_path: Path) -> None:
    driver = PosixDriver(tmp_path)
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"x" * 10
        started.set()
        await asyncio.sleep(60)
        yield b"never"

    task = asyncio.create_task(driver.write_blob("s", slow()))
    await started.wait()
    assert list((tmp_path / "s" / "tmp").iterdir())  # in progress
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_sweep_removes_crash_leftovers_only(tmp_path: Path) -> None:
    driver = PosixDriver(tmp_path)
    blob = await driver.write_blob("s", chunks(b"keep"))
    leftover = tmp_path / "s" / "tmp" / "dead.part"
    leftover.write_bytes(b"partial")
    assert await driver.sweep_temp() == 1
    assert not leftover.exists()
    assert driver.blob_path("s", blob.blob_id).read_bytes() == b"keep"
    assert await PosixDriver(tmp_path / "absent").sweep_temp() == 0


async def test_copy_and_delete(tmp_path: Path) -> None:
    driver = PosixDriver(tmp_path)
    blob = await driver.write_blob("s", chunks(b"content"))
    copy_id = await driver.copy_blob("s", blob.blob_id)
    assert copy_id != blob.blob_id
    await driver.delete_blob("s", blob.blob_id)
    assert driver.blob_path("s", copy_id).read_bytes() == b"content"
    await driver.delete_blob("s", blob.blob_id)  # idempotent
    await driver.delete_space("s")
    assert not (tmp_path / "s").exists()

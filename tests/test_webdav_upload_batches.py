"""Uploads written and hashed in batches: chunk boundaries anywhere, limits and
OC-Checksum across batches, and nothing left behind however an upload ends."""

import hashlib
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from dav_fixtures import BASE, dav_env, serve

from provider.storage import CHUNK, BlobTooLarge, PosixDriver

# Chunk sizes that end batches just before, at and just after CHUNK bytes.
SIZES = [1, CHUNK - 2, 1, 1, CHUNK + 5, 65537, 7, CHUNK, 3]


def pieces(sizes: list[int]) -> list[bytes]:
    return [bytes([i % 251]) * n for i, n in enumerate(sizes)]


async def stream(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_checksums_across_batch_boundaries(tmp_path: Path) -> None:
    driver = PosixDriver(tmp_path)
    parts = pieces(SIZES)
    data = b"".join(parts)
    blob = await driver.write_blob("s", stream(parts), limit=len(data))
    assert blob.size == len(data)
    assert blob.sha1 == hashlib.sha1(data).hexdigest()
    assert blob.md5 == hashlib.md5(data).hexdigest()
    assert blob.adler32 == f"{zlib.adler32(data):08x}"
    assert driver.blob_path("s", blob.blob_id).read_bytes() == data
    assert files(tmp_path) == [driver.blob_path("s", blob.blob_id)]


async def test_limit_inside_a_batch(tmp_path: Path) -> None:
    driver = PosixDriver(tmp_path)
    with pytest.raises(BlobTooLarge):  # past the limit before any batch was written
        await driver.write_blob("s", stream(pieces([CHUNK - 10, 11])), limit=CHUNK)
    with pytest.raises(BlobTooLarge):  # past the limit after one batch was written
        await driver.write_blob("s", stream(pieces([CHUNK, 10, 10])), limit=CHUNK + 15)
    assert files(tmp_path) == []
    blob = await driver.write_blob("s", stream(pieces([CHUNK, 15])), limit=CHUNK + 15)
    assert blob.size == CHUNK + 15


@pytest.mark.parametrize("algorithm", ["SHA1", "MD5", "ADLER32"])
async def test_chunked_upload_checked_against_oc_checksum(
    tmp_path: Path, algorithm: str
) -> None:
    parts = pieces(SIZES)
    data = b"".join(parts)
    digest = {"SHA1": hashlib.sha1(data).hexdigest(), "MD5": hashlib.md5(data).hexdigest(),
              "ADLER32": f"{zlib.adler32(data):08x}"}[algorithm]
    async with dav_env(tmp_path) as env, serve(env.app) as port, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        bad = await client.put(f"{BASE}/f.bin", content=stream(parts),
                               headers={"OC-Checksum": f"{algorithm}:{'0' * len(digest)}"})
        assert bad.status_code == 400
        assert env.blob_files() == [] and env.temp_files() == []
        good = await client.put(f"{BASE}/f.bin", content=stream(parts),
                                headers={"OC-Checksum": f"{algorithm}:{digest.upper()}"})
        assert good.status_code == 201
        assert (await client.get(f"{BASE}/f.bin")).content == data
        assert env.temp_files() == []

"""Quota (507), upload size limit (413) and OC-Checksum: refused uploads leave nothing."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dav_fixtures import BASE, dav_env


@pytest.fixture
async def dav(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    async with dav_env(tmp_path, quota=1000, max_upload_size=5000,
                       database_url=database_url) as env:
        await env.put("base.bin", b"x" * 600)
        yield env


async def chunked(total: int, size: int = 100) -> AsyncIterator[bytes]:
    for _ in range(total // size):
        yield b"y" * size


async def assert_untouched(dav) -> None:  # type: ignore[no-untyped-def]
    assert await dav.node("new.bin") is None
    assert (await dav.node("")).size == 600
    assert len(dav.blob_files()) == 1
    assert dav.temp_files() == []


async def test_within_quota(dav) -> None:
    assert (await dav.put("new.bin", b"z" * 400)).status_code == 201
    assert (await dav.node("")).size == 1000


async def test_content_length_over_quota(dav) -> None:
    before = (await dav.node("")).etag
    r = await dav.put("new.bin", b"z" * 401)
    assert r.status_code == 507
    assert "InsufficientStorage" in r.text
    await assert_untouched(dav)
    assert (await dav.node("")).etag == before


async def test_chunked_body_over_quota(dav) -> None:
    r = await dav.client.put(f"{BASE}/new.bin", content=chunked(2000))
    assert "content-length" not in r.request.headers
    assert r.status_code == 507
    await assert_untouched(dav)


async def test_overwrite_counts_only_the_difference(dav) -> None:
    assert (await dav.put("base.bin", b"x" * 1000)).status_code == 204
    assert (await dav.put("base.bin", b"x" * 1001)).status_code == 507
    assert (await dav.node("base.bin")).size == 1000


async def test_max_upload_size(tmp_path: Path) -> None:
    async with dav_env(tmp_path, max_upload_size=100) as env:
        assert (await env.put("big", b"x" * 101)).status_code == 413
        r = await env.client.put(f"{BASE}/big", content=chunked(1000))
        assert r.status_code == 413
        assert await env.node("big") is None
        assert env.blob_files() == [] and env.temp_files() == []


async def test_checksums(dav) -> None:
    good = {"OC-Checksum": "SHA1:a9993e364706816aba3e25717850c26c9cd0d89d"}
    assert (await dav.put("new.bin", b"abc", headers=good)).status_code == 201
    for header in ("MD5:900150983cd24fb0d6963f7d28e17f72", "ADLER32:024D0127"):
        r = await dav.put("new.bin", b"abc", headers={"OC-Checksum": header})
        assert r.status_code == 204, header


@pytest.mark.parametrize("header", [
    "SHA1:0000000000000000000000000000000000000000", "MD5:00", "ADLER32:024d0128",
    "CRC32:abc", "garbage"])
async def test_checksum_mismatch_stores_nothing(dav, header: str) -> None:
    r = await dav.put("new.bin", b"abc", headers={"OC-Checksum": header})
    assert r.status_code == 400
    await assert_untouched(dav)

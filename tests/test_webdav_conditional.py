"""Range requests and ETag preconditions on GET/HEAD/PUT/DELETE."""

from pathlib import Path

import pytest
from dav_fixtures import BASE, dav_env


@pytest.fixture
async def dav(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with dav_env(tmp_path) as env:
        await env.put("f.txt", b"0123456789")
        yield env


async def test_single_range(dav) -> None:
    r = await dav.client.get(f"{BASE}/f.txt", headers={"Range": "bytes=2-4"})
    assert r.status_code == 206
    assert r.content == b"234"
    assert r.headers["content-range"] == "bytes 2-4/10"
    r = await dav.client.get(f"{BASE}/f.txt", headers={"Range": "bytes=-3"})
    assert r.status_code == 206 and r.content == b"789"


async def test_unsatisfiable_range(dav) -> None:
    r = await dav.client.get(f"{BASE}/f.txt", headers={"Range": "bytes=50-60"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */10"


async def test_if_range_with_stale_etag_sends_everything(dav) -> None:
    r = await dav.client.get(f"{BASE}/f.txt", headers={"Range": "bytes=0-0",
                                                       "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == b"0123456789"


async def test_if_none_match(dav) -> None:
    etag = (await dav.client.head(f"{BASE}/f.txt")).headers["etag"]
    r = await dav.client.get(f"{BASE}/f.txt", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["etag"] == etag
    r = await dav.client.get(f"{BASE}/f.txt", headers={"If-None-Match": '"other", W/"x"'})
    assert r.status_code == 200
    r = await dav.client.get(f"{BASE}/f.txt", headers={"If-None-Match": "*"})
    assert r.status_code == 304


async def test_if_match_on_get(dav) -> None:
    etag = (await dav.client.head(f"{BASE}/f.txt")).headers["etag"]
    assert (await dav.client.get(f"{BASE}/f.txt", headers={"If-Match": etag})
            ).status_code == 200
    assert (await dav.client.get(f"{BASE}/f.txt", headers={"If-Match": '"nope"'})
            ).status_code == 412


async def test_put_preconditions(dav) -> None:
    etag = (await dav.client.head(f"{BASE}/f.txt")).headers["etag"]
    r = await dav.put("f.txt", b"new", headers={"If-Match": '"stale"'})
    assert r.status_code == 412
    r = await dav.put("f.txt", b"new", headers={"If-None-Match": "*"})
    assert r.status_code == 412
    assert (await dav.client.get(f"{BASE}/f.txt")).content == b"0123456789"
    assert len(dav.blob_files()) == 1
    r = await dav.put("f.txt", b"new", headers={"If-Match": etag})
    assert r.status_code == 204
    assert (await dav.put("g.txt", b"1", headers={"If-None-Match": "*"})).status_code == 201
    assert (await dav.put("h.txt", b"1", headers={"If-Match": "*"})).status_code == 412
    assert await dav.node("h.txt") is None


async def test_delete_if_match(dav) -> None:
    r = await dav.client.delete(f"{BASE}/f.txt", headers={"If-Match": '"stale"'})
    assert r.status_code == 412
    assert await dav.node("f.txt") is not None

"""Status codes of the simple methods: OPTIONS, PUT, GET/HEAD, MKCOL, DELETE."""

from pathlib import Path

import pytest
from dav_fixtures import BASE, dav_env


@pytest.fixture
async def dav(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    async with dav_env(tmp_path, database_url=database_url) as env:
        yield env


async def test_options_advertises_class_1_and_ranges(dav) -> None:
    r = await dav.client.options(f"{BASE}/")
    assert r.status_code == 200
    assert r.headers["dav"] == "1"
    assert "PROPFIND" in r.headers["allow"]
    assert r.headers["accept-ranges"] == "bytes"


async def test_put_creates_then_overwrites(dav) -> None:
    r = await dav.put("f.txt", b"one")
    assert r.status_code == 201
    node = await dav.node("f.txt")
    assert node is not None and node.size == 3
    assert r.headers["etag"] == f'"{node.etag}"'
    assert r.headers["oc-fileid"] == node.id
    r2 = await dav.put("f.txt", b"second")
    assert r2.status_code == 204
    assert r2.headers["oc-fileid"] == node.id  # same file, new version
    assert r2.headers["etag"] != r.headers["etag"]
    assert (await dav.client.get(f"{BASE}/f.txt")).content == b"second"


async def test_overwrite_drops_the_old_blob(dav) -> None:
    await dav.put("f.txt", b"one")
    await dav.put("f.txt", b"two")
    blobs = dav.blob_files()
    assert len(blobs) == 1 and blobs[0].read_bytes() == b"two"


async def test_get_and_head(dav) -> None:
    await dav.put("doc.pdf", b"%PDF-1.4 body")
    r = await dav.client.get(f"{BASE}/doc.pdf")
    assert r.status_code == 200
    assert r.content == b"%PDF-1.4 body"
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["last-modified"].endswith("GMT")
    h = await dav.client.head(f"{BASE}/doc.pdf")
    assert h.status_code == 200 and h.content == b""
    assert h.headers["content-length"] == "13"
    assert h.headers["etag"] == r.headers["etag"]


async def test_get_missing_and_folder(dav) -> None:
    assert (await dav.client.get(f"{BASE}/nope")).status_code == 404
    await dav.mkcol("dir")
    r = await dav.client.get(f"{BASE}/dir/")
    assert r.status_code == 405
    assert r.headers["content-type"].startswith("application/xml")
    assert "<s:message>" in r.text


async def test_put_errors(dav) -> None:
    assert (await dav.put("missing/f.txt")).status_code == 409
    await dav.mkcol("dir")
    assert (await dav.put("dir")).status_code == 405
    assert (await dav.client.put(f"{BASE}/", content=b"x")).status_code == 405
    await dav.put("file")
    assert (await dav.put("file/child")).status_code == 409
    r = await dav.put("p.txt", headers={"Content-Range": "bytes 0-3/10"})
    assert r.status_code == 400
    assert await dav.node("p.txt") is None


async def test_put_mtime_header(dav) -> None:
    r = await dav.put("m.txt", headers={"X-OC-Mtime": "1700000000"})
    assert r.status_code == 201
    assert r.headers["x-oc-mtime"] == "accepted"
    node = await dav.node("m.txt")
    assert node is not None and node.mtime_ns == 1_700_000_000 * 10**9
    get = await dav.client.get(f"{BASE}/m.txt")
    assert get.headers["last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert (await dav.put("bad.txt", headers={"X-OC-Mtime": "soon"})).status_code == 400


async def test_mkcol(dav) -> None:
    assert (await dav.mkcol("a")).status_code == 201
    assert (await dav.mkcol("a")).status_code == 405
    assert (await dav.mkcol("")).status_code == 405
    assert (await dav.mkcol("x/y")).status_code == 409
    r = await dav.mkcol("b", content=b"<x/>", headers={"Content-Type": "application/xml"})
    assert r.status_code == 415
    assert await dav.node("b") is None
    await dav.put("f")
    assert (await dav.mkcol("f")).status_code == 405
    assert (await dav.mkcol("f/sub")).status_code == 409


async def test_delete(dav) -> None:
    await dav.mkcol("a")
    await dav.mkcol("a/b")
    await dav.put("a/b/c.txt")
    for sibling in ("a.txt", "a0", "ab"):  # just outside the range ['a/', 'a0')
        await dav.put(sibling)
    assert (await dav.client.delete(f"{BASE}/a")).status_code == 204
    assert await dav.node("a") is None
    assert await dav.node("a/b/c.txt") is None
    for sibling in ("a.txt", "a0", "ab"):
        assert await dav.node(sibling) is not None
    assert len(dav.blob_files()) == 3
    assert (await dav.client.delete(f"{BASE}/a")).status_code == 404
    assert (await dav.client.delete(f"{BASE}/")).status_code == 403


async def test_unknown_method_is_405_with_allow(dav) -> None:
    r = await dav.client.request("LOCK", f"{BASE}/x")
    assert r.status_code == 405
    assert "PROPFIND" in r.headers["allow"]

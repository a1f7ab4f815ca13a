"""MOVE and COPY: Destination, Overwrite, Depth, conflicts, subtree handling."""

from pathlib import Path

import pytest
from dav_fixtures import BASE, dav_env


@pytest.fixture
async def dav(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    async with dav_env(tmp_path, database_url=database_url) as env:
        await env.mkcol("a")
        await env.mkcol("a/sub")
        await env.put("a/sub/f.txt", b"hello")
        await env.put("a/g.txt", b"xy")
        yield env


async def transfer(dav, method: str, src: str, dst: str, **headers: str):  # type: ignore[no-untyped-def]
    return await dav.client.request(method, f"{BASE}/{src}",
                                    headers={"Destination": dst, **headers})


async def test_move_subtree_keeps_ids(dav) -> None:
    before = await dav.node("a/sub/f.txt")
    r = await transfer(dav, "MOVE", "a", f"http://dav.test{BASE}/b")
    assert r.status_code == 201
    assert await dav.node("a") is None and await dav.node("a/sub/f.txt") is None
    after = await dav.node("b/sub/f.txt")
    assert after is not None and after.id == before.id
    assert (await dav.node("b/sub")).id == after.parent_id
    assert (await dav.client.get(f"{BASE}/b/sub/f.txt")).content == b"hello"


async def test_rename_file(dav) -> None:
    r = await transfer(dav, "MOVE", "a/g.txt", f"{BASE}/a/h%20h.txt")
    assert r.status_code == 201
    assert (await dav.node("a/h h.txt")).name == "h h.txt"


async def test_overwrite_semantics(dav) -> None:
    await dav.put("other.txt", b"1")
    r = await transfer(dav, "MOVE", "other.txt", f"{BASE}/a/g.txt", Overwrite="F")
    assert r.status_code == 412
    assert await dav.node("other.txt") is not None
    r = await transfer(dav, "COPY", "other.txt", f"{BASE}/a/g.txt", Overwrite="F")
    assert r.status_code == 412
    r = await transfer(dav, "MOVE", "other.txt", f"{BASE}/a/g.txt")
    assert r.status_code == 204
    assert (await dav.client.get(f"{BASE}/a/g.txt")).content == b"1"
    assert (await dav.node("a")).size == 6
    assert len(dav.blob_files()) == 2  # the replaced blob is gone


async def test_copy_deep_and_shallow(dav) -> None:
    r = await transfer(dav, "COPY", "a", f"{BASE}/c")
    assert r.status_code == 201
    copied = await dav.node("c/sub/f.txt")
    original = await dav.node("a/sub/f.txt")
    assert copied.id != original.id and copied.blob_id != original.blob_id
    assert (await dav.node("c")).size == 7
    assert (await dav.node("")).size == 14
    assert (await dav.client.get(f"{BASE}/c/sub/f.txt")).content == b"hello"
    r = await transfer(dav, "COPY", "a", f"{BASE}/d", Depth="0")
    assert r.status_code == 201
    assert (await dav.node("d")).size == 0
    assert await dav.node("d/sub") is None
    r = await transfer(dav, "COPY", "a", f"{BASE}/e", Depth="1")
    assert r.status_code == 400


async def test_copy_overwrite_replaces_folder(dav) -> None:
    await dav.mkcol("t")
    await dav.put("t/old.txt", b"old")
    r = await transfer(dav, "COPY", "a/g.txt", f"{BASE}/t")
    assert r.status_code == 204
    assert await dav.node("t/old.txt") is None
    assert not (await dav.node("t")).is_dir
    # deleting the original must not affect the copy (separate blob)
    await dav.client.delete(f"{BASE}/a/g.txt")
    assert (await dav.client.get(f"{BASE}/t")).content == b"xy"


async def test_conflicts(dav) -> None:
    assert (await transfer(dav, "MOVE", "a", f"{BASE}/a")).status_code == 403
    assert (await transfer(dav, "MOVE", "a", f"{BASE}/a/sub/x")).status_code == 409
    assert (await transfer(dav, "COPY", "a", f"{BASE}/a/sub/x")).status_code == 409
    assert (await transfer(dav, "MOVE", "a/sub", f"{BASE}/a")).status_code == 409
    assert (await transfer(dav, "MOVE", "a", f"{BASE}/none/x")).status_code == 409
    assert (await transfer(dav, "MOVE", "ghost", f"{BASE}/x")).status_code == 404
    assert (await transfer(dav, "MOVE", "", f"{BASE}/x")).status_code == 403
    r = await dav.client.request("MOVE", f"{BASE}/a")
    assert r.status_code == 400  # no Destination
    assert (await transfer(dav, "MOVE", "a", f"{BASE}/b", Overwrite="maybe")).status_code == 400
    assert (await dav.node("a/sub/f.txt")) is not None


async def test_destination_outside_the_space(dav) -> None:
    for dst in ("/dav/spaces/s2/x", "http://elsewhere.test/dav/spaces/s1/x", "/other/x",
                "/dav/spaces/s1x/y"):
        r = await transfer(dav, "MOVE", "a", dst)
        assert r.status_code == 502, dst
        assert "<s:message>" in r.text
    for dst in (f"{BASE}/../../etc", f"{BASE}/a%2Fb", f"{BASE}/%2e%2e/x", f"{BASE}/x%00"):
        assert (await transfer(dav, "MOVE", "a", dst)).status_code == 400, dst
    assert await dav.node("a/sub/f.txt") is not None

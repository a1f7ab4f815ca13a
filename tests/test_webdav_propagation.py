"""Every change refreshes ETag, mtime and tree size of all ancestors, and touches the feed."""

from pathlib import Path

import pytest
from dav_fixtures import BASE, dav_env


@pytest.fixture
async def dav(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    async with dav_env(tmp_path, database_url=database_url) as env:
        await env.mkcol("a")
        await env.mkcol("a/b")
        await env.mkcol("z")
        await env.put("a/b/f.txt", b"12345")
        yield env


async def assert_changed(dav, before: dict[str, str], changed: list[str]) -> None:  # type: ignore[no-untyped-def]
    after = await dav.etags(*[p for p in before if await dav.node(p) is not None])
    for path, etag in after.items():
        if path in changed:
            assert etag != before[path], f"{path} ETag did not change"
        else:
            assert etag == before[path], f"{path} ETag changed"


async def sizes(dav, *paths: str) -> list[int]:  # type: ignore[no-untyped-def]
    return [(await dav.node(p)).size for p in paths]


async def test_put_propagates(dav) -> None:
    assert await sizes(dav, "", "a", "a/b", "z") == [5, 5, 5, 0]
    before = await dav.etags("", "a", "a/b", "z")
    root_mtime = (await dav.node("")).mtime_ns
    dav.feed.touched.clear()
    await dav.put("a/b/g.txt", b"123")
    await assert_changed(dav, before, ["", "a", "a/b"])
    assert await sizes(dav, "", "a", "a/b") == [8, 8, 8]
    assert (await dav.node("")).mtime_ns >= root_mtime
    assert dav.feed.touched == ["s1"]
    before = await dav.etags("", "a", "a/b", "z")
    await dav.put("a/b/g.txt", b"1")  # overwrite shrinks
    await assert_changed(dav, before, ["", "a", "a/b"])
    assert await sizes(dav, "", "a", "a/b") == [6, 6, 6]


async def test_sibling_etags_differ(dav) -> None:
    await dav.put("z/x", b"1")
    etags = await dav.etags("", "a", "z")
    assert len(set(etags.values())) == 3


async def test_mkcol_propagates(dav) -> None:
    before = await dav.etags("", "a", "a/b", "z")
    dav.feed.touched.clear()
    await dav.mkcol("a/b/new")
    await assert_changed(dav, before, ["", "a", "a/b"])
    assert dav.feed.touched == ["s1"]


async def test_delete_propagates(dav) -> None:
    before = await dav.etags("", "a", "z")
    dav.feed.touched.clear()
    await dav.client.delete(f"{BASE}/a/b")
    await assert_changed(dav, before, ["", "a"])
    assert await sizes(dav, "", "a") == [0, 0]
    assert dav.feed.touched == ["s1"]


async def test_move_propagates_both_sides(dav) -> None:
    before = await dav.etags("", "a", "a/b", "z")
    dav.feed.touched.clear()
    r = await dav.client.request("MOVE", f"{BASE}/a/b", headers={"Destination": f"{BASE}/z/b"})
    assert r.status_code == 201
    await assert_changed(dav, before, ["", "a", "z"])
    assert await sizes(dav, "", "a", "z", "z/b") == [5, 0, 5, 5]
    assert dav.feed.touched == ["s1"]


async def test_copy_propagates(dav) -> None:
    before = await dav.etags("", "a", "a/b", "z")
    dav.feed.touched.clear()
    r = await dav.client.request("COPY", f"{BASE}/a", headers={"Destination": f"{BASE}/z/a"})
    assert r.status_code == 201
    await assert_changed(dav, before, ["", "z"])
    assert await sizes(dav, "", "a", "z", "z/a", "z/a/b") == [10, 5, 5, 5, 5]
    assert dav.feed.touched == ["s1"]


async def test_failed_request_changes_nothing(dav) -> None:
    before = await dav.etags("", "a", "a/b", "z")
    dav.feed.touched.clear()
    await dav.put("missing/x", b"1")
    await dav.mkcol("a")
    await dav.client.request("MOVE", f"{BASE}/a", headers={"Destination": f"{BASE}/a/b/c"})
    await assert_changed(dav, before, [])
    assert dav.feed.touched == []

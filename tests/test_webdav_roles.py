"""Roles and operations: what a viewer, an editor and a non-member may do."""

from pathlib import Path

import pytest
from dav_fixtures import BASE, dav_env


@pytest.fixture
async def dav(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with dav_env(tmp_path) as env:
        await env.mkcol("dir")
        await env.put("dir/f.txt", b"content")
        yield env


def requests(role: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    h = {"X-Role": role}
    return [
        ("PUT", "dir/new.txt", h, b"x"),
        ("PUT", "dir/f.txt", h, b"overwrite"),
        ("MKCOL", "dir/sub", h, b""),
        ("PROPPATCH", "dir/f.txt", h, b'<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop>'
         b'<x:a xmlns:x="urn:x">1</x:a></d:prop></d:set></d:propertyupdate>'),
        ("COPY", "dir/f.txt", {**h, "Destination": f"{BASE}/copied.txt"}, b""),
        ("COPY", "dir", {**h, "Destination": f"{BASE}/dir2"}, b""),
        ("MOVE", "dir/f.txt", {**h, "Destination": f"{BASE}/moved.txt"}, b""),
        ("DELETE", "dir/new.txt", h, b""),
    ]


async def test_viewer_reads_but_cannot_write(dav) -> None:
    h = {"X-Role": "viewer"}
    r = await dav.client.request("PROPFIND", f"{BASE}/dir", headers={**h, "Depth": "1"})
    assert r.status_code == 207
    r = await dav.client.get(f"{BASE}/dir/f.txt", headers=h)
    assert r.status_code == 200 and r.content == b"content"
    before = await dav.etags("", "dir", "dir/f.txt")
    for method, path, headers, body in requests("viewer"):
        r = await dav.client.request(method, f"{BASE}/{path}", headers=headers, content=body)
        assert r.status_code == 403, (method, path)
        assert "Forbidden" in r.text
    assert await dav.etags("", "dir", "dir/f.txt") == before
    assert await dav.node("dir/new.txt") is None and await dav.node("copied.txt") is None


async def test_editor_can_do_everything(dav) -> None:
    expected = [201, 204, 201, 207, 201, 201, 201, 204]
    got = []
    for method, path, headers, body in requests("editor"):
        r = await dav.client.request(method, f"{BASE}/{path}", headers=headers, content=body)
        got.append(r.status_code)
    assert got == expected
    assert (await dav.client.get(f"{BASE}/moved.txt")).content == b"overwrite"
    assert (await dav.client.get(f"{BASE}/dir2/sub/")).status_code == 405  # a folder


async def test_non_member_gets_nothing(dav) -> None:
    h = {"X-Role": "none"}
    assert (await dav.client.request("PROPFIND", f"{BASE}/", headers={**h, "Depth": "0"})
            ).status_code == 403
    assert (await dav.client.get(f"{BASE}/dir/f.txt", headers=h)).status_code == 403
    assert (await dav.client.options(f"{BASE}/", headers=h)).status_code == 200


async def test_overwriting_move_needs_delete(dav) -> None:
    # "mover" may MOVE but not DELETE: it cannot replace an existing destination
    await dav.put("other.txt", b"1")
    r = await dav.client.request("MOVE", f"{BASE}/other.txt", headers={
        "Destination": f"{BASE}/dir/f.txt", "X-Role": "mover"})
    assert r.status_code == 403
    assert (await dav.client.get(f"{BASE}/dir/f.txt")).content == b"content"
    r = await dav.client.request("MOVE", f"{BASE}/other.txt", headers={
        "Destination": f"{BASE}/dir/fresh.txt", "X-Role": "mover"})
    assert r.status_code == 201

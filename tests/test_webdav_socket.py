"""The same app over a real socket (uvicorn): wire behaviour and aborted uploads."""

import asyncio
from pathlib import Path

import httpx
import pytest
from dav_fixtures import BASE, dav_env, raw_request, serve

MIB = 1024 * 1024


@pytest.fixture
async def wire(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with dav_env(tmp_path, quota=10 * MIB) as env, serve(env.app) as port:
        yield env, port


async def test_put_get_range_over_the_wire(wire) -> None:
    env, port = wire
    body = bytes(range(256)) * 8192  # 2 MiB, several writer chunks
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        r = await client.put(f"{BASE}/big.bin", content=body)
        assert r.status_code == 201
        r = await client.get(f"{BASE}/big.bin")
        assert r.content == body
        r = await client.get(f"{BASE}/big.bin", headers={"Range": "bytes=1000-1999"})
        assert r.status_code == 206 and r.content == body[1000:2000]
    assert (await env.node("")).size == len(body)
    assert env.temp_files() == []


async def test_traversal_over_the_wire(wire) -> None:
    env, port = wire
    for target in ("/dav/spaces/s1/../../etc/passwd", "/dav/spaces/s1/%2e%2e/x",
                   "/dav/spaces/s1/x%00", "/dav/spaces/s1//etc/passwd"):
        head = (f"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                "Connection: close\r\n\r\n")
        status, _ = await raw_request(port, head, b"abc")
        assert status == 400, target
    assert env.blob_files() == []


async def test_aborted_upload_leaves_nothing(wire) -> None:
    env, port = wire
    root_before = await env.node("")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"PUT {BASE}/partial.bin HTTP/1.1\r\nHost: x\r\n"
                  f"Content-Length: {MIB}\r\n\r\n").encode())
    writer.write(b"z" * (100 * 1024))
    await writer.drain()
    # wait until the upload is really under way (its temp file exists), then cut it off
    for _ in range(500):
        if env.temp_files():
            break
        await asyncio.sleep(0.01)
    assert env.temp_files(), "the upload never started"
    writer.transport.abort()
    for _ in range(500):
        if not env.temp_files():
            break
        await asyncio.sleep(0.01)
    assert env.temp_files() == []
    assert await env.node("partial.bin") is None
    root = await env.node("")
    assert root.size == 0 and root.etag == root_before.etag
    quota = await env.tree.quota("s1")
    assert quota.used == 0
    assert env.blob_files() == []
    del reader


async def test_content_length_over_quota_is_refused_before_the_body(wire) -> None:
    env, port = wire
    head = (f"PUT {BASE}/huge HTTP/1.1\r\nHost: x\r\nContent-Length: {20 * MIB}\r\n"
            "Expect: 100-continue\r\n\r\n")
    status, _ = await raw_request(port, head)
    assert status == 507
    assert env.temp_files() == [] and env.blob_files() == []

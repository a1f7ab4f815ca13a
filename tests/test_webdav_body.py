"""GET bodies (provider.body): a body read whole in one call and one streamed in CHUNK
reads answer like FileResponse (HEAD, Range), survive an unlink once open, and close
their file however the response ends."""

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from dav_fixtures import BASE, dav_env, serve
from starlette.types import Message

from provider.body import CHUNK, BlobStream, blob_response, open_blob

SIZES = {"small.bin": 4096, "whole.bin": CHUNK, "big.bin": 2 * CHUNK + 12345}


def content(size: int) -> bytes:
    return bytes(range(251)) * (size // 251) + bytes(range(size % 251))


@pytest.fixture(params=["asgi", "wire"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    async with dav_env(tmp_path) as env:
        for name, size in SIZES.items():
            assert (await env.put(name, content(size))).status_code == 201
        if request.param == "asgi":
            yield env.client
            return
        async with serve(env.app) as port, httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}") as wire:
            yield wire


def without_date(headers: httpx.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != "date"}


@pytest.mark.parametrize("name", SIZES)
async def test_get_answers_like_head(client: httpx.AsyncClient, name: str) -> None:
    """HEAD still goes through FileResponse: GET must send the same headers."""
    head = await client.head(f"{BASE}/{name}")
    r = await client.get(f"{BASE}/{name}")
    assert r.status_code == head.status_code == 200
    assert r.content == content(SIZES[name])
    assert without_date(r.headers) == without_date(head.headers)
    assert r.headers["content-length"] == str(SIZES[name])
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"] == r.headers["oc-etag"] and r.headers["oc-fileid"]
    assert r.headers["last-modified"].endswith(" GMT")
    assert r.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize("name", SIZES)
async def test_ranges(client: httpx.AsyncClient, name: str) -> None:
    size, body = SIZES[name], content(SIZES[name])
    url = f"{BASE}/{name}"
    for first, last in ((0, 0), (100, size - 1), (size - CHUNK // 2 - 7, size - 1)):
        first = max(first, 0)
        r = await client.get(url, headers={"Range": f"bytes={first}-{last}"})
        assert r.status_code == 206
        assert r.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert r.content == body[first:last + 1]
    etag = (await client.head(url)).headers["etag"]
    r = await client.get(url, headers={"Range": "bytes=1-2", "If-Range": etag})
    assert r.status_code == 206 and r.content == body[1:3]
    r = await client.get(url, headers={"Range": "bytes=1-2", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == body


async def test_blob_gone_since_the_lookup_is_404(tmp_path: Path) -> None:
    async with dav_env(tmp_path) as env:
        await env.put("f.bin", b"x" * 10)
        for blob in env.blob_files():
            blob.unlink()
        for method, headers in (("GET", {}), ("GET", {"Range": "bytes=0-1"}), ("HEAD", {})):
            r = await env.client.request(method, f"{BASE}/f.bin", headers=headers)
            assert r.status_code == 404, method
            if method == "GET":
                assert b"changed while being read" in r.content


async def call(response: BlobStream, receive_disconnect: bool) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        if receive_disconnect:
            return {"type": "http.disconnect"}
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "headers": [],
             "asgi": {"version": "3.0", "spec_version": "2.3"}}
    await response(scope, receive, send)
    return sent


async def test_open_blob_reads_on_after_unlink_and_closes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    body = content(3 * CHUNK + 1)
    path.write_bytes(body)
    blob = open_blob(path)
    path.unlink()  # an overwrite or delete after the open: the body is still whole
    response = blob_response(blob, {"ETag": '"e"'}, "application/octet-stream")
    assert isinstance(response, BlobStream)
    sent = await call(response, receive_disconnect=False)
    assert sent[0]["status"] == 200
    assert (b"content-length", str(len(body)).encode()) in sent[0]["headers"]
    assert b"".join(m.get("body", b"") for m in sent[1:]) == body
    assert response.file.closed


async def test_stream_closes_its_file_when_the_client_leaves(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(content(4 * CHUNK))
    response = blob_response(open_blob(path), {}, "application/octet-stream")
    assert isinstance(response, BlobStream)
    sent = await call(response, receive_disconnect=True)
    assert sum(len(m.get("body", b"")) for m in sent) < 4 * CHUNK
    assert response.file.closed


async def test_small_blob_is_read_whole_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"abc")
    blob = open_blob(path)
    assert blob.file is None and blob.head == b"abc" and blob.size == 3
    path.write_bytes(b"")
    assert open_blob(path).head == b""

"""Path traversal and malformed paths are 400 (or 414) and touch nothing.

Requests are fed to the ASGI app with a hand-made scope, exactly as an HTTP server
passes them on (``path`` percent-decoded, ``raw_path`` as sent), because HTTP clients
would normalise ``..`` before sending.
"""

from pathlib import Path
from urllib.parse import unquote

import pytest
from dav_fixtures import dav_env
from sqlalchemy import func, select

from provider.models import nodes

TRICKS = [
    b"/dav/spaces/s1/../../etc/passwd",
    b"/dav/spaces/s1/a/../../x",
    b"/dav/spaces/s1/%2e%2e/x",
    b"/dav/spaces/s1/%2E%2e/",
    b"/dav/spaces/s1/a/%2e%2E",
    b"/dav/spaces/s1/./x",
    b"/dav/spaces/s1/a/%2e/x",
    b"/dav/spaces/s1/a%2f..%2fx",
    b"/dav/spaces/s1/a%2F%2E%2E",
    b"/dav/spaces/s1/a%5c..%5cx",
    b"/dav/spaces/s1/a\\..\\x",
    b"/dav/spaces/s1/x%00.txt",
    b"/dav/spaces/s1/x%01y",
    b"/dav/spaces/s1//etc/passwd",
    b"/dav/spaces/s1/a//b",
]


@pytest.fixture
async def dav(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with dav_env(tmp_path) as env:
        await env.mkcol("a")
        yield env


async def call(app, method: str, raw_path: bytes, body: bytes = b"") -> int:  # type: ignore[no-untyped-def]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": "http", "root_path": "", "query_string": b"",
        "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
        "headers": [(b"host", b"dav.test"), (b"depth", b"0"),
                    (b"content-length", str(len(body)).encode()),
                    (b"destination", b"/dav/spaces/s1/moved")],
        "server": ("dav.test", 80), "client": ("127.0.0.1", 1234),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"]


async def count_nodes(dav) -> int:  # type: ignore[no-untyped-def]
    async with dav.tree.db.read() as conn:
        return (await conn.execute(select(func.count()).select_from(nodes))).scalar_one()


@pytest.mark.parametrize("raw_path", TRICKS)
@pytest.mark.parametrize("method", ["PUT", "MKCOL", "GET", "DELETE", "PROPFIND", "MOVE"])
async def test_traversal_is_400_and_changes_nothing(dav, method: str, raw_path: bytes) -> None:
    before = await count_nodes(dav), await dav.etags("", "a")
    body = b"payload" if method == "PUT" else b""
    assert await call(dav.app, method, raw_path, body) == 400
    assert (await count_nodes(dav), await dav.etags("", "a")) == before
    assert dav.blob_files() == [] and dav.temp_files() == []
    assert not (dav.storage_root.parent / "etc").exists()


async def test_sane_paths_still_work(dav) -> None:
    assert await call(dav.app, "PUT", b"/dav/spaces/s1/a/..x", b"1") == 201
    assert await call(dav.app, "PUT", b"/dav/spaces/s1/a/x..", b"1") == 201
    assert await call(dav.app, "PUT", b"/dav/spaces/s1/a/%25252e", b"1") == 201
    assert await call(dav.app, "MKCOL", b"/dav/spaces/s1/a/b/") == 201
    assert await dav.node("a/%252e") is not None


async def test_long_paths(dav) -> None:
    assert await call(dav.app, "PUT", b"/dav/spaces/s1/" + b"n" * 256, b"1") == 400
    deep = "/".join(["d" * 200] * 11).encode()  # > 2000 bytes
    assert await call(dav.app, "PUT", b"/dav/spaces/s1/" + deep, b"1") == 414
    assert dav.blob_files() == []

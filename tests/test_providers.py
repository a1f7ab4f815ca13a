"""Several providers behind one registry: registration, placement, routing, change stream.

The second provider runs as ``fedspace serve --only provider`` would: its own HTTP and
gRPC servers, its own storage, reachable only through the gateway's signed grants.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
from conftest import Running, make_settings

from fedspace.app import Instance

SECRET = "x" * 48


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _eventually(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.05)


async def test_two_providers(start_instance, databases, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    main: Running = await start_instance("main", internal_secret=SECRET)
    await main.add_user("alice")
    port = _free_port()
    p2_url = await databases("p2")  # a provider on another host has its own database
    p2 = Instance(make_settings(
        tmp_path / "p2", p2_url, internal_secret=SECRET,
        http={"host": "127.0.0.1", "port": port},
        provider={"id": "p2", "registry_address": main.instance.ctx.grpc_address,
                  "dav_url": f"http://127.0.0.1:{port}"},
    ), only=["provider"])
    await p2.start()
    try:
        registry = main.instance.ctx.components["registry"]
        assert await _eventually(lambda: _async(registry.providers.get("p2") is not None))
        alice = main.client("alice")
        await alice.get("/graph/v1.0/me/drives")  # personal space → on one provider

        ids = []
        for name in ("one", "two", "three"):
            r = await alice.post("/graph/v1.0/drives", json={"name": name})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        placed = {d.id: d.provider_id for d in await registry.service.list_drives(
            await _principal(main, "alice"))}
        assert set(placed.values()) == {"provider-1", "p2"}  # least-loaded placement
        remote = next(i for i in ids if placed[i] == "p2")

        before = (await alice.get(f"/graph/v1.0/drives/{remote}")).json()["root"]["eTag"]
        r = await alice.put(f"/dav/spaces/{remote}/hello.txt", content=b"hello from p2")
        assert r.status_code == 201, r.text
        r = await alice.get(f"/dav/spaces/{remote}/hello.txt")
        assert (r.status_code, r.content) == (200, b"hello from p2")
        r = await alice.request("PROPFIND", f"/dav/spaces/{remote}/", headers={"Depth": "1"})
        assert r.status_code == 207 and "hello.txt" in r.text

        # The content lives in p2's storage, not in the main instance's.
        p2_files = [p for p in (tmp_path / "p2").rglob("*") if p.is_file()
                    and p.read_bytes() == b"hello from p2"]
        main_files = [p for p in (tmp_path / "main").rglob("*") if p.is_file()
                      and p.suffix != ".db" and p.read_bytes() == b"hello from p2"]
        assert p2_files and not main_files

        async def streamed() -> bool:
            d = (await alice.get(f"/graph/v1.0/drives/{remote}")).json()
            return d["root"]["eTag"] != before and d["quota"]["used"] == 13

        assert await _eventually(streamed), "p2's root change never reached the registry"

        # p2's data plane refuses anything that is not a grant from the gateway.
        async with httpx.AsyncClient() as direct:
            r = await direct.get(f"http://127.0.0.1:{port}/dav/spaces/{remote}/hello.txt",
                                 auth=("alice", main.users["alice"][1]))
            assert r.status_code == 401
            r = await direct.get(f"http://127.0.0.1:{port}/dav/spaces/{remote}/hello.txt",
                                 headers={"X-Fedspace-Grant": "forged"})
            assert r.status_code == 401
    finally:
        await p2.stop()


async def _async(value):  # type: ignore[no-untyped-def]
    return value


async def _principal(running: Running, name: str):  # type: ignore[no-untyped-def]
    directory = running.instance.ctx.components["discovery"].directory
    return await directory.principal(running.users[name][0])


async def test_registry_without_providers_answers_503(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    registry_only = Instance(settings, only=["discovery", "registry"])
    await registry_only.start()
    try:
        running = Running(registry_only, registry_only.url)
        await running.add_user("alice")
        r = await running.client("alice").get("/graph/v1.0/me/drives")
        assert r.status_code == 503
        assert "no storage provider is registered" in r.json()["detail"]
        r = await running.client("alice").post("/graph/v1.0/drives", json={"name": "x"})
        assert r.status_code == 503
    finally:
        for c in running.clients:
            await c.aclose()
        await registry_only.stop()

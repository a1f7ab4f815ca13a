"""Credential caches verify once for concurrent callers, and never keep a failure."""

import asyncio

import pytest

from discovery.verified import VerifiedCache


async def test_concurrent_misses_share_one_verification() -> None:
    cache: VerifiedCache[str] = VerifiedCache()
    calls = 0
    gate = asyncio.Event()

    async def verify() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "alice", 30

    waiters = [asyncio.create_task(cache.load("k", verify)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == ["alice"] * 20
    assert calls == 1
    assert cache.get("k") == "alice"


async def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    cache: VerifiedCache[str] = VerifiedCache()
    calls = 0

    async def refuse() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise PermissionError("unknown user or app password")

    results = await asyncio.gather(*(cache.load("k", refuse) for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, PermissionError) for r in results) and calls == 1
    assert cache.get("k") is None
    with pytest.raises(PermissionError):
        await cache.load("k", refuse)
    assert calls == 2


async def test_one_caller_giving_up_does_not_fail_the_others() -> None:
    cache: VerifiedCache[str] = VerifiedCache()
    gate = asyncio.Event()

    async def verify() -> tuple[str, float]:
        await gate.wait()
        return "alice", 30

    first = asyncio.create_task(cache.load("k", verify))
    second = asyncio.create_task(cache.load("k", verify))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == "alice"
    assert first.cancelled()


async def test_entries_expire_and_zero_seconds_is_not_kept() -> None:
    cache: VerifiedCache[str] = VerifiedCache()

    async def brief() -> tuple[str, float]:
        return "v", 0.05

    async def never() -> tuple[str, float]:
        return "w", 0

    assert await cache.load("a", brief) == "v" and cache.get("a") == "v"
    await asyncio.sleep(0.06)
    assert cache.get("a") is None
    assert await cache.load("b", never) == "w" and cache.get("b") is None


async def test_a_burst_of_basic_requests_checks_the_password_once(instance, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Over the wire: 32 connections with the same, not yet cached, app password."""
    directory = instance.instance.ctx.components["discovery"].directory
    checks = 0
    check = directory.check_app_password

    async def counted(username: str, secret: str):  # type: ignore[no-untyped-def]
        nonlocal checks
        checks += 1
        return await check(username, secret)

    monkeypatch.setattr(directory, "check_app_password", counted)
    clients = [instance.client("bob") for _ in range(32)]
    answers = await asyncio.gather(*(c.get("/graph/v1.0/me/drives") for c in clients))
    assert [r.status_code for r in answers] == [200] * 32
    assert checks == 1

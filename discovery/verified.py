"""What verifying a credential gave, kept until it expires, and verified once at a time.

Every verifier (app passwords, bearer tokens, browser sessions) keeps the hot path to one
dict lookup. When an entry expires, every connection of a busy client misses at the same
moment; without single flight each one would repeat the same database reads and the
last-used write behind the write lock (64 connections, 64 writes, a latency spike every
expiry). Here concurrent misses for one credential share one verification.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_ENTRIES = 10_000  # bounded so memory stays flat under credential stuffing


def digest(credential: str) -> str:
    """The key for a credential: its hash, so the cache never holds a secret."""
    return hashlib.sha256(credential.encode()).hexdigest()


class VerifiedCache(Generic[T]):
    def __init__(self) -> None:
        self._entries: dict[str, tuple[T, float]] = {}  # key → (value, monotonic deadline)
        self._inflight: dict[str, asyncio.Future[T]] = {}

    def get(self, key: str) -> T | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[1] > time.monotonic():
            return hit[0]
        del self._entries[key]
        return None

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    async def load(self, key: str, verify: Callable[[], Awaitable[tuple[T, float]]]) -> T:
        """``verify()`` → (value, seconds to keep it); callers arriving while it runs wait
        for the same result (or failure). It runs as its own task, so one caller giving
        up (a client disconnecting) does not fail the others."""
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(self._fill(key, verify))
            self._inflight[key] = future
            future.add_done_callback(lambda f: self._settled(key, f))
        return await asyncio.shield(future)

    async def _fill(self, key: str, verify: Callable[[], Awaitable[tuple[T, float]]]) -> T:
        value, seconds = await verify()
        if seconds > 0:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (value, time.monotonic() + seconds)
        return value

    def _settled(self, key: str, future: asyncio.Future[T]) -> None:
        self._inflight.pop(key, None)
        if not future.cancelled():
            future.exception()  # retrieved: waiters may all have gone

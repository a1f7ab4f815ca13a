"""In-memory sliding-window limiter for login attempts (per account, per client address).

Per process: enough to make online guessing slow; a scaled-out IdP multiplies the budget
by its number of processes.
"""

from __future__ import annotations

import time
from collections import deque

MAX_KEYS = 100_000


class SlidingWindow:
    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._hits: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        hits = self._hits.get(key)
        if hits is None:
            return deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            del self._hits[key]
        return hits

    def exceeded(self, key: str, limit: int) -> bool:
        return len(self._recent(key, time.monotonic())) >= limit

    def hit(self, key: str) -> None:
        now = time.monotonic()
        if key not in self._hits and len(self._hits) >= MAX_KEYS:
            self._evict(now)
        self._hits.setdefault(key, deque()).append(now)

    def _evict(self, now: float) -> None:
        for key in list(self._hits):
            self._recent(key, now)
        if len(self._hits) >= MAX_KEYS:  # still full of live keys: drop the oldest
            oldest = min(self._hits, key=lambda k: self._hits[k][-1])
            del self._hits[oldest]

"""Watching shares arrive: when paris committed the remote space of each share.

Read from the receiving instance's SQLite registry, read-only (WAL: a reader never blocks
its writers), polled every few ms by a thread of the benchmark, so seeing a share costs
the instances nothing (listing Marie's drives through the API would cost paris work).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select

from registry.models import spaces

POLL_SECONDS = 0.005


class Arrivals:
    """When each share (by OCM ``providerId``) first became a remote space in a SQLite
    registry: a thread polling new rows by ``change_seq`` (indexed), read-only."""

    def __init__(self, database: Path) -> None:
        self._engine = create_engine(f"sqlite:///file:{database}?mode=ro&uri=true")
        self.seen: dict[str, float] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._changed:  # wakes a waiter too (the driver was cancelled, Ctrl-C)
            self._stop.set()
            self._changed.notify_all()
        self._thread.join()
        self._engine.dispose()

    def _poll(self) -> None:
        query = select(spaces.c.change_seq, spaces.c.remote_provider_id).where(
            spaces.c.type == "remote")
        with self._engine.connect() as conn:
            last = conn.scalar(select(func.max(spaces.c.change_seq))) or 0
            conn.rollback()
            while not self._stop.wait(POLL_SECONDS):
                rows = conn.execute(query.where(spaces.c.change_seq > last)).all()
                conn.rollback()  # end the read transaction: the next poll sees new commits
                now = time.monotonic()
                with self._changed:
                    for seq, provider_id in rows:
                        self.seen.setdefault(provider_id, now)
                        last = max(last, seq)
                    self._changed.notify_all()

    def wait_for(self, ids: set[str], timeout: float) -> bool:
        """Until every share of ``ids`` was seen (True), or ``timeout`` seconds passed or
        the watch ended (False)."""
        with self._changed:
            self._changed.wait_for(lambda: ids <= self.seen.keys() or self._stop.is_set(),
                                   timeout)
            return ids <= self.seen.keys()

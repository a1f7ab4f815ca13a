"""Space root changes, coalesced and streamed to the registry.

Every write in the data plane ends with ``ChangeFeed.touch(space_id)``. The feed keeps
only the newest pending state per space, so a burst of uploads costs one message, and a
sender task (``provider.registration``) drains it into the registry's gRPC stream.
"""

from __future__ import annotations

import asyncio


class ChangeFeed:
    def __init__(self) -> None:
        self._pending: dict[str, None] = {}
        self._wakeup = asyncio.Event()

    def touch(self, space_id: str) -> None:
        """Mark a space as changed; cheap and never blocks the request."""
        self._pending[space_id] = None
        self._wakeup.set()

    async def next_batch(self) -> list[str]:
        """Wait for changed spaces and take them all (each once, in change order)."""
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        batch = list(self._pending)
        self._pending.clear()
        return batch

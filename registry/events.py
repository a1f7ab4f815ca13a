"""In-process fan-out of drive changes to Server-Sent Events subscribers.

The bus carries no payload a client relies on: it only wakes subscribers, which then
read what changed from the ``spaces`` table (``change_seq`` > what they last sent). A
missed wake-up or a reconnect therefore never loses a change.
"""

from __future__ import annotations

import asyncio


class Subscription:
    def __init__(self, bus: EventBus, principals: frozenset[str]) -> None:
        self.bus = bus
        self.principals = principals
        self.event = asyncio.Event()
        # Set when a membership of one of our principals changed: recompute visibility.
        self.membership_changed = False

    def close(self) -> None:
        self.bus.subscribers.discard(self)


class EventBus:
    def __init__(self) -> None:
        self.subscribers: set[Subscription] = set()

    def subscribe(self, principals: frozenset[str]) -> Subscription:
        sub = Subscription(self, principals)
        self.subscribers.add(sub)
        return sub

    def drives_changed(self) -> None:
        for sub in self.subscribers:
            sub.event.set()

    def memberships_changed(self, principal_ids: set[str]) -> None:
        for sub in self.subscribers:
            if sub.principals & principal_ids:
                sub.membership_changed = True
                sub.event.set()

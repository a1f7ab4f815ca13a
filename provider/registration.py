"""A provider's link to its registry: register, then stream root changes, forever.

On every (re)connect the provider first sends the state of every space it holds, then
the changes as they happen. Losing the registry for a while therefore loses nothing; the
link retries with capped exponential backoff. States go a page per message (the registry
applies a message in one transaction), so a resync of a million spaces is a thousand
transactions, not a million.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc

from fedspace.internal import InternalTokens
from fedspace.rpc import call_metadata
from fedspace.rpc import spaces_pb2 as pb
from fedspace.rpc.spaces_pb2_grpc import RegistryStub
from provider.changes import ChangeFeed
from provider.grpc import to_pb
from provider.service import ProviderService

log = logging.getLogger("fedspace.provider")
PAGE = 1000  # states per message: well under gRPC's 4 MiB, one registry transaction


class RegistryLink:
    def __init__(
        self, service: ProviderService, feed: ChangeFeed, tokens: InternalTokens,
        registry_address: str, grpc_address: str, dav_url: str,
    ) -> None:
        self.service = service
        self.feed = feed
        self.tokens = tokens
        self.registry_address = registry_address
        self.grpc_address = grpc_address
        self.dav_url = dav_url
        self.registered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="registry-link")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                async with grpc.aio.insecure_channel(self.registry_address) as channel:
                    stub = RegistryStub(channel)
                    spaces, used = await self.service.usage()
                    await stub.RegisterProvider(pb.ProviderInfo(
                        provider_id=self.service.provider_id, grpc_address=self.grpc_address,
                        dav_url=self.dav_url, spaces=spaces, bytes_used=used,
                    ), metadata=call_metadata(self.tokens), timeout=10)
                    self.registered.set()
                    delay = 0.2
                    await stub.PublishChanges(self._states(),
                                              metadata=call_metadata(self.tokens))
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                log.warning("registry link down", extra={
                    "registry": self.registry_address, "code": exc.code().name,
                    "retry_in": delay})
            except Exception:
                log.exception("registry link failed", extra={"retry_in": delay})
            self.registered.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _states(self) -> AsyncIterator[pb.SpaceStates]:
        """Every space's state, then each batch of changes the feed coalesced."""
        pid = self.service.provider_id
        after, sent, started = "", 0, time.monotonic()
        while page := await self.service.all_states(after, PAGE):
            yield pb.SpaceStates(states=[to_pb(pid, state) for state in page])
            after, sent = page[-1].space_id, sent + len(page)
        log.info("registry resynced", extra={
            "spaces": sent, "seconds": round(time.monotonic() - started, 3)})
        while True:
            batch = await self.feed.next_batch()
            for start in range(0, len(batch), PAGE):
                some = batch[start:start + PAGE]
                held = {s.space_id: s for s in await self.service.states(some)}
                yield pb.SpaceStates(states=[
                    to_pb(pid, held[space_id]) if space_id in held
                    else pb.SpaceState(space_id=space_id, provider_id=pid, deleted=True)
                    for space_id in some])

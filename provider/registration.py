"""A provider's link to its registry: register, then stream root changes, forever.

On every (re)connect the provider first sends the state of every space it holds, then
the changes as they happen. Losing the registry for a while therefore loses nothing;
the link retries with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
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

    async def _states(self) -> AsyncIterator[pb.SpaceState]:
        pid = self.service.provider_id
        for state in await self.service.all_states():
            yield to_pb(pid, state)
        while True:
            batch = await self.feed.next_batch()
            held = {s.space_id: s for s in await self.service.states(batch)}
            for space_id in batch:
                state = held.get(space_id)
                if state is None:
                    yield pb.SpaceState(space_id=space_id, provider_id=pid, deleted=True)
                else:
                    yield to_pb(pid, state)

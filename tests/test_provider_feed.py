"""The root-change stream from a provider to its registry: batches, and the resync.

A provider sends its states many per message and the registry applies each message in
one transaction, writing only what changed; after a reconnect the provider sends every
space it holds, a page at a time, so whatever the registry missed is made good.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, update
from test_registry_reads import ALICE, add_space

import provider.registration
from fedspace.rpc import spaces_pb2 as pb
from registry.models import counters, spaces
from registry.service import RegistryService


async def _rows(service: RegistryService) -> dict[str, tuple[str, int, int, int]]:
    async with service.db.read() as conn:
        return {r.id: (r.etag, r.size, r.modified_ms, r.change_seq) for r in await conn.execute(
            select(spaces.c.id, spaces.c.etag, spaces.c.size, spaces.c.modified_ms,
                   spaces.c.change_seq))}


async def _counter(service: RegistryService) -> int:
    async with service.db.read() as conn:
        return int((await conn.execute(select(counters.c.value))).scalar_one())


async def test_a_batch_writes_only_what_changed(registry: RegistryService) -> None:
    owner = ("user", ALICE.id, "manager")
    grown, same, renamed, gone = [await add_space(registry, owner) for _ in range(4)]
    elsewhere = await add_space(registry, owner, provider_id="p-2")
    before, seq = await _rows(registry), await _counter(registry)
    mtime = 1_800_000_000_123_000_000

    def state(space_id: str, **values: Any) -> pb.SpaceState:
        etag, size, _, _ = before.get(space_id, ("", 0, 0, 0))
        return pb.SpaceState(space_id=space_id, provider_id="p-1",
                             **{"etag": etag, "size": size, "mtime_ns": mtime, **values})

    applied = await registry.apply_states("p-1", [
        state(grown, size=42), state(same), state(renamed, etag="new"),
        state(gone, etag="ignored", deleted=True),  # the registry deletes spaces itself
        state(elsewhere, etag="not-p-1"),  # held by another provider
        state("no-such-space", etag="x"),
    ])

    after = await _rows(registry)
    assert applied == 2
    assert after[grown][:3] == (before[grown][0], 42, 1_800_000_000_123)
    assert after[renamed][:3] == ("new", before[renamed][1], 1_800_000_000_123)
    assert {after[s] for s in (same, gone, elsewhere)} == {before[s] for s in (same, gone,
                                                                              elsewhere)}
    # One change_seq for each space that changed, and none for the rest.
    assert sorted((after[grown][3], after[renamed][3])) == [seq + 1, seq + 2]
    assert await _counter(registry) == seq + 2
    assert await registry.apply_states("p-1", [state(same)]) == 0
    assert await _counter(registry) == seq + 2


async def test_a_reconnect_resends_every_space_a_page_per_message(  # type: ignore[no-untyped-def]
    instance, monkeypatch: pytest.MonkeyPatch,
) -> None:
    components = instance.instance.ctx.components
    link, service = components["provider"].link, components["registry"].service
    alice = instance.client("alice")
    ids = []
    for i in range(4):
        r = await alice.post("/graph/v1.0/drives", json={"name": f"P{i}"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])

    # The link goes down; meanwhile a file arrives and the registry loses track of the
    # others' roots (as if their changes had been lost with the link).
    await link.stop()
    r = await alice.put(f"/dav/spaces/{ids[0]}/while-down.txt", content=b"12345")
    assert r.status_code == 201, r.text
    async with instance.instance.ctx.db.write() as conn:
        await conn.execute(update(spaces).where(spaces.c.id.in_(ids[1:])).values(
            etag="stale", size=999))

    messages: list[list[str]] = []
    apply = service.apply_states

    async def spy(provider_id: str, states: list[pb.SpaceState]) -> int:
        messages.append([s.space_id for s in states])
        return await apply(provider_id, states)

    monkeypatch.setattr(service, "apply_states", spy)
    monkeypatch.setattr(provider.registration, "PAGE", 2)
    link.start()

    truth = {s.space_id: (s.etag, s.size)
             for s in await components["provider"].service.states(ids)}
    for _ in range(200):
        rows = await _rows(service)
        if all(rows[i][:2] == truth[i] for i in ids):
            break
        await asyncio.sleep(0.05)
    assert {i: rows[i][:2] for i in ids} == truth
    assert truth[ids[0]][1] == 5
    assert messages and all(1 <= len(m) <= 2 for m in messages)
    assert set(ids) <= {space_id for m in messages for space_id in m}

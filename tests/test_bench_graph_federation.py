"""drives-50, drives-scale and share-1000 of ``fedspace bench``: the parts that need no
timing (the bulk loader against a real instance, the constant peer, the arrival watcher,
statistics and targets) and one quick end-to-end drives-50 run. No test asserts a timing."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from conftest import Running, make_settings
from sqlalchemy import create_engine, insert, select
from test_bench import quick_run

from fedspace.app import Instance
from fedspace.auth import Principal
from provider.models import nodes, provider_spaces
from registry.models import metadata, space_members, spaces
from scenarios.bench import const_app
from scenarios.bench.arrivals import Arrivals
from scenarios.bench.bulk import SPACES_PER_OWNER, count_spaces, load_spaces, owner_id
from scenarios.bench.federation import AtLeast, Round, percentile
from scenarios.bench.graph import label
from scenarios.bench.model import BenchError, Figure, Limit, Result, Stat, load
from scenarios.bench.signing import signing_us


@pytest.fixture
async def sqlite_instance(tmp_path: Path) -> AsyncIterator[Running]:
    """An instance on SQLite (the loader writes SQLite files) with user alice."""
    inst = Instance(make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"))
    await inst.start()
    running = Running(inst, inst.url)
    await running.add_user("alice")
    yield running
    for client in running.clients:
        await client.aclose()
    await inst.stop()


async def test_loaded_spaces_are_valid_and_invisible_to_others(
        sqlite_instance: Running, tmp_path: Path) -> None:
    alice = sqlite_instance.client("alice")
    assert (await alice.post("/graph/v1.0/drives", json={"name": "Mine"})).status_code == 201
    database = tmp_path / "a.db"
    before = count_spaces(database)  # her personal space and "Mine"
    added = await asyncio.to_thread(load_spaces, database, before + 25,
                                    deadline=time.monotonic() + 60)
    assert added == 25 and count_spaces(database) == before + 25

    drives = (await alice.get("/graph/v1.0/me/drives")).json()["value"]
    assert sorted(d["driveType"] for d in drives) == ["personal", "project"]

    service = sqlite_instance.instance.ctx.components["registry"].service
    owner = Principal(owner_id(1), "owner-1", "Owner 1")  # spaces 10-19
    owned = await service.list_drives(owner)
    assert len(owned) == SPACES_PER_OWNER
    assert all(d.type == "project" and d.role.name == "manager" for d in owned)
    assert [m.id for d in owned for m in d.members] == [owner.id] * SPACES_PER_OWNER

    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:  # the provider's side: each space has its root folder
        roots = conn.execute(
            select(spaces.c.id, spaces.c.etag, nodes.c.etag)
            .join(provider_spaces, provider_spaces.c.space_id == spaces.c.id)
            .join(nodes, nodes.c.id == spaces.c.root_id)
            .where(spaces.c.id.in_([d.id for d in owned]))).all()
        seqs = conn.scalars(select(spaces.c.change_seq)).all()
    engine.dispose()
    assert len(roots) == SPACES_PER_OWNER and all(r[1] == r[2] for r in roots)
    assert len(set(seqs)) == len(seqs)  # the counter was advanced, not reused

    later = (await alice.post("/graph/v1.0/drives", json={"name": "Later"})).json()
    assert (await service.get_drive(Principal(sqlite_instance.users["alice"][0], "alice",
                                              "Alice"), later["id"])).change_seq > max(seqs)


def test_loader_refuses_a_database_without_provider(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    metadata.create_all(engine)
    engine.dispose()
    with pytest.raises(BenchError, match="no storage provider"):
        load_spaces(tmp_path / "x.db", 10, deadline=time.monotonic() + 60)


async def test_const_peer_answers_the_same_bytes() -> None:
    body = b'{"value": [{"id": "x"}]}'
    transport = httpx.ASGITransport(const_app.create(body))
    async with httpx.AsyncClient(transport=transport, base_url="http://peer") as client:
        answer = await client.get(const_app.PATH)
    assert answer.content == body
    assert answer.headers["content-type"] == "application/json"
    with const_app.listener(0) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_arrivals_see_remote_spaces_once_committed(tmp_path: Path) -> None:
    database = tmp_path / "paris.db"
    engine = create_engine(f"sqlite:///{database}")
    metadata.create_all(engine)
    with Arrivals(database) as arrivals:
        assert not arrivals.wait_for({"p1"}, 0.05)
        with engine.begin() as conn:
            sid = str(uuid.uuid4())
            conn.execute(insert(spaces).values(
                id=sid, type="remote", name="s", alias="remote/s", quota_total=0,
                root_id=sid, etag="e", size=0, created_ms=1, modified_ms=1, change_seq=1,
                remote_state="pending", remote_domain="zurich.test", remote_provider_id="p1"))
            conn.execute(insert(space_members).values(
                space_id=sid, principal_type="user", principal_id="marie", role="editor",
                created_ms=1))
        assert arrivals.wait_for({"p1"}, 10)
    engine.dispose()


def test_percentiles_and_rounds() -> None:
    assert percentile([5.0], 50) == 5.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([float(v) for v in range(1, 101)], 99) == pytest.approx(99.01)
    with pytest.raises(ValueError):
        percentile([], 50)
    done = Round(sent={"a": 10.0, "b": 10.5}, answered={"a": 10.1, "b": 10.7},
                 seen={"a": 10.2, "b": 11.0})
    assert done.rate == pytest.approx(2.0)
    assert done.latencies_ms == pytest.approx([200.0, 500.0])
    assert done.invite_ms == pytest.approx([100.0, 200.0])


def test_size_labels_and_the_throughput_target() -> None:
    assert [label(n) for n in (100, 1_000, 10_000, 1_000_000, 1_500)] == [
        "100", "1k", "10k", "1M", "1500"]
    target = (AtLeast(200), Limit(50, "p50_ms"))

    def result(rate: float, p50: float) -> Result:
        return Result("share-1000", "shares", "shares/s",
                      Figure(Stat(rate, rate, rate), {"p50_ms": Stat(p50, p50, p50)}),
                      target=target)

    assert result(250, 20).met is True
    assert result(150, 20).met is False and result(250, 60).met is False
    assert result(250, 20).target_text == "≥ 200 shares/s, p50 < 50 ms"


async def test_signing_round_trips() -> None:
    sign_us, verify_us = await signing_us(3)  # verify raises if a signature were bad
    assert sign_us > 0 and verify_us > 0


def test_benchmarks_are_registered() -> None:
    assert {"drives-50", "drives-scale", "share-1000"} <= set(load())


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed "
                    "(apt-get install wrk); .ci/run installs it")
def test_quick_drives_50_end_to_end(tmp_path: Path) -> None:
    """fedspace and the constant route really served the same load, and the report says so."""
    rows, _ = quick_run(tmp_path, "drives-50")
    assert len(rows) == 1 and "bare FastAPI route" in rows[0]
    assert rows[0].split(" | ")[5].endswith("x")  # a ratio, whatever its value

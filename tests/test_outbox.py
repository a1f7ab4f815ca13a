"""The federation outbox against a real HTTP peer: a Starlette app on uvicorn that answers
each path from a script (``Script``), so every delivery rule runs over real sockets."""

from __future__ import annotations

import asyncio
import email.utils
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from federation import outbox as outbox_module
from federation.delivery import Delivery, backoff_seconds, post_json, retry_after_ms
from federation.outbox import (
    Message,
    OutboxState,
    claim,
    enqueue,
    list_messages,
    order_key,
    state_of,
)
from federation.settings import FederationSettings
from fedspace.db import Database
from fedspace.outbound import Outbound
from fedspace.settings import OutboundSettings
from fedspace.sqltypes import now_ms

Answer = tuple[int, dict[str, str], bytes]
FAST = FederationSettings(retry_base_seconds=0.05, retry_cap_seconds=0.2, poll_seconds=0.2,
                          lease_seconds=5)


@dataclass
class Script:
    """Answers per path, in order; a path's last answer repeats, unscripted paths get 200.
    A path in ``holds`` answers only once its event is set."""

    port: int = 0
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    received: list[tuple[str, str]] = field(default_factory=list)  # (path, payload["key"])
    holds: dict[str, asyncio.Event] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def keys(self) -> Counter[str]:
        return Counter(key for _, key in self.received)

    async def handle(self, request: Request) -> Response:
        self.received.append((request.url.path, orjson.loads(await request.body())["key"]))
        if request.url.path in self.holds:
            await self.holds[request.url.path].wait()
        plan = self.answers.get(request.url.path) or [(200, {}, b"{}")]
        status, headers, body = plan.pop(0) if len(plan) > 1 else plan[0]
        return Response(body, status, headers=headers, media_type="application/json")


@asynccontextmanager
async def serve_script() -> AsyncIterator[Script]:
    script = Script()
    app = Starlette(routes=[Route("/{path:path}", script.handle, methods=["POST"])])
    sock = socket.create_server(("127.0.0.1", 0))
    script.port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_config=None,
                                           access_log=False, timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield script
    finally:
        server.should_exit = server.force_exit = True
        await task


@pytest.fixture
async def server() -> AsyncIterator[Script]:
    async with serve_script() as script:
        yield script


@pytest.fixture
async def outbound() -> AsyncIterator[Outbound]:
    client = Outbound(OutboundSettings(allow_http=True, allow_private_addresses=True,
                                       timeout=5))
    yield client
    await client.aclose()



@pytest.fixture
async def worker(db: Database, outbound: Outbound) -> AsyncIterator[Callable]:
    """Factory: ``await worker(settings=FAST, db=db, **kw)`` → a started Delivery."""
    started: list[Delivery] = []

    async def start(settings: FederationSettings = FAST, database: Database = db,
                    **kw: object) -> Delivery:
        delivery = Delivery(database, settings, kw.pop("send", post_json(outbound)), **kw)
        await delivery.start()
        started.append(delivery)
        return delivery

    yield start
    for delivery in started:
        await delivery.stop()


async def put(db: Database, key: str, url: str, *, peer: str = "paris.test") -> int:
    async with db.write() as conn:
        return await enqueue(conn, peer=peer, url=url, kind="share", payload={"key": key},
                             dedupe_key=key)


async def wait_for(db: Database, key: str, state: str, attempts: int = 0) -> OutboxState:
    """Poll (bounded) until the message is in ``state`` after at least ``attempts``."""
    seen = None
    for _ in range(1000):
        async with db.read() as conn:
            seen = await state_of(conn, key)
        if seen and seen.state == state and seen.attempts >= attempts:
            return seen
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} never reached {state}: {seen}")


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


async def test_enqueue_is_part_of_the_callers_transaction(db: Database) -> None:
    with pytest.raises(ZeroDivisionError):
        async with db.write() as conn:
            await enqueue(conn, peer="paris.test", url="https://cloud.paris.test/ocm/shares",
                          kind="share", payload={"key": "k"}, dedupe_key="k")
            raise ZeroDivisionError  # the change that caused the message fails
    async with db.read() as conn:
        assert await state_of(conn, "k") is None
        assert await list_messages(conn) == []


async def test_a_dedupe_key_is_one_message(db: Database) -> None:
    first = await put(db, "share-1", "https://cloud.paris.test/ocm/shares")
    assert await put(db, "share-1", "https://cloud.paris.test/other") == first
    async with db.write() as conn:
        ids = {await enqueue(conn, peer="Paris.Test", url="https://x", kind="share",
                             payload={}, dedupe_key="share-2") for _ in range(2)}
    async with db.read() as conn:
        rows = await list_messages(conn)
    assert [(r.id, r.peer, r.state, r.attempts) for r in rows] == [
        (*ids, "paris.test", "queued", 0), (first, "paris.test", "queued", 0)]


async def test_delivered_on_2xx_when_notified(db: Database, server: Script, worker) -> None:
    delivery = await worker(FAST.model_copy(update={"poll_seconds": 300}))
    await asyncio.sleep(0.05)  # the worker is idle, waiting for the (long) timer
    await put(db, "s1", server.url("/ocm/shares"))
    delivery.notify()
    state = await wait_for(db, "s1", "delivered")
    assert (state.attempts, state.last_status, state.last_error) == (1, 200, None)
    assert state.delivered_ms and state.next_attempt_ms is None
    assert server.received == [("/ocm/shares", "s1")]


@pytest.mark.parametrize(("status", "retry_after", "expected_ms"), [
    (503, "1", 1000),
    (429, "1", 1000),
    (503, "9999", 1500),  # bounded by retry_after_max_seconds
])
async def test_retry_after_is_honoured(db: Database, server: Script, worker, status: int,
                                       retry_after: str, expected_ms: int) -> None:
    server.answers["/busy"] = [(status, {"Retry-After": retry_after}, b""), (200, {}, b"")]
    await put(db, "s1", server.url("/busy"))
    await worker(FAST.model_copy(update={"retry_after_max_seconds": 1.5}))
    waiting = await wait_for(db, "s1", "queued", attempts=1)
    assert waiting.last_status == status
    assert waiting.next_attempt_ms and waiting.last_attempt_ms
    # the next attempt is Retry-After from the answer, not the 50 ms backoff
    assert expected_ms - 100 <= waiting.next_attempt_ms - waiting.last_attempt_ms <= expected_ms
    assert (await wait_for(db, "s1", "delivered")).attempts == 2


def test_retry_after_forms() -> None:
    now = 1_700_000_000_000
    assert retry_after_ms("120", now) == now + 120_000
    date = email.utils.formatdate(now / 1000 + 30, usegmt=True)
    assert retry_after_ms(date, now) == now + 30_000
    assert retry_after_ms("soon", now) is None
    assert retry_after_ms(None, now) is None


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    bounds = [backoff_seconds(n, 2.0, 60.0, 1.0) for n in range(1, 8)]
    assert bounds == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert backoff_seconds(3, 2.0, 60.0, 0.25) == 2.0
    assert backoff_seconds(10_000, 2.0, 60.0, 0.0) == 0.0


async def test_backoff_grows_after_server_errors(db: Database, server: Script, worker) -> None:
    server.answers["/flaky"] = [(500, {}, b"oops")] * 3 + [(200, {}, b"")]
    await put(db, "s1", server.url("/flaky"))
    settings = FAST.model_copy(update={"retry_base_seconds": 0.3, "retry_cap_seconds": 0.6})
    await worker(settings, jitter=lambda: 1.0)
    gaps = []
    for attempt in (1, 2, 3):
        waiting = await wait_for(db, "s1", "queued", attempts=attempt)
        assert (waiting.attempts, waiting.last_status, waiting.last_error) == (attempt, 500,
                                                                               "oops")
        assert waiting.next_attempt_ms and waiting.last_attempt_ms
        gaps.append(waiting.next_attempt_ms - waiting.last_attempt_ms)
    assert [round(g, -2) for g in gaps] == [300, 600, 600]
    assert (await wait_for(db, "s1", "delivered")).attempts == 4


async def test_4xx_fails_at_once_keeping_the_answer(db: Database, server: Script,
                                                   worker) -> None:
    body = orjson.dumps({"message": "unknown shareType",
                         "validationErrors": [{"name": "shareType", "message": "x"}]})
    server.answers["/ocm/shares"] = [(400, {}, body)]
    await put(db, "s1", server.url("/ocm/shares"))
    await worker()
    failed = await wait_for(db, "s1", "failed")
    assert (failed.attempts, failed.last_status, failed.last_error) == (
        1, 400, "unknown shareType")
    assert failed.next_attempt_ms is None
    assert len(server.received) == 1


@pytest.mark.parametrize("refused", [False, True])
async def test_gives_up_after_the_horizon(db: Database, server: Script, worker,
                                          refused: bool) -> None:
    url = f"http://127.0.0.1:{closed_port()}/ocm/shares" if refused else server.url("/down")
    server.answers["/down"] = [(502, {}, b"bad gateway")]
    await put(db, "s1", url)
    await worker(FAST.model_copy(update={"give_up_after_seconds": 0.5}))
    failed = await wait_for(db, "s1", "failed")
    assert failed.attempts >= 2 and failed.last_error
    assert failed.last_error.startswith(f"gave up after {failed.attempts} attempts: ")
    assert ("cannot connect" if refused else "bad gateway") in failed.last_error
    assert failed.last_status == (None if refused else 502)


async def test_a_dead_workers_claim_expires(db: Database, server: Script, worker) -> None:
    await put(db, "s1", server.url("/ocm/shares"))
    # a worker claims the message and dies before sending (or before recording the answer)
    assert [m.dedupe_key for m in await claim(db, limit=5, lease_seconds=0.5)] == ["s1"]
    await worker()
    assert (await wait_for(db, "s1", "delivering")).attempts == 1
    delivered = await wait_for(db, "s1", "delivered")
    assert delivered.attempts == 2
    assert server.keys() == {"s1": 1}


async def test_stop_releases_messages_being_sent(db: Database, worker) -> None:
    sending = asyncio.Event()

    async def hang(message: Message):
        sending.set()
        await asyncio.Event().wait()

    await put(db, "s1", "https://cloud.paris.test/ocm/shares")
    delivery = await worker(send=hang)
    await asyncio.wait_for(sending.wait(), 10)
    await delivery.stop()
    released = await wait_for(db, "s1", "queued", attempts=1)
    assert released.last_attempt_ms is None  # no answer was recorded


async def test_stop_during_a_claim_releases_what_it_claimed(
        db: Database, worker, monkeypatch: pytest.MonkeyPatch) -> None:
    committed, proceed = asyncio.Event(), asyncio.Event()
    real_claim = outbox_module.claim

    async def slow_claim(*args: object, **kwargs: object) -> list[Message]:
        claimed = await real_claim(*args, **kwargs)  # committed: the rows are leased
        if claimed:
            committed.set()
            await proceed.wait()  # the worker is stopped here
        return claimed

    monkeypatch.setattr(outbox_module, "claim", slow_claim)
    await put(db, "s1", "https://cloud.paris.test/ocm/shares")
    delivery = await worker(send=lambda message: asyncio.Event().wait())
    await asyncio.wait_for(committed.wait(), 10)
    stopping = asyncio.create_task(delivery.stop())
    await asyncio.sleep(0.05)
    proceed.set()
    await stopping
    released = await wait_for(db, "s1", "queued", attempts=1)
    assert released.next_attempt_ms <= now_ms()  # due now, not after the lease


async def test_two_workers_never_send_a_message_twice(
        db: Database, database_url: str, server: Script, worker) -> None:
    other = Database(database_url)  # another process, as far as the database can tell
    try:
        keys = [f"m{i}" for i in range(30)]
        for i, key in enumerate(keys):
            await put(db, key, server.url(f"/p{i % 3}"), peer=f"peer{i % 3}.test")
        await asyncio.gather(worker(), worker(database=other), worker())
        for key in keys:
            await wait_for(db, key, "delivered")
        assert server.keys() == dict.fromkeys(keys, 1)
        for p in range(3):  # and each peer got its messages in order
            got = [key for path, key in server.received if path == f"/p{p}"]
            assert got == [k for i, k in enumerate(keys) if i % 3 == p]
    finally:
        await other.close()


async def test_a_peers_messages_wait_for_its_head(db: Database, server: Script,
                                                 worker) -> None:
    server.answers["/a/share"] = [(503, {"Retry-After": "1"}, b""), (500, {}, b""),
                                  (200, {}, b"")]
    await put(db, "share", server.url("/a/share"), peer="a.test")
    await put(db, "notification", server.url("/a/notification"), peer="a.test")
    await put(db, "other-peer", server.url("/b/share"), peer="b.test")
    await worker()
    await wait_for(db, "other-peer", "delivered")  # another peer is not held up
    assert (await wait_for(db, "notification", "queued")).attempts == 0
    await wait_for(db, "notification", "delivered")
    assert [k for _, k in server.received if k != "other-peer"] == [
        "share", "share", "share", "notification"]


# -- order by subject, batches --------------------------------------------------------------

async def received(server: Script, *keys: str) -> None:
    """Poll (bounded) until the server has received every one of ``keys``."""
    for _ in range(1000):
        if set(keys) <= set(server.keys()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never received {set(keys) - set(server.keys())}")


def test_the_order_key_is_the_peer_and_the_subject() -> None:
    share = order_key("paris.test", "share:s1")
    assert share == order_key("paris.test", "unshare:s1") == order_key(
        "paris.test", "perm:s1:5f2a") == order_key("paris.test", "change:s1:9c1b")
    assert share != order_key("paris.test", "share:s2")
    assert share != order_key("rome.test", "share:s1")
    assert order_key("paris.test", "s1") == order_key("paris.test", "m2")  # no subject


async def test_a_claim_takes_unrelated_messages_and_holds_back_a_subjects_next(
        db: Database) -> None:
    for key in ("share:s1", "unshare:s1", "share:s2"):
        await put(db, key, "https://cloud.paris.test/ocm/x")
    first = await claim(db, limit=10, lease_seconds=60)
    assert [m.dedupe_key for m in first] == ["share:s1", "share:s2"]
    assert first.next_due_ms is None  # unshare:s1 waits for share:s1, not for a time
    assert await claim(db, limit=10, lease_seconds=60) == []
    done = {"state": "delivered", "delivered_ms": now_ms()}
    second = await claim(db, limit=10, lease_seconds=60, outcomes=[(first[0], done)])
    assert [m.dedupe_key for m in second] == ["unshare:s1"]
    async with db.read() as conn:
        assert (await state_of(conn, "share:s1")).state == "delivered"


async def test_unrelated_shares_to_one_peer_are_sent_together(
        db: Database, server: Script, worker) -> None:
    server.holds["/ocm/shares"] = asyncio.Event()
    for key in ("share:s1", "share:s2", "share:s3"):
        await put(db, key, server.url("/ocm/shares"))
    await worker()
    await received(server, "share:s1", "share:s2", "share:s3")  # all three in flight
    server.holds["/ocm/shares"].set()
    for key in ("share:s1", "share:s2", "share:s3"):
        assert (await wait_for(db, key, "delivered")).attempts == 1


async def test_a_share_and_its_unshare_stay_in_order(db: Database, server: Script,
                                                     worker) -> None:
    server.holds["/ocm/shares"] = asyncio.Event()
    await put(db, "share:s1", server.url("/ocm/shares"))
    await put(db, "unshare:s1", server.url("/ocm/notifications"))
    await put(db, "share:s2", server.url("/other/shares"))
    await worker()
    await received(server, "share:s1", "share:s2")  # s2 does not wait for s1
    assert (await wait_for(db, "share:s2", "delivered")).attempts == 1
    assert "unshare:s1" not in [k for _, k in server.received]  # its share is in flight
    server.holds["/ocm/shares"].set()
    await wait_for(db, "unshare:s1", "delivered")
    assert [k for _, k in server.received if k.endswith(":s1")] == ["share:s1", "unshare:s1"]


async def test_a_batch_partly_failing(db: Database, server: Script, worker) -> None:
    server.answers["/busy"] = [(500, {}, b"later"), (200, {}, b"")]
    server.answers["/refused"] = [(400, {}, orjson.dumps({"message": "no such user"}))]
    for key, path in (("share:a", "/busy"), ("share:b", "/refused"), ("share:c", "/fine")):
        await put(db, key, server.url(path))
    await worker()  # one claim takes all three; their answers are recorded together
    assert (await wait_for(db, "share:c", "delivered")).attempts == 1
    refused = await wait_for(db, "share:b", "failed")
    assert (refused.last_status, refused.last_error) == (400, "no such user")
    assert (await wait_for(db, "share:a", "delivered")).attempts == 2
    assert server.keys() == {"share:a": 2, "share:b": 1, "share:c": 1}


async def test_a_failing_peer_gets_one_probe_at_a_time(db: Database, server: Script,
                                                      worker) -> None:
    server.answers["/down"] = [(503, {"Retry-After": "1"}, b""), (200, {}, b"")]
    await put(db, "share:head", server.url("/down"))
    await worker()
    assert (await wait_for(db, "share:head", "queued", attempts=1)).last_status == 503
    for key in ("share:s1", "share:s2"):  # unrelated, but the peer is failing
        await put(db, key, server.url("/ocm/shares"))
    await put(db, "share:elsewhere", server.url("/ocm/shares"), peer="rome.test")
    await wait_for(db, "share:elsewhere", "delivered")
    for key in ("share:s1", "share:s2"):
        await wait_for(db, key, "delivered")
    order = [k for _, k in server.received if k != "share:elsewhere"]
    assert order[:3] == ["share:head", "share:head", order[2]] and set(order[2:]) == {
        "share:s1", "share:s2"}

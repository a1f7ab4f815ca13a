"""The federation outbox: messages to peers, stored with the change that caused them and
delivered by a background worker (ARCHITECTURE §5).

- **Atomic with the cause.** ``enqueue`` runs in the caller's write transaction: the share
  and its notification commit together or not at all. A dedupe key names the logical
  message, so a cause that runs twice still queues it once.
- **At-least-once on the wire.** A worker claims rows (``delivering``, leased until
  ``next_attempt_ms``) before sending. If it dies mid-send the lease expires and the row is
  due again, so a peer may receive a message twice: "exactly once as the peer sees it" comes
  from the receiver's idempotency on (sender, providerId), which OCM requires, together with
  the dedupe key.
- **No double sends.** A claim is an UPDATE conditional on the row being pending and due:
  of concurrent workers (in any process) only one gets a row back. The attempt count
  fences the result, so a worker whose lease was taken over records nothing.
- **Order where it matters.** A dedupe key ``kind:subject[:…]`` names what the message is
  about (a share id): messages about one subject to one peer go out one at a time, in
  order, so a share's unshare never overtakes it; unrelated shares go out side by side.
  Keys without a subject keep their order among themselves. A peer whose oldest message
  waits for a retry gets only that one (a probe) until it goes through, so a peer that is
  down sees one message at a time. Failed messages no longer block anything.
- **Batches.** One write transaction records every answer that came back since the last
  one and claims what is due (up to ``concurrency`` in flight): under load the costs of a
  transaction are shared by many messages instead of paid twice by each.

The worker that sends what is claimed here, and its retry policy: ``federation.delivery``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from sqlalchemy import Select, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.asyncio import AsyncConnection

from fedspace.db import Database
from fedspace.sqltypes import now_ms

from .models import outbox
from .settings import check_peer_domain

log = logging.getLogger("fedspace.federation.outbox")

State = Literal["queued", "delivering", "delivered", "failed"]
STATES: tuple[State, ...] = ("queued", "delivering", "delivered", "failed")
_PENDING = ("queued", "delivering")
WINDOW = 256  # pending rows read per peer by a claim


@dataclass(frozen=True, slots=True)
class Message:
    """A claimed message, as a sender sees it; ``attempts`` counts this attempt."""

    id: int
    peer: str
    url: str
    kind: str
    payload: dict[str, Any]
    dedupe_key: str
    attempts: int
    queued_ms: int


@dataclass(frozen=True, slots=True)
class OutboxState:
    """Where a message stands: what the sharer sees and ``fedspace outbox list`` shows."""

    id: int
    peer: str
    kind: str
    state: State
    attempts: int
    next_attempt_ms: int | None  # queued: not before; delivering: lease end; else None
    last_attempt_ms: int | None
    last_status: int | None
    last_error: str | None
    created_ms: int
    delivered_ms: int | None


class Claimed(list[Message]):
    """Messages claimed for sending (oldest first), and when the first message that was
    not due yet will be (None: nothing waits), so the worker knows when to look again."""

    next_due_ms: int | None = None


Outcome = tuple[Message, dict[str, Any]]  # a claimed message and the columns to record


async def enqueue(conn: AsyncConnection, *, peer: str, url: str, kind: str,
                  payload: dict[str, Any], dedupe_key: str) -> int:
    """Queue a message in the caller's transaction; the id of the (possibly existing) row.

    Call ``Delivery.notify()`` after the transaction commits, so it goes out at once.
    """
    return await conn.run_sync(lambda sync: enqueue_now(
        sync, peer=peer, url=url, kind=kind, payload=payload, dedupe_key=dedupe_key))


def enqueue_now(conn: Connection, *, peer: str, url: str, kind: str,
                payload: dict[str, Any], dedupe_key: str) -> int:
    """``enqueue`` for a transaction run as one sync function (``Database.write_with``)."""
    peer = check_peer_domain(peer)
    now = now_ms()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    new_id = conn.scalar(
        dialect.insert(outbox).values(
            peer=peer, url=url, kind=kind, payload=orjson.dumps(payload).decode(),
            dedupe_key=dedupe_key, created_ms=now, queued_ms=now, state="queued", attempts=0,
            next_attempt_ms=now,
        ).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(outbox.c.id))
    if new_id is not None:
        return int(new_id)
    return int(conn.scalar(select(outbox.c.id).where(outbox.c.dedupe_key == dedupe_key)))


def _state(row: Row[Any]) -> OutboxState:
    pending = row.state in _PENDING
    return OutboxState(row.id, row.peer, row.kind, row.state, row.attempts,
                       row.next_attempt_ms if pending else None, row.last_attempt_ms,
                       row.last_status, row.last_error, row.created_ms, row.delivered_ms)


async def state_of(conn: AsyncConnection, dedupe_key: str) -> OutboxState | None:
    """The delivery state of the message queued under ``dedupe_key``."""
    row = (await conn.execute(select(outbox).where(outbox.c.dedupe_key == dedupe_key))).first()
    return _state(row) if row else None


async def list_messages(conn: AsyncConnection, *, state: State | None = None,
                        limit: int = 100) -> list[OutboxState]:
    """The newest messages first, optionally only those in one state."""
    query = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
    if state is not None:
        query = query.where(outbox.c.state == state)
    return [_state(r) for r in (await conn.execute(query)).all()]


async def retry_failed(conn: AsyncConnection, message_id: int | None = None) -> int:
    """Queue failed messages again (one, or all with None) with a fresh horizon; how many."""
    now = now_ms()
    query = update(outbox).where(outbox.c.state == "failed").values(
        state="queued", attempts=0, next_attempt_ms=now, queued_ms=now)
    if message_id is not None:
        query = query.where(outbox.c.id == message_id)
    return (await conn.execute(query)).rowcount


def order_key(peer: str, dedupe_key: str) -> tuple[str, str]:
    """What a message keeps its order with: the other messages to ``peer`` about the same
    subject (``share:<id>``, ``unshare:<id>``, ``perm:<id>:<nonce>`` → ``<id>``)."""
    _, colon, rest = dedupe_key.partition(":")
    return peer, rest.partition(":")[0] if colon else ""


def _window() -> Select[Any]:
    """The oldest ``WINDOW`` pending rows of each peer, oldest first: every row that can
    block one of them is among them, and a peer's backlog cannot hide another peer's."""
    rank = func.row_number().over(partition_by=outbox.c.peer, order_by=outbox.c.id)
    pending = select(outbox.c.id, outbox.c.peer, outbox.c.dedupe_key, outbox.c.state,
                     outbox.c.attempts, outbox.c.next_attempt_ms, rank.label("rank")
                     ).where(outbox.c.state.in_(_PENDING)).subquery()
    return select(pending).where(pending.c.rank <= WINDOW).order_by(pending.c.id)


# Built once: a claim runs them under the write lock, where building costs most.
_PENDING_WINDOW = _window()
_CLAIM = update(outbox).where(
    outbox.c.id.in_(bindparam("ids", expanding=True)), outbox.c.state.in_(_PENDING),
    outbox.c.next_attempt_ms <= bindparam("now"),
).values(state="delivering", attempts=outbox.c.attempts + 1,
         next_attempt_ms=bindparam("lease_end")).returning(
    outbox.c.id, outbox.c.peer, outbox.c.url, outbox.c.kind, outbox.c.payload,
    outbox.c.dedupe_key, outbox.c.attempts, outbox.c.queued_ms)
# SET: the columns the parameters name; only the claim that is still current matches.
_RECORD = update(outbox).where(outbox.c.id == bindparam("message_id"),
                               outbox.c.state == "delivering",
                               outbox.c.attempts == bindparam("claimed_attempts"))


def _choose(rows: list[Row[Any]], now: int, limit: int) -> tuple[list[int], int | None]:
    """The ids to claim now (see "Order" in the module docstring), and when the first
    message that is not due yet will be."""
    chosen: list[int] = []
    due: int | None = None
    peers: set[str] = set()
    probing: set[str] = set()
    busy: set[tuple[str, str]] = set()
    for row in rows:
        if row.peer not in peers:
            peers.add(row.peer)
            if row.state == "queued" and row.attempts > 0:
                probing.add(row.peer)
        elif row.peer in probing:
            continue
        key = order_key(row.peer, row.dedupe_key)
        if key in busy:
            continue
        busy.add(key)
        if row.next_attempt_ms > now:
            due = row.next_attempt_ms if due is None else min(due, row.next_attempt_ms)
        elif len(chosen) < limit:
            chosen.append(row.id)
    return chosen, due


def settle(conn: Connection, outcomes: Iterable[Outcome]) -> None:
    """Record answers to claimed messages, unless another worker has taken one over."""
    for message, values in outcomes:
        done = conn.execute(_RECORD, {"message_id": message.id,
                                      "claimed_attempts": message.attempts, **values})
        if done.rowcount == 0:
            log.warning("outbox: message was taken over by another worker",
                        extra={"outbox_id": message.id})


def _claim(conn: Connection, limit: int, lease_seconds: float,
           outcomes: list[Outcome]) -> Claimed:
    settle(conn, outcomes)
    claimed, now = Claimed(), now_ms()
    chosen, claimed.next_due_ms = _choose(conn.execute(_PENDING_WINDOW).all(), now, limit)
    if chosen:
        rows = conn.execute(_CLAIM, {"ids": chosen, "now": now,
                                     "lease_end": now + int(lease_seconds * 1000)}).all()
        claimed += [Message(r.id, r.peer, r.url, r.kind, orjson.loads(r.payload),
                            r.dedupe_key, r.attempts, r.queued_ms)
                    for r in sorted(rows, key=lambda r: r.id)]
    return claimed


async def claim(db: Database, *, limit: int, lease_seconds: float,
                outcomes: Iterable[Outcome] = ()) -> Claimed:
    """Record ``outcomes``, then claim up to ``limit`` due messages for sending: one
    transaction in one round trip (see the module docstring)."""
    answers = list(outcomes)
    return await db.write_with(lambda conn: _claim(conn, limit, lease_seconds, answers))

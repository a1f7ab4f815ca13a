"""The federation outbox: messages to peers, stored with the change that caused them and
delivered by a background worker (ARCHITECTURE §5).

- **Atomic with the cause.** ``enqueue`` runs in the caller's write transaction: the share
  and its notification commit together or not at all. A dedupe key names the logical
  message, so a cause that runs twice still queues it once.
- **At-least-once on the wire.** A worker claims a row (``delivering``, leased until
  ``next_attempt_ms``) before sending. If it dies mid-send the lease expires and the row is
  due again, so a peer may receive a message twice: "exactly once as the peer sees it" comes
  from the receiver's idempotency on (sender, providerId), which OCM requires, together with
  the dedupe key.
- **No double sends.** A claim is an UPDATE conditional on the state and attempt count that
  were read: of concurrent workers (in any process) only one sees rowcount 1. The attempt
  count also fences the result, so a worker whose lease was taken over records nothing.
- **Per-peer order.** Only a peer's oldest unfinished message (its *head*) is claimed: a
  notification never overtakes its share, and while the head waits for a retry the rest of
  that peer's messages wait too. Failed messages no longer block their peer.
- **Policy.** 2xx delivered; 429/503 retried at ``Retry-After`` (bounded); other 5xx, 408 and
  network errors retried with exponential backoff and full jitter; other 4xx failed at once,
  keeping the peer's answer; not delivered within the horizon → failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal

import httpx
import orjson
from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from fedspace.db import Database
from fedspace.outbound import Outbound, OutboundError, redact
from fedspace.sqltypes import now_ms

from .models import outbox
from .settings import FederationSettings, check_peer_domain

log = logging.getLogger("fedspace.federation.outbox")

State = Literal["queued", "delivering", "delivered", "failed"]
STATES: tuple[State, ...] = ("queued", "delivering", "delivered", "failed")
_PENDING = ("queued", "delivering")
_ERROR_LENGTH = 300


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


Send = Callable[[Message], Awaitable[httpx.Response]]
Sign = Callable[[str, str, dict[str, str], bytes], Mapping[str, str]]


# -- the table -----------------------------------------------------------------------------

async def enqueue(conn: AsyncConnection, *, peer: str, url: str, kind: str,
                  payload: dict[str, Any], dedupe_key: str) -> int:
    """Queue a message in the caller's transaction; the id of the (possibly existing) row.

    Call ``Delivery.notify()`` after the transaction commits, so it goes out at once.
    """
    peer = check_peer_domain(peer)
    now = now_ms()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    new_id = await conn.scalar(
        dialect.insert(outbox).values(
            peer=peer, url=url, kind=kind, payload=orjson.dumps(payload).decode(),
            dedupe_key=dedupe_key, created_ms=now, queued_ms=now, state="queued", attempts=0,
            next_attempt_ms=now,
        ).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(outbox.c.id))
    if new_id is not None:
        return int(new_id)
    existing = await conn.scalar(select(outbox.c.id).where(outbox.c.dedupe_key == dedupe_key))
    return int(existing)


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


def _heads() -> Select[Any]:
    """Each peer's oldest unfinished message: one pass over the pending rows
    (``ix_outbox_due``), however many delivered rows the outbox keeps."""
    firsts = (select(func.min(outbox.c.id)).where(outbox.c.state.in_(_PENDING))
              .group_by(outbox.c.peer))
    return select(outbox).where(outbox.c.id.in_(firsts))


async def claim(db: Database, *, limit: int, lease_seconds: float) -> list[Message]:
    """Claim up to ``limit`` due head messages for sending (see the module docstring)."""
    now = now_ms()
    due = (_heads().where(outbox.c.next_attempt_ms <= now)
           .order_by(outbox.c.next_attempt_ms, outbox.c.id).limit(limit))
    claimed: list[Message] = []
    async with db.write() as conn:
        for row in (await conn.execute(due)).all():
            won = await conn.execute(update(outbox).where(
                outbox.c.id == row.id, outbox.c.state == row.state,
                outbox.c.attempts == row.attempts,
            ).values(state="delivering", attempts=row.attempts + 1,
                     next_attempt_ms=now + int(lease_seconds * 1000)))
            if won.rowcount == 1:
                claimed.append(Message(row.id, row.peer, row.url, row.kind,
                                       orjson.loads(row.payload), row.dedupe_key,
                                       row.attempts + 1, row.queued_ms))
    return claimed


async def _next_due_ms(db: Database) -> int | None:
    heads = _heads().subquery()
    async with db.read() as conn:
        return await conn.scalar(select(func.min(heads.c.next_attempt_ms)))


# -- the policy ----------------------------------------------------------------------------

def backoff_seconds(attempts: int, base: float, cap: float, jitter: float) -> float:
    """Full jitter: uniform in [0, min(cap, base·2^(attempts-1))], ``jitter`` in [0, 1].

    Randomising the whole delay spreads the senders that all failed during one outage of a
    peer, instead of having them return together.
    """
    return jitter * min(cap, base * 2.0 ** min(attempts - 1, 60))


def retry_after_ms(value: str | None, now: int) -> int | None:
    """The time a ``Retry-After`` header (delay in seconds or HTTP-date) names, if valid."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit():
        return now + int(value) * 1000
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return int(when.replace(tzinfo=when.tzinfo or UTC).timestamp() * 1000)


def _answer(response: httpx.Response) -> str | None:
    """A short, printable summary of a peer's answer (its OCM ``message`` if it has one)."""
    text = response.content[:2048].decode("utf-8", "replace")
    with contextlib.suppress(orjson.JSONDecodeError):
        data = orjson.loads(response.content)
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            text = data["message"]
    text = re.sub(r"\s+", " ", "".join(c for c in text if c.isprintable() or c.isspace()))
    return text.strip()[:_ERROR_LENGTH] or None


def post_json(outbound: Outbound, sign: Sign | None = None) -> Send:
    """The standard sender: POST the payload as JSON through the guarded client.

    ``sign(method, url, headers, body)`` returns the headers to send (RFC 9421 signing).
    """
    async def send(message: Message) -> httpx.Response:
        body = orjson.dumps(message.payload)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if sign is not None:
            headers = dict(sign("POST", message.url, headers, body))
        return await outbound.request("POST", message.url, headers=headers, content=body)

    return send


# -- the worker ----------------------------------------------------------------------------

class Delivery:
    """Sends due messages; ``notify()`` after enqueueing, a timer otherwise.

    Any number of workers, in any number of processes, may share one database.
    """

    def __init__(self, db: Database, settings: FederationSettings, send: Send, *,
                 jitter: Callable[[], float] = random.random) -> None:
        self.db = db
        self.settings = settings
        self._send = send
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[asyncio.Task[None], Message] = {}
        # A claim runs as its own task, so one that commits while the worker is being
        # stopped is not lost with its rows leased (they would wait out the lease).
        self._claiming: asyncio.Task[list[Message]] | None = None

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-delivery")

    async def stop(self) -> None:
        """Stop; messages being sent are released for the next worker at once."""
        sending = list(self._inflight.values())
        claiming = self._claiming
        tasks = [t for t in (self._task, *self._inflight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        if claiming is not None:
            with contextlib.suppress(Exception):
                sending += [m for m in await claiming if m not in sending]
        for message in sending:  # a no-op for those whose outcome was recorded
            await self._store(message, {"state": "queued", "next_attempt_ms": now_ms()})

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            wait = self.settings.poll_seconds
            try:
                room = self.settings.concurrency - len(self._inflight)
                if room > 0:
                    self._claiming = asyncio.create_task(claim(
                        self.db, limit=room, lease_seconds=self.settings.lease_seconds))
                    claimed = await asyncio.shield(self._claiming)
                    self._claiming = None
                    for message in claimed:
                        task = asyncio.create_task(self._attempt(message))
                        self._inflight[task] = message
                        task.add_done_callback(self._done)
                    due = await _next_due_ms(self.db)
                    if due is not None:
                        wait = min(wait, max((due - now_ms()) / 1000, 0.01))
            except Exception:  # the database may come back: keep the worker alive
                log.exception("outbox: cannot claim messages")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()

    async def _attempt(self, message: Message) -> None:
        try:
            response = await self._send(message)
        except OutboundError as exc:
            await self._retry(message, None, str(exc)[:_ERROR_LENGTH], None)
            return
        except Exception as exc:  # a faulty sender must not stop delivery
            log.exception("outbox: sender failed", extra={"outbox_id": message.id})
            await self._retry(message, None, f"sender failed: {type(exc).__name__}", None)
            return
        status, answer = response.status_code, _answer(response)
        if 200 <= status < 300:
            await self._record(message, "delivered", status=status, error=None)
        elif status in (429, 503):
            await self._retry(message, status, answer,
                              retry_after_ms(response.headers.get("Retry-After"), now_ms()))
        elif 400 <= status < 500 and status != 408:
            log.warning("outbox: peer refused a message", extra={
                "outbox_id": message.id, "url": redact(message.url), "status": status})
            await self._record(message, "failed", status=status, error=answer)
        else:
            await self._retry(message, status, answer, None)

    async def _retry(self, message: Message, status: int | None, error: str | None,
                     wanted_ms: int | None) -> None:
        """Schedule the next attempt: at ``wanted_ms`` (bounded) or after a backoff."""
        s, now = self.settings, now_ms()
        deadline = message.queued_ms + int(s.give_up_after_seconds * 1000)
        if now >= deadline:
            gave_up = f"gave up after {message.attempts} attempts: {error or status or ''}"
            await self._record(message, "failed", status=status,
                               error=gave_up.strip()[:_ERROR_LENGTH])
            return
        if wanted_ms is None:
            delay = backoff_seconds(message.attempts, s.retry_base_seconds,
                                    s.retry_cap_seconds, self._jitter())
            wanted_ms = now + int(delay * 1000)
        wanted_ms = max(now, min(wanted_ms, now + int(s.retry_after_max_seconds * 1000)))
        await self._record(message, "queued", status=status, error=error,
                           next_attempt_ms=min(wanted_ms, deadline))

    async def _record(self, message: Message, state: State, *, status: int | None,
                      error: str | None, next_attempt_ms: int | None = None) -> None:
        now = now_ms()
        await self._store(message, {
            "state": state, "next_attempt_ms": now if next_attempt_ms is None else next_attempt_ms,
            "last_attempt_ms": now, "last_status": status, "last_error": error,
            "delivered_ms": now if state == "delivered" else None})

    async def _store(self, message: Message, values: dict[str, Any]) -> None:
        """Update a claimed message, unless another worker has taken it over since."""
        try:
            async with self.db.write() as conn:
                done = await conn.execute(update(outbox).where(
                    outbox.c.id == message.id, outbox.c.state == "delivering",
                    outbox.c.attempts == message.attempts).values(values))
        except Exception:  # the lease expires and the message is retried anyway
            log.exception("outbox: cannot record a delivery", extra={"outbox_id": message.id})
            return
        if done.rowcount == 0:
            log.warning("outbox: message was taken over by another worker",
                        extra={"outbox_id": message.id})

"""The outbox's worker: claims due messages (``federation.outbox``), sends them side by
side, and records each answer by the policy below in the next claim's transaction.

**Policy.** 2xx delivered; 429/503 retried at ``Retry-After`` (bounded); other 5xx, 408 and
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
from datetime import UTC

import httpx
import orjson

from fedspace.db import Database
from fedspace.outbound import Outbound, OutboundError, redact
from fedspace.sqltypes import now_ms

from . import outbox
from .outbox import Claimed, Message, Outcome, State
from .settings import FederationSettings

log = logging.getLogger("fedspace.federation.outbox")

_ERROR_LENGTH = 300
Send = Callable[[Message], Awaitable[httpx.Response]]
Sign = Callable[[str, str, dict[str, str], bytes], Mapping[str, str]]


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
        self._outcomes: list[Outcome] = []  # answered, recorded by the next claim
        # A claim runs as its own task, so one that commits while the worker is being
        # stopped is not lost with its rows leased (they would wait out the lease).
        self._claiming: asyncio.Task[Claimed] | None = None

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-delivery")

    async def stop(self) -> None:
        """Stop; answers are recorded, messages being sent released for the next worker."""
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
        answered = {m.id for m, _ in self._outcomes}
        released = [(m, {"state": "queued", "next_attempt_ms": now_ms()})
                    for m in sending if m.id not in answered]
        outcomes, self._outcomes = self._outcomes + released, []
        if not outcomes:
            return
        try:
            await self.db.write_with(lambda conn: outbox.settle(conn, outcomes))
        except Exception:  # the leases expire and the messages are retried anyway
            log.exception("outbox: cannot release messages on stop")

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            wait = self.settings.poll_seconds
            room = self.settings.concurrency - len(self._inflight)
            if room > 0:  # answers come back with room: the task that got one is done
                try:
                    self._claiming = asyncio.create_task(self._claim(room))
                    claimed = await asyncio.shield(self._claiming)
                    self._claiming = None
                    for message in claimed:
                        task = asyncio.create_task(self._attempt(message))
                        self._inflight[task] = message
                        task.add_done_callback(self._done)
                    if claimed.next_due_ms is not None:
                        wait = min(wait, max((claimed.next_due_ms - now_ms()) / 1000, 0.01))
                except Exception:  # the database may come back: keep the worker alive
                    log.exception("outbox: cannot claim messages")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _claim(self, limit: int) -> Claimed:
        """Record the answers so far and claim; answers not recorded are kept for later."""
        outcomes, self._outcomes = self._outcomes, []
        try:
            return await outbox.claim(self.db, limit=limit,
                                      lease_seconds=self.settings.lease_seconds,
                                      outcomes=outcomes)
        except BaseException:
            self._outcomes[:0] = outcomes
            raise

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()

    async def _attempt(self, message: Message) -> None:
        try:
            response = await self._send(message)
        except OutboundError as exc:
            self._retry(message, None, str(exc)[:_ERROR_LENGTH], None)
            return
        except Exception as exc:  # a faulty sender must not stop delivery
            log.exception("outbox: sender failed", extra={"outbox_id": message.id})
            self._retry(message, None, f"sender failed: {type(exc).__name__}", None)
            return
        status, answer = response.status_code, _answer(response)
        if 200 <= status < 300:
            self._record(message, "delivered", status=status, error=None)
        elif status in (429, 503):
            self._retry(message, status, answer,
                        retry_after_ms(response.headers.get("Retry-After"), now_ms()))
        elif 400 <= status < 500 and status != 408:
            log.warning("outbox: peer refused a message", extra={
                "outbox_id": message.id, "url": redact(message.url), "status": status})
            self._record(message, "failed", status=status, error=answer)
        else:
            self._retry(message, status, answer, None)

    def _retry(self, message: Message, status: int | None, error: str | None,
               wanted_ms: int | None) -> None:
        """Schedule the next attempt: at ``wanted_ms`` (bounded) or after a backoff."""
        s, now = self.settings, now_ms()
        deadline = message.queued_ms + int(s.give_up_after_seconds * 1000)
        if now >= deadline:
            gave_up = f"gave up after {message.attempts} attempts: {error or status or ''}"
            self._record(message, "failed", status=status,
                         error=gave_up.strip()[:_ERROR_LENGTH])
            return
        if wanted_ms is None:
            delay = backoff_seconds(message.attempts, s.retry_base_seconds,
                                    s.retry_cap_seconds, self._jitter())
            wanted_ms = now + int(delay * 1000)
        wanted_ms = max(now, min(wanted_ms, now + int(s.retry_after_max_seconds * 1000)))
        self._record(message, "queued", status=status, error=error,
                     next_attempt_ms=min(wanted_ms, deadline))

    def _record(self, message: Message, state: State, *, status: int | None,
                error: str | None, next_attempt_ms: int | None = None) -> None:
        """Keep the answer for the next claim's transaction (see "Batches")."""
        now = now_ms()
        self._outcomes.append((message, {
            "state": state, "next_attempt_ms": now if next_attempt_ms is None else next_attempt_ms,
            "last_attempt_ms": now, "last_status": status, "last_error": error,
            "delivered_ms": now if state == "delivered" else None}))

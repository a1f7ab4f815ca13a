"""Federation: how fast shares cross from one instance to another, and what signing costs.

share-1000 runs the two-domain rig (``fedspace rig up``, zurich.test + paris.test over
HTTPS, RFC 9421-signed OCM) as a subprocess on the server core, a fresh one per round so
every round starts from empty outboxes and registries. Einstein shares folders
of his personal space with Marie through the Graph API, ``CONCURRENCY`` invites in flight;
a share is *visible* once paris has committed Marie's pending remote space for it. That
is read from paris's SQLite (read-only, WAL: readers never block its writers), polled
every few ms from the load core, rather than by listing Marie's drives through the API,
which would add paris's work for 1,000-entry listings to the CPU the rig shares.
The cost of signing is measured apart: ``federation.httpsig`` signing and verifying a
typical share POST (both happen once per share, on the same core as all the rest).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from scenarios.bench import instance
from scenarios.bench.arrivals import Arrivals
from scenarios.bench.harness import Session
from scenarios.bench.model import BenchError, Figure, Limit, Result, Stat, benchmark
from scenarios.bench.peers import basic
from scenarios.bench.procs import Server
from scenarios.bench.signing import signing_us
from scenarios.rig_machine import RIG_JSON
from scenarios.rigfile import RigFile, load_rig

CONCURRENCY = 16  # invites in flight
FULL_SHARES, QUICK_SHARES = 1000, 10
WARMUP = 16  # shares before the measured rounds: discovery, keys and connections warm
SIGNATURES = 1000  # sign+verify operations per measured round


@dataclass(frozen=True, slots=True)
class AtLeast:
    """fedspace's median at least ``floor`` (a throughput target without a peer)."""

    floor: float

    def text(self, unit: str) -> str:
        return f"≥ {self.floor:g} {unit}"

    def met(self, result: Result) -> bool | None:
        return None if result.fedspace is None else result.fedspace.value.median >= self.floor


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear between the closest ranks."""
    data = sorted(values)
    if not data:
        raise ValueError("no values")
    at = (len(data) - 1) * q / 100
    low = int(at)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (at - low)


@dataclass(frozen=True, slots=True)
class Round:
    """One batch of shares: when each invite was sent, answered, and seen at paris."""

    sent: dict[str, float]
    answered: dict[str, float]
    seen: dict[str, float]

    @property
    def rate(self) -> float:
        return len(self.sent) / (max(self.seen.values()) - min(self.sent.values()))

    @property
    def latencies_ms(self) -> list[float]:
        return [(self.seen[p] - t) * 1000 for p, t in self.sent.items()]

    @property
    def invite_ms(self) -> list[float]:
        return [(self.answered[p] - t) * 1000 for p, t in self.sent.items()]


@dataclass(frozen=True, slots=True)
class Driver:
    """Einstein's client at zurich, his personal space, Marie's address, and how long a
    batch may take to arrive at paris."""

    client: httpx.AsyncClient
    home: str
    recipient: str
    patience: float

    async def folders(self, names: Sequence[str]) -> None:
        async def make(name: str) -> None:
            answer = await self.client.request("MKCOL", f"/dav/spaces/{self.home}/{name}")
            if answer.status_code != 201:
                raise BenchError(f"MKCOL {name} answered {answer.status_code}")

        await self._each(names, make)

    async def share(self, names: Sequence[str], arrivals: Arrivals) -> Round:
        """Invite Marie to each folder, then wait until paris shows every share."""
        sent: dict[str, float] = {}
        answered: dict[str, float] = {}
        invite = {"recipients": [{"objectId": self.recipient,
                                  "@libre.graph.recipient.type": "federated"}],
                  "roles": ["editor"]}

        async def one(name: str) -> None:
            started = time.monotonic()
            answer = await self.client.post(
                f"/graph/v1beta1/drives/{self.home}/root:/{name}:/invite", json=invite)
            if not answer.is_success:
                raise BenchError(f"invite {name} answered {answer.status_code}: "
                                 f"{answer.text[:200]}")
            provider_id = answer.json()["value"][0]["@fedspace.share"]["providerId"]
            sent[provider_id], answered[provider_id] = started, time.monotonic()

        await self._each(names, one)
        if not await asyncio.to_thread(arrivals.wait_for, set(sent), self.patience):
            missing = len(sent.keys() - arrivals.seen.keys())
            raise BenchError(f"{missing} of {len(sent)} shares not at paris in "
                             f"{self.patience:g} s")
        return Round(sent, answered, {p: arrivals.seen[p] for p in sent})

    @staticmethod
    async def _each(names: Sequence[str], act: Callable[[str], Awaitable[None]]) -> None:
        """``act`` on every name, ``CONCURRENCY`` at a time."""
        todo = iter(names)

        async def worker() -> None:
            for name in todo:
                await act(name)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def start_rig(session: Session, name: str) -> tuple[Server, RigFile]:
    """``fedspace rig up`` in a fresh state folder on the server core, until ready."""
    state = session.dir(name)
    server = instance.spawn_rig(session, state, "rig (share-1000)")
    session.stack.callback(server.stop)
    return server, load_rig(state / RIG_JSON)


@contextlib.contextmanager
def pinned(session: Session) -> Iterator[None]:
    """This thread, and the threads it starts, on the load core meanwhile."""
    cpu, before = session.cpus["load"], os.sched_getaffinity(0)
    if cpu is not None:
        os.sched_setaffinity(0, {int(cpu)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


async def drive(rig: RigFile, count: int) -> Round:
    """A warm-up batch, then the measured batch of ``count`` shares."""
    origin, target = rig.domains[0], rig.domains[1]
    sharer, recipient = origin.users[0], target.users[0]
    auth = {"Authorization": basic(sharer.username, sharer.app_password)}
    async with rig.client(base_url=origin.cloud_url, headers=auth, timeout=60) as client:
        answer = await client.get("/graph/v1.0/me/drives")
        if not answer.is_success:
            raise BenchError(f"GET /graph/v1.0/me/drives at {origin.name}: {answer.status_code}")
        home = next(d["id"] for d in answer.json()["value"] if d["driveType"] == "personal")
        driver = Driver(client, home, recipient.address, 60 + count * 0.5)
        tag = secrets.token_hex(3)
        batches = [[f"share-{tag}-{r}-{i:04d}" for i in range(n)]
                   for r, n in enumerate([WARMUP, count])]
        await driver.folders([name for batch in batches for name in batch])
        with Arrivals(Path(rig.state_dir) / target.name / "fedspace.db") as arrivals:
            done = [await driver.share(batch, arrivals) for batch in batches]
    return done[-1]


def measure(session: Session, count: int, round_no: int) -> Round:
    """One round on a rig of its own: every round starts from the same (empty) state."""
    server, rig = start_rig(session, f"share-rig-{round_no}")
    try:
        with pinned(session):
            return asyncio.run(drive(rig, count))
    finally:
        server.stop()


@benchmark("share-1000", "1,000 signed OCM shares zurich→paris on the rig: shares/s and "
           "invite→visible-at-paris latency, and the cost of signing")
def share_1000(session: Session) -> list[Result]:
    count = QUICK_SHARES if session.plan.quick else FULL_SHARES
    session.say(f"share-1000: {session.plan.rounds} rounds, each on a fresh rig: "
                f"{WARMUP} warm-up shares, then {count:,}")
    done = [measure(session, count, r) for r in range(session.plan.rounds)]
    with pinned(session):
        costs = [asyncio.run(signing_us(SIGNATURES)) for _ in range(session.plan.rounds)]
    rate = Stat.of(r.rate for r in done)
    both = Stat.of(s + v for s, v in costs)
    share = both.median / (1e6 / rate.median)
    invite = Stat.of(percentile(r.invite_ms, 50) for r in done).median
    fedspace = Figure(rate, {"p50_ms": Stat.of(percentile(r.latencies_ms, 50) for r in done),
                             "p99_ms": Stat.of(percentile(r.latencies_ms, 99) for r in done)},
                      (f"fresh rig per round; {CONCURRENCY} invites in flight, answered in "
                       f"p50 {invite:.0f} ms",
                       "visible = first seen in paris's SQLite (5 ms poll), not its API",
                       f"sign+verify {both.median:.0f} µs = {share:.1%} of a share's time"))
    driver = (f"# driver: `fedspace bench` on CPU {session.cpus['load']}, httpx, "
              f"{CONCURRENCY} concurrent POST /graph/v1beta1/drives/HOME/root:/FOLDER:/invite")
    signing = Figure(both, notes=(
        f"sign {Stat.of(s for s, _ in costs).median:.0f} µs + verify "
        f"{Stat.of(v for _, v in costs).median:.0f} µs (federation.httpsig, Ed25519)",
        f"{share:.1%} of the per-share time at {rate.median:.0f} shares/s; "
        "unsigned end-to-end not run: zurich always signs"))
    return [
        Result("share-1000", f"{count:,} shares zurich→paris, signed, {CONCURRENCY} in flight",
               "shares/s", fedspace, target=(AtLeast(200), Limit(50, "p50_ms")),
               commands=(session.servers["rig (share-1000)"], driver)),
        Result("share-signing", "RFC 9421 sign + verify of one share POST, in isolation", "µs",
               signing, commands=(f"# in `fedspace bench` on CPU {session.cpus['load']}: "
                                  f"federation.httpsig.sign, then verify, {SIGNATURES} times",)),
    ]

"""Graph drive listing: what every client asks first, and how it holds up as the registry
grows.

The measured user (the harness's benchmark user) is an editor of 50 project spaces that
an administrator created and shared with her through the Graph API, as people would.
drives-50 loads ``GET /graph/v1.0/me/drives`` (HTTP Basic, her app password) and the same
load against a bare FastAPI route answering the same bytes on the same server stack
(``const_app``). drives-scale asks the same with 10k, 100k and 1M spaces in the registry:
the extra spaces belong to other users and are bulk-loaded while the server is stopped
(``bulk``), so her answer stays the same and only the registry's size changes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx

from scenarios.bench import instance, wrk
from scenarios.bench.bulk import load_spaces
from scenarios.bench.harness import Session, rounds, shell
from scenarios.bench.model import BenchError, Figure, Ratio, Result, Stat, benchmark
from scenarios.bench.peers import basic
from scenarios.bench.procs import Server, free_port, run

MEMBER_SPACES = 50
ADMIN = "bench-admin"
DRIVES = "/graph/v1.0/me/drives"
SHAPE = wrk.Shape()  # GET, 16 connections
FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (100, 1_000)
LOAD_SECONDS = 1800.0  # for loading every size of a run
PROGRESS_EVERY = 100_000
PEER_NAME = "bare FastAPI route, same uvicorn stack"
PEER_NOTE = ("peer: scenarios/bench/const_app.py, one FastAPI route answering fedspace's "
             "{size:,}-byte JSON as a constant; no auth, middleware or database; uvicorn "
             "Config as `fedspace serve` (asyncio loop, httptools, TCP_NODELAY), same core")


@dataclass(frozen=True, slots=True)
class Graph:
    """A running instance whose benchmark user sees ``MEMBER_SPACES`` project spaces."""

    home: instance.Home
    base: str
    server: Server


def _ok(answer: httpx.Response) -> Any:
    if not answer.is_success:
        raise BenchError(f"{answer.request.method} {answer.request.url.path} answered "
                         f"{answer.status_code}: {answer.text[:200]}")
    return answer.json()


def _admin(home: instance.Home) -> str:
    """An administrator with an app password (made through the CLI, server stopped)."""
    run(instance.fedspace_argv("users", "add", ADMIN, "--admin"), env=home.env, timeout=120)
    out = run(instance.fedspace_argv("users", "app-password", "create", ADMIN, "--label",
                                     "bench"), env=home.env, timeout=120)
    return basic(ADMIN, out.strip().splitlines()[-1])


def populate(base: str, user_auth: str, admin_auth: str, count: int) -> None:
    """The administrator creates ``count`` project spaces and invites the user as editor."""
    with httpx.Client(base_url=base, timeout=60) as client:
        drives = _ok(client.get(DRIVES, headers={"Authorization": user_auth}))["value"]
        user_id = next(d["owner"]["user"]["id"] for d in drives if d["driveType"] == "personal")
        admin = {"Authorization": admin_auth}
        invite = {"recipients": [{"objectId": user_id, "@libre.graph.recipient.type": "user"}],
                  "roles": ["editor"]}
        for i in range(count):
            drive = _ok(client.post("/graph/v1.0/drives", json={"name": f"Project {i:02d}"},
                                    headers=admin))
            _ok(client.post(f"/graph/v1beta1/drives/{drive['id']}/root/invite", json=invite,
                            headers=admin))


def prepare(session: Session, name: str) -> Graph:
    """A fresh instance (stopped with the session) with the user's spaces made."""
    home = instance.prepare(session, name)
    admin = _admin(home)
    server, base, _ = instance.spawn(session, home)
    session.stack.callback(server.stop)
    session.say(f"{name}: creating {MEMBER_SPACES} project spaces through the Graph API")
    populate(base, home.auth, admin, MEMBER_SPACES)
    return Graph(home, base, server)


def listing(base: str, auth: str) -> bytes:
    """The user's drive list, checked: her personal space and her project spaces only."""
    answer = httpx.get(f"{base}{DRIVES}", headers={"Authorization": auth}, timeout=120)
    drives = _ok(answer)["value"]
    kinds = sorted(d["driveType"] for d in drives)
    if kinds != ["personal"] + ["project"] * MEMBER_SPACES:
        raise BenchError(f"the user sees {len(drives)} drives, not {MEMBER_SPACES + 1}")
    return answer.content


def start_const(session: Session, body: bytes) -> tuple[Server, str]:
    """The peer on the server core, answering ``body``; its drives URL."""
    home = session.dir("const-app")
    (home / "drives.json").write_bytes(body)
    port = free_port()
    argv = session.pin([sys.executable, "-m", "scenarios.bench.const_app", str(port),
                        str(home / "drives.json")], "server")
    session.servers["const-app"] = shell(argv)
    server = Server("const-app", argv, home / "const-app.log")
    session.stack.callback(server.stop)
    url = f"http://127.0.0.1:{port}{DRIVES}"
    server.wait_http(url, timeout=60)
    return server, url


@benchmark("drives-50", "GET /graph/v1.0/me/drives, a user with 50 spaces, vs a bare "
           "FastAPI route returning a constant on the same server stack")
def drives_50(session: Session) -> list[Result]:
    graph = prepare(session, "drives-50")
    url = f"{graph.base}{DRIVES}"
    body = listing(graph.base, graph.home.auth)
    mine, mine_cmd = wrk.load(session, url, graph.home.auth, SHAPE)
    graph.server.stop()
    peer, peer_url = start_const(session, body)
    theirs, their_cmd = wrk.load(session, peer_url, graph.home.auth, SHAPE)
    peer.stop()
    theirs = Figure(theirs.value, theirs.details, (*theirs.notes, PEER_NOTE.format(
        size=len(body))))
    what = f"GET {DRIVES}, {MEMBER_SPACES} spaces (+personal), Basic, 16 conns"
    return [Result("drives-50", what, "req/s", mine, theirs, PEER_NAME, (Ratio(at_least=0.3),),
                   (mine_cmd, their_cmd))]


def label(size: int) -> str:
    """10000 → 10k, 1000000 → 1M."""
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def _latency(session: Session, graph: Graph, loaded: str) -> tuple[Figure, str]:
    """The user's listing under wrk load: p50 latency (ms) headline, p99 as detail."""
    server, base, _ = instance.spawn(session, graph.home)
    session.stack.callback(server.stop)
    try:
        listing(base, graph.home.auth)
        url, seconds = f"{base}{DRIVES}", session.plan.duration
        runs = rounds(session, session.plan.rounds, lambda: wrk.once(
            session, url, graph.home.auth, SHAPE, seconds))
        command = shell(wrk.command(session, url, graph.home.auth, SHAPE, seconds),
                        [graph.home.auth])
    finally:
        server.stop()
    rate = Stat.of(r.rate for r in runs).median
    notes = (f"{rate:,.0f} req/s", loaded)
    return Figure(Stat.of(r.p50_ms for r in runs), {"p99_ms": Stat.of(r.p99_ms for r in runs)},
                  notes), command


@benchmark("drives-scale", "drives-50's request with 10k, 100k and 1M spaces of other users "
           "in the registry (p50 latency vs itself at 10k)")
def drives_scale(session: Session) -> list[Result]:
    sizes = QUICK_SIZES if session.plan.quick else FULL_SIZES
    graph = prepare(session, "drives-scale")
    graph.server.stop()
    database = graph.home.data_dir / "fedspace.db"
    deadline = time.monotonic() + LOAD_SECONDS
    results: list[Result] = []
    first: Figure | None = None

    def progress(n: int) -> None:
        if n % PROGRESS_EVERY == 0:
            session.say(f"  {n:,} spaces")

    for size in sizes:
        started = time.monotonic()
        added = load_spaces(database, size, deadline=deadline, progress=progress)
        loaded = f"{added:,} spaces bulk-loaded in {time.monotonic() - started:.0f} s"
        session.say(f"drives-scale: {size:,} spaces in the registry ({loaded})")
        figure, command = _latency(session, graph, loaded)
        what = f"GET {DRIVES} (50 spaces) with {size:,} spaces in the registry, 16 conns"
        target = (Ratio(at_most=1.5),) if size == sizes[-1] else ()
        results.append(Result(f"drives-scale-{label(size)}", what, "ms", figure, first,
                              f"itself at {label(sizes[0])}" if first else "—", target,
                              (command,)))
        first = first or figure
    return results

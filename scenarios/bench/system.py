"""Whole-instance benchmarks: memory (idle and under load) and startup time.

Both start instances of their own (not the shared, seeded one): memory must be that of a
fresh instance, and startup is measured from the spawn of the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from scenarios.bench import instance, wrk
from scenarios.bench.harness import Session, rounds, shell
from scenarios.bench.model import Figure, Limit, Result, Stat, benchmark
from scenarios.bench.procs import Server
from scenarios.bench.webdav import propfind_body

IDLE_SETTLE = 2.0  # seconds after /readyz before the idle reading
SAMPLE_EVERY = 0.1  # seconds between RSS readings under load


def _peak_during(server: Server, work: Callable[[], object]) -> float:
    """The highest RSS (MiB) of ``server`` seen while ``work()`` runs."""
    peak = server.rss_mib()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(SAMPLE_EVERY):
            peak = max(peak, server.rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return max(peak, server.rss_mib())


@benchmark("memory", "RSS of one full instance: idle, and peak under propfind-0 load")
def memory(session: Session) -> list[Result]:
    home = instance.prepare(session, "memory")
    server, base, _ = instance.spawn(session, home)
    try:
        time.sleep(IDLE_SETTLE)
        idle = server.rss_mib()
        dav = instance.personal_space(base, home.auth)
        shape = wrk.Shape("PROPFIND", 64, "0", propfind_body(session))
        seconds = session.plan.duration
        peaks = rounds(session, session.plan.rounds, lambda: _peak_during(
            server, lambda: wrk.once(session, f"{dav}/", home.auth, shape, seconds)))
        load_cmd = shell(wrk.command(session, f"{dav}/", home.auth, shape, seconds),
                         [home.auth])
    finally:
        server.stop()
    serve_cmd = session.servers[instance.serve_key(home)]
    return [
        Result("memory-idle", "VmRSS of `fedspace serve`, idle after startup", "MiB",
               Figure(Stat.of([idle])), target=(Limit(150),), commands=(serve_cmd,)),
        Result("memory-load", "peak VmRSS under propfind-0 load (64 conns)", "MiB",
               Figure(Stat.of(peaks)), commands=(serve_cmd, load_cmd)),
    ]


def _serve_ready(session: Session, home: instance.Home) -> float:
    server, _, ready = instance.spawn(session, home)
    server.stop()
    return ready


def _rig_ready(session: Session, state: Path) -> float:
    """Seconds from spawning ``fedspace rig up`` until its rig.json says ready."""
    server = instance.spawn_rig(session, state, "rig")
    try:
        return time.monotonic() - server.started
    finally:
        server.stop()


@benchmark("startup", "`fedspace serve` ready, and the two-domain rig ready")
def startup(session: Session) -> list[Result]:
    home = instance.prepare(session, "startup")
    serve = rounds(session, session.plan.starts, lambda: _serve_ready(session, home))
    serve_cmd = session.servers[instance.serve_key(home)]
    state = session.dir("rig-state")
    rig = rounds(session, session.plan.starts, lambda: _rig_ready(session, state))
    return [
        Result("startup-serve", "spawn → /readyz 200, existing data dir", "s",
               Figure(Stat.of(serve)), target=(Limit(2),), commands=(serve_cmd,)),
        Result("startup-rig", "spawn `rig up` → rig.json ready (zurich+paris, kept state)",
               "s", Figure(Stat.of(rig)), target=(Limit(5),), commands=(session.servers["rig"],)),
    ]

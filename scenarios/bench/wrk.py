"""Load with wrk: one thread on the load core, a Lua script for the request shape, and a
``done()`` hook that prints the figures as JSON (no scraping of wrk's human output)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scenarios.bench.harness import Session, rounds, shell
from scenarios.bench.model import BenchError, Figure, Stat
from scenarios.bench.peers import tool
from scenarios.bench.procs import run

SCRIPT = Path(__file__).with_name("lua") / "request.lua"
MARKER = "WRK_JSON "
MAX_ERROR_SHARE = 0.01  # more failed requests than this and the figure means nothing
REQUEST_TIMEOUT = 30  # seconds; slow peers must be measured, not counted as errors


@dataclass(frozen=True, slots=True)
class Shape:
    """What each request looks like."""

    method: str = "GET"
    connections: int = 16
    depth: str | None = None
    body: Path | None = None
    rotate: int = 0  # spread over this many paths (PUT to path-0 … path-N-1)


@dataclass(frozen=True, slots=True)
class WrkRun:
    """The figures of one wrk run."""

    requests: int
    seconds: float
    errors: int  # socket errors, timeouts and 4xx/5xx answers
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def parse(output: str) -> WrkRun:
    """The JSON line our ``done()`` hook printed, from wrk's whole stdout."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line.removeprefix(MARKER))
            latency = data["latency_us"]
            return WrkRun(requests=int(data["requests"]), seconds=data["duration_us"] / 1e6,
                          errors=sum(int(v) for v in data["errors"].values()),
                          p50_ms=latency["p50"] / 1000, p99_ms=latency["p99"] / 1000)
    raise BenchError("wrk printed no figures (is the Lua done() hook in place?)")


def command(session: Session, url: str, auth: str, shape: Shape, seconds: int) -> list[str]:
    """The wrk command line, pinned to the load core."""
    args = [shape.method, shape.depth or "-", str(shape.body) if shape.body else "-",
            str(shape.rotate)]
    argv = [tool("wrk"), "-t1", f"-c{shape.connections}", f"-d{seconds}s",
            f"--timeout={REQUEST_TIMEOUT}s", "-H", f"Authorization: {auth}",
            "-s", str(SCRIPT), url, "--", *args]
    return session.pin(argv, "load")


def once(session: Session, url: str, auth: str, shape: Shape, seconds: int) -> WrkRun:
    """One time-bounded wrk run; too many failed requests is an error, not a figure."""
    argv = command(session, url, auth, shape, seconds)
    result = parse(run(argv, timeout=seconds + REQUEST_TIMEOUT + 30))
    if result.requests == 0:
        raise BenchError(f"{shape.method} {url}: no request completed in {seconds} s")
    if result.errors > MAX_ERROR_SHARE * result.requests:
        raise BenchError(f"{shape.method} {url}: {result.errors} of {result.requests} "
                         "requests failed")
    return result


def load(session: Session, url: str, auth: str, shape: Shape) -> tuple[Figure, str]:
    """Warm-up, then the plan's rounds: req/s with p50/p99 latency (ms), and the command."""
    seconds = session.plan.duration
    runs = rounds(session, session.plan.rounds, lambda: once(session, url, auth, shape, seconds))
    errors = sum(r.errors for r in runs)
    notes = (f"{errors} failed requests",) if errors else ()
    figure = Figure(Stat.of(r.rate for r in runs),
                    {"p50_ms": Stat.of(r.p50_ms for r in runs),
                     "p99_ms": Stat.of(r.p99_ms for r in runs)}, notes)
    return figure, shell(command(session, url, auth, shape, seconds), [auth])

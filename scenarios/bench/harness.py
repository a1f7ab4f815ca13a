"""One benchmark run: sizes, rounds, core pinning, shared servers and their cleanup.

Servers run on one core and the load generator on another (``taskset -c``) when the
machine has two or more, so they do not steal each other's CPU. Every figure is the median
of several rounds after a warm-up, with the spread (min-max) next to it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from rich.console import Console

from scenarios.bench.model import BenchError, Benchmark, Result

T = TypeVar("T")
IDLE_SHARE = 0.03
IDLE_WINDOW = 0.5
IDLE_TIMEOUT = 60.0
Role = Literal["server", "load"]


@dataclass(frozen=True, slots=True)
class Plan:
    """How big and how long: the full run, or ``--quick`` (tiny, proves the harness works)."""

    quick: bool
    files: int  # files in the PROPFIND Depth:1 folder
    big: int  # bytes of the large-file transfer
    duration: int  # seconds of each load round
    rounds: int  # measured load rounds (after one warm-up round)
    transfers: int  # measured large-file transfers (after one warm-up)
    starts: int  # measured startups (after one warm-up)


FULL = Plan(quick=False, files=1000, big=100_000_000, duration=10, rounds=3, transfers=3,
            starts=5)
QUICK = Plan(quick=True, files=20, big=4_000_000, duration=1, rounds=1, transfers=1, starts=1)


def cache_dir() -> Path:
    """Where peers' virtualenvs are kept between runs (they take a while to install)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fedspace-bench"


class Session:
    """Everything one ``fedspace bench`` invocation shares: the plan, the work directory,
    the cores, servers started once and reused by several benchmarks (``shared``)."""

    def __init__(self, plan: Plan, work_dir: Path, cache: Path, console: Console) -> None:
        self.plan = plan
        self.work_dir = work_dir
        self.cache = cache
        self.console = console
        self.stack = contextlib.ExitStack()
        self._shared: dict[str, Any] = {}
        self.servers: dict[str, str] = {}  # name → the command line it was started with
        self.load_at_start = os.getloadavg()[0]  # other work on the machine skews figures
        self.unsettled = 0  # measurements started on a server core that never went idle
        cpus = sorted(os.sched_getaffinity(0))
        pin = len(cpus) >= 2
        self.cpus: dict[Role, str | None] = {
            "server": str(cpus[0]) if pin else None, "load": str(cpus[1]) if pin else None}

    def __enter__(self) -> Session:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    @property
    def pinning(self) -> str:
        if self.cpus["server"] is None:
            return "not pinned (one CPU available)"
        return f"servers on CPU {self.cpus['server']}, load generator on CPU {self.cpus['load']}"

    def pin(self, argv: Sequence[str], role: Role) -> list[str]:
        """``argv`` run on the role's core (``taskset`` execs, so the pid stays the server's)."""
        cpu = self.cpus[role]
        return ["taskset", "-c", cpu, *argv] if cpu is not None else list(argv)

    def shared(self, key: str, factory: Callable[[Session], T]) -> T:
        """``factory(session)`` once per run; later benchmarks get the same object (or the
        same BenchError, rather than waiting for a broken server again)."""
        if key not in self._shared:
            try:
                self._shared[key] = factory(self)
            except BenchError as exc:
                self._shared[key] = exc
        value = self._shared[key]
        if isinstance(value, BenchError):
            raise value
        return value  # type: ignore[no-any-return]

    def settle(self) -> None:
        """Wait until the server core is idle (< IDLE_SHARE busy over IDLE_WINDOW), at most
        IDLE_TIMEOUT; a core that never settles is counted in the report's facts."""
        cpu = self.cpus["server"]
        deadline = time.monotonic() + (IDLE_TIMEOUT / 6 if self.plan.quick else IDLE_TIMEOUT)
        while _busy_share(cpu, IDLE_WINDOW) >= IDLE_SHARE:
            if time.monotonic() > deadline:
                self.unsettled += 1
                self.say("the server core is still busy: measuring anyway")
                return

    def dir(self, name: str) -> Path:
        path = self.work_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def say(self, message: str) -> None:
        self.console.print(f"[dim]{message}[/]", highlight=False)


def rounds(session: Session, count: int, measure: Callable[[], T]) -> list[T]:
    """One warm-up call (discarded), then ``count`` measured calls, each started once the
    server core is idle (work left over from seeding or the last round would skew it)."""
    def settled() -> T:
        session.settle()
        return measure()

    settled()
    return [settled() for _ in range(count)]


def _busy_share(cpu: str | None, window: float) -> float:
    """Share of ``window`` the core (or, unpinned, the whole machine) spent busy."""
    def ticks() -> tuple[int, int]:
        name = f"cpu{cpu} " if cpu is not None else "cpu "
        with open("/proc/stat") as stat:
            line = next(line for line in stat if line.startswith(name))
        values = [int(v) for v in line.split()[1:]]
        return sum(values), values[3] + values[4]  # all, idle + iowait

    total0, idle0 = ticks()
    time.sleep(window)
    total1, idle1 = ticks()
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def shell(argv: Sequence[str], secrets: Sequence[str] = ()) -> str:
    """A command line as it can be pasted, with secrets replaced by ``$SECRET``."""
    line = shlex.join(argv)
    for secret in secrets:
        line = line.replace(secret, "$SECRET")
    return line


def run_all(session: Session, selected: Sequence[Benchmark]) -> list[Result]:
    """Run each benchmark; one that fails becomes an error row, the others still run."""
    results: list[Result] = []
    for bench in selected:
        session.console.print(f"[bold]{bench.name}[/]: {bench.what}", highlight=False)
        try:
            rows = list(bench.run(session))
        except BenchError as exc:
            rows = [Result(bench.name, bench.what, "", None, error=str(exc))]
        for row in rows:
            session.console.print(f"  {row.name}: " + (f"[red]{row.error}[/]" if row.error
                                  else _summary(row)), highlight=False)
        results += rows
    return results


def _summary(row: Result) -> str:
    from scenarios.bench.report import figure_text

    text = f"fedspace {figure_text(row.fedspace, row.unit)}"
    if row.peer is not None:
        text += f", {row.peer_name} {figure_text(row.peer, row.unit)}"
    return text

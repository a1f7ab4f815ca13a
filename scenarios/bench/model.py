"""What a benchmark is and what it yields: figures, results, targets, and the registry.

A benchmark is a small function registered under a name. It gets the run's ``Session``
(sizes, rounds, core pinning, shared servers) and returns one or more ``Result`` rows.
New benchmark modules register themselves with ``@benchmark(...)`` and are listed in
``MODULES`` so ``fedspace bench`` imports them.
"""

from __future__ import annotations

import importlib
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from scenarios.bench.harness import Session

# Modules that register benchmarks, in the order their benchmarks run and are reported.
MODULES: tuple[str, ...] = ("scenarios.bench.webdav", "scenarios.bench.system",
                            "scenarios.bench.graph", "scenarios.bench.federation")


class BenchError(Exception):
    """A benchmark could not produce a figure (a tool is missing, a server did not start…)."""


@dataclass(frozen=True, slots=True)
class Stat:
    """The median of several rounds and their spread (min-max)."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        data = sorted(values)
        if not data:
            raise ValueError("no values")
        return cls(statistics.median(data), data[0], data[-1])


@dataclass(frozen=True, slots=True)
class Figure:
    """One side's measurement: the headline value plus named details (e.g. p99_ms)."""

    value: Stat
    details: dict[str, Stat] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class Check(Protocol):
    """One part of a target: says what it demands and whether a result meets it."""

    def text(self, unit: str) -> str: ...

    def met(self, result: Result) -> bool | None: ...


@dataclass(frozen=True, slots=True)
class Ratio:
    """fedspace / peer (medians) at least or at most a factor."""

    at_least: float | None = None
    at_most: float | None = None

    def text(self, unit: str) -> str:
        if self.at_least is not None:
            return f"≥ {self.at_least:g}x"
        return f"≤ {self.at_most:g}x"

    def met(self, result: Result) -> bool | None:
        ratio = result.ratio
        if ratio is None:
            return None
        if self.at_least is not None and ratio < self.at_least:
            return False
        return not (self.at_most is not None and ratio > self.at_most)


@dataclass(frozen=True, slots=True)
class Limit:
    """fedspace's own median (the headline, or a detail such as ``p99_ms``) below a bound."""

    below: float
    detail: str | None = None

    def text(self, unit: str) -> str:
        what = self.detail.removesuffix("_ms") if self.detail else ""
        shown = "ms" if self.detail and self.detail.endswith("_ms") else unit
        return f"{what} < {self.below:g} {shown}".strip()

    def met(self, result: Result) -> bool | None:
        if result.fedspace is None:
            return None
        stat = result.fedspace.value if self.detail is None else \
            result.fedspace.details.get(self.detail)
        return None if stat is None else stat.median < self.below


@dataclass(frozen=True, slots=True)
class Result:
    """One table row: fedspace's figure, the peer's (if any) and the target."""

    name: str
    what: str
    unit: str
    fedspace: Figure | None
    peer: Figure | None = None
    peer_name: str = "—"
    target: tuple[Check, ...] = ()
    commands: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.fedspace is None or self.peer is None or not self.peer.value.median:
            return None
        return self.fedspace.value.median / self.peer.value.median

    @property
    def target_text(self) -> str:
        return ", ".join(c.text(self.unit) for c in self.target) or "—"

    @property
    def met(self) -> bool | None:
        """True/False when every check could be judged; None without target or figures."""
        verdicts = [c.met(self) for c in self.target]
        if not verdicts or self.error or any(v is None for v in verdicts):
            return None
        return all(verdicts)


Run = Callable[["Session"], Sequence[Result]]


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A registered benchmark: its name (what ``fedspace bench NAME`` selects) and runner."""

    name: str
    what: str
    run: Run


REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str, what: str) -> Callable[[Run], Run]:
    """Register ``run`` as benchmark ``name`` (decorator)."""

    def register(run: Run) -> Run:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} registered twice")
        REGISTRY[name] = Benchmark(name, what, run)
        return run

    return register


def load() -> dict[str, Benchmark]:
    """Every registered benchmark, in ``MODULES`` order."""
    for module in MODULES:
        importlib.import_module(module)
    # Whatever imported them first (a test, say), the order is MODULES'.
    rank = {module: n for n, module in enumerate(MODULES)}
    ordered = sorted(REGISTRY.values(), key=lambda b: rank.get(b.run.__module__, len(rank)))
    return {b.name: b for b in ordered}

"""A scenario's transcript: one line per step — what was done, the result, the time — and
the first failing step ends the run with its reason.

Scenarios are scripts of user actions against live instances; a failure must say which
action failed and why in one line, not as a traceback from deep inside a client.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from rich.console import Console

T = TypeVar("T")


class StepFailed(Exception):
    """Raised inside a step: the step failed, and the message says why."""


@dataclass(frozen=True, slots=True)
class Step:
    number: int
    title: str
    ok: bool
    result: str
    seconds: float


class ScenarioFailed(Exception):
    def __init__(self, step: Step) -> None:
        super().__init__(f"step {step.number} failed: {step.title}: {step.result}")
        self.step = step


@dataclass
class Transcript:
    """Runs steps in order and prints each as it ends (unless ``console`` is None)."""

    console: Console | None = field(default_factory=Console)
    steps: list[Step] = field(default_factory=list)

    async def step(self, title: str, action: Callable[[], Awaitable[tuple[T, str]]]) -> T:
        """Run ``action`` (which returns a value and a one-line result) as the next step."""
        number, start = len(self.steps) + 1, time.perf_counter()
        try:
            value, result = await action()
        except StepFailed as exc:
            self._record(Step(number, title, False, str(exc), time.perf_counter() - start))
            raise ScenarioFailed(self.steps[-1]) from None
        except Exception as exc:  # a client error is a failed step, not a crash
            reason = f"{type(exc).__name__}: {exc}"
            self._record(Step(number, title, False, reason, time.perf_counter() - start))
            raise ScenarioFailed(self.steps[-1]) from None
        self._record(Step(number, title, True, result, time.perf_counter() - start))
        return value

    def _record(self, step: Step) -> None:
        self.steps.append(step)
        if self.console is not None:
            mark = "[green]✓[/]" if step.ok else "[red]✗[/]"
            self.console.print(f"{mark} {step.number:2d}. {step.title} — {step.result} "
                               f"[dim]({step.seconds * 1000:.0f} ms)[/]", highlight=False)


def expect(condition: bool, reason: str) -> None:
    """Fail the current step with ``reason`` unless ``condition`` holds."""
    if not condition:
        raise StepFailed(reason)

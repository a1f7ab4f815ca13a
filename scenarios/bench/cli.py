"""``fedspace bench [NAME…] [--quick]``: fedspace side by side with its peers, one run."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fedspace.cliutil import fail

DEFAULT_OUTPUT = Path("BENCHMARKS.md")  # ./run works from the repository root


def bench(
    names: Annotated[list[str] | None, typer.Argument(
        help="benchmarks to run (default: all)", show_default=False)] = None,
    quick: Annotated[bool, typer.Option(
        help="tiny sizes, one short round each: proves the harness works (CI); "
             "writes nothing unless --output is given")] = False,
    output: Annotated[Path | None, typer.Option(
        help="write the report here (default: ./BENCHMARKS.md, after a full run of "
             "every benchmark)", show_default=False)] = None,
    work_dir: Annotated[Path | None, typer.Option(
        help="keep data, logs and configs here (default: a temporary folder, removed)",
        show_default=False)] = None,
) -> None:
    """Benchmark fedspace against wsgidav and nginx on loopback; print (and write) a table."""
    from scenarios.bench import facts, report
    from scenarios.bench.harness import FULL, QUICK, Session, cache_dir, run_all
    from scenarios.bench.model import load

    registry = load()
    unknown = [n for n in names or [] if n not in registry]
    if unknown:
        fail(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(registry)}")
    selected = [registry[n] for n in names] if names else list(registry.values())
    command = " ".join(["fedspace bench", *(["--quick"] if quick else []), *(names or [])])
    console = Console()
    plan = QUICK if quick else FULL
    work = work_dir or Path(tempfile.mkdtemp(prefix="fedspace-bench-"))
    started = time.monotonic()
    try:
        with Session(plan, work.absolute(), cache_dir(), console) as session:
            results = run_all(session, selected)
            machine = facts.machine(session)
            method = report.METHOD.format(
                pinning=session.pinning[0].upper() + session.pinning[1:],
                rounds=plan.rounds, duration=plan.duration)
            places = {str(session.work_dir): "$WORK", str(session.cache): "$CACHE",
                      sys.executable: "python3",
                      str(Path(__file__).resolve().parents[2]): "$CHECKOUT"}
            generated = report.markdown(results, machine, command, method, session.servers,
                                        places)
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    console.print(report.console_table(results, f"{command} ({elapsed:.0f} s)"))
    for key, value in machine.items():
        console.print(f"[dim]{key}:[/] {value}", highlight=False)
    target = output or (DEFAULT_OUTPUT if not quick and not names else None)
    if target is not None:
        report.write(target, generated)
        console.print(f"wrote {target}", highlight=False)
    elif not quick:
        console.print("a partial run: BENCHMARKS.md left as it was (--output to write one)")
    errors = [r.name for r in results if r.error]
    if errors:
        fail(f"no figure for {', '.join(errors)} (see above)")

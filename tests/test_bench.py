"""``fedspace bench``: the parts that need no timing (parsing, statistics, targets, the
report and its kept notes), and one end-to-end quick run. No test asserts a timing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from scenarios.bench import harness, report
from scenarios.bench.harness import QUICK, Session
from scenarios.bench.model import (
    REGISTRY,
    BenchError,
    Figure,
    Limit,
    Ratio,
    Result,
    Stat,
    benchmark,
    load,
)
from scenarios.bench.wrk import SCRIPT, Shape, command, parse

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:8080/dav/spaces/x/f1000/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.00ms    2.00ms  40.00ms   90.00%
  2000 requests in 1.00s, 1.00MB read
Requests/sec:   2000.00
WRK_JSON {"requests": 2000, "duration_us": 1000000, "bytes": 1000000, "errors": \
{"connect": 0, "read": 1, "write": 0, "status": 2, "timeout": 0}, "latency_us": \
{"mean": 10000.0, "p50": 9500, "p90": 15000, "p99": 38000, "max": 40000}}
"""


def test_wrk_figures_come_from_the_json_line() -> None:
    run = parse(WRK_OUTPUT)
    assert (run.requests, run.seconds, run.errors) == (2000, 1.0, 3)
    assert (run.p50_ms, run.p99_ms, run.rate) == (9.5, 38.0, 2000.0)


def test_wrk_output_without_figures_is_an_error() -> None:
    with pytest.raises(BenchError, match="done"):
        parse("Running 1s test @ http://x/\nRequests/sec: 1\n")


def test_wrk_command_is_pinned_and_passes_the_shape(tmp_path: Path) -> None:
    session = Session(QUICK, tmp_path, tmp_path, Console())
    session.cpus = {"server": "0", "load": "1"}
    body = tmp_path / "body.xml"
    argv = command(session, "http://h/p/", "Basic abc", Shape("PROPFIND", 64, "0", body), 3)
    assert argv[:3] == ["taskset", "-c", "1"]
    assert "-c64" in argv and "-d3s" in argv and str(SCRIPT) in argv
    assert argv[argv.index("--") + 1:] == ["PROPFIND", "0", str(body), "0"]
    assert SCRIPT.is_file()


def test_rounds_wait_for_an_idle_server_core_and_count_the_ones_that_never_were(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session(QUICK, tmp_path, tmp_path, Console())
    cpu = session.cpus["server"]
    spin = subprocess.Popen([*(["taskset", "-c", cpu] if cpu else []), sys.executable, "-c",
                             "while True: pass"])
    try:
        assert harness._busy_share(cpu, 0.3) > 0.5
        monkeypatch.setattr(harness, "IDLE_TIMEOUT", 0.0)
        assert harness.rounds(session, 2, lambda: "figure") == ["figure", "figure"]
        assert session.unsettled == 3  # the warm-up and both measured rounds
    finally:
        spin.kill()
        spin.wait()


def test_median_and_spread() -> None:
    assert Stat.of([3.0, 1.0, 2.0]) == Stat(2.0, 1.0, 3.0)
    assert Stat.of([4.0, 1.0]) == Stat(2.5, 1.0, 4.0)
    with pytest.raises(ValueError):
        Stat.of([])


def _result(ours: float, theirs: float | None, p99: float = 10.0) -> Result:
    fig = Figure(Stat(ours, ours - 1, ours + 1), {"p99_ms": Stat(p99, p99, p99)})
    peer = Figure(Stat(theirs, theirs, theirs)) if theirs is not None else None
    return Result("propfind-0", "PROPFIND Depth:0", "req/s", fig, peer, "wsgidav 4",
                  (Ratio(at_least=3), Limit(50, "p99_ms")), ("wrk … fedspace", "wrk … peer"))


def test_targets_judge_the_ratio_and_the_limits() -> None:
    assert _result(300, 100).ratio == 3.0
    assert _result(300, 100).met is True
    assert _result(200, 100).met is False
    assert _result(300, 100, p99=60).met is False
    assert _result(300, None).met is None  # no peer figure: nothing to judge
    assert _result(300, 100).target_text == "≥ 3x, p99 < 50 ms"
    memory = Result("memory-idle", "RSS", "MiB", Figure(Stat(120, 120, 120)),
                    target=(Limit(150),))
    assert memory.met is True and memory.target_text == "< 150 MiB"
    assert Result("x", "y", "s", Figure(Stat(1, 1, 1)), Figure(Stat(2, 2, 2)),
                  target=(Ratio(at_most=1.5),)).met is True


def test_registry_names_every_benchmark_once() -> None:
    names = list(load())
    assert names[:6] == ["propfind-1000", "propfind-0", "get-4k", "put-4k", "get-100m",
                         "put-100m"]
    assert {"memory", "startup"} <= set(names)
    with pytest.raises(ValueError, match="twice"):
        benchmark("memory", "again")(REGISTRY["memory"].run)


def _generated(results: list[Result]) -> str:
    return report.markdown(results, {"CPU": "test x 2"}, "fedspace bench", "- method",
                           {"fedspace": "fedspace serve"})


def test_report_has_one_row_per_result_with_ratio_and_verdict() -> None:
    error = Result("get-100m", "GET", "", None, error="nginx is missing")
    text = _generated([_result(300, 100), _result(200, 100), error])
    rows = [line for line in text.splitlines() if line.startswith("| propfind-0 ")]
    assert len(rows) == 2
    assert "3.00x" in rows[0] and rows[0].endswith("| yes |")
    assert "2.00x" in rows[1] and rows[1].endswith("| **no** |")
    assert "| get-100m | GET | error: nginx is missing |" in text
    assert "300 req/s (299-301), p99 10.0 ms" in rows[0]
    assert "- CPU: test x 2" in text and "wrk … peer" in text


def test_report_shows_no_machine_paths() -> None:
    text = report.markdown([], {}, "fedspace bench", "- method",
                           {"fedspace": "/venv/bin/python3 -m fedspace serve --data /tmp/w/x"},
                           {"/tmp/w": "$WORK", "/venv/bin/python3": "python3"})
    assert "python3 -m fedspace serve --data $WORK/x" in text
    assert "`$WORK`, `python3` for this machine's paths" in text


def test_regeneration_keeps_the_notes_section(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    report.write(path, _generated([_result(300, 100)]))
    assert path.read_text().count(report.NOTES_HEADING) == 1
    notes = f"{report.NOTES_HEADING}\n\nPROPFIND: cached the tree; 3x.\n\n### next\n- more\n"
    path.write_text(path.read_text().split(report.NOTES_HEADING)[0] + notes)
    report.write(path, _generated([_result(200, 100)]))
    text = path.read_text()
    assert text.endswith(notes) and "2.00x" in text and "3.00x" not in text
    assert text.count(report.NOTES_HEADING) == 1


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed "
                    "(apt-get install wrk); .ci/run installs it")
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    """fedspace and wsgidav really served the same load and the report says so."""
    rows, text = quick_run(tmp_path, "propfind-0")
    assert len(rows) == 1 and "wsgidav" in rows[0]
    assert rows[0].split(" | ")[5].endswith("x")  # a ratio, whatever its value
    assert report.NOTES_HEADING in text
    assert str(tmp_path) not in text and sys.executable not in text


def quick_run(tmp_path: Path, name: str) -> tuple[list[str], str]:
    """``fedspace bench --quick NAME`` end to end: the report's rows for it, and the report."""
    out = tmp_path / "B.md"
    done = subprocess.run(
        [sys.executable, "-m", "fedspace", "bench", "--quick", name, "--output",
         str(out), "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    return [line for line in text.splitlines() if line.startswith(f"| {name} |")], text

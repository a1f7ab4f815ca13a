"""Machine facts printed with every result: figures mean little without them."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import sys
from pathlib import Path

from scenarios.bench.harness import Session
from scenarios.bench.model import BenchError
from scenarios.bench.peers import versions
from scenarios.bench.procs import run


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tool_version(name: str, args: list[str], pattern: str) -> str:
    binary = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if binary is None:
        return "not installed"
    try:
        text = run([binary, *args], timeout=30, merge_stderr=True, check=False)
    except BenchError:
        return "unknown"
    match = re.search(pattern, text)
    return match.group(1) if match else "unknown"


def machine(session: Session) -> dict[str, str]:
    """CPU, cores, OS, Python and the versions of everything measured or measuring."""
    python = session.cache / "peers-venv" / "bin" / "python"
    peer_versions: dict[str, str] = {}
    if python.exists():
        try:
            peer_versions = versions(python)
        except BenchError:
            peer_versions = {}
    return {
        "CPU": f"{cpu_model()} x {os.cpu_count()} "
               f"({len(os.sched_getaffinity(0))} usable)",
        "pinning": session.pinning,
        "load average (1 min)": f"{session.load_at_start:.2f} at the start, "
                                f"{os.getloadavg()[0]:.2f} at the end",
        "idle before each round": "always" if not session.unsettled else
                                  f"{session.unsettled} rounds began on a busy server core",
        "OS": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "Python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "fedspace": importlib.metadata.version("fedspace"),
        "wsgidav": peer_versions.get("wsgidav", "not installed"),
        "cheroot": peer_versions.get("cheroot", "not installed"),
        "nginx": _tool_version("nginx", ["-v"], r"nginx/(\S+)"),
        "wrk": _tool_version("wrk", ["-v"], r"wrk (\S+)"),
        "curl": _tool_version("curl", ["--version"], r"curl (\S+)"),
    }

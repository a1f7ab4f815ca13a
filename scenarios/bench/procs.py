"""Processes under test: started in their own process group, always time-bounded, always
stopped, with their memory readable from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from scenarios.bench.model import BenchError

STOP_TIMEOUT = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def run(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None,
        cwd: Path | None = None, merge_stderr: bool = False, check: bool = True) -> str:
    """Run a command to completion and return its stdout (and stderr with
    ``merge_stderr``); a timeout, and a failure when ``check``, is a BenchError."""
    try:
        done = subprocess.run(  # noqa: S603
            list(argv), stdout=subprocess.PIPE, text=True, timeout=timeout,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            env=dict(env) if env is not None else None, cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{argv[0]} did not finish within {timeout:g} s") from None
    except FileNotFoundError:
        raise BenchError(f"{argv[0]} not found") from None
    if check and done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BenchError(f"{' '.join(argv[:3])} … failed ({done.returncode}): {' | '.join(tail)}")
    return done.stdout


class Server:
    """One server process (and its children) in a session of its own, logging to a file."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, *,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.started = time.monotonic()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_http(self, url: str, *, headers: Mapping[str, str] | None = None,
                  timeout: float = 60.0) -> float:
        """Poll ``url`` until it answers 2xx; seconds since the spawn. Fails fast when the
        process dies, with the last lines of its log."""
        deadline = self.started + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise BenchError(f"{self.name} exited ({self.proc.returncode}): "
                                     f"{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(url, headers=headers).is_success:
                        return time.monotonic() - self.started
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.name} not ready within {timeout:g} s: "
                                     f"{self.log_tail()}")
                time.sleep(0.02)

    def log_tail(self, lines: int = 3) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"

    def rss_mib(self) -> float:
        """Resident memory of the process and all its descendants, MiB."""
        return sum(_rss_kib(pid) for pid in [self.pid, *_descendants(self.pid)]) / 1024

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL after STOP_TIMEOUT."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):  # children left behind in the group
            os.killpg(self.proc.pid, signal.SIGKILL)


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def poll_until(check: Callable[[], bool], *, timeout: float, what: str,
               interval: float = 0.02) -> None:
    """Wait for ``check()`` to be true, or raise a BenchError naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} not within {timeout:g} s")
        time.sleep(interval)

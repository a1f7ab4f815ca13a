"""fedspace under test: a real ``fedspace serve`` process with its own data directory and
SQLite, on loopback over plain HTTP, and a user who authenticates the way sync clients do
(HTTP Basic with an app password) in her personal space."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from scenarios.bench.harness import Session, shell
from scenarios.bench.model import BenchError
from scenarios.bench.peers import USER, basic
from scenarios.bench.procs import Server, free_port, poll_until, run
from scenarios.rig_machine import RIG_JSON
from scenarios.rigfile import RigFileError, load_rig

SEED_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class Home:
    """A prepared data directory: the environment that configures it and the user's app
    password (created through the CLI before the server starts)."""

    data_dir: Path
    env: dict[str, str]
    password: str

    @property
    def auth(self) -> str:
        return basic(USER, self.password)

    @property
    def settings(self) -> str:
        """The ``FEDSPACE_*`` assignments, as a shell command prefix."""
        return " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items())
                        if k.startswith("FEDSPACE_"))


@dataclass(frozen=True, slots=True)
class Fedspace:
    """A running instance and the user's personal space on it."""

    server: Server
    base: str  # http://127.0.0.1:port
    dav: str  # WebDAV URL of the personal space's root, no trailing slash
    auth: str
    ready_s: float


def fedspace_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedspace", *args]


def prepare(session: Session, name: str) -> Home:
    """A fresh data directory with the benchmark user and an app password."""
    data_dir = session.dir(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDSPACE_")}
    env.update(FEDSPACE_DATA_DIR=str(data_dir), FEDSPACE_HTTP__PORT=str(free_port()),
               FEDSPACE_GRPC__PORT="0", FEDSPACE_LOG__LEVEL="warning")
    add = fedspace_argv("users", "add", USER)
    create = fedspace_argv("users", "app-password", "create", USER, "--label", "bench")
    run(add, env=env, timeout=120)
    out = run(create, env=env, timeout=120)
    home = Home(data_dir, env, out.strip().splitlines()[-1])
    session.servers.setdefault(  # the same for every data directory but its path
        "fedspace setup", f"{home.settings} {shell(add)}\n{home.settings} {shell(create)}")
    return home


def serve_key(home: Home) -> str:
    """The key of this data directory's ``fedspace serve`` in ``Session.servers``."""
    return f"fedspace ({home.data_dir.name})"


def spawn(session: Session, home: Home) -> tuple[Server, str, float]:
    """``fedspace serve`` on the server core; returns it, its URL and the seconds from the
    spawn until ``/readyz`` answered 200."""
    argv = session.pin(fedspace_argv("serve"), "server")
    session.servers[serve_key(home)] = f"{home.settings} {shell(argv)}"
    server = Server("fedspace serve", argv, home.data_dir / "serve.log", env=home.env)
    base = f"http://127.0.0.1:{home.env['FEDSPACE_HTTP__PORT']}"
    try:
        ready = server.wait_http(f"{base}/readyz", timeout=60)
    except BenchError:
        server.stop()
        raise
    return server, base, ready


def start(session: Session, name: str) -> Fedspace:
    """Prepare, serve (stopped when the session ends) and find the personal space."""
    home = prepare(session, name)
    server, base, ready = spawn(session, home)
    session.stack.callback(server.stop)
    return Fedspace(server, base, personal_space(base, home.auth), home.auth, ready)


def personal_space(base: str, auth: str) -> str:
    """The WebDAV root of the user's personal space, from the Graph drive list."""
    answer = httpx.get(f"{base}/graph/v1.0/me/drives", headers={"Authorization": auth},
                       timeout=30)
    if not answer.is_success:
        raise BenchError(f"GET /graph/v1.0/me/drives answered {answer.status_code}")
    for drive in answer.json()["value"]:
        if drive["driveType"] == "personal":
            return f"{base}/dav/spaces/{drive['id']}"
    raise BenchError("the benchmark user has no personal space")


def seed(target: str, auth: str, tree: Path) -> None:
    """Upload ``tree`` below the WebDAV URL ``target`` with MKCOL and PUT, as a client would
    (fedspace's storage is only ever written through its API)."""
    headers = {"Authorization": auth}
    folders = sorted(p for p in tree.rglob("*") if p.is_dir())
    files = sorted(p for p in tree.rglob("*") if p.is_file())
    with httpx.Client(timeout=300, headers=headers) as client:
        for folder in folders:
            _check(client.request("MKCOL", f"{target}/{folder.relative_to(tree)}/"), folder)

        def put(path: Path) -> None:
            with path.open("rb") as body:
                answer = client.put(f"{target}/{path.relative_to(tree)}", content=_chunks(body),
                                    headers={"Content-Length": str(path.stat().st_size)})
            _check(answer, path)

        with ThreadPoolExecutor(SEED_CONCURRENCY) as pool:
            list(pool.map(put, files))


def _chunks(body: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := body.read(size):
        yield chunk


def _check(answer: httpx.Response, what: Path) -> None:
    if not answer.is_success:
        raise BenchError(f"seeding {what.name}: {answer.request.method} answered "
                         f"{answer.status_code}")


RIG_TIMEOUT = 120.0


def spawn_rig(session: Session, state: Path, key: str) -> Server:
    """``fedspace rig up`` in ``state`` on the server core, waited for until its rig.json
    says ready (``Server.started`` is when it was spawned); the caller stops it."""
    argv = session.pin(fedspace_argv("rig", "up", "--state", str(state), "--port",
                                     str(free_port("127.77.1.1"))), "server")
    session.servers[key] = shell(argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDSPACE_")}
    server = Server("fedspace rig up", argv, state.parent / f"{state.name}.log", env=env)

    def ready() -> bool:
        if server.proc.poll() is not None:
            raise BenchError(f"the rig exited ({server.proc.returncode}): {server.log_tail()}")
        with contextlib.suppress(RigFileError):
            info = load_rig(state / RIG_JSON)
            return info.pid == server.pid and info.status == "ready"
        return False

    try:
        poll_until(ready, timeout=RIG_TIMEOUT, what="the rig ready")
    except BaseException:
        server.stop()
        raise
    return server

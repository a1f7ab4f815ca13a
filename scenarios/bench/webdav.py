"""WebDAV benchmarks: fedspace and its peers serve the same file tree to the same load.

The tree: ``f1000/`` (``plan.files`` files of a few bytes), ``small.bin`` (4 KiB),
``big.bin`` (``plan.big`` bytes) and an empty ``uploads/`` for the PUT benchmarks.
fedspace gets it through its own WebDAV API (MKCOL/PUT); wsgidav and nginx serve the
directory itself. Every server authenticates the same user with HTTP Basic.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from scenarios.bench import instance, peers
from scenarios.bench.harness import Session, rounds, shell
from scenarios.bench.model import BenchError, Figure, Limit, Ratio, Result, Stat, benchmark
from scenarios.bench.procs import run
from scenarios.bench.wrk import Shape, load

SMALL = 4096
FOLDER = "f1000"

# What the ownCloud/oCIS desktop client asks for when it lists a folder (discovery phase),
# plus the ids and content type web clients use.
SYNC_PROPFIND = """<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">
  <d:prop>
    <d:resourcetype/><d:getlastmodified/><d:getcontentlength/><d:getetag/>
    <d:getcontenttype/><oc:size/><oc:id/><oc:fileid/><oc:downloadURL/><oc:dDC/>
    <oc:permissions/><oc:checksums/><oc:share-types/>
  </d:prop>
</d:propfind>
"""


@dataclass(frozen=True, slots=True)
class Tree:
    root: Path
    password: str  # the benchmark user's password on the peers


def propfind_body(session: Session) -> Path:
    """The sync client's PROPFIND request body, as a file for wrk."""

    def make(session: Session) -> Path:
        body = session.work_dir / "propfind.xml"
        body.write_text(SYNC_PROPFIND)
        return body

    return session.shared("propfind.xml", make)


def tree(session: Session) -> Tree:
    """The data tree on disk (peers serve it; fedspace gets a copy through WebDAV)."""

    def make(session: Session) -> Tree:
        root = session.dir("tree")
        session.say(f"writing the data tree ({session.plan.files} files, "
                    f"{session.plan.big / 1e6:g} MB) in {root}")
        folder = root / FOLDER
        folder.mkdir()
        for i in range(session.plan.files):
            (folder / f"file-{i:04d}.txt").write_text(f"file {i}\n")
        (root / "small.bin").write_bytes(secrets.token_bytes(SMALL))
        with (root / "big.bin").open("wb") as out:
            for start in range(0, session.plan.big, 1 << 20):
                out.write(secrets.token_bytes(min(1 << 20, session.plan.big - start)))
        (root / "uploads").mkdir()
        return Tree(root, secrets.token_urlsafe(16))

    return session.shared("tree", make)


def fedspace(session: Session) -> instance.Fedspace:
    def make(session: Session) -> instance.Fedspace:
        data = tree(session)
        target = instance.start(session, "fedspace")
        session.say("seeding fedspace through WebDAV (MKCOL, PUT)")
        instance.seed(target.dav, target.auth, data.root)
        return target

    return session.shared("fedspace", make)


def wsgidav(session: Session) -> peers.Peer:
    return session.shared("wsgidav", lambda s: peers.start_wsgidav(
        s, tree(s).root, tree(s).password, "small.bin"))


def nginx(session: Session) -> peers.Peer:
    return session.shared("nginx", lambda s: peers.start_nginx(
        s, tree(s).root, tree(s).password, "small.bin"))


def _versus(session: Session, name: str, what: str, path: str, shape: Shape,
            target: tuple[Ratio | Limit, ...]) -> list[Result]:
    """The same wrk load against fedspace, then wsgidav."""
    ours, peer = fedspace(session), wsgidav(session)
    mine, mine_cmd = load(session, f"{ours.dav}/{path}", ours.auth, shape)
    theirs, their_cmd = load(session, f"{peer.base}/{path}", peer.auth, shape)
    return [Result(name, what, "req/s", mine, theirs, peer.name, target, (mine_cmd, their_cmd))]


@benchmark("propfind-1000", "PROPFIND Depth:1 of a folder with 1,000 files, sync-client "
           "properties, Basic auth")
def propfind_1000(session: Session) -> list[Result]:
    shape = Shape("PROPFIND", 8, "1", propfind_body(session))
    what = f"PROPFIND Depth:1, {session.plan.files} files, sync-client props, 8 conns"
    return _versus(session, "propfind-1000", what, f"{FOLDER}/", shape, (Ratio(at_least=10),))


@benchmark("propfind-0", "PROPFIND Depth:0 of a folder, 64 connections")
def propfind_0(session: Session) -> list[Result]:
    shape = Shape("PROPFIND", 64, "0", propfind_body(session))
    return _versus(session, "propfind-0", "PROPFIND Depth:0 of a folder, 64 conns",
                   f"{FOLDER}/", shape, (Ratio(at_least=3), Limit(50, "p99_ms")))


@benchmark("get-4k", "GET of a 4 KiB file, 16 connections")
def get_4k(session: Session) -> list[Result]:
    return _versus(session, "get-4k", "GET 4 KiB file, 16 conns", "small.bin", Shape(),
                   (Ratio(at_least=2),))


@benchmark("put-4k", "PUT of a 4 KiB file (64 names, overwritten), 16 connections")
def put_4k(session: Session) -> list[Result]:
    shape = Shape("PUT", 16, None, tree(session).root / "small.bin", rotate=64)
    return _versus(session, "put-4k", "PUT 4 KiB file (64 names), 16 conns",
                   "uploads/small.bin", shape, (Ratio(at_least=1.5),))


def _transfer(session: Session, url: str, auth: str, upload: Path | None) -> tuple[Figure, str]:
    """Single-stream curl transfers (warm-up, then ``plan.transfers``), MB/s."""
    argv = [peers.tool("curl"), "-sS", "-o", "/dev/null", "-H", f"Authorization: {auth}",
            "-H", "Expect:", "--max-time", "600", "-w", "%{http_code} %{speed_download} "
            "%{speed_upload}"]
    argv = session.pin([*argv, *(["-T", str(upload)] if upload else []), url], "load")

    def once() -> float:
        code, down, up = run(argv, timeout=660).split()
        if not code.startswith("2"):
            raise BenchError(f"{'PUT' if upload else 'GET'} {url} answered {code}")
        return float(up if upload else down) / 1e6

    return Figure(Stat.of(rounds(session, session.plan.transfers, once))), shell(argv, [auth])


@benchmark("get-100m", "GET of one 100 MB file, single stream, vs nginx (sendfile)")
def get_100m(session: Session) -> list[Result]:
    ours, peer = fedspace(session), nginx(session)
    mine, mine_cmd = _transfer(session, f"{ours.dav}/big.bin", ours.auth, None)
    theirs, their_cmd = _transfer(session, f"{peer.base}/big.bin", peer.auth, None)
    what = f"GET {session.plan.big / 1e6:g} MB, one stream"
    return [Result("get-100m", what, "MB/s", mine, theirs, peer.name, (Ratio(at_least=0.8),),
                   (mine_cmd, their_cmd))]


@benchmark("put-100m", "PUT of one 100 MB file, single stream, vs wsgidav")
def put_100m(session: Session) -> list[Result]:
    ours, peer = fedspace(session), wsgidav(session)
    big = tree(session).root / "big.bin"
    mine, mine_cmd = _transfer(session, f"{ours.dav}/uploads/big.bin", ours.auth, big)
    theirs, their_cmd = _transfer(session, f"{peer.base}/uploads/big.bin", peer.auth, big)
    what = f"PUT {session.plan.big / 1e6:g} MB, one stream"
    return [Result("put-100m", what, "MB/s", mine, theirs, peer.name, (Ratio(at_least=1.5),),
                   (mine_cmd, their_cmd))]

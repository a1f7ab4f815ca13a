"""``fedspace outbox list|retry`` as a separate process, like an operator runs it, on a
message a real peer refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from test_outbox import FAST, put, serve_script, wait_for

from federation.delivery import Delivery, post_json
from federation.outbox import state_of
from fedspace.db import Database
from fedspace.outbound import Outbound
from fedspace.settings import OutboundSettings


def fedspace(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDSPACE_DATA_DIR": str(tmp_path / "data"),
           "FEDSPACE_DATABASE_URL": database_url, "COLUMNS": "250"}
    env.pop("FEDSPACE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "fedspace", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


async def test_list_and_retry_a_refused_message(tmp_path: Path, database_url: str) -> None:
    db = Database(database_url)
    await db.migrate()
    outbound = Outbound(OutboundSettings(allow_http=True, allow_private_addresses=True))
    try:
        async with serve_script() as server:
            server.answers["/ocm/shares"] = [
                (403, {}, orjson.dumps({"message": "sender not trusted"}))]
            refused = await put(db, "s1", server.url("/ocm/shares"))
            await put(db, "s2", "https://cloud.rome.test/ocm/shares", peer="rome.test")
            delivery = Delivery(db, FAST.model_copy(update={"poll_seconds": 0.05}),
                                post_json(outbound))
            await delivery.start()
            await wait_for(db, "s1", "failed")
            await delivery.stop()
    finally:
        await outbound.aclose()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return fedspace(tmp_path, database_url, "outbox", *args)

    r = run("list")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if "paris.test" in line)
    for cell in (str(refused), "share", "failed", "403 sender not trusted"):
        assert cell in row
    assert "rome.test" in r.stdout
    r = run("list", "--state", "failed")
    assert "paris.test" in r.stdout and "rome.test" not in r.stdout
    r = run("list", "--state", "lost")
    assert r.returncode == 2 and r.stderr.startswith("error: unknown state")

    r = run("retry", str(refused))
    assert r.returncode == 0, r.stderr
    assert "1 message queued again" in r.stdout
    async with db.read() as conn:
        again = await state_of(conn, "s1")
    assert again and (again.state, again.attempts) == ("queued", 0)
    r = run("retry", str(refused))
    assert r.returncode == 2 and "has not failed" in r.stderr
    r = run("retry", "--all-failed")
    assert r.returncode == 0 and "0 messages queued again" in r.stdout
    r = run("retry")
    assert r.returncode == 2 and "give a message ID or --all-failed" in r.stderr
    await db.close()

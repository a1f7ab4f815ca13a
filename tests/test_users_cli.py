"""``fedspace users add`` as a separate process, like an operator (or a start script) runs it:
the account password from a prompt or, with ``--password-stdin``, from a pipe."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from discovery.service import Directory
from fedspace.db import Database


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'fedspace.db'}"


@pytest.fixture
def users(tmp_path: Path, db_url: str):
    env = {**os.environ, "FEDSPACE_DATA_DIR": str(tmp_path / "data"),
           "FEDSPACE_DATABASE_URL": db_url, "COLUMNS": "200"}
    env.pop("FEDSPACE_CONFIG", None)

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fedspace", "users", *args], env=env,
                              input=stdin, capture_output=True, text=True, timeout=60,
                              check=False)

    return run


def password_of(db_url: str, username: str, password: str) -> bool:
    async def check() -> bool:
        db = Database(db_url)
        try:
            return await Directory(db).check_password(username, password) is not None
        finally:
            await db.close()

    return asyncio.run(check())


def test_add_with_password_stdin(users, db_url: str) -> None:
    r = users("add", "einstein", "--password-stdin", stdin="rela tivity \r\nignored\n")
    assert r.returncode == 0, r.stderr
    assert "added user einstein" in r.stdout
    assert password_of(db_url, "einstein", "rela tivity ")  # inner and trailing blanks kept
    r = users("add", "marie", "--password-stdin", stdin="radioactivity")  # no newline at all
    assert r.returncode == 0, r.stderr
    assert password_of(db_url, "marie", "radioactivity")


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("--password-stdin",), "", "no password on standard input"),
    (("--password-stdin",), "\nsecond line\n", "no password on standard input"),
    (("--password", "--password-stdin"), "relativity\n", "exclude each other"),
])
def test_password_stdin_refusals(users, args: tuple[str, ...], stdin: str,
                                 message: str) -> None:
    r = users("add", "einstein", *args, stdin=stdin)
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    listed = users("list")
    assert listed.returncode == 0 and "einstein" not in listed.stdout  # nothing was added

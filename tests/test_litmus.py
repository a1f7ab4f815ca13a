"""RFC 4918 compliance: Debian's litmus suite against a running instance over the wire."""

from __future__ import annotations

import asyncio
import os
import re
import shutil

import pytest

SUITES = ("basic", "copymove", "props", "http")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_litmus(instance, tmp_path) -> None:  # type: ignore[no-untyped-def]
    litmus = shutil.which("litmus")
    if litmus is None:
        if os.environ.get("FEDSPACE_TEST_REQUIRE_LITMUS") == "1":
            pytest.fail("litmus is required but not installed (apt-get install litmus)")
        pytest.skip("litmus not installed (apt-get install litmus)")
    alice = instance.client("alice")
    drives = (await alice.get("/graph/v1.0/me/drives")).json()["value"]
    personal = next(d for d in drives if d["driveType"] == "personal")
    url = f"{instance.url}/dav/spaces/{personal['id']}/"
    proc = await asyncio.create_subprocess_exec(
        litmus, url, "alice", instance.users["alice"][1],
        env={**os.environ, "TESTS": " ".join(SUITES)}, cwd=tmp_path,  # litmus writes debug.log
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    report = out.decode(errors="replace")
    summaries = re.findall(r"<- summary for [`'](\w+)': of (\d+) tests run: (\d+) passed, "
                           r"(\d+) failed", report)
    assert {s[0] for s in summaries} == set(SUITES), report
    failed = [line for line in report.splitlines() if "FAIL" in line]
    assert not failed and proc.returncode == 0, report

"""The scenarios against a real two-domain rig (HTTPS with the rig CA, every host on its
own loopback address), as ``fedspace scenario run`` plays them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_rig import free_port

from scenarios.agent import Account
from scenarios.demo import explore
from scenarios.rig import Rig
from scenarios.scenario_cli import SCENARIOS, play, world_of
from scenarios.transcript import ScenarioFailed, Transcript


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with Rig.start(tmp_path / "state", ("zurich.test", "paris.test"), port=0,
                         untrusted=("rogue.test",)) as running:
        yield running


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_scenario_passes(rig: Rig, name: str) -> None:
    for _ in range(2):  # a rig keeps its data: a story must run again on it
        transcript = Transcript(console=None)
        await play(name, world_of(rig.info), transcript)
        assert transcript.steps and all(step.ok for step in transcript.steps)


async def test_a_failing_step_is_named(rig: Rig) -> None:
    world = world_of(rig.info)
    world.sites["paris.test"].accounts["marie"] = Account(
        "marie", "wrong password", "", "marie@paris.test")
    transcript = Transcript(console=None)
    with pytest.raises(ScenarioFailed) as failed:
        await play("einstein-marie", world, transcript)
    assert failed.value.step.title == "Marie logs in at paris"
    assert "login form answered" in str(failed.value)
    assert [s.ok for s in transcript.steps] == [True] * 5 + [False]


async def test_cli_against_a_rig_that_is_down(tmp_path: Path) -> None:
    async with Rig.start(tmp_path / "state", ("zurich.test", "paris.test"), port=0) as running:
        rig_json = Path(running.info.state_dir) / "rig.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDSPACE_")}

    def fedspace(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fedspace", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    done = await asyncio.to_thread(fedspace, "scenario", "run", "einstein-marie",
                                   "--rig", str(rig_json))
    assert done.returncode == 2 and "the rig is not running" in done.stderr
    assert "Traceback" not in done.stderr
    done = await asyncio.to_thread(fedspace, "scenario", "run", "nope", "--rig", str(rig_json))
    assert done.returncode == 2 and "no scenario 'nope'" in done.stderr
    listed = await asyncio.to_thread(fedspace, "scenario", "list")
    assert "einstein-marie" in listed.stdout


def test_demo_plays_the_seed_story(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDSPACE_")}
    done = subprocess.run([sys.executable, "-m", "fedspace", "demo", "--exit", "--state",
                           str(tmp_path / "state"), "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "einstein-marie passed" in done.stdout
    assert "Traceback" not in done.stderr


async def test_demo_explore_names_this_rig(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    explore(rig.info)
    shown = " ".join(capsys.readouterr().out.split())
    assert f"{rig.info.state_dir}/env.sh" in shown
    assert rig.info.user("einstein@zurich.test").app_password in shown
    assert f"scenario run decline --rig {rig.info.state_dir}/rig.json" in shown

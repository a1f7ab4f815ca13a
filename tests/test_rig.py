"""The multi-domain rig over real sockets and real TLS: every host of both domains verified
against the rig CA, discovery across domains, seeded users and trust, rig.json, and the
``fedspace rig`` command's errors, detach and down."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from idp_fixtures import form_fields, pkce, query
from typer.testing import CliRunner

from discovery.client import DiscoveryClient
from fedspace.cli import app
from scenarios.rig import Rig, RigError
from scenarios.rig_machine import choose_port, host_plan
from scenarios.rigfile import RigFile, RigFileError, load_rig

DOMAINS = ("zurich.test", "paris.test")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with Rig.start(tmp_path / "state", DOMAINS, port=0,
                         hosts_file=tmp_path / "hosts") as running:
        yield running


def free_port(domains: tuple[str, ...] = DOMAINS) -> int:
    """A port free on every rig address (port 0 would give each address its own)."""
    return choose_port([h.address for hs in host_plan(domains, 0).values() for h in hs], 0)


async def test_every_host_answers_over_verified_https(rig: Rig) -> None:
    info = rig.info
    async with info.client(timeout=30) as client:
        for domain in info.domains:
            for host in domain.hosts:
                r = await client.get(f"https://{host.name}:{host.port}/healthz")
                assert (r.status_code, r.text) == (200, "ok"), host
    # The same names without the rig CA: refused, so the checks above verified something.
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport()) as plain:
        cloud = info.domain("zurich.test").host("cloud")
        with pytest.raises(httpx.ConnectError):
            await plain.get(f"https://{cloud.address}:{cloud.port}/healthz")


async def test_discovery_across_domains(rig: Rig) -> None:
    zurich, paris = rig.info.domain("zurich.test"), rig.info.domain("paris.test")
    port = rig.info.port
    async with rig.info.client(timeout=30) as client:
        r = await client.get(f"https://zurich.test:{port}/.well-known/webfinger",
                             params={"resource": "acct:einstein@zurich.test"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/jrd+json"
        links = {link["rel"]: link["href"] for link in r.json()["links"]}
        assert links["http://openid.net/specs/connect/1.0/issuer"] == zurich.issuer
        assert links["http://webfinger.owncloud/rel/server-instance"] == zurich.cloud_url

        r = await client.get(f"https://idp.zurich.test:{port}/.well-known/openid-configuration")
        assert r.status_code == 200 and r.json()["issuer"] == zurich.issuer == (
            f"https://idp.zurich.test:{port}")

        r = await client.get(f"https://paris.test:{port}/.well-known/ocm")
        assert r.status_code == 200 and r.json()["endPoint"] == paris.ocm_endpoint

        # Einstein's app password works for WebDAV on his personal space.
        einstein = zurich.user("einstein")
        basic = (einstein.username, einstein.app_password)
        drives = (await client.get(f"{zurich.cloud_url}/graph/v1.0/me/drives",
                                   auth=basic)).json()["value"]
        r = await client.request("PROPFIND", f"{zurich.cloud_url}/dav/spaces/{drives[0]['id']}/",
                                 auth=basic, headers={"Depth": "0"})
        assert r.status_code == 207
    # fedspace's own client finds Marie through port-less https://paris.test (name map + CA).
    found = await DiscoveryClient(rig["zurich.test"].instance.ctx.outbound, 60).discover(
        "marie@paris.test")
    assert (found.issuer, found.registry) == (paris.issuer, paris.cloud_url)


async def test_seeded_trust_lets_marie_use_zurich(rig: Rig) -> None:
    zurich, paris = rig["zurich.test"], rig["paris.test"]
    assert await zurich.component("discovery").trust.get(paris.issuer) is not None
    decision = await zurich.component("federation").peers.decide("paris.test")
    assert decision.allowed and "allowlisted" in decision.reason
    marie = rig.info.user("marie@paris.test")
    async with rig.info.client(timeout=30) as browser:
        token = await login(browser, paris.issuer, paris.cloud_url, marie.username,
                            marie.password, resource=zurich.cloud_url)
        r = await browser.get(f"{zurich.cloud_url}/graph/v1.0/me/drives",
                              headers={"Authorization": f"Bearer {token}"})
    assert (r.status_code, r.json()["value"]) == (200, [])  # a guest with nothing shared yet


async def login(browser: httpx.AsyncClient, issuer: str, cloud: str, username: str,
                password: str, *, resource: str) -> str:
    """Code + PKCE at ``issuer`` with the login form, for a token meant for ``resource``."""
    verifier, challenge = pkce()
    redirect_uri = f"{cloud}/oidc-callback"
    params = {"response_type": "code", "client_id": "web", "redirect_uri": redirect_uri,
              "scope": "openid profile email", "state": secrets.token_urlsafe(8),
              "nonce": "n", "code_challenge": challenge, "code_challenge_method": "S256",
              "resource": resource}
    page = await browser.get(f"{issuer}/authorize", params=params)
    assert page.status_code == 200, page.text
    fields = form_fields(page.text)
    r = await browser.post(f"{issuer}/login", data={
        "authz": fields["authz"], "csrf": fields["csrf"], "username": username,
        "password": password})
    assert r.status_code == 302, r.text
    r = await browser.post(f"{issuer}/token", data={
        "grant_type": "authorization_code", "code": query(r.headers["location"])["code"],
        "client_id": "web", "redirect_uri": redirect_uri, "code_verifier": verifier,
        "resource": resource})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def test_rig_json_hosts_file_and_restart(tmp_path: Path) -> None:
    state, hosts_file = tmp_path / "state", tmp_path / "hosts"
    hosts_file.write_text("127.0.0.1\tlocalhost\n")
    async with Rig.start(state, DOMAINS, port=0, hosts_file=hosts_file) as first:
        loaded = load_rig(first.rig_json)
        assert loaded == first.info and loaded.status == "ready" and loaded.pid == os.getpid()
        assert loaded.names()["cloud.zurich.test"] == f"127.77.1.1:{loaded.port}"
        assert f"--resolve cloud.paris.test:{loaded.port}:127.77.2.1" in " ".join(
            loaded.tools.curl)
        assert "MAP idp.zurich.test 127.77.1.2" in loaded.tools.chromium[0]
        assert "CURL_CA_BUNDLE" in (state / "env.sh").read_text()
        assert "127.77.1.2\tidp.zurich.test" in hosts_file.read_text()
        with pytest.raises(RigError, match="already running"):
            async with Rig.start(state, DOMAINS, port=0):
                pass
        app_password = loaded.user("einstein@zurich.test").app_password
    assert load_rig(state / "rig.json").status == "stopped"
    assert hosts_file.read_text() == "127.0.0.1\tlocalhost\n"
    async with Rig.start(state, DOMAINS, port=0) as second:  # same state: data kept
        assert second.info.user("einstein@zurich.test").app_password == app_password


def test_load_rig_errors(tmp_path: Path) -> None:
    path = tmp_path / "rig.json"
    with pytest.raises(RigFileError, match="not found"):
        load_rig(path)
    path.write_text("{nope")
    with pytest.raises(RigFileError, match=r"not a valid rig\.json") as err:
        load_rig(path)
    assert "\n" not in str(err.value)
    path.write_text(json.dumps({"version": 1, "status": "ready"}))
    with pytest.raises(RigFileError, match="pid"):
        load_rig(path)
    assert RigFile.__dataclass_fields__  # a plain dataclass


def fedspace(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedspace", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    """Exit 2 with one ``error:`` message (rich may wrap it at the console width)."""
    assert result.returncode == 2, result
    text = " ".join(result.stderr.split())
    assert needle in text and "Traceback" not in text, result.stderr
    assert text.startswith("error:") and text.count("error:") == 1


def test_rig_up_refuses_bad_input(tmp_path: Path) -> None:
    one_line_error(fedspace("rig", "up", "--domain", "paris.test", "--domain", "Paris.test",
                            "--state", "s", cwd=tmp_path), "domain paris.test given twice")
    one_line_error(fedspace("rig", "up", "--domain", "no_such!", "--state", "s",
                            cwd=tmp_path), "invalid domain")
    (tmp_path / "file").write_text("")
    one_line_error(fedspace("rig", "up", "--state", "file/state", cwd=tmp_path),
                   "is not writable")
    port = free_port()
    with socket.create_server(("127.77.1.1", port)):
        one_line_error(fedspace("rig", "up", "--state", "s", "--port", str(port),
                                cwd=tmp_path), f"cannot listen on port {port}")
    one_line_error(fedspace("rig", "down", "--state", "s", cwd=tmp_path), "no rig is running")
    one_line_error(fedspace("rig", "stop", "paris.test", "--state", "s", cwd=tmp_path),
                   "no rig is running")
    one_line_error(fedspace("rig", "up", "--untrusted", "zurich.test", "--state", "s",
                            cwd=tmp_path), "domain zurich.test given twice")


def test_write_hosts_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(app, ["rig", "up", "--write-hosts", "--state",
                                      str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "--write-hosts edits /etc/hosts and needs root" in " ".join(result.output.split())


def test_detach_and_down(tmp_path: Path) -> None:
    port = str(free_port())
    started = fedspace("rig", "up", "--detach", "--port", port, cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        assert "einstein@zurich.test" in started.stdout
        info = load_rig(tmp_path / ".fedspace-rig" / "rig.json")
        assert info.status == "ready" and info.port == int(port)
        again = fedspace("rig", "up", "--port", port, cwd=tmp_path)
        one_line_error(again, "already running")
        with httpx.Client(verify=ssl.create_default_context(cafile=info.ca_file)) as client:
            cloud = info.domain("paris.test").host("cloud")
            r = client.get(f"https://{cloud.address}:{cloud.port}/healthz",
                           headers={"Host": cloud.name}, extensions={"sni_hostname": cloud.name})
            assert r.text == "ok"
            # One domain down and up again, from another process; the rig keeps running.
            took = fedspace("rig", "stop", "paris.test", cwd=tmp_path)
            assert took.returncode == 0 and "paris.test stopped" in took.stdout, took.stderr
            with pytest.raises(httpx.ConnectError):
                client.get(f"https://{cloud.address}:{cloud.port}/healthz")
            one_line_error(fedspace("rig", "stop", "paris.test", cwd=tmp_path),
                           "paris.test is already stopped")
            one_line_error(fedspace("rig", "stop", "lyon.test", cwd=tmp_path),
                           "no domain 'lyon.test' in this rig")
            back = fedspace("rig", "start", "paris.test", cwd=tmp_path)
            assert back.returncode == 0 and "paris.test started" in back.stdout, back.stderr
        with httpx.Client(verify=ssl.create_default_context(cafile=info.ca_file)) as client:
            r = client.get(f"https://{cloud.address}:{cloud.port}/healthz",
                           headers={"Host": cloud.name}, extensions={"sni_hostname": cloud.name})
            assert r.text == "ok"
    finally:
        stopped = fedspace("rig", "down", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert load_rig(tmp_path / ".fedspace-rig" / "rig.json").status == "stopped"


async def test_untrusted_domain_and_trust_follows_the_rig(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with Rig.start(state, ("zurich.test", "paris.test", "rogue.test"), port=0):
        pass  # rogue.test trusted in this run …
    async with Rig.start(state, DOMAINS, port=0, untrusted=("rogue.test",)) as rig:
        info = load_rig(rig.rig_json)  # … and not in this one, on the same data
        assert [(d.name, d.trusted) for d in info.domains] == [
            ("zurich.test", True), ("paris.test", True), ("rogue.test", False)]
        zurich, rogue = rig["zurich.test"], rig["rogue.test"]
        peers = {p.domain: p.policy for p in await zurich.component("federation").peers.list()}
        assert peers == {"paris.test": "allow"}
        assert not (await zurich.component("federation").peers.decide("rogue.test")).allowed
        issuers = {t.domain for t in await zurich.component("discovery").trust.list()}
        assert issuers == {"paris.test"}
        rogue_peers = await rogue.component("federation").peers.list()
        assert {p.domain for p in rogue_peers} == {"zurich.test", "paris.test"}
        # A deliberate stop is not the rig ending: wait() keeps waiting until a crash.
        waiting = asyncio.create_task(rig.wait())
        await rig.stop_domain("rogue.test")
        await rig.start_domain("rogue.test")
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await rig["paris.test"].instance.stop()  # ends by itself, as far as the rig knows
        assert await asyncio.wait_for(waiting, 10) == "paris.test"

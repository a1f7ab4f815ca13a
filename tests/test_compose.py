"""The compose rig: generated file (structure, committed copy, N domains), the init step's
CA/certificates/settings, the PostgreSQL database step and the health probe.

No Docker engine runs here, so containers are never started; the start script is checked
by ``sh -n`` and ``docker-compose config`` validates the file when it is installed."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import POSTGRES_URL, REQUIRE_POSTGRES
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from fedspace.cli import app
from fedspace.settings import Settings
from scenarios.compose import dump_yaml, render_compose, service_names
from scenarios.container import cli, ensure_database, probe_target, write_init
from scenarios.rig import RigError
from scenarios.rig_seed import rp_secret

ROOT = Path(__file__).resolve().parents[1]
TWO = ["zurich.test", "paris.test"]


def load(text: str) -> dict:
    return yaml.safe_load(text)


def script(service: dict) -> str:
    """The start script as the container's shell sees it (compose turns $$ into $)."""
    return service["command"][0].replace("$$", "$")


def test_committed_compose_yaml_is_the_generators_output() -> None:
    assert (ROOT / "compose.yaml").read_text() == render_compose(TWO, postgres=True), (
        "compose.yaml is stale: run `fedspace rig compose`")


def test_two_domain_structure() -> None:
    doc = load(render_compose(TWO, postgres=True))
    services = doc["services"]
    assert list(services) == ["init", "zurich", "paris", "postgres"]
    init = services["init"]
    assert init["build"] == "." and init["network_mode"] == "none"
    assert init["command"] == ["init", "--out", "/certs", "--domain", "zurich.test",
                               "--domain", "paris.test"]
    for name, domain, port in (("zurich", "zurich.test", 8443), ("paris", "paris.test", 8444)):
        svc = services[name]
        assert svc["image"] == init["image"]
        assert svc["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
        assert svc["networks"]["rig"]["aliases"] == [f"cloud.{domain}", f"idp.{domain}", domain]
        assert svc["ports"] == [f"127.0.0.1:{port}:443"]
        assert svc["volumes"] == ["certs:/certs:ro", f"{name}-data:/data"]
        assert svc["healthcheck"]["test"][:5] == ["CMD", "python", "-m",
                                                  "scenarios.container", "probe"]
        env = svc["environment"]
        assert env["FEDSPACE_PUBLIC_URL"] == f"https://cloud.{domain}"
        assert env["FEDSPACE_DISCOVERY__ISSUER"] == f"https://idp.{domain}"
        assert all(isinstance(v, str) for v in env.values())  # compose wants strings
        other = "paris.test" if domain == "zurich.test" else "zurich.test"
        text = script(svc)
        assert f"trust issuer add https://idp.{other} --domain {other}" in text
        assert f"trust peer add {other}" in text
        assert f"/fedspace_{name}" in text and text.endswith("exec fedspace serve\n")
    assert "printf '%s\\n' relativity |\n  seed fedspace users add einstein " in script(
        services["zurich"])
    assert "users add marie" in script(services["paris"])
    assert all(s.endswith("--password-stdin") for s in script(services["paris"]).splitlines()
               if "users add" in s)
    pg = services["postgres"]
    assert pg["profiles"] == ["postgres"] and pg["image"] == "postgres:15"
    assert "healthcheck" in pg
    assert set(doc["volumes"]) == {"certs", "zurich-data", "paris-data", "postgres-data"}
    assert doc["networks"] == {"rig": {}}


def test_start_script_is_valid_shell() -> None:
    doc = load(render_compose(TWO, postgres=True))
    for name in ("zurich", "paris"):
        assert doc["services"][name]["entrypoint"] == ["/bin/sh", "-eu", "-c"]
        subprocess.run(["sh", "-n", "-c", script(doc["services"][name])], check=True)


def test_environment_names_are_real_settings(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every FEDSPACE_* variable the file sets takes effect (a misspelt nested name would be
    ignored silently), with /certs pointing at a real init output."""
    write_init(tmp_path, TWO)
    env = load(render_compose(TWO, postgres=True))["services"]["zurich"]["environment"]
    for key, value in env.items():
        monkeypatch.setenv(key, value.replace("/certs", str(tmp_path)))
    monkeypatch.setenv("FEDSPACE_DATA_DIR", str(tmp_path / "data"))
    s = Settings()
    assert (s.domain, s.public_url, s.discovery.issuer) == (
        "zurich.test", "https://cloud.zurich.test", "https://idp.zurich.test")
    assert s.http.port == 443 and s.http.tls_cert_file == tmp_path / "zurich.test.pem"
    assert s.http.tls_key_file == tmp_path / "zurich.test-key.pem"
    assert s.outbound.ca_file == tmp_path / "ca.pem" and s.outbound.allow_private_addresses
    assert s.log.format == "text"
    # from the init-written TOML: the other domain's cloud as OIDC client and relying party
    assert s.discovery.resource_peers == ["https://cloud.paris.test"]
    assert "paris.test" in {c.client_id for c in s.discovery.clients}
    [rp] = s.discovery.relying_parties
    secret = (tmp_path / "rig-secret").read_text().strip().encode()
    assert rp.issuer == "https://idp.paris.test" and rp.client_id == "zurich.test"
    assert rp.client_secret.get_secret_value() == rp_secret(secret, "paris.test", "zurich.test")


def test_sqlite_only_has_no_postgres() -> None:
    text = render_compose(TWO, postgres=False)
    doc = load(text)
    assert "postgres" not in doc["services"] and "postgres-data" not in doc["volumes"]
    assert "getent" not in script(doc["services"]["zurich"])


def test_three_domains() -> None:
    domains = ["zurich.test", "paris.test", "berlin.test"]
    doc = load(render_compose(domains, postgres=True, base_port=9443))
    services = doc["services"]
    assert list(services) == ["init", "zurich", "paris", "berlin", "postgres"]
    assert services["init"]["command"].count("--domain") == 3
    assert [services[s]["ports"] for s in ("zurich", "paris", "berlin")] == [
        ["127.0.0.1:9443:443"], ["127.0.0.1:9444:443"], ["127.0.0.1:9445:443"]]
    berlin = script(services["berlin"])
    assert "trust peer add zurich.test" in berlin and "trust peer add paris.test" in berlin
    assert "users add berlin" in berlin
    assert services["berlin"]["networks"]["rig"]["aliases"][0] == "cloud.berlin.test"


def test_service_names_avoid_clashes() -> None:
    assert service_names(["zurich.test", "zurich.example", "postgres.test", "init.test",
                          "paris.test"]) == {
        "zurich.test": "zurich-test", "zurich.example": "zurich-example",
        "postgres.test": "postgres-test", "init.test": "init-test", "paris.test": "paris"}


@pytest.mark.parametrize("domains", [["zurich.test", "zurich.test"], [], ["cloud.test"]])
def test_bad_domains(domains: list[str]) -> None:
    with pytest.raises(RigError):
        render_compose(domains, postgres=False)


def test_yaml_round_trip() -> None:
    """Every value reaches compose as given: ``$`` doubled (compose passes ``$$`` on as
    ``$``), strings YAML could read otherwise quoted; scripts stay literal blocks."""
    tricky = ["yes", "No", "on", "1.0", "0755", "a: b", "#x", "-x", "", ".inf", "~", "null",
              "x y", "[a]", "{b}", "'q'", '"d"', "$HOME", "tab\there", "ünï", "8443:443"]
    doc = {"s": tricky, "k": {t or "empty": t for t in tricky},
           "block": "line 1\n  two $X\n\nthree\n", "keep": "a\n\n", "strip": "a\nb",
           "indented": "  x\ny\n", "trailing": "a \nb\n", "crlf": "a\r\nb",
           "list": ["one\ntwo\n", "x"], "n": 5, "b": True, "e": [], "m": {}}
    expected = {**doc, "s": [t.replace("$", "$$") for t in tricky],
                "k": {t or "empty": t.replace("$", "$$") for t in tricky},
                "block": doc["block"].replace("$", "$$")}
    text = dump_yaml(doc)
    assert load(text) == expected
    assert "block: |\n  line 1\n    two $$X\n\n  three\nkeep:" in text


def test_compose_command(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "c.yaml"
    result = runner.invoke(app, ["rig", "compose", "--out", str(out), "-d", "a.test",
                                 "-d", "b.test", "--no-postgres"])
    assert result.exit_code == 0, result.output
    assert out.read_text() == render_compose(["a.test", "b.test"], postgres=False)
    result = runner.invoke(app, ["rig", "compose", "--out", "-"])
    assert result.stdout == render_compose(TWO, postgres=True)
    result = runner.invoke(app, ["rig", "compose", "--out", "-", "-d", "a.test",
                                 "-d", "a.test"])
    assert result.exit_code == 2 and "given twice" in result.output


@pytest.mark.skipif(not (shutil.which("docker-compose")), reason="docker-compose not installed")
@pytest.mark.parametrize("profile", [[], ["--profile", "postgres"]])
def test_docker_compose_accepts_generated_files(tmp_path: Path, profile: list[str]) -> None:
    for domains in (TWO, ["zurich.test", "paris.test", "berlin.test"]):
        path = tmp_path / "compose.yaml"
        path.write_text(render_compose(domains, postgres=True))
        run = subprocess.run(["docker-compose", "-f", str(path), *profile, "config", "-q"],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr


# -- init: CA, certificates, settings -----------------------------------------------------

def _handshake(ca: Path, cert: Path, key: Path, host: str) -> None:
    """A real TLS handshake (socketpair) of a client trusting only ``ca`` to ``host``."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(ca))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)

    def serve() -> None:
        try:
            with server.wrap_socket(a, server_side=True) as s:
                s.recv(1)
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(b, server_hostname=host) as c:
            c.sendall(b"x")
    finally:
        b.close()
        thread.join()


def test_init_writes_ca_certificates_and_settings(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = CliRunner().invoke(cli, ["init", "--out", str(out), "-d", "zurich.test",
                                      "-d", "paris.test"])
    assert result.exit_code == 0, result.output
    ca = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for domain in TWO:
        cert_file, key_file = out / f"{domain}.pem", out / f"{domain}-key.pem"
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.issuer == ca.subject
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(
            [f"cloud.{domain}", f"idp.{domain}", domain])
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
        for host in (f"cloud.{domain}", f"idp.{domain}", domain):
            _handshake(out / "ca.pem", cert_file, key_file, host)
        with pytest.raises(ssl.SSLCertVerificationError):
            _handshake(out / "ca.pem", cert_file, key_file, "cloud.elsewhere.test")
        config = tomllib.loads((out / f"{domain}.toml").read_text())["discovery"]
        assert config["issuer"] == f"https://idp.{domain}"
        for private in (key_file, out / f"{domain}.toml"):
            assert private.stat().st_mode & 0o077 == 0
    assert (out / "ca-key.pem").stat().st_mode & 0o077 == 0
    before = {p.name: p.read_bytes() for p in out.glob("*.pem")}
    write_init(out, TWO)  # a restart of `init` keeps the CA and still-valid certificates
    assert {p.name: p.read_bytes() for p in out.glob("*.pem")} == before


def test_init_refuses_bad_domains(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", "--out", str(tmp_path), "-d", "x.test",
                                      "-d", "x.test"])
    assert result.exit_code == 2 and "given twice" in result.output


# -- database and probe -------------------------------------------------------------------

async def test_database_step_refuses_odd_names_and_gives_up() -> None:
    with pytest.raises(ValueError, match="unsupported database name"):
        await ensure_database("postgresql+asyncpg://u:p@127.0.0.1:1/bad-name")
    with pytest.raises(ConnectionError, match="not reachable"):
        await ensure_database("postgresql+asyncpg://u:p@127.0.0.1:1/fedspace_x", wait=0)


@pytest.mark.postgres
async def test_database_step_creates_once() -> None:
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("FEDSPACE_TEST_POSTGRES_URL is not set but PostgreSQL is required")
        pytest.skip("PostgreSQL not configured (set FEDSPACE_TEST_POSTGRES_URL)")
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"fedspace_test_{uuid.uuid4().hex[:12]}"
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        assert await ensure_database(url, wait=5) is True
        assert await ensure_database(url) is False
    finally:
        admin = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(
            hide_password=False)
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def test_probe_target_follows_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDSPACE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FEDSPACE_HTTP__HOST", "0.0.0.0")
    assert probe_target("/healthz")[::2] == ("http://127.0.0.1:8080/healthz", None)
    write_init(tmp_path, TWO)
    monkeypatch.setenv("FEDSPACE_HTTP__PORT", "443")
    monkeypatch.setenv("FEDSPACE_HTTP__TLS_CERT_FILE", str(tmp_path / "zurich.test.pem"))
    monkeypatch.setenv("FEDSPACE_HTTP__TLS_KEY_FILE", str(tmp_path / "zurich.test-key.pem"))
    monkeypatch.setenv("FEDSPACE_PUBLIC_URL", "https://cloud.zurich.test")
    monkeypatch.setenv("FEDSPACE_OUTBOUND__CA_FILE", str(tmp_path / "ca.pem"))
    url, context, sni = probe_target("/readyz")
    assert (url, sni) == ("https://127.0.0.1:443/readyz", "cloud.zurich.test")
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_probe_fails_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("FEDSPACE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FEDSPACE_HTTP__PORT", str(port))
    result = CliRunner().invoke(cli, ["probe"])
    assert result.exit_code == 2 and f"127.0.0.1:{port}/healthz" in result.output

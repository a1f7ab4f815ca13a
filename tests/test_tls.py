"""TLS serving (``http.tls_cert_file``/``tls_key_file``), several listeners per instance
(``http.extra_hosts``), and the rig's test CA: real handshakes verified against the CA."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from pydantic import ValidationError

from fedspace.outbound import MappedTransport, ssl_context
from fedspace.settings import Settings
from scenarios import ca as ca_module
from scenarios.ca import TestCA

HOSTS = ["cloud.tls.test", "idp.tls.test", "tls.test"]


@pytest.fixture
def test_ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "tls")


async def test_instance_serves_https_on_every_listener(start_instance, test_ca: TestCA) -> None:  # type: ignore[no-untyped-def]
    leaf = test_ca.leaf("tls.test", HOSTS)
    running = await start_instance(http={
        "host": "127.0.0.1", "port": 0, "extra_hosts": ["127.0.0.2"],
        "tls_cert_file": leaf.cert_file, "tls_key_file": leaf.key_file})
    settings = running.instance.settings
    port = int(running.url.rsplit(":", 1)[1])
    assert running.url.startswith("https://") and settings.public_url.startswith("https://")
    names = {"cloud.tls.test": f"127.0.0.1:{port}", "idp.tls.test": f"127.0.0.2:{port}"}
    verify = ssl_context(str(test_ca.cert_file))
    async with httpx.AsyncClient(transport=MappedTransport(names, verify=verify)) as client:
        for host in names:
            r = await client.get(f"https://{host}:{port}/healthz")
            assert (r.status_code, r.text) == (200, "ok")
    # Without the CA the certificate is not trusted: verification is real.
    async with httpx.AsyncClient(transport=MappedTransport(names)) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://cloud.tls.test:{port}/healthz")
    # A name the certificate does not carry fails too.
    other = {"elsewhere.test": f"127.0.0.1:{port}"}
    async with httpx.AsyncClient(transport=MappedTransport(other, verify=verify)) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(f"https://elsewhere.test:{port}/healthz")


def test_tls_settings_are_validated(test_ca: TestCA, tmp_path: Path) -> None:
    leaf = test_ca.leaf("tls.test", HOSTS)
    with pytest.raises(ValidationError, match=r"both http\.tls_cert_file and http\.tls_key_file"):
        Settings(http={"tls_cert_file": leaf.cert_file})
    with pytest.raises(ValidationError, match="TLS file not found"):
        Settings(http={"tls_cert_file": tmp_path / "nope.pem", "tls_key_file": leaf.key_file})
    with pytest.raises(ValidationError, match="invalid listener"):
        Settings(http={"extra_hosts": ["127.0.0.2:http"]})
    s = Settings(http={"port": 8443, "tls_cert_file": leaf.cert_file,
                       "tls_key_file": leaf.key_file, "extra_hosts": ["127.0.0.2", "[::1]:9"]})
    assert s.public_url == "https://127.0.0.1:8443"
    assert s.http.extra_listeners() == [("127.0.0.2", None), ("::1", 9)]


def test_ca_and_leaf_files(test_ca: TestCA) -> None:
    leaf = test_ca.leaf("tls.test", HOSTS)
    for key in (test_ca.key_file, leaf.key_file):
        assert key.stat().st_mode & 0o777 == 0o600
    ca_cert = x509.load_pem_x509_certificate(test_ca.cert_file.read_bytes())
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca_cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    cert = x509.load_pem_x509_certificate(leaf.cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(HOSTS)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    # OpenSSL accepts the pair under strict X.509 checking.
    context = ssl.create_default_context(cafile=str(test_ca.cert_file))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_cert_chain(leaf.cert_file, leaf.key_file)


def test_ca_files_are_reused_until_close_to_expiry(test_ca: TestCA, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    leaf = test_ca.leaf("tls.test", HOSTS)
    again = TestCA(test_ca.folder)
    assert again.cert_file.read_bytes() == test_ca.cert_file.read_bytes()
    assert again.leaf("tls.test", HOSTS) == leaf  # same key, same pin
    assert again.leaf("tls.test", [*HOSTS, "extra.tls.test"]).spki_sha256 != leaf.spki_sha256
    # Valid for less than the minimum remaining time: regenerated.
    monkeypatch.setattr(ca_module, "MIN_REMAINING", dt.timedelta(days=ca_module.LEAF_DAYS + 1))
    assert again.leaf("tls.test", HOSTS).spki_sha256 != leaf.spki_sha256
    # A new CA (the old one expired) re-issues leaves it did not sign.
    monkeypatch.setattr(ca_module, "MIN_REMAINING", dt.timedelta(days=ca_module.CA_DAYS + 1))
    fresh = TestCA(test_ca.folder)
    assert fresh.cert != test_ca.cert
    monkeypatch.setattr(ca_module, "MIN_REMAINING", dt.timedelta(days=1))
    reissued = fresh.leaf("tls.test", HOSTS)
    cert = x509.load_pem_x509_certificate(reissued.cert_file.read_bytes())
    cert.verify_directly_issued_by(fresh.cert)

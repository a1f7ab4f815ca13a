"""A test CA and leaf certificates for the rig, so every rig connection is real, verified TLS.

Files live in one folder (``<state>/tls``): ``ca.pem`` / ``ca-key.pem`` and, per domain,
``<domain>.pem`` / ``<domain>-key.pem`` with SANs for ``cloud.D``, ``idp.D`` and ``D`` (one
process serves all three). Keys are written 0600. Existing files are reused while they are
valid for at least another day (and a leaf still names the right hosts and chains to the
current CA), so clients that trusted the CA once keep trusting it across runs.

ECDSA P-256 everywhere; the extensions are the ones strict verifiers (OpenSSL's
``X509_STRICT``, browsers) insist on: a critical CA basicConstraints, keyUsage, SKI/AKI, and
serverAuth for leaves.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 90
MIN_REMAINING = dt.timedelta(days=1)


@dataclass(frozen=True)
class Leaf:
    """A leaf certificate on disk and the Chromium SPKI pin of its key."""

    cert_file: Path
    key_file: Path
    spki_sha256: str  # base64, for --ignore-certificate-errors-spki-list


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Create with 0600 from the start (never world-readable, not even briefly)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _load(cert_file: Path, key_file: Path) -> Pair | None:
    """The pair if both files parse and belong together, else None (then regenerate)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or (
            key.public_key().public_numbers() != cert.public_key().public_numbers()):  # type: ignore[union-attr]
        return None
    return cert, key


def _fresh(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now >= MIN_REMAINING


def spki_pin(cert: x509.Certificate) -> str:
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


class TestCA:
    """The rig's certificate authority in ``folder``; created on first use."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cert_file = folder / "ca.pem"
        self.key_file = folder / "ca-key.pem"
        folder.mkdir(parents=True, exist_ok=True)
        loaded = _load(self.cert_file, self.key_file)
        if loaded is None or not _fresh(loaded[0]):
            loaded = self._create()
        self.cert, self.key = loaded

    def _create(self) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedspace rig"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "fedspace rig test CA")])
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.key_file, _key_pem(key))
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert, key

    def _issued_by_me(self, cert: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def leaf(self, name: str, hosts: list[str]) -> Leaf:
        """``<name>.pem`` / ``<name>-key.pem`` for ``hosts`` (DNS SANs), reused when still
        good for a day, naming exactly these hosts and signed by this CA."""
        cert_file, key_file = self.folder / f"{name}.pem", self.folder / f"{name}-key.pem"
        loaded = _load(cert_file, key_file)
        if loaded is not None:
            cert = loaded[0]
            try:
                sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                names = sorted(sans.value.get_values_for_type(x509.DNSName))
            except x509.ExtensionNotFound:
                names = []
            if _fresh(cert) and names == sorted(hosts) and self._issued_by_me(cert):
                return Leaf(cert_file, key_file, spki_pin(cert))
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        _write_private(key_file, _key_pem(key))
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return Leaf(cert_file, key_file, spki_pin(cert))

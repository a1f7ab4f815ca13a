"""The instance's federation signing keys: Ed25519 JWKs on disk, published before they sign.

OCM peers verify our RFC 9421 request signatures with the JWK Set we publish (see
``federation.httpsig``), so a key must be visible there *before* a request carries its
``kid``, and must stay visible until every request it signed is past the verifiers'
freshness window. This mirrors the IdP's key store (``discovery.idp.keys``): one file
``sig-<kid>.json`` per key (mode 0600, directory 0700) holding the private JWK plus ``iat``
(created) and ``nbf`` (signs from then on); ``kid`` is the RFC 7638 thumbprint. Files are
the only state, so ``fedspace keys rotate`` works with or without a running server, which
re-reads the directory when the set of file names changes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc.jwk import OKPKey

KEYS_DIR = "federation-keys"
PUBLIC_MEMBERS = ("kty", "crv", "x", "kid")
# How long a rotated-in key is published before it signs: longer than peers cache our
# JWK Set, so they rarely need the refresh-on-unknown-kid path.
DEFAULT_GRACE = 600


@dataclass(frozen=True)
class FederationKey:
    jwk: OKPKey
    created: float
    not_before: float

    @property
    def kid(self) -> str:
        return str(self.jwk.kid)

    @property
    def private_key(self) -> Ed25519PrivateKey:
        key = self.jwk.private_key
        assert isinstance(key, Ed25519PrivateKey)
        return key

    @property
    def public_key(self) -> Ed25519PublicKey:
        key = self.jwk.public_key
        assert isinstance(key, Ed25519PublicKey)
        return key

    def public_jwk(self) -> dict[str, Any]:
        public = self.jwk.as_dict(private=False)
        return {**{m: public[m] for m in PUBLIC_MEMBERS}, "use": "sig", "alg": "EdDSA"}


class KeyStore:
    """Keys in ``directory``; a retired key stays published ``freshness_seconds`` (the
    verifiers' signature freshness window) after its successor starts signing."""

    def __init__(self, directory: Path, freshness_seconds: int) -> None:
        self.directory = directory
        self.freshness_seconds = freshness_seconds
        self._keys: list[FederationKey] = []
        self._names: frozenset[str] | None = None

    @classmethod
    def in_data_dir(cls, data_dir: Path, freshness_seconds: int) -> KeyStore:
        return cls(data_dir / KEYS_DIR, freshness_seconds)

    # -- reading -------------------------------------------------------------------

    def _reload_if_changed(self) -> None:
        # Key files are written once and renamed into place, never edited, so the set
        # of names identifies the key set (directory mtimes are too coarse for this).
        try:
            names = frozenset(n for n in os.listdir(self.directory)
                              if n.startswith("sig-") and n.endswith(".json"))
        except FileNotFoundError:
            names = frozenset()
        if names != self._names:
            self._keys = self._read(names)
            self._names = names

    def _read(self, names: frozenset[str]) -> list[FederationKey]:
        keys = []
        for path in (self.directory / n for n in names):
            try:
                data = json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                continue  # removed or being replaced meanwhile; the next reload sees it
            jwk = OKPKey.import_key({k: v for k, v in data.items() if k not in ("iat", "nbf")})
            keys.append(FederationKey(jwk, float(data["iat"]), float(data["nbf"])))
        return sorted(keys, key=lambda k: (k.not_before, k.created))

    def _current_index(self, now: float) -> int | None:
        active = [i for i, k in enumerate(self._keys) if k.not_before <= now]
        return active[-1] if active else None

    def signing_key(self) -> FederationKey:
        """The key to sign with now (one is created when there is none yet)."""
        self.ensure()
        index = self._current_index(time.time())
        assert index is not None
        return self._keys[index]

    def published(self) -> list[FederationKey]:
        """Keys verifiers need: upcoming, current, and retired ones still within freshness."""
        self.ensure()
        now = time.time()
        return [k for k, successor in zip(self._keys, [*self._keys[1:], None], strict=True)
                if successor is None or successor.not_before + self.freshness_seconds > now]

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set to serve at the instance's ``jwksUri``: public members only."""
        return {"keys": [k.public_jwk() for k in self.published()]}

    # -- writing -------------------------------------------------------------------

    def ensure(self) -> None:
        """Create an immediately active key if no key signs yet."""
        self._reload_if_changed()
        if self._current_index(time.time()) is None:
            self._write(time.time())
            self._reload_if_changed()

    def rotate(self, grace: int = DEFAULT_GRACE) -> FederationKey:
        """Publish a new key now that starts signing after ``grace`` seconds; prune."""
        self.ensure()
        key = self._write(time.time() + grace)
        self._prune()
        return key

    def _write(self, not_before: float) -> FederationKey:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        generated = OKPKey.generate_key("Ed25519", private=True)
        jwk = OKPKey.import_key({**generated.as_dict(private=True), "kid": generated.thumbprint()})
        created = time.time()
        key = FederationKey(jwk, created, not_before)
        path = self.directory / f"sig-{key.kid}.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({**jwk.as_dict(private=True), "iat": created, "nbf": not_before}, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)  # readers never see a partial key
        return key

    def _prune(self) -> None:
        keep = {k.kid for k in self.published()}
        for k in self._keys:
            if k.kid not in keep:
                (self.directory / f"sig-{k.kid}.json").unlink(missing_ok=True)

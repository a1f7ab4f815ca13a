"""The instance's federation signing keys: Ed25519 JWKs on disk, published before they sign.

OCM peers verify our RFC 9421 request signatures with the JWK Set we publish (see
``federation.httpsig``), so a key must be visible there *before* a request carries its
``kid``, and must stay visible until every request it signed is past the verifiers'
freshness window — the schedule of ``fedspace.keyfiles``, shared with the IdP's keys.
``fedspace keys rotate`` works with or without a running server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc.jwk import OKPKey

from fedspace.keyfiles import JWK, RotatingKeys

KEYS_DIR = "federation-keys"
PUBLIC_MEMBERS = ("kty", "crv", "x", "kid")


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


class KeyStore(RotatingKeys[FederationKey]):
    """A superseded key stays published ``freshness_seconds`` (the verifiers' signature
    freshness window) after its successor starts signing."""

    def __init__(self, directory: Path, freshness_seconds: int) -> None:
        super().__init__(directory, freshness_seconds)

    @classmethod
    def in_data_dir(cls, data_dir: Path, freshness_seconds: int) -> KeyStore:
        return cls(data_dir / KEYS_DIR, freshness_seconds)

    def _generate(self) -> OKPKey:
        return OKPKey.generate_key("Ed25519", private=True)

    def _import(self, data: dict[str, Any]) -> OKPKey:
        return OKPKey.import_key(data)

    def _wrap(self, jwk: JWK, created: float, not_before: float) -> FederationKey:
        assert isinstance(jwk, OKPKey)
        return FederationKey(jwk, created, not_before)

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set to serve at the instance's ``jwksUri``: public members only."""
        return {"keys": [k.public_jwk() for k in self.published()]}

"""The IdP's signing keys: ES256 JWKs on disk (``fedspace.keyfiles``), published before
they sign and kept until every token they signed has expired; ``fedspace idp rotate-keys``
works whether or not a server runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet

from fedspace.keyfiles import JWK, RotatingKeys

ALGORITHM = "ES256"
PUBLIC_MEMBERS = ("kty", "crv", "x", "y", "kid")


@dataclass(frozen=True)
class SigningKey:
    key: ECKey
    created: float
    not_before: float

    @property
    def kid(self) -> str:
        return str(self.key.kid)


class KeyStore(RotatingKeys[SigningKey]):
    """A superseded key stays published ``token_ttl`` seconds: until its tokens expired."""

    def __init__(self, directory: Path, token_ttl: int) -> None:
        super().__init__(directory, token_ttl)

    def _generate(self) -> ECKey:
        return ECKey.generate_key("P-256", private=True)

    def _import(self, data: dict[str, Any]) -> ECKey:
        return ECKey.import_key(data)

    def _wrap(self, jwk: JWK, created: float, not_before: float) -> SigningKey:
        assert isinstance(jwk, ECKey)
        return SigningKey(jwk, created, not_before)

    def jwks(self) -> dict[str, Any]:
        keys = [{**{m: k.key.as_dict(private=False)[m] for m in PUBLIC_MEMBERS},
                 "use": "sig", "alg": ALGORITHM} for k in self.published()]
        return {"keys": keys}

    def key_set(self) -> KeySet:
        """Public keys for verifying our own tokens."""
        return KeySet([ECKey.import_key(k) for k in self.jwks()["keys"]])

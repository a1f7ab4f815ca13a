"""The IdP's signing keys: ES256 JWKs on disk, published before they sign.

Each key is one file ``sig-<kid>.json`` (mode 0600, directory 0700) holding the private
JWK plus two schedule members: ``iat`` (created) and ``nbf`` (signs from then on). The
signing key is the newest key whose ``nbf`` has passed; a key whose ``nbf`` is still ahead
is already published so relying parties have it cached before tokens carry its ``kid``;
a superseded key stays published until every token it signed has expired. Files are
the only state, so ``fedspace idp rotate-keys`` works whether or not a server runs: the
server notices changed files on its next use.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet

ALGORITHM = "ES256"
PUBLIC_MEMBERS = ("kty", "crv", "x", "y", "kid")
# How long a rotated-in key is published before it signs: longer than relying parties
# cache a JWKS (discovery_cache_seconds defaults to 300).
DEFAULT_GRACE = 600


@dataclass(frozen=True)
class SigningKey:
    key: ECKey
    created: float
    not_before: float

    @property
    def kid(self) -> str:
        return str(self.key.kid)


class KeyStore:
    def __init__(self, directory: Path, token_ttl: int) -> None:
        self.directory = directory
        self.token_ttl = token_ttl
        self._keys: list[SigningKey] = []
        self._names: frozenset[str] | None = None

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

    def _read(self, names: frozenset[str]) -> list[SigningKey]:
        keys = []
        for path in (self.directory / n for n in names):
            try:
                data = json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                continue  # removed or being replaced meanwhile; the next reload sees it
            key = ECKey.import_key({k: v for k, v in data.items() if k not in ("iat", "nbf")})
            keys.append(SigningKey(key, float(data["iat"]), float(data["nbf"])))
        return sorted(keys, key=lambda k: (k.not_before, k.created))

    def _current_index(self, now: float) -> int | None:
        active = [i for i, k in enumerate(self._keys) if k.not_before <= now]
        return active[-1] if active else None

    def signing_key(self) -> SigningKey:
        """The key to sign with now (one is created when there is none yet)."""
        self.ensure()
        index = self._current_index(time.time())
        assert index is not None
        return self._keys[index]

    def published(self) -> list[SigningKey]:
        """Keys verifiers need: upcoming, current, and retired ones still in use."""
        self.ensure()
        now = time.time()
        return [k for k, successor in zip(self._keys, [*self._keys[1:], None], strict=True)
                if successor is None or successor.not_before + self.token_ttl > now]

    def jwks(self) -> dict[str, Any]:
        keys = [{**{m: k.key.as_dict(private=False)[m] for m in PUBLIC_MEMBERS},
                 "use": "sig", "alg": ALGORITHM} for k in self.published()]
        return {"keys": keys}

    def key_set(self) -> KeySet:
        """Public keys for verifying our own tokens."""
        return KeySet([ECKey.import_key(k) for k in self.jwks()["keys"]])

    # -- writing -------------------------------------------------------------------

    def ensure(self) -> None:
        """Create an immediately active key if no key signs yet."""
        self._reload_if_changed()
        if self._current_index(time.time()) is None:
            self._write(time.time())
            self._reload_if_changed()

    def rotate(self, grace: int = DEFAULT_GRACE) -> SigningKey:
        """Publish a new key now that starts signing after ``grace`` seconds; prune."""
        self.ensure()
        key = self._write(time.time() + grace)
        self._prune()
        return key

    def _write(self, not_before: float) -> SigningKey:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        key = ECKey.generate_key("P-256", private=True)
        kid = key.thumbprint()
        key = ECKey.import_key({**key.as_dict(private=True), "kid": kid})
        created = time.time()
        data = {**key.as_dict(private=True), "iat": created, "nbf": not_before}
        path = self.directory / f"sig-{kid}.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)  # readers never see a partial key
        return SigningKey(key, created, not_before)

    def _prune(self) -> None:
        keep = {k.kid for k in self.published()}
        for k in self._keys:
            if k.kid not in keep:
                (self.directory / f"sig-{k.kid}.json").unlink(missing_ok=True)

"""Rotating signing keys kept as JWK files: published before they sign, and kept published
until whatever they signed can no longer be presented.

Both the IdP (tokens) and federation (request signatures) need exactly this. Each key is
one file ``sig-<kid>.json`` (mode 0600, directory 0700) holding the private JWK plus two
schedule members: ``iat`` (created) and ``nbf`` (signs from then on); ``kid`` is the
RFC 7638 thumbprint. The signing key is the newest key whose ``nbf`` has passed; a key
whose ``nbf`` is still ahead is already published, so verifiers have it before anything
carries its ``kid``; a superseded key stays published for ``retention_seconds`` after its
successor starts signing. Files are the only state, so a CLI rotation works whether or not
a server runs: the server notices the changed set of file names on its next use.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from joserfc.jwk import ECKey, OKPKey

# How long a rotated-in key is published before it signs: longer than verifiers cache a
# JWK Set (discovery caches default to 300 s), so they rarely need a refresh.
DEFAULT_GRACE = 600

JWK = ECKey | OKPKey


class Scheduled(Protocol):
    @property
    def kid(self) -> str: ...

    @property
    def not_before(self) -> float: ...

    @property
    def created(self) -> float: ...


K = TypeVar("K", bound=Scheduled)


class RotatingKeys(ABC, Generic[K]):
    def __init__(self, directory: Path, retention_seconds: int) -> None:
        self.directory = directory
        self.retention_seconds = retention_seconds
        self._keys: list[K] = []
        self._names: frozenset[str] | None = None

    @abstractmethod
    def _generate(self) -> JWK:
        """A new private key."""

    @abstractmethod
    def _import(self, data: dict[str, Any]) -> JWK:
        """A private key from its JWK members."""

    @abstractmethod
    def _wrap(self, jwk: JWK, created: float, not_before: float) -> K:
        """The key as this store hands it out."""

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

    def _read(self, names: frozenset[str]) -> list[K]:
        keys = []
        for path in (self.directory / n for n in names):
            try:
                data = json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                continue  # removed or being replaced meanwhile; the next reload sees it
            jwk = self._import({k: v for k, v in data.items() if k not in ("iat", "nbf")})
            keys.append(self._wrap(jwk, float(data["iat"]), float(data["nbf"])))
        return sorted(keys, key=lambda k: (k.not_before, k.created))

    def _current_index(self, now: float) -> int | None:
        active = [i for i, k in enumerate(self._keys) if k.not_before <= now]
        return active[-1] if active else None

    def signing_key(self) -> K:
        """The key to sign with now (one is created when there is none yet)."""
        self.ensure()
        index = self._current_index(time.time())
        assert index is not None
        return self._keys[index]

    def published(self) -> list[K]:
        """Keys verifiers need: upcoming, current, and retired ones still presentable."""
        self.ensure()
        now = time.time()
        return [k for k, successor in zip(self._keys, [*self._keys[1:], None], strict=True)
                if successor is None or successor.not_before + self.retention_seconds > now]

    # -- writing -------------------------------------------------------------------

    def ensure(self) -> None:
        """Create an immediately active key if no key signs yet."""
        self._reload_if_changed()
        if self._current_index(time.time()) is None:
            self._write(time.time())
            self._reload_if_changed()

    def rotate(self, grace: int = DEFAULT_GRACE) -> K:
        """Publish a new key now that starts signing after ``grace`` seconds; prune."""
        self.ensure()
        key = self._write(time.time() + grace)
        self._prune()
        return key

    def _write(self, not_before: float) -> K:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        generated = self._generate()
        jwk = self._import({**generated.as_dict(private=True), "kid": generated.thumbprint()})
        created = time.time()
        key = self._wrap(jwk, created, not_before)
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

"""Shares sent to users of other instances: the origin side of OCM."""

from __future__ import annotations

import hashlib


def secret_hash(secret: str) -> str:
    """How a share's secret is stored and looked up: it is random and 256 bits long, so a
    plain SHA-256 is enough (no salt or stretching needed against guessing)."""
    return hashlib.sha256(secret.encode()).hexdigest()

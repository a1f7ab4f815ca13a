"""Encryption at rest of the secrets peers give us (OCM share secrets, ARCHITECTURE §6).

Fernet (AES-128-CBC + HMAC-SHA256) with a key kept in ``<data_dir>/federation-secret``
(created once, mode 0600). A key file rather than one derived from the internal secret:
rotating the internal secret must not make every received share unreadable. Processes
that receive shares for one registry database must share this file.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "federation-secret"


class SealError(ValueError):
    """A sealed value cannot be opened (another key, or tampered)."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Sealer:
        path = data_dir / KEY_FILE
        if not path.exists():
            # Written whole under a temporary name, then linked into place: a concurrent
            # process either wins the link or reads the complete file of the winner.
            data_dir.mkdir(parents=True, exist_ok=True)
            temporary = data_dir / f".{KEY_FILE}.{os.getpid()}"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        return cls(path.read_bytes().strip())

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            raise SealError("the sealed secret cannot be opened with this key") from None

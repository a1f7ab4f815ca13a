"""Column types shared by every service's tables."""

import time

from sqlalchemy import String
from sqlalchemy.types import TypeEngine


def path_type(length: int = 2048) -> TypeEngine[str]:
    """A path column compared byte-wise on every backend.

    Subtree queries use the range ``path >= 'a/' AND path < 'a0'`` ('0' follows '/'),
    which is only correct under a binary collation: SQLite's default, "C" on PostgreSQL.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def now_ms() -> int:
    return time.time_ns() // 1_000_000

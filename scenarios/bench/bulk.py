"""Spaces in bulk for drives-scale: written straight into a stopped instance's SQLite.

A million spaces through the Graph API would take hours, so the rows are inserted with
SQLAlchemy Core ``executemany`` in batches, exactly as ``RegistryService._create`` and
``ProviderService.create_space`` write them: a project space (registry row, its manager,
a ``change_seq`` from the registry's counter) and the provider's side of it (its space row
and root folder), so every loaded space is as usable as one made through the API. They
belong to other users (synthetic ids, ten spaces each), never to the measured user.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, func, insert, select, update

from fedspace.sqltypes import now_ms
from provider.models import nodes, provider_spaces
from registry.drives import drive_alias
from registry.models import counters, providers, space_members, spaces
from registry.settings import RegistrySettings
from scenarios.bench.model import BenchError

BATCH = 10_000
SPACES_PER_OWNER = 10
OWNERS = uuid.UUID("6f1c9a52-3d0e-4c59-9a55-0b3f1f0d7e21")  # namespace of the owners' ids

Progress = Callable[[int], None]


def owner_id(n: int) -> str:
    """The id of the ``n``-th other user (stable, so reruns add to the same owners)."""
    return str(uuid.uuid5(OWNERS, f"owner-{n}"))


def count_spaces(database: Path) -> int:
    """Spaces in the registry of the SQLite database at ``database``."""
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(spaces)) or 0)
    finally:
        engine.dispose()


def load_spaces(database: Path, total: int, *, deadline: float,
                progress: Progress = lambda _: None) -> int:
    """Add project spaces of other users until the registry holds ``total`` spaces; the
    number added. The instance must have run once (its provider is registered) and be
    stopped now. Past ``deadline`` (``time.monotonic()``) it stops with a BenchError."""
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            have = int(conn.scalar(select(func.count()).select_from(spaces)) or 0)
            provider = conn.scalar(select(providers.c.id).order_by(providers.c.registered_ms))
        if provider is None:
            raise BenchError(f"{database}: no storage provider registered (start it once)")
        quota = RegistrySettings().project_quota
        added = 0
        while have + added < total:
            if time.monotonic() > deadline:
                raise BenchError(f"loading spaces: only {have + added:,} of {total:,} in time")
            count = min(BATCH, total - have - added)
            with engine.begin() as conn:
                _insert(conn, provider, have + added, count, quota)
            added += count
            progress(have + added)
        return added
    finally:
        engine.dispose()


def _insert(conn: Connection, provider: str, first: int, count: int, quota: int) -> None:
    """One batch: spaces ``first`` … ``first + count - 1`` (numbered across runs)."""
    last_seq = conn.execute(
        update(counters).where(counters.c.name == "change_seq")
        .values(value=counters.c.value + count).returning(counters.c.value)).scalar_one()
    now = now_ms()
    registry_rows: list[dict[str, Any]] = []
    member_rows: list[dict[str, Any]] = []
    provider_rows: list[dict[str, Any]] = []
    root_rows: list[dict[str, Any]] = []
    for i in range(count):
        n = first + i
        space_id, root_id, etag = str(uuid.uuid4()), str(uuid.uuid4()), uuid.uuid4().hex
        name = f"Space {n}"
        registry_rows.append({
            "id": space_id, "type": "project", "name": name,
            "alias": drive_alias("project", name), "description": "", "image": None,
            "quota_total": quota, "personal_user_id": None, "provider_id": provider,
            "root_id": root_id, "etag": etag, "size": 0, "created_ms": now,
            "modified_ms": now, "change_seq": last_seq - count + 1 + i})
        member_rows.append({"space_id": space_id, "principal_type": "user",
                            "principal_id": owner_id(n // SPACES_PER_OWNER),
                            "role": "manager", "created_ms": now})
        provider_rows.append({"space_id": space_id, "provider_id": provider,
                              "root_id": root_id, "quota_total": quota, "created_ms": now})
        root_rows.append({"id": root_id, "space_id": space_id, "parent_id": None, "path": "",
                          "name": "", "is_dir": True, "size": 0, "etag": etag,
                          "mtime_ns": now * 1_000_000})
    conn.execute(insert(provider_spaces), provider_rows)
    conn.execute(insert(nodes), root_rows)
    conn.execute(insert(spaces), registry_rows)
    conn.execute(insert(space_members), member_rows)

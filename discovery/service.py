"""The user directory: users, groups and app passwords (logic only, no HTTP)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, insert, select, union_all, update
from sqlalchemy.exc import IntegrityError

from discovery.models import (
    app_passwords,
    federated_identities,
    group_members,
    groups,
    users,
)
from fedspace.auth import Principal
from fedspace.db import Database
from fedspace.sqltypes import now_ms

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the account has no password, so timing does not reveal which exist."""
    return _hasher.hash("fedspace-no-such-user")


class DirectoryError(ValueError):
    """A directory operation was refused; the message says why."""


@dataclass(frozen=True)
class User:
    id: str
    username: str
    display_name: str
    email: str | None
    is_admin: bool
    disabled: bool


@dataclass(frozen=True)
class AppPassword:
    id: str
    label: str
    created_ms: int
    last_used_ms: int | None


def _user(row: object) -> User:
    m = row._mapping  # type: ignore[attr-defined]
    return User(m["id"], m["username"], m["display_name"], m["email"], m["is_admin"],
                m["disabled"])


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Directory:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_user(
        self,
        username: str,
        *,
        display_name: str | None = None,
        email: str | None = None,
        password: str | None = None,
        is_admin: bool = False,
    ) -> User:
        if not USERNAME.match(username):
            raise DirectoryError(
                f"invalid username {username!r}: use 1-64 of a-z 0-9 . _ - "
                "starting with a letter or digit"
            )
        user = User(str(uuid.uuid4()), username, display_name or username, email, is_admin,
                    False)
        try:
            async with self.db.write() as conn:
                await conn.execute(insert(users).values(
                    id=user.id, username=username, display_name=user.display_name, email=email,
                    password_hash=_hasher.hash(password) if password else None,
                    is_admin=is_admin, disabled=False, created_ms=now_ms(),
                ))
        except IntegrityError:
            raise DirectoryError(f"user {username!r} already exists") from None
        return user

    async def get_user(self, username: str) -> User:
        async with self.db.read() as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
        if row is None:
            raise DirectoryError(f"no such user: {username!r}")
        return _user(row)

    async def user_by_id(self, user_id: str) -> User | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
        return _user(row) if row else None

    async def check_password(self, username: str, password: str) -> User | None:
        """The enabled user whose account password this is (Argon2 verify), else None."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
        known = row is not None and bool(row.password_hash)
        try:
            ok = await asyncio.to_thread(
                _hasher.verify, row.password_hash if known else _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            ok = False
        return _user(row) if ok and known and not row.disabled else None

    async def find_user(self, username: str) -> User | None:
        try:
            return await self.get_user(username)
        except DirectoryError:
            return None

    async def list_users(self) -> list[User]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(users).order_by(users.c.username))
            return [_user(r) for r in rows]

    async def set_password(self, username: str, password: str) -> None:
        if len(password) < 8:
            raise DirectoryError("the password must have at least 8 characters")
        hashed = await asyncio.to_thread(_hasher.hash, password)
        async with self.db.write() as conn:
            result = await conn.execute(
                update(users).where(users.c.username == username).values(password_hash=hashed))
        if result.rowcount == 0:
            raise DirectoryError(f"no such user: {username!r}")

    async def set_disabled(self, username: str, disabled: bool) -> None:
        async with self.db.write() as conn:
            result = await conn.execute(
                update(users).where(users.c.username == username).values(disabled=disabled)
            )
        if result.rowcount == 0:
            raise DirectoryError(f"no such user: {username!r}")

    async def add_group(self, name: str, display_name: str | None = None) -> str:
        if not USERNAME.match(name):
            raise DirectoryError(f"invalid group name {name!r}")
        group_id = str(uuid.uuid4())
        try:
            async with self.db.write() as conn:
                await conn.execute(insert(groups).values(
                    id=group_id, name=name, display_name=display_name or name,
                    created_ms=now_ms()))
        except IntegrityError:
            raise DirectoryError(f"group {name!r} already exists") from None
        return group_id

    async def list_groups(self) -> list[tuple[str, str, str, int]]:
        """(name, id, display name, member count) of every group."""
        query = (select(groups.c.name, groups.c.id, groups.c.display_name,
                        func.count(group_members.c.user_id))
                 .select_from(groups.outerjoin(group_members,
                                               group_members.c.group_id == groups.c.id))
                 .group_by(groups.c.id).order_by(groups.c.name))
        async with self.db.read() as conn:
            return [(r[0], r[1], r[2], int(r[3])) for r in await conn.execute(query)]

    async def add_member(self, group: str, username: str) -> None:
        user = await self.get_user(username)
        async with self.db.write() as conn:
            gid = (await conn.execute(select(groups.c.id).where(groups.c.name == group))).scalar()
            if gid is None:
                raise DirectoryError(f"no such group: {group!r}")
            exists = (await conn.execute(select(group_members.c.user_id).where(
                group_members.c.group_id == gid, group_members.c.user_id == user.id))).first()
            if exists is None:
                await conn.execute(insert(group_members).values(group_id=gid, user_id=user.id))

    async def user_exists(self, user_id: str) -> bool:
        """A local user or a federated guest known to this instance."""
        query = union_all(
            select(users.c.id).where(users.c.id == user_id),
            select(federated_identities.c.principal_id).where(
                federated_identities.c.principal_id == user_id))
        async with self.db.read() as conn:
            return (await conn.execute(query)).first() is not None

    async def group_exists(self, group_id: str) -> bool:
        async with self.db.read() as conn:
            return (await conn.execute(
                select(groups.c.id).where(groups.c.id == group_id))).first() is not None

    async def display_names(self, ids: Iterable[str]) -> dict[str, str]:
        """Display names of the users, guests and groups among ``ids`` (unknown ids left out)."""
        wanted = list(set(ids))
        if not wanted:
            return {}
        query = union_all(
            select(users.c.id, users.c.display_name).where(users.c.id.in_(wanted)),
            select(groups.c.id, groups.c.display_name).where(groups.c.id.in_(wanted)),
            select(federated_identities.c.principal_id.label("id"),
                   federated_identities.c.display_name).where(
                federated_identities.c.principal_id.in_(wanted)))
        async with self.db.read() as conn:
            return {r.id: r.display_name for r in await conn.execute(query)}

    async def principal(self, user_id: str) -> Principal | None:
        """The principal for an enabled user, with its group ids."""
        async with self.db.read() as conn:
            row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
            if row is None or row.disabled:
                return None
            gids = (await conn.execute(
                select(group_members.c.group_id).where(group_members.c.user_id == user_id)
            )).scalars().all()
        return Principal(row.id, row.username, row.display_name, frozenset(gids), row.is_admin)

    async def create_app_password(self, username: str, label: str) -> tuple[AppPassword, str]:
        """A new app password; the secret is returned once and only its hash is kept."""
        user = await self.get_user(username)
        secret = secrets.token_urlsafe(32)
        pw = AppPassword(secrets.token_hex(8), label or "app password", now_ms(), None)
        async with self.db.write() as conn:
            await conn.execute(insert(app_passwords).values(
                id=pw.id, user_id=user.id, label=pw.label, secret_hash=_secret_hash(secret),
                created_ms=pw.created_ms))
        return pw, secret

    async def list_app_passwords(self, username: str) -> list[AppPassword]:
        user = await self.get_user(username)
        async with self.db.read() as conn:
            rows = await conn.execute(select(app_passwords).where(
                app_passwords.c.user_id == user.id).order_by(app_passwords.c.created_ms))
            return [AppPassword(r.id, r.label, r.created_ms, r.last_used_ms) for r in rows]

    async def revoke_app_password(self, username: str, password_id: str) -> None:
        user = await self.get_user(username)
        async with self.db.write() as conn:
            result = await conn.execute(delete(app_passwords).where(
                app_passwords.c.id == password_id, app_passwords.c.user_id == user.id))
        if result.rowcount == 0:
            raise DirectoryError(f"user {username!r} has no app password {password_id!r}")

    async def check_app_password(self, username: str, secret: str) -> tuple[str, str] | None:
        """(user id, app password id) when the pair is valid and the user enabled."""
        async with self.db.read() as conn:
            row = (await conn.execute(
                select(users.c.id, app_passwords.c.id.label("pw_id"))
                .join(app_passwords, app_passwords.c.user_id == users.c.id)
                .where(app_passwords.c.secret_hash == _secret_hash(secret),
                       users.c.username == username, users.c.disabled.is_(False))
            )).first()
        return (row.id, row.pw_id) if row else None

    async def touch_app_password(self, password_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(update(app_passwords).where(
                app_passwords.c.id == password_id).values(last_used_ms=now_ms()))

"""Authorization codes and refresh tokens in the database, stored only as SHA-256 hashes.

Single use is enforced by conditional UPDATEs, so two concurrent redemptions of one code
or one refresh token cannot both succeed, whichever process serves them.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from authlib.oauth2.rfc6749 import TokenMixin
from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from discovery.models import oidc_codes, oidc_refresh_tokens
from fedspace.db import Database
from fedspace.sqltypes import now_ms

CODE_TTL_MS = 60_000


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def family_of(code_hash: str) -> str:
    """Refresh tokens from one code form a family named after it (for replay revocation)."""
    return str(uuid.UUID(hex=code_hash[:32]))


@dataclass(frozen=True)
class Code(AuthorizationCodeMixin):
    code_hash: str
    client_id: str
    user_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    resource: str | None
    auth_time_ms: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time_ms // 1000

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass(frozen=True)
class RefreshToken(TokenMixin):
    token_hash: str
    family_id: str
    client_id: str
    user_id: str
    scope: str
    resource: str | None

    def check_client(self, client: object) -> bool:
        return getattr(client, "client_id", None) == self.client_id

    def get_scope(self) -> str:
        return self.scope


class GrantStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save_code(self, code: str, **values: object) -> None:
        now = now_ms()
        async with self.db.write() as conn:
            await conn.execute(delete(oidc_codes).where(oidc_codes.c.expires_ms < now - 3600_000))
            await conn.execute(insert(oidc_codes).values(
                code_hash=token_hash(code), expires_ms=now + CODE_TTL_MS, **values))

    async def nonce_used(self, client_id: str, nonce: str) -> bool:
        async with self.db.read() as conn:
            return (await conn.execute(select(oidc_codes.c.code_hash).where(
                oidc_codes.c.client_id == client_id, oidc_codes.c.nonce == nonce))).first() \
                is not None

    async def redeem_code(self, code: str, client_id: str) -> Code | None:
        """The code if it is valid for ``client_id``; marks it used. A second redemption
        by the same client revokes the refresh tokens the first one obtained."""
        h, now = token_hash(code), now_ms()
        mine = (oidc_codes.c.code_hash == h) & (oidc_codes.c.client_id == client_id)
        async with self.db.write() as conn:
            row = (await conn.execute(select(oidc_codes).where(mine))).first()
            if row is None:
                return None
            if row.used_ms is not None:
                await self._revoke_family(conn, family_of(h), now)
                return None
            await conn.execute(update(oidc_codes).where(mine).values(used_ms=now))
        if row.expires_ms <= now:
            return None
        m = row._mapping
        return Code(**{f: m[f] for f in Code.__dataclass_fields__})

    async def save_refresh(self, token: str, *, family_id: str, client_id: str, user_id: str,
                           scope: str, resource: str | None, ttl: int) -> None:
        now = now_ms()
        async with self.db.write() as conn:
            await conn.execute(insert(oidc_refresh_tokens).values(
                token_hash=token_hash(token), family_id=family_id, client_id=client_id,
                user_id=user_id, scope=scope, resource=resource, created_ms=now,
                expires_ms=now + ttl * 1000))

    async def find_refresh(self, token: str) -> RefreshToken | None:
        """The live token; presenting a rotated one revokes its whole family."""
        now = now_ms()
        async with self.db.write() as conn:
            row = (await conn.execute(select(oidc_refresh_tokens).where(
                oidc_refresh_tokens.c.token_hash == token_hash(token)))).first()
            if row is None or row.revoked_ms is not None or row.expires_ms <= now:
                return None
            if row.rotated_ms is not None:
                await self._revoke_family(conn, row.family_id, now)
                return None
        m = row._mapping
        return RefreshToken(**{f: m[f] for f in RefreshToken.__dataclass_fields__})

    async def rotate_refresh(self, old: RefreshToken) -> bool:
        """Retire ``old`` after its successor was saved; False (family revoked) when a
        concurrent request rotated it first."""
        now = now_ms()
        t = oidc_refresh_tokens.c
        async with self.db.write() as conn:
            result = await conn.execute(update(oidc_refresh_tokens).where(
                t.token_hash == old.token_hash, t.rotated_ms.is_(None), t.revoked_ms.is_(None),
            ).values(rotated_ms=now))
            if result.rowcount == 1:
                return True
            await self._revoke_family(conn, old.family_id, now)
            return False

    @staticmethod
    async def _revoke_family(conn: AsyncConnection, family_id: str, now: int) -> None:
        t = oidc_refresh_tokens.c
        await conn.execute(update(oidc_refresh_tokens).where(
            t.family_id == family_id, t.revoked_ms.is_(None)).values(revoked_ms=now))

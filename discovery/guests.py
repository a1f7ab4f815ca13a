"""Federated guests: users of a trusted foreign issuer, known here by ``(iss, sub)``.

A guest is provisioned on first sight with a fresh principal id — what space memberships
refer to — so a guest never collides with a local user, and a foreign issuer cannot claim a
local account by choosing a ``sub``. Guests own nothing: no personal space, only what is
shared with them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from discovery.models import federated_identities
from fedspace.auth import Principal
from fedspace.db import Database
from fedspace.sqltypes import now_ms

# last_seen_ms is bookkeeping, not an audit log: one write a minute per guest at most.
TOUCH_INTERVAL_MS = 60_000
SUBJECT_MAX_LENGTH = 255
ADDRESS_MAX_LENGTH = 320
NAME_MAX_LENGTH = 255
_LOCAL_PART = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}$")


class GuestError(ValueError):
    """The identity cannot be provisioned; the message says why."""


@dataclass(frozen=True, slots=True)
class Guest:
    principal_id: str
    issuer: str
    subject: str
    address: str
    display_name: str
    created_ms: int
    last_seen_ms: int

    def principal(self) -> Principal:
        return Principal(id=self.principal_id, username=self.address,
                         display_name=self.display_name, groups=frozenset(), is_admin=False,
                         kind="guest")


def guest_address(claims: Mapping[str, Any], subject: str, domain: str) -> str:
    """The guest's address ``name@domain``, from the first rule that applies:

    1. the ``email`` claim, if ``email_verified`` is true and its domain is the issuer's
       configured ``domain`` (an IdP may only vouch for addresses in its own domain);
    2. ``preferred_username@domain``, if preferred_username is a plain local part (no '@');
    3. ``sub@domain``.

    Addresses are lower-cased: they are matched against share recipients typed by people.
    """
    email = claims.get("email")
    if claims.get("email_verified") is True and isinstance(email, str):
        local, at, email_domain = email.rpartition("@")
        if at and _LOCAL_PART.match(local) and email_domain.lower() == domain:
            return email.lower()
    username = claims.get("preferred_username")
    if isinstance(username, str) and _LOCAL_PART.match(username):
        return f"{username}@{domain}".lower()
    return f"{subject}@{domain}".lower()


def _display_name(claims: Mapping[str, Any], address: str) -> str:
    name = claims.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()[:NAME_MAX_LENGTH]
    return address


def _guest(row: Any) -> Guest:
    return Guest(row.principal_id, row.issuer, row.subject, row.address, row.display_name,
                 row.created_ms, row.last_seen_ms)


class Guests:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _find(self, issuer: str, subject: str) -> Guest | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(federated_identities).where(
                federated_identities.c.issuer == issuer,
                federated_identities.c.subject == subject))).first()
        return _guest(row) if row is not None else None

    async def get(self, principal_id: str) -> Guest | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(federated_identities).where(
                federated_identities.c.principal_id == principal_id))).first()
        return _guest(row) if row is not None else None

    async def sign_in(self, issuer: str, subject: str, claims: Mapping[str, Any],
                      domain: str) -> Guest:
        """The guest for ``(issuer, subject)``: provisioned on first sight, else refreshed
        (address, name, last seen) at most once every TOUCH_INTERVAL_MS."""
        if len(subject) > SUBJECT_MAX_LENGTH:
            raise GuestError(f"subject longer than {SUBJECT_MAX_LENGTH} characters")
        address = guest_address(claims, subject, domain)
        if len(address) > ADDRESS_MAX_LENGTH:
            raise GuestError(f"address longer than {ADDRESS_MAX_LENGTH} characters")
        name = _display_name(claims, address)
        now = now_ms()
        found = await self._find(issuer, subject)
        if found is None:
            guest = Guest(str(uuid.uuid4()), issuer, subject, address, name, now, now)
            try:
                async with self.db.write() as conn:
                    await conn.execute(insert(federated_identities).values(
                        issuer=issuer, subject=subject, principal_id=guest.principal_id,
                        address=address, display_name=name, created_ms=now, last_seen_ms=now))
                return guest
            except IntegrityError:  # a concurrent first request provisioned it
                found = await self._find(issuer, subject)
                if found is None:
                    raise
        if now - found.last_seen_ms < TOUCH_INTERVAL_MS:
            return found
        async with self.db.write() as conn:
            await conn.execute(update(federated_identities).where(
                federated_identities.c.principal_id == found.principal_id).values(
                address=address, display_name=name, last_seen_ms=now))
        return Guest(found.principal_id, issuer, subject, address, name, found.created_ms, now)

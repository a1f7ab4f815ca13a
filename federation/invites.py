"""OCM invites: a local user invites someone at another instance, or accepts an invite made
there; either way both users end up in each other's contacts, and the two instances count
as introduced (``federation.require_invite``, see ``federation.peers``).

Facts from cs3org/OCM-API (``IETF-RFC.md`` "Invite flow", ``spec.yaml`` ``AcceptedInvite``):
the invitee's server POSTs ``{recipientProvider, token, userID, email, name}`` (required
strings) to the inviter's ``{endPoint}/invite-accepted``, signed; the answer is 200 with the
inviter's ``{userID, email, name}``, 400 for an invalid or unknown token, 403 for a server
not trusted, 409 for an invite already accepted. The users pass the token on themselves.

Rules here:

* A token is 256 random bits, shown once, stored as SHA-256 (like app passwords); an invite
  lives 7 days unless asked otherwise, at most 30, and is accepted at most once.
* ``recipientProvider`` must be the signer's domain: a server speaks only for itself.
* Our ``userID`` is the local username (addresses read ``user@domain`` everywhere in
  fedspace); ``email`` is the directory's, else ``username@<domain>``; ``name`` the display
  name. A disabled inviter's invites are treated as unknown.
* A contact is keyed by (local user, ``userID@provider``); accepting again with the same
  person refreshes name and email.
* The invite flow itself is exempt from ``require_invite`` (``decide(…, inviting=True)``); deny
  lists and ``allowlist_only`` apply to it like to everything else.
"""

from __future__ import annotations

import builtins
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from discovery.service import Directory, User
from fedspace.outbound import OutboundError
from fedspace.sqltypes import now_ms

from .models import ADDRESS_LENGTH, ocm_contacts, ocm_invites
from .ocm import OcmError
from .outgoing import secret_hash
from .settings import check_peer_domain

if TYPE_CHECKING:
    from .component import FederationComponent

DAY = 86_400
DEFAULT_LIFETIME = 7 * DAY
MAX_LIFETIME = 30 * DAY
MAX_TOKEN = 512  # ours are 43 characters; other servers' may be longer
INVALID_TOKEN = OcmError(400, "invalid invite token", [("token", "unknown invite")])
ALREADY_ACCEPTED = OcmError(409, "this invite was already accepted",
                            [("token", "already accepted")])


def printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


Printable = Annotated[str, AfterValidator(printable)]


class InviteError(Exception):
    """A refused invite operation; ``status`` is what the HTTP API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class InviteAnswer(BaseModel):
    """The Invite Acceptance Response (the spec's own example gives ``userID`` a number)."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)
    user_id: Annotated[Printable, Field(alias="userID", min_length=1, max_length=255)]
    email: Annotated[Printable, Field(max_length=ADDRESS_LENGTH)]
    name: Annotated[Printable, Field(max_length=255)]


@dataclass(frozen=True, slots=True)
class Invite:
    id: str
    user_id: str
    description: str
    created_ms: int
    expires_ms: int
    accepted_ms: int | None = None
    accepted_by: str | None = None  # the accepting user's OCM address

    def state(self, now: int) -> Literal["pending", "accepted", "expired"]:
        if self.accepted_ms is not None:
            return "accepted"
        return "pending" if self.expires_ms > now else "expired"


@dataclass(frozen=True, slots=True)
class Contact:
    user_id: str  # the local user whose contact this is
    address: str  # userID@provider
    peer: str
    name: str
    email: str
    created_ms: int


def provider_domain(value: str) -> str | None:
    """An OCM server's FQDN as a peer domain (lower-case, ``:port`` when not the default);
    a URL (``https://cloud.paris.test/``) is read for its host, as some servers send one.
    None when it is neither."""
    text = value.strip()
    if "://" in text:
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError:
            return None
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.username:
            return None
        default = {"https": 443, "http": 80}[parts.scheme]
        text = parts.hostname if port in (None, default) else f"{parts.hostname}:{port}"
    try:
        return check_peer_domain(text)
    except ValueError:
        return None


def _peer_message(response: httpx.Response) -> str:
    """``": <the peer's OCM error message>"``, shortened and printable, or nothing."""
    try:
        message = orjson.loads(response.content).get("message")
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    text = "".join(c for c in message[:200] if c.isprintable()) if isinstance(message, str) \
        else ""
    return f": {text}" if text else ""


async def _save_contact(conn: AsyncConnection, contact: Contact) -> Contact:
    """Insert the contact, or refresh name and email of the one already there."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(ocm_contacts).values(
        user_id=contact.user_id, address=contact.address, peer=contact.peer,
        name=contact.name, email=contact.email, created_ms=contact.created_ms)
    row = (await conn.execute(stmt.on_conflict_do_update(
        index_elements=["user_id", "address"],
        set_={"name": stmt.excluded.name, "email": stmt.excluded.email},
    ).returning(*ocm_contacts.c))).one()
    return Contact(row.user_id, row.address, row.peer, row.name, row.email, row.created_ms)


class Invites:
    """Invites and contacts of the local users (logic only; routes in ``invites_api``)."""

    def __init__(self, federation: FederationComponent, directory: Directory) -> None:
        self.federation = federation
        self.db = federation.ctx.db
        self.settings = federation.settings
        self.directory = directory

    def identity(self, user: User) -> dict[str, str]:
        """How a local user is introduced to the other side."""
        return {"userID": user.username,
                "email": user.email or f"{user.username}@{self.settings.domain}",
                "name": user.display_name}

    # -- invites made here ----------------------------------------------------------------

    async def create(self, user_id: str, description: str = "",
                     expires_in_seconds: int | None = None) -> tuple[Invite, str]:
        """A new invite and its token; the token is returned once and only its hash kept."""
        lifetime = DEFAULT_LIFETIME if expires_in_seconds is None else expires_in_seconds
        if not 1 <= lifetime <= MAX_LIFETIME:
            raise InviteError(400, f"an invite lasts 1 to {MAX_LIFETIME} seconds (30 days)")
        if len(description) > 255 or not description.isprintable():
            raise InviteError(400, "the description must be at most 255 printable characters")
        token = secrets.token_urlsafe(32)
        now = now_ms()
        invite = Invite(str(uuid.uuid4()), user_id, description, now, now + lifetime * 1000)
        async with self.db.write() as conn:
            await conn.execute(insert(ocm_invites).values(
                id=invite.id, token_hash=secret_hash(token), user_id=user_id,
                description=description, created_ms=now, expires_ms=invite.expires_ms))
        return invite, token

    async def list(self, user_id: str) -> list[Invite]:
        query = (select(ocm_invites).where(ocm_invites.c.user_id == user_id)
                 .order_by(ocm_invites.c.created_ms, ocm_invites.c.id))
        async with self.db.read() as conn:
            return [Invite(r.id, r.user_id, r.description, r.created_ms, r.expires_ms,
                           r.accepted_ms, r.accepted_by) for r in await conn.execute(query)]

    async def revoke(self, user_id: str, invite_id: str) -> None:
        """Forget an invite: its token stops working (contacts it made stay)."""
        async with self.db.write() as conn:
            result = await conn.execute(delete(ocm_invites).where(
                ocm_invites.c.id == invite_id, ocm_invites.c.user_id == user_id))
        if result.rowcount == 0:
            raise InviteError(404, f"no invite {invite_id!r}")

    async def accept_incoming(self, token: str, recipient_provider: str, user_id_remote: str,
                              email: str, name: str, signer_domain: str) -> dict[str, str]:
        """``POST /invite-accepted``: record the accepting user as the inviter's contact and
        answer with the inviter's identity (OcmError 400/403/409 otherwise)."""
        provider = provider_domain(recipient_provider)
        if provider is None:
            raise OcmError(400, "invalid request",
                           [("recipientProvider", "must be the FQDN of your OCM server")])
        if provider != signer_domain.lower():
            raise OcmError(403, f"signed by {signer_domain}, but recipientProvider is "
                           f"{provider}", [("recipientProvider", "SENDER_MISMATCH")])
        address = f"{user_id_remote}@{provider}"
        if len(address) > ADDRESS_LENGTH:
            raise OcmError(400, "invalid request", [("userID", "too long")])
        now = now_ms()
        async with self.db.read() as conn:
            row = (await conn.execute(select(ocm_invites).where(
                ocm_invites.c.token_hash == secret_hash(token)))).first()
        if row is None:
            raise INVALID_TOKEN
        if row.accepted_ms is not None:
            raise ALREADY_ACCEPTED
        if row.expires_ms <= now:
            raise OcmError(400, "this invite has expired", [("token", "expired")])
        inviter = await self.directory.user_by_id(row.user_id)
        if inviter is None or inviter.disabled:
            raise INVALID_TOKEN
        async with self.db.write() as conn:
            marked = await conn.execute(update(ocm_invites).where(
                ocm_invites.c.id == row.id, ocm_invites.c.accepted_ms.is_(None),
            ).values(accepted_ms=now, accepted_by=address))
            if marked.rowcount == 0:  # accepted or revoked meanwhile
                gone = await conn.scalar(select(ocm_invites.c.id).where(
                    ocm_invites.c.id == row.id)) is None
                raise INVALID_TOKEN if gone else ALREADY_ACCEPTED
            await _save_contact(conn, Contact(row.user_id, address, provider,
                                              name or user_id_remote, email, now))
        self.federation.peers.contact_added(provider)
        return self.identity(inviter)

    # -- invites made elsewhere -----------------------------------------------------------

    async def accept_outgoing(self, local_user_id: str, token: str,
                              provider: str) -> Contact:
        """Accept an invite made at ``provider`` (its domain): tell it, signed, and keep
        its user as a contact. InviteError 400/403/409 for the peer's (or our policy's)
        refusals, 502 when it cannot be reached or answers nonsense."""
        domain = provider_domain(provider)
        if domain is None:
            raise InviteError(400, f"invalid provider domain {provider!r}: expected the "
                                   "inviter's domain, such as paris.test")
        if domain == self.settings.domain.lower():
            raise InviteError(400, "this invite was made at this instance: "
                                   "it is for someone elsewhere")
        if not 1 <= len(token) <= MAX_TOKEN or not token.isprintable():
            raise InviteError(400, "invalid invite token")
        user = await self.directory.user_by_id(local_user_id)
        if user is None or user.disabled:
            raise InviteError(403, "only enabled local users can accept invites")
        decision = await self.federation.peers.decide(domain, inviting=True)
        if not decision.allowed:
            raise InviteError(403, f"{domain} may not federate with this instance: "
                                   f"{decision.reason}")
        payload = {"recipientProvider": self.settings.domain.lower(), "token": token,
                   **self.identity(user)}
        try:
            endpoint = await self.federation.endpoint_of(domain)
            response = await self.federation.post(f"{endpoint}/invite-accepted", payload)
        except (OutboundError, ValueError) as exc:
            raise InviteError(502, f"cannot reach the OCM API of {domain}: {exc}") from None
        answer = self._answer(domain, response)
        address = f"{answer.user_id}@{domain}"
        if len(address) > ADDRESS_LENGTH:
            raise InviteError(502, f"{domain} answered with a userID that is too long")
        async with self.db.write() as conn:
            contact = await _save_contact(conn, Contact(
                local_user_id, address, domain, answer.name or answer.user_id, answer.email,
                now_ms()))
        self.federation.peers.contact_added(domain)
        return contact

    @staticmethod
    def _answer(domain: str, response: httpx.Response) -> InviteAnswer:
        status, why = response.status_code, _peer_message(response)
        if status in (200, 201):
            try:
                return InviteAnswer.model_validate_json(response.content)
            except ValidationError:
                raise InviteError(502, f"{domain} took the invite but did not answer with "
                                       "its user's userID, email and name") from None
        refusals = {400: f"{domain} does not know this invite token (mistyped, expired or "
                         "revoked)",
                    403: f"{domain} does not accept invites from this instance",
                    409: "this invite was already accepted"}
        if status in refusals:  # the peer's words only when they add something
            ours = refusals[status]
            raise InviteError(status, ours if why.lower() == f": {ours}" else ours + why)
        raise InviteError(502, f"{domain} answered HTTP {status}{why}")

    # -- contacts -------------------------------------------------------------------------

    async def contacts(self, user_id: str) -> builtins.list[Contact]:  # ``list`` is ours
        query = (select(ocm_contacts).where(ocm_contacts.c.user_id == user_id)
                 .order_by(ocm_contacts.c.name, ocm_contacts.c.address))
        async with self.db.read() as conn:
            return [Contact(r.user_id, r.address, r.peer, r.name, r.email, r.created_ms)
                    for r in await conn.execute(query)]

"""Federation slice of the configuration (``[federation]``, ``FEDSPACE_FEDERATION__*``)."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator, model_validator

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PEER = re.compile(rf"^(?=[^:]{{1,253}}(?::|$)){_LABEL}(?:\.{_LABEL})*(?::(\d{{1,5}}))?$")


def check_peer_domain(domain: str) -> str:
    """The lower-cased peer domain: a DNS name, with an optional ``:port`` (for rigs)."""
    normalized = domain.strip().lower()
    match = _PEER.match(normalized)
    if not match or (match[1] is not None and not 0 < int(match[1]) < 65536):
        raise ValueError(f"invalid peer domain {domain!r}: expected a DNS name such as "
                         "paris.test, optionally with :port")
    return normalized


class FederationSettings(BaseModel):
    # -- peer trust policy (see federation.peers) ---------------------------------------
    allow_peers: list[str] = Field(default_factory=list, description="peers always allowed")
    deny_peers: list[str] = Field(default_factory=list, description="peers always refused")
    allowlist_only: bool = Field(
        False, description="refuse every peer not allowed by settings or `trust peer add`")
    require_invite: bool = Field(
        False, description="only peers with an accepted OCM invite may share with us")
    accept_unsigned_from: list[str] = Field(
        default_factory=list, description="legacy peers allowed to send unsigned requests")
    peer_cache_seconds: float = Field(3.0, ge=0, description="how stale the peer table may be")
    # -- outbox delivery (see federation.outbox) ----------------------------------------
    retry_base_seconds: float = Field(2.0, gt=0, description="first backoff bound")
    retry_cap_seconds: float = Field(3600.0, gt=0, description="largest backoff bound")
    retry_after_max_seconds: float = Field(
        6 * 3600.0, ge=0, description="a peer's Retry-After is honoured up to this long")
    give_up_after_seconds: float = Field(
        48 * 3600.0, gt=0, description="a message not delivered by then is marked failed")
    lease_seconds: float = Field(
        300.0, gt=0, description="a claimed message whose worker died is retried after this; "
        "must exceed outbound.timeout")
    poll_seconds: float = Field(30.0, gt=0, description="idle re-check of the outbox")
    concurrency: int = Field(
        16, ge=1, description="messages in flight at once, to all peers together")

    @field_validator("allow_peers", "deny_peers", "accept_unsigned_from")
    @classmethod
    def _domains(cls, values: list[str]) -> list[str]:
        return [check_peer_domain(v) for v in values]

    @model_validator(mode="after")
    def _consistent(self) -> FederationSettings:
        both = sorted(set(self.allow_peers) & set(self.deny_peers))
        if both:
            raise ValueError(f"peers both allowed and denied: {', '.join(both)}")
        return self

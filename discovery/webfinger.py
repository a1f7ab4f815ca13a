"""WebFinger (RFC 7033): which IdP and which registry serve an account of a domain.

Account-existence policy: every well-formed local part of a served domain gets the same
answer. The issuer and the registry are facts about the *domain*, not about one account,
so answering only for existing users would add nothing but an oracle for which accounts
exist. ``subject`` echoes the resource asked for.

Resources: ``acct:user@domain`` (RFC 7565), ``mailto:user@domain``, and ``https://host``
of this instance (ownCloud clients ask that way for the issuer of a server). The domain
must be one this instance serves: ``settings.domain`` and the hosts of ``public_url`` and
of the issuer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fedspace.settings import Settings

JRD = "application/jrd+json"
ISSUER_REL = "http://openid.net/specs/connect/1.0/issuer"
INSTANCE_REL = "http://webfinger.owncloud/rel/server-instance"

# RFC 7565 userpart: unreserved / sub-delims / pct-encoded; a host name of LDH labels.
_USER = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


class MalformedResource(ValueError):
    """The resource is missing or not an acct:, mailto: or https: URI we understand."""


class UnknownDomain(LookupError):
    """The resource is well formed but names a domain this instance does not serve."""


@dataclass(frozen=True)
class Account:
    user: str
    domain: str

    @property
    def acct(self) -> str:
        return f"acct:{self.user}@{self.domain}"

    def __str__(self) -> str:
        return f"{self.user}@{self.domain}"


def parse_account(address: str, schemes: Sequence[str] = ("acct",)) -> Account:
    """``user@domain`` or ``acct:user@domain`` → Account (domain lower-cased)."""
    scheme, colon, rest = address.partition(":")
    if colon and scheme.lower() in schemes:
        address = rest
    user, at, domain = address.rpartition("@")
    domain = domain.lower()
    if not at or not _USER.fullmatch(user) or not _HOST.fullmatch(domain):
        raise MalformedResource(f"not an account address (user@domain): {address!r}")
    return Account(user, domain)


def served_hosts(settings: Settings) -> set[str]:
    """The domains and host names WebFinger answers for (read live: URLs may be rebased)."""
    hosts = {settings.domain.lower()}
    for url in (settings.public_url, settings.discovery.issuer):
        host = urlsplit(url).hostname
        if host:
            hosts.add(host)
    return hosts


def resource_host(resource: str) -> str:
    """The domain a resource names; raises MalformedResource."""
    if not resource:
        raise MalformedResource("the resource parameter is required")
    scheme = resource.partition(":")[0].lower()
    if scheme in ("acct", "mailto"):
        return parse_account(resource, schemes=(scheme,)).domain
    if scheme == "https":
        parts = urlsplit(resource)
        if not parts.hostname or parts.username or parts.password:
            raise MalformedResource("malformed https: resource")
        return parts.hostname
    raise MalformedResource("the resource must be an acct:, mailto: or https: URI")


def jrd(settings: Settings, resource: str, rels: Sequence[str] = ()) -> dict[str, Any]:
    """The JRD for ``resource``, links filtered to ``rels`` when any are given."""
    if resource_host(resource) not in served_hosts(settings):
        raise UnknownDomain(f"this instance does not serve {resource_host(resource)}")
    links = [
        {"rel": ISSUER_REL, "href": settings.discovery.issuer},
        {"rel": INSTANCE_REL, "href": settings.public_url},
    ]
    if rels:
        links = [link for link in links if link["rel"] in rels]
    return {"subject": resource, "links": links}

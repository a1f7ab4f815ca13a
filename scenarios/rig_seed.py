"""What a rig knows before and after it starts: users, cross-domain settings, seeding.

Configuration that must exist when an instance starts (OIDC clients, relying parties,
resource peers) is computed here from the domain list; state that lives in the database
(users, app passwords, trusted issuers, allowed peers) is seeded into running instances,
idempotently, so ``--state`` can be reused across runs.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher

from discovery.service import DirectoryError
from discovery.settings import OidcClient, RelyingParty
from discovery.weblogin import CALLBACK_PATH
from fedspace.app import Instance
from scenarios.rigfile import RigUser

APP_PASSWORD_LABEL = "rig"  # noqa: S105 (a label, not a secret)


@dataclass(frozen=True)
class SeedUser:
    username: str
    display_name: str
    password: str


# The seed story's people; any other domain gets one user named after its first label.
KNOWN_USERS = {
    "zurich.test": SeedUser("einstein", "Albert Einstein", "relativity"),
    "paris.test": SeedUser("marie", "Marie Curie", "radioactivity"),
}


def seed_user(domain: str) -> SeedUser:
    if domain in KNOWN_USERS:
        return KNOWN_USERS[domain]
    label = domain.split(".", 1)[0]
    return SeedUser(label, f"{label.title()} User", f"{label}-password")


def rp_secret(rig_secret: bytes, idp_domain: str, client_domain: str) -> str:
    """The client secret ``client_domain``'s cloud uses at ``idp_domain``'s IdP: derived,
    so nothing but the rig secret has to be stored."""
    message = f"{idp_domain}|{client_domain}".encode()
    return hmac.new(rig_secret, message, hashlib.sha256).hexdigest()


def discovery_config(domain: str, urls: dict[str, tuple[str, str]],
                     rig_secret: bytes) -> dict[str, Any]:
    """The ``[discovery]`` slice for ``domain``; ``urls`` maps each domain to (cloud, issuer).

    Its IdP keeps the default ``web`` and ``cli`` clients and registers every other cloud
    as a confidential client (so Marie can sign in at zurich with her paris IdP), may mint
    tokens for the other clouds (RFC 8707), and its cloud is a relying party of every
    other IdP."""
    cloud, issuer = urls[domain]
    others = [d for d in urls if d != domain]
    hasher = PasswordHasher()
    clients = [
        OidcClient(client_id="web", redirect_uris=[f"{cloud}{CALLBACK_PATH}"]),
        OidcClient(client_id="cli", loopback_redirect_paths=["/callback"]),
        *(OidcClient(client_id=d, public=False, redirect_uris=[f"{urls[d][0]}{CALLBACK_PATH}"],
                     secret_hash=hasher.hash(rp_secret(rig_secret, domain, d)))
          for d in others),
    ]
    parties = [RelyingParty(issuer=urls[d][1], client_id=domain,
                            client_secret=rp_secret(rig_secret, d, domain)) for d in others]
    return {"issuer": issuer, "audience": cloud, "clients": clients,
            "resource_peers": [urls[d][0] for d in others], "relying_parties": parties}


async def seed(instance: Instance, domain: str, issuers: dict[str, str],
               trusts: Collection[str], previous: RigUser | None) -> RigUser:
    """Users, app password, trusted issuers and allowed peers of one running instance.

    ``issuers`` maps every rig domain to its issuer; ``domain`` trusts those in ``trusts``
    and no other rig domain (a kept state folder may have trusted one before). The app
    password of the previous run is kept while it still works, so scripts holding it keep
    working across restarts."""
    discovery = instance.ctx.components["discovery"]
    directory = discovery.directory
    person = seed_user(domain)
    address = f"{person.username}@{domain}"
    try:
        await directory.add_user(person.username, display_name=person.display_name,
                                 email=address, password=person.password)
    except DirectoryError:  # seeded before: make sure the documented password holds
        await directory.set_password(person.username, person.password)
    secret = previous.app_password if previous else ""
    if not secret or await directory.check_app_password(person.username, secret) is None:
        for pw in await directory.list_app_passwords(person.username):
            if pw.label == APP_PASSWORD_LABEL:
                await directory.revoke_app_password(person.username, pw.id)
        _, secret = await directory.create_app_password(person.username, APP_PASSWORD_LABEL)

    trust = discovery.trust
    current = {t.issuer: t for t in await trust.list() if not t.configured}
    for other, issuer in issuers.items():
        if other == domain:
            continue
        trusted = other in trusts
        for stale in [t for t in current.values() if t.domain == other
                      and (t.issuer != issuer or not trusted)]:
            await trust.remove(stale.issuer)  # the rig moved to another port, or distrusts
        if trusted and issuer not in current:
            await trust.add(issuer, other)
    peers = instance.ctx.components["federation"].peers
    allowed = {p.domain for p in await peers.list() if p.policy == "allow" and not p.configured}
    for other in issuers:
        if other == domain:
            continue
        if other in trusts and other not in allowed:
            await peers.add(other, "allow")
        elif other not in trusts and other in allowed:
            await peers.remove(other)
    return RigUser(person.username, address, person.display_name, person.password, secret)

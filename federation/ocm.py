"""The Open Cloud Mesh discovery document and error shape, as plain data.

Facts from cs3org/OCM-API (``IETF-OCM.md``, draft-ietf-ocm-open-cloud-mesh-05, "OCM API
Discovery" → "Fields"; older ``IETF-RFC.md``/``spec.yaml`` for OCM 1.1):

* required members: ``enabled``, ``apiVersion`` (the draft's example is ``"1.4.0"``),
  ``endPoint`` (absolute URI of the OCM API), ``resourceTypes``; optional: ``provider``,
  ``capabilities``, ``criteria``, ``tokenEndPoint``, ``inviteAcceptDialog``;
* each resource type is ``{name, shareTypes, protocols}``; in ``protocols`` a member named
  after a protocol advertises the sending role (``webdav`` is the top-level WebDAV *path*
  at this endpoint, a string) and a ``-receive`` member the receiving role;
* capabilities are bare names (``http-sig``, ``notifications``, ``invites``,
  ``exchange-token``, ``protocol-object``, ``enforce-mfa``, ``invite-wayf``); OCM 1.1
  peers look for path-style names (``/notifications``, ``/invite-accepted``,
  ``/mfa-capable``), so those are listed too where a 1.1 equivalent exists;
* ``http-sig`` means RFC 9421 signatures with keys at ``/.well-known/jwks.json``; fedspace
  also names that URL in ``jwksUri`` (ARCHITECTURE §4);
* 1.1 servers served the same document at ``/ocm-provider`` ("MUST support both");
* errors are ``{"message": …, "validationErrors": [{"name": …, "message": …}]}``.

Only what is implemented may be advertised: the federation component owns a ``Features``
whose sets the endpoint modules fill as they are mounted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "1.4.0"
PROVIDER = "fedspace"
ENDPOINT_PATH = "/ocm"
JWKS_PATH = "/.well-known/jwks.json"
WEBDAV_PATH = "/dav/spaces/"
LEGACY_CAPABILITIES = {
    "notifications": "/notifications",
    "invites": "/invite-accepted",
    "enforce-mfa": "/mfa-capable",
}


@dataclass
class Features:
    """What this instance's OCM API offers right now."""

    capabilities: set[str] = field(default_factory=set)
    criteria: set[str] = field(default_factory=set)
    token_endpoint: str | None = None  # absolute URL, with the exchange-token capability
    invite_accept_dialog: str | None = None  # path of the page, with the invites capability
    # Protocols we accept shares for, as ``<name>-receive`` members of the file resource.
    receive: dict[str, dict[str, str]] = field(default_factory=dict)


def capability_list(capabilities: Iterable[str]) -> list[str]:
    """Sorted names, each followed by its OCM 1.1 spelling when it has one."""
    listed: list[str] = []
    for name in sorted(set(capabilities)):
        listed.append(name)
        if name in LEGACY_CAPABILITIES:
            listed.append(LEGACY_CAPABILITIES[name])
    return listed


def discovery_document(public_url: str, features: Features) -> dict[str, Any]:
    """The body of ``/.well-known/ocm`` (and ``/ocm-provider``) for ``public_url``."""
    base = public_url.rstrip("/")
    document: dict[str, Any] = {
        "enabled": True,
        "apiVersion": API_VERSION,
        "endPoint": f"{base}{ENDPOINT_PATH}",
        "provider": PROVIDER,
        "resourceTypes": [
            {"name": "file", "shareTypes": ["user"], "protocols": {
                "webdav": WEBDAV_PATH,
                **{f"{name}-receive": role for name, role in sorted(features.receive.items())},
            }},
        ],
        "capabilities": capability_list(features.capabilities),
        "criteria": sorted(features.criteria),
        "jwksUri": f"{base}{JWKS_PATH}",
    }
    if features.token_endpoint:
        document["tokenEndPoint"] = features.token_endpoint
    if features.invite_accept_dialog:
        document["inviteAcceptDialog"] = features.invite_accept_dialog
    return document


class OcmError(Exception):
    """A refusal to answer in the OCM error shape; ``fields`` are ``(name, message)``."""

    def __init__(self, status: int, message: str,
                 fields: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = list(fields)

    def body(self) -> dict[str, Any]:
        return {"message": self.message,
                "validationErrors": [{"name": n, "message": m} for n, m in self.fields]}

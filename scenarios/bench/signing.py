"""The cost of OCM request signing, apart from everything else a share costs.

Every share zurich sends is signed once (RFC 9421, Ed25519, with an RFC 9530
Content-Digest) and verified once by paris, with ``federation.httpsig`` as the instances
use it; timing the two on a typical share POST says what share of a share's time they
take (the two-domain rig runs both instances on one core).
"""

from __future__ import annotations

import secrets
import time
import uuid

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from federation import httpsig


def share_payload() -> bytes:
    """An OCM share POST body as zurich sends it (``federation.outgoing``, unsealed)."""
    me, secret = "einstein@zurich.test", secrets.token_urlsafe(32)
    return orjson.dumps({
        "shareWith": "marie@paris.test", "name": "share-0001", "description": "",
        "providerId": str(uuid.uuid4()), "owner": me, "sender": me,
        "ownerDisplayName": "Albert Einstein", "senderDisplayName": "Albert Einstein",
        "shareType": "user", "resourceType": "file", "code": secret,
        "protocol": {"name": "multi", "webdav": {
            "uri": f"https://cloud.zurich.test/dav/spaces/{uuid.uuid4()}",
            "sharedSecret": secret, "permissions": ["read", "write"], "requirements": []}}})


async def signing_us(count: int) -> tuple[float, float]:
    """Microseconds per RFC 9421 signature of a share POST, and per verification (with
    the key at hand: no key fetch, as when paris has zurich's keys cached)."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    keyid = httpsig.make_keyid("zurich.test", "bench")
    url, body = "https://paris.test/ocm/shares", share_payload()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    started = time.perf_counter()
    signed = [httpsig.sign("POST", url, headers, body, key, keyid) for _ in range(count)]
    sign_us = (time.perf_counter() - started) / count * 1e6

    async def resolve(keyid: str, refresh: bool) -> Ed25519PublicKey | None:
        return public

    replay = httpsig.ReplayCache()
    started = time.perf_counter()
    for extra in signed:
        await httpsig.verify("POST", url, {**headers, **extra}, body, resolve_key=resolve,
                             replay=replay)
    return sign_us, (time.perf_counter() - started) / count * 1e6

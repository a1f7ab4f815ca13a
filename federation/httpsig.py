"""OCM request signatures: RFC 9421 HTTP Message Signatures with an RFC 9530 Content-Digest.

The signature base, the crypto and the digest come from the ``http-message-signatures``
library; this module adds the OCM profile around it, so both directions of every OCM call
agree on one set of rules.

What OCM says (cs3org/OCM-API, ``IETF-OCM.md``: "HTTP Message Signatures" and
"Appendix B"; older ``IETF-RFC.md``/``spec.yaml`` used draft-cavage and a ``publicKey``
discovery member instead):

* covered components, at least: ``@method``, ``@target-uri``, ``content-digest``,
  ``content-length``; ``date`` too when a ``Date`` header is sent (SHOULD);
* ``created`` is mandatory and anchors freshness and replay protection; verifiers reject
  a ``created`` too far in the future or older than their freshness window;
* the OCM signature is the one whose signed parameters carry ``tag="ocm"``; its label is
  arbitrary (and unsigned). Exactly one such signature, else the request is rejected;
  other signatures (a proxy's) may coexist and are ignored;
* an asymmetric algorithm; ``ed25519`` is recommended, HMAC forbidden (we accept only
  ``ed25519``);
* Content-Digest uses a registered algorithm, ``sha-256`` at least; when it carries
  several, *every* recognised one must match the body;
* public keys are a JWK Set (RFC 7517) published by the signer when its discovery lists
  the ``http-sig`` capability — the draft names ``/.well-known/jwks.json``; fedspace also
  advertises the URL as ``jwksUri`` in ``/.well-known/ocm`` (ARCHITECTURE §4);
* ``keyid`` is ``<signer domain>#<kid>`` (the draft's example: ``sender.example.org#key1``);
  the verifier finds the signer's JWK Set from that domain and the JWK by ``kid``. Keyids
  in URL form (``https://host/path#kid``, as older peers send) are understood as well.

After verifying, the receiver must check that the signer's domain (``Verified.domain``)
is the domain of the OCM payload's ``sender``/``owner`` (``address_domain``): a valid
signature only proves which server sent the request, not on whose behalf.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)

TAG = "ocm"
LABEL = "ocm"
ALGORITHM = "ed25519"
REQUIRED_COMPONENTS = ("@method", "@target-uri", "content-digest", "content-length")
DEFAULT_FRESHNESS = 300
CLOCK_SKEW = 30  # seconds a peer's clock may run ahead of ours
DIGEST_ALGORITHMS = ("sha-256", "sha-512")  # the ones ContentDigest can check
_SIGNING_FIELDS = frozenset({"content-digest", "content-length", "signature-input", "signature"})

Reason = Literal[
    "no-signature", "malformed", "no-ocm-signature", "multiple-ocm-signatures",
    "missing-component", "unsupported-alg", "bad-keyid", "created-missing", "created-stale",
    "created-future", "digest-missing", "digest-malformed", "digest-mismatch",
    "length-mismatch", "unknown-key", "bad-signature", "replay",
]
KeyResolver = Callable[[str, bool], Awaitable[Ed25519PublicKey | None]]
"""``(keyid, refresh)`` → the signer's public key, or None when unknown; ``refresh`` asks
to bypass caches (the signer may have rotated in a key we have not fetched yet)."""


class SignatureError(Exception):
    """A request signature was rejected; ``reason`` is stable, ``detail`` for humans."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason: Reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Verified:
    keyid: str
    created: int
    components: tuple[str, ...]

    @property
    def domain(self) -> str:
        """The signing server's domain, to compare with the payload's sender domain."""
        return signer_domain(self.keyid)


# -- keyids and domains --------------------------------------------------------------

def make_keyid(domain: str, kid: str) -> str:
    return f"{domain}#{kid}"


def _authority(host: str, port: int | None, scheme: str) -> str:
    default = {"https": 443, "http": 80}.get(scheme)
    return host.lower() if port in (None, default) else f"{host.lower()}:{port}"


def signer_domain(keyid: str) -> str:
    """``cloud.example.org#k1`` or ``https://cloud.example.org/jwks#k1`` →
    ``cloud.example.org`` (with a non-default port when there is one)."""
    if "://" in keyid:
        try:
            parts = urlsplit(keyid)
            port = parts.port
        except ValueError:
            raise SignatureError("bad-keyid", f"keyid {keyid!r} is not a valid URL") from None
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.username:
            raise SignatureError("bad-keyid", f"keyid {keyid!r} names no host")
        return _authority(parts.hostname, port, parts.scheme)
    domain, hash_, kid = keyid.partition("#")
    if not hash_ or not kid or not domain or any(c in domain for c in "/@?# \t"):
        raise SignatureError("bad-keyid", f"keyid {keyid!r} is not <domain>#<kid>")
    return domain.lower()


def address_domain(address: str) -> str:
    """The server part of an OCM address (after the last ``@``), lower-cased."""
    return address.rpartition("@")[2].lower()


# -- replay --------------------------------------------------------------------------

@dataclass
class ReplayCache:
    """Signatures accepted recently, each kept until its ``created`` leaves the freshness
    window (after that the freshness check rejects a replay on its own).

    In memory and per process: a deployment with several receiving processes must share
    it (e.g. a table or Redis with a unique key on the signature), or a request replayed
    to another process is accepted. When full, the oldest entries go first, which
    reopens the window for those: size it above the peak requests per window.
    """

    max_entries: int = 100_000
    _seen: OrderedDict[bytes, float] = field(default_factory=OrderedDict)

    def add(self, signature: bytes, keep_until: float, now: float) -> bool:
        """Record a signature; False when it was already seen and still fresh."""
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)  # insertion order is about expiry order
        if self._seen.get(signature, 0.0) > now:
            return False
        self._seen[signature] = keep_until
        self._seen.move_to_end(signature)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return True


# -- signing -------------------------------------------------------------------------

@dataclass
class _Message:
    """The request shape the library reads: method, absolute URL, header lines."""

    method: str
    url: str
    headers: Any


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    key: Ed25519PrivateKey,
    keyid: str,
    *,
    created: int | None = None,
) -> dict[str, str]:
    """The headers to add to a request: Content-Digest, Content-Length, Signature-Input,
    Signature. Any of those already in ``headers`` are replaced (a retry re-signs)."""
    message = _Message(method.upper(), url,
                       {k: v for k, v in headers.items() if k.lower() not in _SIGNING_FIELDS})
    message.headers["Content-Length"] = str(len(body))
    components = REQUIRED_COMPONENTS
    if any(k.lower() == "date" for k in message.headers):
        components = (*components, "date")
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={keyid: key}))
    signer.sign(
        message, key_id=keyid, label=LABEL, tag=TAG, covered_component_ids=components,
        body=body, created=None if created is None else datetime.fromtimestamp(created, UTC),
        # Two sends of the same message within a second (a retry) must not look like a
        # replay to the receiver.
        nonce=secrets.token_urlsafe(16))
    return {name: message.headers[name]
            for name in ("Content-Digest", "Content-Length", "Signature-Input", "Signature")}


# -- verifying -----------------------------------------------------------------------

class _Verifier(HTTPMessageVerifier):
    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        """Freshness is checked by ``verify`` itself, against its own (injectable) clock."""


def _fields(headers: Mapping[str, str]) -> dict[str, str]:
    """Header lines combined per lower-cased name (RFC 9110 §5.3)."""
    fields: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        fields[lower] = f"{fields[lower]}, {value.strip()}" if lower in fields else value.strip()
    return fields


def _dictionary(value: str, what: str) -> dict[str, Any]:
    def duplicate(key: str, context: str) -> None:
        raise ValueError(f"duplicate member {key!r}")

    try:
        parsed = http_sf.parse(value.encode("ascii"), tltype="dictionary",
                               on_duplicate_key=duplicate)
    except (ValueError, UnicodeEncodeError) as exc:
        raise SignatureError("malformed", f"{what} is not a structured dictionary: {exc}") from None
    assert isinstance(parsed, dict)
    return parsed


def _ocm_signature(fields: dict[str, str]) -> tuple[list[Any], dict[str, Any], bytes]:
    """The one ``tag="ocm"`` signature: covered components, parameters, signature bytes."""
    if "signature-input" not in fields and "signature" not in fields:
        raise SignatureError("no-signature", "request is not signed")
    if "signature-input" not in fields or "signature" not in fields:
        raise SignatureError("malformed", "Signature-Input and Signature must come together")
    inputs = _dictionary(fields["signature-input"], "Signature-Input")
    tagged = [label for label, (_, params) in inputs.items() if params.get("tag") == TAG]
    if not tagged:
        raise SignatureError("no-ocm-signature", f'no signature carries tag="{TAG}"')
    if len(tagged) > 1:
        raise SignatureError("multiple-ocm-signatures",
                             f'{len(tagged)} signatures carry tag="{TAG}"; exactly one allowed')
    label = tagged[0]
    components, params = inputs[label]
    signature = _dictionary(fields["signature"], "Signature").get(label)
    if not isinstance(components, list) or signature is None or not isinstance(
            signature[0], bytes):
        raise SignatureError("malformed", f"signature {label!r} has no component list or value")
    return components, params, signature[0]


def _check_components(components: list[Any]) -> None:
    covered = {name for name, params in components if not params}
    missing = [c for c in REQUIRED_COMPONENTS if c not in covered]
    if missing:
        raise SignatureError("missing-component", f"signature does not cover {', '.join(missing)}")


def _check_created(params: dict[str, Any], now: int, freshness: int) -> int:
    created = params.get("created")
    if created is None:
        raise SignatureError("created-missing", "signature has no created parameter")
    if type(created) is not int:
        raise SignatureError("malformed", "created is not an integer")
    if created > now + CLOCK_SKEW:
        raise SignatureError("created-future", f"created is {created - now} s in the future")
    if created < now - freshness:
        raise SignatureError("created-stale", f"created is {now - created} s old "
                             f"(freshness window {freshness} s)")
    expires = params.get("expires")
    if expires is not None and (type(expires) is not int or expires < now):
        raise SignatureError("created-stale", "signature has expired")
    return created


def _check_length(fields: dict[str, str], body: bytes) -> None:
    declared = fields.get("content-length")
    if declared != str(len(body)):
        raise SignatureError("length-mismatch",
                             f"Content-Length {declared or '(none)'}, body has {len(body)} bytes")


def _check_digest(fields: dict[str, str], body: bytes) -> None:
    value = fields.get("content-digest")
    if value is None:
        raise SignatureError("digest-missing", "request has no Content-Digest")
    try:
        members = _dictionary(value, "Content-Digest")
    except SignatureError as exc:
        raise SignatureError("digest-malformed", exc.detail) from None
    if any(not isinstance(digest, bytes) for digest, _ in members.values()):
        raise SignatureError("digest-malformed", "Content-Digest values must be byte sequences")
    known = {alg: member for alg, member in members.items() if alg in DIGEST_ALGORITHMS}
    if not known:
        raise SignatureError("digest-malformed",
                             f"Content-Digest has none of {', '.join(DIGEST_ALGORITHMS)}")
    try:  # every recognised digest must match; unknown algorithms are ignored (RFC 9530)
        ContentDigest.verify(http_sf.ser(known), body)
    except HTTPMessageSignaturesException as exc:
        raise SignatureError("digest-mismatch", str(exc)) from None


async def verify(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    resolve_key: KeyResolver,
    replay: ReplayCache,
    now: int | None = None,
    freshness: int = DEFAULT_FRESHNESS,
) -> Verified:
    """Check a request's OCM signature; raise ``SignatureError`` saying why it fails.

    ``url`` is the target URI as the sender addressed it (the instance's public URL plus
    path and query — not what a TLS-terminating proxy forwarded). ``headers`` may be any
    mapping whose ``items()`` yields every header line (a dict, Starlette's ``Headers``).
    Cheap checks run before the key is resolved, so junk costs no outbound fetch.
    """
    now = int(time.time()) if now is None else now
    fields = _fields(headers)
    components, params, signature = _ocm_signature(fields)
    _check_components(components)
    if params.get("alg", ALGORITHM) != ALGORITHM:
        raise SignatureError("unsupported-alg",
                             f"algorithm {params['alg']!r} not accepted, only {ALGORITHM}")
    keyid = params.get("keyid")
    if not isinstance(keyid, str) or not keyid:
        raise SignatureError("bad-keyid", "signature has no keyid")
    signer_domain(keyid)  # a keyid naming no signer is refused before any lookup
    created = _check_created(params, now, freshness)
    _check_length(fields, body)
    _check_digest(fields, body)
    key = await resolve_key(keyid, False) or await resolve_key(keyid, True)
    if key is None:
        raise SignatureError("unknown-key", f"no public key for keyid {keyid!r}")
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("unsupported-alg", f"key {keyid!r} is not an Ed25519 key")
    verifier = _Verifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={keyid: key}, private_keys={}))
    try:
        verifier.verify(_Message(method, url, headers), max_age=None, expect_tag=TAG,
                        require_components=REQUIRED_COMPONENTS)
    except HTTPMessageSignaturesException as exc:
        raise SignatureError("bad-signature", str(exc) or type(exc).__name__) from None
    if not replay.add(signature, created + freshness + CLOCK_SKEW, now):
        raise SignatureError("replay", "this signature was already accepted")
    return Verified(keyid, created, tuple(name for name, _ in components))

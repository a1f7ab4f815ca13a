"""OCM request signatures (RFC 9421 + RFC 9530): signing, every rejection reason, replay,
key rotation, interop with the http-message-signatures library used directly, and a
signed POST over a real socket."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from dav_fixtures import serve
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)
from joserfc.jwk import OKPKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from federation.httpsig import (
    DEFAULT_FRESHNESS,
    KeyResolver,
    ReplayCache,
    SignatureError,
    Verified,
    address_domain,
    make_keyid,
    sign,
    signer_domain,
    verify,
)
from federation.keys import KeyStore

URL = "https://cloud.paris.test/ocm/shares"
BODY = b'{"shareWith":"marie@paris.test","sender":"einstein@zurich.test"}'
KEY = Ed25519PrivateKey.generate()
KEYID = make_keyid("zurich.test", "k1")


def resolver(keys: dict[str, Ed25519PublicKey],
             calls: list[tuple[str, bool]] | None = None) -> KeyResolver:
    async def resolve(keyid: str, refresh: bool) -> Ed25519PublicKey | None:
        if calls is not None:
            calls.append((keyid, refresh))
        return keys.get(keyid)
    return resolve


def signed(body: bytes = BODY, created: int | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    return {**headers, **sign("POST", URL, headers, body, KEY, KEYID, created=created)}


async def check(headers: dict[str, str], body: bytes = BODY, *, url: str = URL,
                method: str = "POST", key: Ed25519PublicKey | None = None,
                replay: ReplayCache | None = None, now: int | None = None) -> Verified:
    return await verify(method, url, headers, body,
                        resolve_key=resolver({KEYID: key or KEY.public_key()}),
                        replay=replay or ReplayCache(), now=now)


async def reason(headers: dict[str, str], body: bytes = BODY, **kw: Any) -> str:
    with pytest.raises(SignatureError) as caught:
        await check(headers, body, **kw)
    return caught.value.reason


def library_signed(*, algorithm: type = algorithms.ED25519, key: object = KEY,
                   components: tuple[str, ...] = ("@method", "@target-uri", "content-digest",
                                                  "content-length"),
                   tag: str = "ocm", label: str = "sig1", headers: dict[str, str] | None = None,
                   append: bool = False) -> dict[str, str]:
    """Sign with the library alone, configured by hand (not through ``httpsig.sign``)."""
    message = httpx.Request("POST", URL, content=BODY, headers=headers or {})
    HTTPMessageSigner(
        signature_algorithm=algorithm,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={KEYID: key}),
    ).sign(message, key_id=KEYID, label=label, tag=tag, covered_component_ids=components,
           body=BODY, use_existing_digest=append, append_if_signature_exists=append)
    return dict(message.headers)


# -- accepted ------------------------------------------------------------------------

async def test_round_trip() -> None:
    headers = signed()
    assert headers["Content-Length"] == str(len(BODY))
    assert headers["Content-Digest"].startswith("sha-256=:")
    assert 'tag="ocm"' in headers["Signature-Input"]
    assert 'alg="ed25519"' in headers["Signature-Input"]
    result = await check(headers)
    assert result.keyid == KEYID
    assert abs(result.created - time.time()) < 5
    assert result.components == ("@method", "@target-uri", "content-digest", "content-length")
    assert result.domain == "zurich.test" == address_domain("einstein@Zurich.test")


async def test_a_resend_in_the_same_second_is_no_replay() -> None:
    now = int(time.time())
    first, second = signed(created=now), signed(created=now)
    assert first["Signature"] != second["Signature"]  # each carries its own nonce
    replay = ReplayCache()
    await check(first, replay=replay)
    await check(second, replay=replay)


async def test_date_is_covered_when_sent() -> None:
    headers = {"Date": "Fri, 16 Jan 2026 13:37:00 GMT"}
    added = sign("POST", URL, headers, BODY, KEY, KEYID)
    assert '"date"' in added["Signature-Input"]
    assert "date" in (await check({**headers, **added})).components


async def test_resigning_replaces_old_signature_headers() -> None:
    first = signed(created=int(time.time()) - 10)
    again = sign("POST", URL, first, BODY, KEY, KEYID)
    assert again["Signature"] != first["Signature"]
    await check({**first, **again})


async def test_other_signatures_coexist() -> None:
    headers = library_signed(tag="proxy", label="proxy")
    headers = library_signed(headers=headers, append=True, label="ocm")
    assert await check(headers)


def test_keyid_domains() -> None:
    assert signer_domain("Cloud.Example.org#k1") == "cloud.example.org"
    assert signer_domain("https://cloud.example.org/.well-known/jwks.json#k1") == \
        "cloud.example.org"
    assert signer_domain("https://cloud.example.org:443/ocm#k") == "cloud.example.org"
    assert signer_domain("http://127.0.0.1:8443/ocm#k") == "127.0.0.1:8443"
    for bad in ("cloud.example.org", "#k1", "a/b#k1", "einstein@zurich.test#k", "ftp://x#k"):
        with pytest.raises(SignatureError) as caught:
            signer_domain(bad)
        assert caught.value.reason == "bad-keyid"


# -- rejected: structure -------------------------------------------------------------

async def test_no_signature() -> None:
    assert await reason({"Content-Type": "application/json"}) == "no-signature"


async def test_signature_input_alone_is_malformed() -> None:
    headers = signed()
    del headers["Signature"]
    assert await reason(headers) == "malformed"
    assert await reason({**signed(), "Signature-Input": "ocm=(((("}) == "malformed"


async def test_no_ocm_tagged_signature() -> None:
    assert await reason(library_signed(tag="other")) == "no-ocm-signature"


async def test_second_ocm_signature_rejects_the_request() -> None:
    headers = library_signed(label="a")
    headers = library_signed(headers=headers, append=True, label="b")
    assert await reason(headers) == "multiple-ocm-signatures"


async def test_required_component_missing() -> None:
    headers = library_signed(components=("@method", "@target-uri", "content-digest"))
    assert await reason(headers) == "missing-component"


async def test_only_ed25519() -> None:
    p256 = library_signed(algorithm=algorithms.ECDSA_P256_SHA256,
                          key=ec.generate_private_key(ec.SECP256R1()))
    assert await reason(p256) == "unsupported-alg"
    hmac = library_signed(algorithm=algorithms.HMAC_SHA256, key=b"shared secret" * 3)
    assert await reason(hmac) == "unsupported-alg"
    # without an alg parameter the key decides: a non-Ed25519 key is refused too
    no_alg = signed()
    no_alg["Signature-Input"] = no_alg["Signature-Input"].replace(';alg="ed25519"', "")
    with pytest.raises(SignatureError) as caught:
        await verify("POST", URL, no_alg, BODY, replay=ReplayCache(), resolve_key=resolver(
            {KEYID: ec.generate_private_key(ec.SECP256R1()).public_key()}))  # type: ignore[dict-item]
    assert caught.value.reason == "unsupported-alg"


async def test_keyid_missing_or_malformed() -> None:
    headers = signed()
    headers["Signature-Input"] = headers["Signature-Input"].replace(f';keyid="{KEYID}"', "")
    assert await reason(headers) == "bad-keyid"
    headers = signed()
    headers["Signature-Input"] = headers["Signature-Input"].replace(KEYID, "zurich.test")
    assert await reason(headers) == "bad-keyid"


# -- rejected: time ------------------------------------------------------------------

async def test_created_missing() -> None:
    headers = signed(created=1_700_000_000)
    headers["Signature-Input"] = headers["Signature-Input"].replace(";created=1700000000", "")
    assert await reason(headers) == "created-missing"


async def test_created_too_old_or_in_the_future() -> None:
    now = int(time.time())
    assert await reason(signed(created=now - DEFAULT_FRESHNESS - 1)) == "created-stale"
    assert await reason(signed(created=now + 120)) == "created-future"
    await check(signed(created=now + 10))  # small clock skew is tolerated
    headers = signed(created=now)
    assert await reason(headers, now=now + DEFAULT_FRESHNESS + 1) == "created-stale"


async def test_freshness_window_is_configurable() -> None:
    now = int(time.time())
    headers = signed(created=now - 100)
    with pytest.raises(SignatureError, match="created-stale"):
        await verify("POST", URL, headers, BODY, resolve_key=resolver({KEYID: KEY.public_key()}),
                     replay=ReplayCache(), freshness=60)


# -- rejected: body ------------------------------------------------------------------

async def test_content_digest_missing_or_malformed() -> None:
    headers = signed()
    del headers["Content-Digest"]
    assert await reason(headers) == "digest-missing"
    assert await reason({**signed(), "Content-Digest": "sha-256=abc"}) == "digest-malformed"
    assert await reason({**signed(), "Content-Digest": "md5=:AAAA:"}) == "digest-malformed"


async def test_tampered_body() -> None:
    tampered = BODY.replace(b"marie", b"mallo")
    assert await reason(signed(), tampered) == "digest-mismatch"


async def test_every_recognised_digest_must_match() -> None:
    headers = signed()
    wrong = "sha-512=:" + "A" * 86 + "==:"
    headers["Content-Digest"] = f"{headers['Content-Digest']}, {wrong}"
    assert await reason(headers) == "digest-mismatch"


async def test_content_length_mismatch() -> None:
    assert await reason(signed(), BODY + b" ") == "length-mismatch"
    assert await reason({**signed(), "Content-Length": "3"}) == "length-mismatch"


# -- rejected: keys and signature ----------------------------------------------------

async def test_unknown_keyid_is_refreshed_once_then_refused() -> None:
    calls: list[tuple[str, bool]] = []
    with pytest.raises(SignatureError) as caught:
        await verify("POST", URL, signed(), BODY, resolve_key=resolver({}, calls),
                     replay=ReplayCache())
    assert caught.value.reason == "unknown-key"
    assert calls == [(KEYID, False), (KEYID, True)]


async def test_unknown_keyid_is_picked_up_after_refresh() -> None:
    calls: list[tuple[str, bool]] = []

    async def resolve(keyid: str, refresh: bool) -> Ed25519PublicKey | None:
        calls.append((keyid, refresh))
        return KEY.public_key() if refresh else None

    assert await verify("POST", URL, signed(), BODY, resolve_key=resolve, replay=ReplayCache())
    assert calls == [(KEYID, False), (KEYID, True)]


async def test_wrong_key() -> None:
    other = Ed25519PrivateKey.generate().public_key()
    assert await reason(signed(), key=other) == "bad-signature"


async def test_tampered_signed_components() -> None:
    assert await reason(signed(), url="https://cloud.paris.test/ocm/notifications") \
        == "bad-signature"
    assert await reason(signed(), method="PUT") == "bad-signature"
    relabelled = signed()  # the label is not signed, but it must match Signature
    relabelled["Signature"] = relabelled["Signature"].replace("ocm=", "x=")
    assert await reason(relabelled) == "malformed"


# -- replay --------------------------------------------------------------------------

async def test_replay_rejected() -> None:
    cache = ReplayCache()
    headers = signed()
    await check(headers, replay=cache)
    assert await reason(headers, replay=cache) == "replay"
    # Ed25519 is deterministic: only a later created makes the same request new again
    await check(signed(created=int(time.time()) - 1), replay=cache)


async def test_rejected_request_does_not_poison_the_cache() -> None:
    cache = ReplayCache()
    headers = signed()
    assert await reason(headers, key=Ed25519PrivateKey.generate().public_key(),
                        replay=cache) == "bad-signature"
    await check(headers, replay=cache)


def test_replay_cache_is_bounded_and_forgets_expired() -> None:
    cache = ReplayCache(max_entries=2)
    assert cache.add(b"a", 100, now=0) and cache.add(b"b", 100, now=0)
    assert not cache.add(b"a", 100, now=1)
    assert cache.add(b"c", 100, now=1)  # full: the oldest entry goes
    assert len(cache._seen) == 2 and b"a" not in cache._seen
    assert not cache.add(b"c", 100, now=2)
    assert cache.add(b"c", 200, now=150)  # expired: a replay would fail freshness anyway


# -- rotation ------------------------------------------------------------------------

def jwks_resolver(store: KeyStore, domain: str) -> KeyResolver:
    """What a peer does: find the kid in our published JWK Set."""
    async def resolve(keyid: str, refresh: bool) -> Ed25519PublicKey | None:
        for jwk in store.public_jwks()["keys"]:
            if make_keyid(domain, jwk["kid"]) == keyid:
                key = OKPKey.import_key(jwk).public_key
                assert isinstance(key, Ed25519PublicKey)
                return key
        return None
    return resolve


async def test_rotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path / "fk", freshness_seconds=DEFAULT_FRESHNESS)
    resolve, cache = jwks_resolver(store, "zurich.test"), ReplayCache()

    def sign_now(created: int) -> dict[str, str]:
        key = store.signing_key()
        return sign("POST", URL, {}, BODY, key.private_key,
                    make_keyid("zurich.test", key.kid), created=created)

    start = int(time.time())
    old = store.signing_key()
    new = store.rotate(grace=600)
    assert new.kid in {k["kid"] for k in store.public_jwks()["keys"]}  # published first
    assert store.signing_key().kid == old.kid                          # not signing yet
    last_by_old = sign_now(start + 599)
    monkeypatch.setattr(time, "time", lambda: start + 601)
    first_by_new = sign_now(start + 601)
    assert make_keyid("zurich.test", new.kid) in first_by_new["Signature-Input"]
    for headers, at in ((last_by_old, start + 700), (first_by_new, start + 700)):
        await verify("POST", URL, headers, BODY, resolve_key=resolve, replay=cache, now=at)
    monkeypatch.setattr(time, "time", lambda: start + 600 + DEFAULT_FRESHNESS + 1)
    assert old.kid not in {k["kid"] for k in store.public_jwks()["keys"]}


# -- interop -------------------------------------------------------------------------

async def test_accepts_a_request_signed_by_the_library_directly() -> None:
    headers = library_signed(
        headers={"Date": "Fri, 16 Jan 2026 13:37:00 GMT"},
        components=("@method", "@target-uri", "content-digest", "content-length", "date"))
    assert headers["signature-input"].startswith("sig1=")
    result = await check(headers)
    assert "date" in result.components


def test_our_signature_passes_the_library_verifier() -> None:
    message = httpx.Request("POST", URL, content=BODY, headers=signed())
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={KEYID: KEY.public_key()}, private_keys={}))
    [result] = verifier.verify(message, expect_tag="ocm", body=BODY,
                               max_age=datetime.timedelta(seconds=DEFAULT_FRESHNESS))
    assert result.parameters["keyid"] == KEYID and result.body == BODY


# -- over a socket -------------------------------------------------------------------

async def test_signed_post_over_a_socket() -> None:
    cache = ReplayCache()

    async def shares(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            result = await verify(request.method, str(request.url), request.headers, body,
                                  resolve_key=resolver({KEYID: KEY.public_key()}),
                                  replay=cache)
        except SignatureError as exc:
            return JSONResponse({"message": exc.detail, "reason": exc.reason}, 401)
        return JSONResponse({"signer": result.domain}, 201)

    app = Starlette(routes=[Route("/ocm/shares", shares, methods=["POST"])])
    async with serve(app) as port, httpx.AsyncClient() as client:
        url = f"http://127.0.0.1:{port}/ocm/shares"
        headers = {"Content-Type": "application/json"}
        headers |= sign("POST", url, headers, BODY, KEY, KEYID)
        first = await client.post(url, content=BODY, headers=headers)
        assert (first.status_code, first.json()) == (201, {"signer": "zurich.test"})
        again = await client.post(url, content=BODY, headers=headers)
        assert again.status_code == 401 and again.json()["reason"] == "replay"
        forged = await client.post(url, content=BODY.replace(b"marie", b"mallo"),
                                   headers=headers)
        assert forged.status_code == 401 and forged.json()["reason"] == "digest-mismatch"

"""Bearer access tokens on cloud.D: every way a token can be wrong gets its own 401.

A tiny IdP (discovery document + JWKS on a real socket) signs tokens with keys generated
here; the instance trusts it as a foreign issuer, or uses it as its own external issuer.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from dav_fixtures import serve
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

OUTBOUND = {"allow_http": True, "allow_private_addresses": True}
DOMAIN = "paris.test"


class SigningIdP:
    """Serves discovery and a JWKS for keys it signs tokens with; counts JWKS fetches."""

    def __init__(self) -> None:
        self.es = ECKey.generate_key("P-256", parameters={"kid": "es-1"})
        self.rs = RSAKey.generate_key(2048, parameters={"kid": "rs-1"})
        self.published: list[Key] = [self.es, self.rs]
        self.jwks_fetches = 0
        self.issuer = ""
        self.app = Starlette(routes=[
            Route("/.well-known/openid-configuration", self._configuration),
            Route("/jwks", self._jwks),
        ])

    async def _configuration(self, request: Request) -> JSONResponse:
        return JSONResponse({
            "issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks",
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
        })

    async def _jwks(self, request: Request) -> JSONResponse:
        self.jwks_fetches += 1
        return JSONResponse({"keys": [k.as_dict(private=False) for k in self.published]})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SigningIdP]:
        async with serve(self.app) as port:
            self.issuer = f"http://127.0.0.1:{port}"
            yield self

    def token(self, audience: str, *, key: Key | None = None, alg: str = "ES256",
              header: dict[str, Any] | None = None, drop: tuple[str, ...] = (),
              **claims: Any) -> str:
        key = key or (self.rs if alg.startswith(("RS", "PS")) else self.es)
        now = int(time.time())
        payload = {"iss": self.issuer, "sub": "marie-sub", "aud": audience, "exp": now + 300,
                   "iat": now, "jti": uuid.uuid4().hex, "client_id": "web", **claims}
        for name in drop:
            payload.pop(name)
        return jwt.encode({"alg": alg, "kid": key.kid, **(header or {})}, payload, key,
                          algorithms=[alg])


def b64(data: bytes | dict) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_rejected(r: httpx.Response, description: str) -> None:
    assert r.status_code == 401, r.text
    challenge = r.headers["www-authenticate"]
    assert (f'Bearer realm="fedspace", error="invalid_token", '
            f'error_description="{description}"') in challenge, challenge


@pytest.fixture
async def idp() -> AsyncIterator[SigningIdP]:
    async with SigningIdP().running() as running:
        yield running


@pytest.fixture
async def cloud(start_instance, idp: SigningIdP):
    """An instance trusting ``idp`` (configuration) for paris.test, with local user alice."""
    running = await start_instance(outbound=OUTBOUND, discovery={
        "trusted_issuers": [{"issuer": idp.issuer, "domain": DOMAIN}]})
    await running.add_user("alice")
    return running


def audience(running) -> str:
    return running.instance.settings.discovery.audience


async def test_valid_tokens_of_every_allowed_algorithm(cloud, idp: SigningIdP) -> None:
    client = cloud.client(None)
    ed = OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"})
    idp.published.append(ed)
    for alg, key in (("ES256", None), ("RS256", None), ("PS256", None), ("EdDSA", ed)):
        r = await client.get("/graph/v1.0/me/drives",
                             headers=bearer(idp.token(audience(cloud), alg=alg, key=key)))
        assert r.status_code == 200, (alg, r.text)
    # ES384 and an audience list that contains ours.
    es384 = ECKey.generate_key("P-384", parameters={"kid": "es-384"})
    idp.published.append(es384)
    token = idp.token(["other", audience(cloud)], alg="ES384", key=es384)
    assert (await client.get("/graph/v1.0/me/drives", headers=bearer(token))).status_code == 200


async def test_token_within_clock_leeway_is_accepted(cloud, idp: SigningIdP) -> None:
    now = int(time.time())
    token = idp.token(audience(cloud), exp=now - 20, nbf=now + 20, iat=now + 20)
    r = await cloud.client(None).get("/graph/v1.0/me/drives", headers=bearer(token))
    assert r.status_code == 200, r.text
    # An absurdly distant (but valid) exp is the issuer's business, not a 500.
    token = idp.token(audience(cloud), exp=10**400)
    r = await cloud.client(None).get("/graph/v1.0/me/drives", headers=bearer(token))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("case", "description"), [
    ("not-a-jwt", "malformed token: not a JWS compact serialization"),
    ("expired", "token expired"),
    ("not-yet-valid", "token not yet valid (nbf)"),
    ("issued-in-future", "token issued in the future (iat)"),
    ("wrong-audience", "wrong audience: token is not for {aud}"),
    ("no-sub", "missing required claim: sub"),
    ("no-exp", "missing required claim: exp"),
    ("no-aud", "missing required claim: aud"),
    ("no-iss", "missing required claim: iss"),
    ("unknown-kid", "unknown key id nope for issuer {iss}"),
    ("bad-signature", "bad signature"),
    ("alg-none", "token algorithm none is not allowed "
                 "(allowed: ES256, ES384, EdDSA, RS256, PS256)"),
    ("hs256-with-rsa-public-key", "token algorithm HS256 is not allowed "
                                  "(allowed: ES256, ES384, EdDSA, RS256, PS256)"),
    ("key-alg-mismatch", "key rs-1 of the issuer does not fit alg ES256"),
    ("id-token-type", "unsupported token type logout+jwt"),
    ("payload-not-json", "malformed token: payload is not a JSON object"),
    ("payload-deeply-nested", "malformed token: payload is not a JSON object"),
    ("exp-not-a-number", "invalid claim exp: Claim 'exp' must be a NumericDate value"),
])
async def test_bad_tokens_are_refused_precisely(cloud, idp: SigningIdP, case: str,
                                                description: str) -> None:
    aud, now = audience(cloud), int(time.time())
    forged_header = {"alg": "none", "kid": "es-1", "typ": "JWT"}
    valid_payload = {"iss": idp.issuer, "sub": "x", "aud": aud, "exp": now + 300}
    tokens = {
        "not-a-jwt": lambda: "not-a-jwt",
        "expired": lambda: idp.token(aud, exp=now - 120, iat=now - 400),
        "not-yet-valid": lambda: idp.token(aud, nbf=now + 600),
        "issued-in-future": lambda: idp.token(aud, iat=now + 600),
        "wrong-audience": lambda: idp.token("https://cloud.elsewhere.test"),
        "no-sub": lambda: idp.token(aud, drop=("sub",)),
        "no-exp": lambda: idp.token(aud, drop=("exp",)),
        "no-aud": lambda: idp.token(aud, drop=("aud",)),
        "no-iss": lambda: idp.token(aud, drop=("iss",)),
        "unknown-kid": lambda: idp.token(aud, header={"kid": "nope"}),
        # A different key claiming to be the published one.
        "bad-signature": lambda: idp.token(aud, key=ECKey.generate_key(
            "P-256", parameters={"kid": "es-1"})),
        "alg-none": lambda: f"{b64(forged_header)}.{b64(valid_payload)}.",
        # HS/RS confusion: the RSA public key (PEM) used as an HMAC secret.
        "hs256-with-rsa-public-key": lambda: hs256(
            {"alg": "HS256", "kid": "rs-1"}, valid_payload, idp.rs.as_pem(private=False)),
        "key-alg-mismatch": lambda: idp.token(aud, header={"kid": "rs-1"}),
        "id-token-type": lambda: idp.token(aud, header={"typ": "logout+jwt"}),
        "payload-not-json": lambda: f"{b64({'alg': 'ES256', 'kid': 'es-1'})}.{b64(b'[1]')}.c2ln",
        "payload-deeply-nested": lambda: (
            f"{b64({'alg': 'ES256', 'kid': 'es-1'})}.{b64(b'[' * 5000 + b']' * 5000)}.c2ln"),
        "exp-not-a-number": lambda: idp.token(aud, exp="tomorrow"),
    }
    client = cloud.client(None)
    expected = description.format(aud=aud, iss=idp.issuer)
    r = await client.get("/graph/v1.0/me/drives", headers=bearer(tokens[case]()))
    assert_rejected(r, expected)
    assert r.json()["detail"] == expected


def hs256(header: dict, payload: dict, secret: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


async def test_untrusted_issuer(cloud) -> None:
    async with SigningIdP().running() as stranger:
        r = await cloud.client(None).get(
            "/graph/v1.0/me/drives", headers=bearer(stranger.token(audience(cloud))))
        assert_rejected(r, f"untrusted issuer {stranger.issuer}")
        assert stranger.jwks_fetches == 0  # we never talk to issuers we do not trust


async def test_unreachable_issuer_is_a_401_not_a_500(start_instance) -> None:
    async with SigningIdP().running() as gone:
        pass  # stopped: nothing listens on its port any more
    running = await start_instance(outbound=OUTBOUND, discovery={
        "trusted_issuers": [{"issuer": gone.issuer, "domain": DOMAIN}]})
    r = await running.client(None).get("/graph/v1.0/me/drives",
                                       headers=bearer(gone.token(audience(running))))
    assert r.status_code == 401, r.text
    assert f'error_description="cannot fetch keys of issuer {gone.issuer}: ' \
        in r.headers["www-authenticate"]


async def test_key_added_later_is_fetched_once_and_kid_floods_are_rate_limited(
        cloud, idp: SigningIdP) -> None:
    client, aud = cloud.client(None), audience(cloud)
    assert (await client.get("/graph/v1.0/me/drives",
                             headers=bearer(idp.token(aud)))).status_code == 200
    assert idp.jwks_fetches == 1
    # Key rollover: a new key appears in the JWKS after we cached it.
    rotated = ECKey.generate_key("P-256", parameters={"kid": "es-2"})
    idp.published.append(rotated)
    r = await client.get("/graph/v1.0/me/drives", headers=bearer(idp.token(aud, key=rotated)))
    assert r.status_code == 200, r.text
    assert idp.jwks_fetches == 2
    # Random kids right after a refresh: refused without asking the issuer again.
    for n in range(5):
        r = await client.get("/graph/v1.0/me/drives",
                             headers=bearer(idp.token(aud, header={"kid": f"random-{n}"})))
        assert_rejected(r, f"unknown key id random-{n} for issuer {idp.issuer}")
    assert idp.jwks_fetches == 2


async def test_verified_tokens_are_cached(cloud, idp: SigningIdP) -> None:
    client = cloud.client(None)
    token = idp.token(audience(cloud))
    for _ in range(3):
        assert (await client.get("/graph/v1.0/me/drives",
                                 headers=bearer(token))).status_code == 200
    # The identical token is answered from memory even once its issuer's keys are gone.
    idp.published.clear()
    assert (await client.get("/graph/v1.0/me/drives", headers=bearer(token))).status_code == 200


async def test_no_bearer_header_falls_through_to_the_challenge(cloud) -> None:
    r = await cloud.client(None).get("/graph/v1.0/me/drives")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="fedspace", Bearer realm="fedspace"'


async def test_own_external_issuer_maps_to_local_users(start_instance, idp: SigningIdP) -> None:
    """With an external IdP (Keycloak…) as our own issuer, its ``sub`` means nothing here:
    users are matched by ``discovery.username_claim`` (preferred_username)."""
    running = await start_instance(outbound=OUTBOUND, discovery={
        "idp_enabled": False, "issuer": idp.issuer})
    await running.add_user("alice")
    client, aud = running.client(None), audience(running)

    def token(**claims: object) -> dict[str, str]:
        return bearer(idp.token(aud, sub="kc-7f3a", **claims))

    r = await client.get("/graph/v1.0/me/drives", headers=token(preferred_username="alice"))
    assert r.status_code == 200, r.text
    personal = [d for d in r.json()["value"] if d["driveType"] == "personal"]
    assert len(personal) == 1
    # WebDAV with the same kind of token.
    r = await client.request("PROPFIND", f"/dav/spaces/{personal[0]['id']}",
                             headers={**token(preferred_username="alice"), "Depth": "0"})
    assert r.status_code == 207, r.text

    r = await client.get("/graph/v1.0/me/drives", headers=token(preferred_username="nobody"))
    assert_rejected(r, "unknown or disabled user")
    r = await client.get("/graph/v1.0/me/drives", headers=token())  # no username claim
    assert_rejected(r, "unknown or disabled user")
    await running.instance.ctx.components["discovery"].directory.set_disabled("alice", True)
    r = await client.get("/graph/v1.0/me/drives",
                         headers=token(preferred_username="alice", jti="new"))
    assert_rejected(r, "unknown or disabled user")


async def test_embedded_idp_tokens_are_verified_in_process(start_instance) -> None:
    """Our own IdP's keys come from its key store: with outbound plain http refused here,
    any HTTP fetch of our own (http) issuer would fail."""
    running = await start_instance()
    alice_id = await running.add_user("alice")
    settings = running.instance.settings.discovery
    signing = running.instance.ctx.components["discovery"].idp.keys.signing_key()
    now = int(time.time())
    token = jwt.encode({"alg": "ES256", "kid": signing.kid, "typ": "at+jwt"},
                       {"iss": settings.issuer, "sub": alice_id, "aud": settings.audience,
                        "exp": now + 300, "iat": now, "client_id": "web"},
                       signing.key, algorithms=["ES256"])
    r = await running.client(None).get("/graph/v1.0/me/drives", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert [d["driveType"] for d in r.json()["value"]] == ["personal"]

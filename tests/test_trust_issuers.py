"""Trusted issuers: validation, configuration + table merged, changes without restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from test_tokens_bearer import DOMAIN, OUTBOUND, SigningIdP, assert_rejected, audience, bearer

from discovery.trust import TrustError, TrustStore, check_domain, check_issuer
from fedspace.db import Database


@pytest.fixture
async def idp() -> AsyncIterator[SigningIdP]:
    async with SigningIdP().running() as running:
        yield running


@pytest.mark.parametrize("issuer", [
    "https://idp.paris.test", "https://idp.paris.test/", "https://kc.test:8443/realms/paris"])
def test_valid_issuers(issuer: str) -> None:
    assert check_issuer(issuer, allow_http=False) == issuer


@pytest.mark.parametrize(("issuer", "fragment"), [
    ("http://idp.paris.test", "must be an https URL (plain http needs outbound.allow_http)"),
    ("idp.paris.test", "must be an https URL"),
    ("https://", "has no host"),
    ("https://idp.paris.test/?x=1", "must not have a query or fragment"),
    ("https://idp.paris.test#top", "must not have a query or fragment"),
    ("https://user:pw@idp.paris.test", "must not contain credentials"),
    ("https://idp.paris.test/ x", "contains whitespace"),
])
def test_invalid_issuers(issuer: str, fragment: str) -> None:
    with pytest.raises(TrustError) as info:
        check_issuer(issuer, allow_http=False)
    assert fragment in str(info.value)


def test_http_issuer_only_in_dev_mode() -> None:
    assert check_issuer("http://127.0.0.1:9000", allow_http=True) == "http://127.0.0.1:9000"


def test_domains() -> None:
    assert check_domain("Paris.TEST") == "paris.test"
    for bad in ("", "paris..test", "-paris.test", "paris.test.", "pa ris.test", "a@b.test"):
        with pytest.raises(TrustError, match="invalid domain"):
            check_domain(bad)


async def test_store_merges_configuration_and_table(start_instance) -> None:
    running = await start_instance(outbound=OUTBOUND, discovery={
        "trusted_issuers": [{"issuer": "https://idp.zurich.test", "domain": "zurich.test"}]})
    store: TrustStore = running.instance.ctx.components["discovery"].trust
    added = await store.add("https://idp.paris.test", "Paris.test")
    assert (added.issuer, added.domain, added.configured) == (
        "https://idp.paris.test", "paris.test", False)
    assert [(t.issuer, t.domain, t.configured) for t in await store.list()] == [
        ("https://idp.paris.test", "paris.test", False),
        ("https://idp.zurich.test", "zurich.test", True)]
    with pytest.raises(TrustError, match="already trusted"):
        await store.add("https://idp.paris.test", "paris.test")
    with pytest.raises(TrustError, match="already trusted by the configuration"):
        await store.add("https://idp.zurich.test", "zurich.test")
    with pytest.raises(TrustError, match="remove it there"):
        await store.remove("https://idp.zurich.test")
    with pytest.raises(TrustError, match="own issuer"):
        await store.add(running.instance.settings.discovery.issuer, "localhost")
    await store.remove("https://idp.paris.test")
    assert await store.get("https://idp.paris.test") is None
    with pytest.raises(TrustError, match="is not trusted"):
        await store.remove("https://idp.paris.test")


async def test_issuer_added_and_removed_at_runtime(start_instance, idp: SigningIdP) -> None:
    running = await start_instance(outbound=OUTBOUND)
    store: TrustStore = running.instance.ctx.components["discovery"].trust
    client, aud = running.client(None), audience(running)
    token = idp.token(aud)
    assert_rejected(await client.get("/graph/v1.0/me/drives", headers=bearer(token)),
                    f"untrusted issuer {idp.issuer}")
    await store.add(idp.issuer, DOMAIN)
    r = await client.get("/graph/v1.0/me/drives", headers=bearer(token))
    assert r.status_code == 200, r.text
    # Removal takes effect at once, also for the token verified (and cached) just now.
    await store.remove(idp.issuer)
    assert_rejected(await client.get("/graph/v1.0/me/drives", headers=bearer(token)),
                    f"untrusted issuer {idp.issuer}")


async def test_change_by_another_process_applies_within_seconds(
        start_instance, idp: SigningIdP) -> None:
    running = await start_instance(outbound=OUTBOUND)
    client, aud = running.client(None), audience(running)
    token = idp.token(aud)
    # Seen as untrusted first, so the running store has the (empty) table cached.
    assert (await client.get("/graph/v1.0/me/drives", headers=bearer(token))).status_code == 401
    # Another process: its own store on its own connection to the same database.
    settings = running.instance.settings
    other_db = Database(settings.database_url)
    try:
        await TrustStore(other_db, settings).add(idp.issuer, DOMAIN)
        status = await _poll(client, token, until=200)
        assert status == 200
        await TrustStore(other_db, settings).remove(idp.issuer)
        status = await _poll(client, token, until=401)
        assert status == 401
    finally:
        await other_db.close()


async def _poll(client, token: str, until: int, attempts: int = 100) -> int:
    """The status once it is ``until`` (the store re-reads every few seconds), or the last."""
    status = 0
    for _ in range(attempts):
        status = (await client.get("/graph/v1.0/me/drives", headers=bearer(token))).status_code
        if status == until:
            break
        await asyncio.sleep(0.1)
    return status

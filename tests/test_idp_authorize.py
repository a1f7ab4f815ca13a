"""Bad authorization requests and login attempts: what redirects, what stays a page."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from idp_fixtures import PASSWORD, WEB_CB, Rig, query, start_idp


@pytest.fixture
async def idp_rig(start_instance: Callable) -> Rig:
    return await start_idp(start_instance)


async def _authorize(rig: Rig, **params: str | None) -> tuple[int, dict[str, str], str]:
    r = await rig.browser().get(f"{rig.issuer}/authorize", params=rig.auth_params(**params))
    location = r.headers.get("location", "")
    return r.status_code, query(location) if location else {}, r.text


@pytest.mark.parametrize(("params", "error"), [
    ({"state": None}, "invalid_request"),
    ({"nonce": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"resource": "https://evil.example"}, "invalid_target"),
    ({"response_type": "token"}, "unsupported_response_type"),
])
async def test_redirectable_errors(idp_rig: Rig, params: dict[str, str | None],
                                   error: str) -> None:
    status, q, _ = await _authorize(idp_rig, **params)
    assert status == 302 and q["error"] == error


async def test_error_redirect_echoes_state(idp_rig: Rig) -> None:
    status, q, _ = await _authorize(idp_rig, code_challenge_method="plain", state="st-1")
    assert status == 302 and q == {"error": "invalid_request", "state": "st-1",
                                   "error_description": q["error_description"]}


@pytest.mark.parametrize("params", [
    {"redirect_uri": "https://evil.example/cb"},
    {"redirect_uri": WEB_CB + "/more"},
    {"redirect_uri": None},
    {"client_id": "nobody"},
    {"client_id": None},
])
async def test_unverifiable_requests_get_a_page_never_a_redirect(
        idp_rig: Rig, params: dict[str, str | None]) -> None:
    status, q, text = await _authorize(idp_rig, **params)
    assert status in (400, 401) and not q
    assert text.startswith("<!doctype html>") and "Traceback" not in text


async def test_scope_without_openid_needs_no_nonce(idp_rig: Rig) -> None:
    code, params = await idp_rig.code_for(scope="profile", nonce=None)
    body = (await idp_rig.redeem(code, params)).json()
    assert "id_token" not in body and body["scope"] == "profile"


async def test_csrf_token_missing_or_wrong(idp_rig: Rig) -> None:
    rig = idp_rig
    for tamper in (lambda d: d.pop("csrf"), lambda d: d.update(csrf="0" * 64)):
        r = await rig.login(rig.browser(), rig.auth_params(), tamper=tamper)
        assert r.status_code == 403 and "location" not in r.headers
    # A token minted for another pending request does not carry over.
    browser = rig.browser()
    other = await browser.get(f"{rig.issuer}/authorize", params=rig.auth_params())
    foreign = other.text.split('name="csrf" value="')[1].split('"')[0]
    r = await rig.login(browser, rig.auth_params(), tamper=lambda d: d.update(csrf=foreign))
    assert r.status_code == 403
    # No CSRF cookie at all (e.g. a cross-site POST).
    browser = rig.browser()
    page = await browser.get(f"{rig.issuer}/authorize", params=rig.auth_params())
    authz = page.text.split('name="authz" value="')[1].split('"')[0]
    browser.cookies.clear()
    r = await browser.post(f"{rig.issuer}/login", data={
        "authz": authz.replace("&amp;", "&"), "csrf": "x", "username": "einstein",
        "password": PASSWORD})
    assert r.status_code == 403


async def test_wrong_password_and_unknown_user_look_the_same(idp_rig: Rig) -> None:
    rig = idp_rig
    wrong = await rig.login(rig.browser(), rig.auth_params(), password="nope")
    unknown = await rig.login(rig.browser(), rig.auth_params(), username="nobody")
    assert wrong.status_code == unknown.status_code == 200
    for r in (wrong, unknown):
        assert "Invalid username or password." in r.text and "location" not in r.headers


async def test_disabled_user_is_refused(idp_rig: Rig) -> None:
    rig = idp_rig
    browser = rig.browser()
    code, params = await rig.code_for(browser)
    await rig.directory.set_disabled("einstein", True)
    r = await rig.login(rig.browser(), rig.auth_params())
    assert "Invalid username or password." in r.text and "location" not in r.headers
    # The session no longer counts, and a code issued before cannot be redeemed.
    page = await browser.get(f"{rig.issuer}/authorize", params=rig.auth_params())
    assert page.status_code == 200 and 'name="password"' in page.text
    assert (await rig.redeem(code, params)).json()["error"] == "invalid_grant"


async def test_rate_limit_per_account(idp_rig: Rig) -> None:
    rig = idp_rig
    for _ in range(3):
        r = await rig.login(rig.browser(), rig.auth_params(), password="nope")
        assert r.status_code == 200
    r = await rig.login(rig.browser(), rig.auth_params())  # even the right password
    assert r.status_code == 429 and "Too many" in r.text and r.headers["retry-after"]


async def test_rate_limit_per_address(idp_rig: Rig) -> None:
    rig = idp_rig
    for name in ("a1", "a2", "a3"):
        await rig.login(rig.browser(), rig.auth_params(), username=name, password="x")
    r = await rig.login(rig.browser(), rig.auth_params(), username="a4", password="x")
    assert r.status_code == 429


async def test_plain_http_issuer_off_loopback_is_refused_cleanly(idp_rig: Rig) -> None:
    settings = idp_rig.idp.server.settings.discovery
    settings.issuer = "http://cloud.example/idp"  # read per request
    base = idp_rig.url + "/idp"
    page = await idp_rig.browser().get(f"{base}/authorize", params=idp_rig.auth_params())
    assert page.status_code == 400 and "https" in page.text
    async with httpx.AsyncClient() as c:
        r = await c.post(f"{base}/token", data={"grant_type": "refresh_token",
                                                "refresh_token": "x", "client_id": "web"})
    assert r.status_code == 400 and r.json()["error"] == "insecure_transport"

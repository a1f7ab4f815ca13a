"""What the web sign-in refuses: forged or replayed callbacks, ID tokens for another flow,
cross-site form posts and cookie-authenticated writes, sessions after logout."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from test_weblogin_flow import (
    callback_url,
    idp_login,
    paris_instance,  # noqa: F401 -- the paris fixture
    sign_in,
    start_login,
    start_pair,
)


def with_param(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


async def test_callback_state_must_match_this_browser(start_instance, paris) -> None:
    pair = await start_pair(start_instance, paris)
    zurich, browser = pair.zurich.url, pair.browser()

    callback = await callback_url(browser, zurich, "marie@paris.test", "marie")
    r = await browser.get(with_param(callback, state="forged"))
    assert r.status_code == 400 and "state mismatch" in r.text, r.text
    # The pending state is gone after one answer, even a forged one: the real one fails too.
    r = await browser.get(callback)
    assert r.status_code == 400 and "expired" in r.text, r.text

    # Missing state, and a callback in a browser that never started a sign-in.
    callback = await callback_url(browser, zurich, "marie@paris.test", "marie")
    query = dict(parse_qsl(urlsplit(callback).query))
    r = await browser.get(f"{zurich}/oidc-callback", params={"code": query["code"]})
    assert r.status_code == 400, r.text
    async with httpx.AsyncClient() as stranger:
        r = await stranger.get(callback)
    assert r.status_code == 400 and "fedspace_session" not in r.cookies, r.text


async def test_replayed_callback_is_refused(start_instance, paris) -> None:
    pair = await start_pair(start_instance, paris)
    zurich, browser = pair.zurich.url, pair.browser()
    callback = await callback_url(browser, zurich, "marie@paris.test", "marie")
    pending = browser.cookies["fedspace_login"]
    r = await browser.get(callback)
    assert r.status_code == 303, r.text
    r = await browser.get(callback)
    assert r.status_code == 400, r.text
    # Even with the pending cookie kept: paris redeems a code once.
    async with httpx.AsyncClient(cookies={"fedspace_login": pending}) as replay:
        r = await replay.get(callback)
    assert r.status_code == 400 and "refused the sign-in" in r.text, r.text
    assert "fedspace_session" not in r.cookies


async def test_id_token_with_another_nonce_is_refused(start_instance, paris) -> None:
    """A browser-side attacker swaps the nonce of the authorization request: the ID token
    then answers someone else's request and must not open a session."""
    pair = await start_pair(start_instance, paris)
    zurich, browser = pair.zurich.url, pair.browser()
    callback = await callback_url(
        browser, zurich, "marie@paris.test", "marie",
        tamper=lambda url: with_param(url, nonce="attacker-nonce"))
    r = await browser.get(callback)
    assert r.status_code == 400, r.text
    assert "ID token" in r.text and "nonce" in r.text, r.text
    assert "fedspace_session" not in browser.cookies
    # The same flow untampered succeeds: it was the nonce.
    assert (await sign_in(browser, zurich, "marie@paris.test", "marie")).status_code == 303


async def test_login_form_needs_its_csrf_token(start_instance, paris) -> None:
    pair = await start_pair(start_instance, paris)
    zurich, browser = pair.zurich.url, pair.browser()
    await browser.get(f"{zurich}/login")
    r = await browser.post(f"{zurich}/login", data={"address": "marie@paris.test"})
    assert r.status_code == 403 and "expired" in r.text, r.text
    r = await browser.post(f"{zurich}/login",
                           data={"address": "marie@paris.test", "csrf": "0" * 64})
    assert r.status_code == 403, r.text
    assert "fedspace_login" not in browser.cookies
    # A token from another browser does not fit this one's cookie.
    other = pair.browser()
    page = await other.get(f"{zurich}/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]  # type: ignore[index]
    r = await browser.post(f"{zurich}/login", data={"address": "x@paris.test", "csrf": token})
    assert r.status_code == 403, r.text


async def test_next_is_never_an_open_redirect(start_instance, paris) -> None:
    pair = await start_pair(start_instance, paris)
    for target in ("https://evil.test/", "//evil.test/x", "/\\evil.test", "javascript:x"):
        browser = pair.browser()
        r = await start_login(browser, pair.zurich.url, None, next_path=target)
        r = await browser.get((await idp_login(browser, r.headers["location"], "einstein")
                               ).headers["location"])
        assert (r.status_code, r.headers["location"]) == (303, "/"), target


async def test_cookie_writes_need_our_origin_and_logout_ends_the_session(
        start_instance, paris) -> None:
    pair = await start_pair(start_instance, paris)
    zurich, browser = pair.zurich.url, pair.browser()
    assert (await sign_in(browser, zurich, None, "einstein")).status_code == 303
    drives = (await browser.get(f"{zurich}/graph/v1.0/me/drives")).json()["value"]
    url = f"{zurich}/dav/spaces/{drives[0]['id']}/note.txt"

    r = await browser.put(url, content=b"x")
    assert r.status_code == 403 and "Origin" in r.text, r.text
    r = await browser.put(url, content=b"x", headers={"Origin": "http://evil.test"})
    assert r.status_code == 403, r.text
    r = await browser.put(url, content=b"x", headers={"Origin": zurich})
    assert r.status_code == 201, r.text
    r = await browser.delete(url, headers={"Referer": f"{zurich}/files"})
    assert r.status_code == 204, r.text

    cookie = browser.cookies["fedspace_session"]
    r = await browser.post(f"{zurich}/logout")
    assert r.status_code == 403, r.text  # no Origin: not from our pages
    r = await browser.post(f"{zurich}/logout", headers={"Origin": zurich})
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    assert "fedspace_session" not in browser.cookies
    async with httpx.AsyncClient(cookies={"fedspace_session": cookie}) as stale:
        r = await stale.get(f"{zurich}/graph/v1.0/me/drives")
    assert r.status_code == 401, r.text
    # The challenge names what a client can use; a cookie is not one of them.
    assert "Session" not in r.headers["www-authenticate"]
    assert "Bearer" in r.headers["www-authenticate"]

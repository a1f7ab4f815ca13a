"""WebFinger (RFC 7033) as a real instance serves it: ARCHITECTURE §4."""

from __future__ import annotations

import httpx
import pytest

from discovery.webfinger import INSTANCE_REL, ISSUER_REL

ZURICH = {"domain": "zurich.test", "public_url": "http://cloud.zurich.test",
          "discovery": {"issuer": "http://idp.zurich.test"}}


@pytest.fixture
async def web(start_instance) -> httpx.AsyncClient:
    running = await start_instance("zurich", **ZURICH)
    return running.client(None)


async def finger(web: httpx.AsyncClient, *params: tuple[str, str]) -> httpx.Response:
    return await web.get("/.well-known/webfinger", params=list(params))


async def test_account_links(web: httpx.AsyncClient) -> None:
    response = await finger(web, ("resource", "acct:einstein@zurich.test"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jrd+json"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json() == {
        "subject": "acct:einstein@zurich.test",
        "links": [{"rel": ISSUER_REL, "href": "http://idp.zurich.test"},
                  {"rel": INSTANCE_REL, "href": "http://cloud.zurich.test"}],
    }


async def test_same_answer_for_any_account(web: httpx.AsyncClient) -> None:
    """Existence policy: the links are per-domain facts, so no account oracle."""
    known = (await finger(web, ("resource", "acct:einstein@zurich.test"))).json()
    unknown = (await finger(web, ("resource", "acct:nobody.at-all@zurich.test"))).json()
    assert unknown["links"] == known["links"]
    assert unknown["subject"] == "acct:nobody.at-all@zurich.test"


@pytest.mark.parametrize("resource", [
    "acct:einstein@cloud.zurich.test", "acct:einstein@idp.zurich.test",
    "acct:Einstein@ZURICH.test", "mailto:einstein@zurich.test", "acct:e%40x@zurich.test",
    "https://cloud.zurich.test", "https://cloud.zurich.test/some/path",
])
async def test_served_resources(web: httpx.AsyncClient, resource: str) -> None:
    response = await finger(web, ("resource", resource))
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == resource


async def test_rel_filter(web: httpx.AsyncClient) -> None:
    acct = ("resource", "acct:einstein@zurich.test")
    only_issuer = (await finger(web, acct, ("rel", ISSUER_REL))).json()
    assert only_issuer["links"] == [{"rel": ISSUER_REL, "href": "http://idp.zurich.test"}]
    both = (await finger(web, acct, ("rel", INSTANCE_REL), ("rel", ISSUER_REL))).json()
    assert {link["rel"] for link in both["links"]} == {ISSUER_REL, INSTANCE_REL}
    assert (await finger(web, acct, ("rel", "http://example.org/other"))).json()["links"] == []


@pytest.mark.parametrize("resource", [
    None, "", "einstein@zurich.test", "acct:zurich.test", "acct:@zurich.test",
    "acct:einstein@", "acct:ein stein@zurich.test", "acct:einstein@zurich_test",
    "http://cloud.zurich.test", "ftp://cloud.zurich.test", "https://", "mailto:",
])
async def test_malformed_resource_is_400(web: httpx.AsyncClient, resource: str | None) -> None:
    params = [] if resource is None else [("resource", resource)]
    response = await finger(web, *params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json()["status"] == 400


@pytest.mark.parametrize("resource", [
    "acct:marie@paris.test", "mailto:marie@zurich.test.evil", "https://cloud.paris.test",
])
async def test_foreign_domain_is_404(web: httpx.AsyncClient, resource: str) -> None:
    response = await finger(web, ("resource", resource))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["access-control-allow-origin"] == "*"
    assert "paris.test" in response.json()["detail"] or "evil" in response.json()["detail"]

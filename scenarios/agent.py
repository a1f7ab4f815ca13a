"""A scripted user agent: what a person and her clients do against a rig, over HTTPS.

``World`` is what a scenario knows of a rig: the sites (one per domain), their accounts,
and how to reach their hosts (the rig's name map and test CA — no ``/etc/hosts``).
``login`` is the desktop client's login: authorization code + PKCE S256 through the IdP's
own login form, as a browser would fill it in.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from fedspace.outbound import MappedTransport, ssl_context

from . import rig_control
from .transcript import StepFailed, expect

# The IdP's built-in public client for desktop and command-line clients (RFC 8252).
CLIENT_ID = "cli"
REDIRECT_URI = "http://127.0.0.1:53682/callback"
_FIELD = re.compile(r'name="([^"]+)" value="([^"]*)"')


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    password: str
    app_password: str
    address: str


@dataclass(frozen=True, slots=True)
class Site:
    domain: str
    cloud: str  # https://cloud.D[:port]
    issuer: str  # https://idp.D[:port]
    accounts: dict[str, Account] = field(default_factory=dict)
    trusted: bool = True  # False: the rig's other domains do not trust this one


@dataclass
class World:
    sites: dict[str, Site]
    hosts: dict[str, str]  # rig host name → "address:port"
    ca_file: str | None = None
    state_dir: str | None = None  # the rig's, to stop and start its domains

    async def stop(self, domain: str) -> str:
        """Take one domain of the rig down (an outage); the rig's message."""
        return await rig_control.request(self._state(), "stop", domain)

    async def start(self, domain: str) -> str:
        return await rig_control.request(self._state(), "start", domain)

    def _state(self) -> str:
        if self.state_dir is None:
            raise StepFailed("this world has no rig to stop or start domains of")
        return self.state_dir

    def client(self, *, base_url: str = "", auth: tuple[str, str] | None = None,
               token: str | None = None) -> httpx.AsyncClient:
        """An HTTP client that reaches rig hosts by the name map and trusts the rig CA."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = MappedTransport(self.hosts, verify=ssl_context(self.ca_file))
        return httpx.AsyncClient(transport=transport, base_url=base_url, auth=auth,
                                 headers=headers, timeout=30, follow_redirects=False)


def form_fields(page: str) -> dict[str, str]:
    """The hidden and prefilled fields of an HTML form."""
    return {m[1]: html.unescape(m[2]) for m in _FIELD.finditer(page)}


async def idp_form(browser: httpx.AsyncClient, authorize_url: str, username: str,
                   password: str) -> str:
    """Fill in the IdP's login form; the Location the IdP redirects back to."""
    page = await browser.get(authorize_url)
    if page.status_code == 302:  # still signed in at the IdP
        return page.headers["location"]
    expect(page.status_code == 200, f"authorize answered {page.status_code}")
    fields = form_fields(page.text)
    expect("authz" in fields and "csrf" in fields, "the IdP sent no login form")
    issuer = authorize_url.split("/authorize?", 1)[0]
    r = await browser.post(f"{issuer}/login", data={
        "authz": fields["authz"], "csrf": fields["csrf"],
        "username": username, "password": password})
    expect(r.status_code == 302, f"the login form answered {r.status_code}: "
           f"{_text(r)}")
    return r.headers["location"]


async def login(world: World, site: Site, account: Account, *,
                resource: str | None = None) -> dict[str, Any]:
    """Tokens for ``account`` from ``site``'s IdP: code + PKCE through the login form."""
    async with world.client() as browser:
        config = (await browser.get(f"{site.issuer}/.well-known/openid-configuration")).json()
        verifier, state, nonce = generate_token(48), generate_token(16), generate_token(16)
        params = {"response_type": "code", "client_id": CLIENT_ID,
                  "redirect_uri": REDIRECT_URI, "scope": "openid profile email",
                  "state": state, "nonce": nonce, "code_challenge_method": "S256",
                  "code_challenge": create_s256_code_challenge(verifier)}
        if resource:
            params["resource"] = resource
        authorize = str(httpx.URL(config["authorization_endpoint"], params=params))
        back = await idp_form(browser, authorize, account.username, account.password)
        answer = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
        expect(answer.get("state") == state, "the IdP returned another state")
        expect("code" in answer, f"no code: {answer.get('error_description', back)}")
        data = {"grant_type": "authorization_code", "code": answer["code"],
                "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier}
        if resource:
            data["resource"] = resource
        r = await browser.post(config["token_endpoint"], data=data)
        expect(r.status_code == 200, f"token endpoint answered {r.status_code}: {_text(r)}")
        return dict(r.json())


def ok(response: httpx.Response, *statuses: int) -> httpx.Response:
    """The response if its status is one of ``statuses``; else the step fails, saying so."""
    if response.status_code not in statuses:
        raise StepFailed(f"{response.request.method} {response.request.url.path} answered "
                         f"{response.status_code}: {_text(response)}")
    return response


def _text(response: httpx.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict):
            return str(body.get("detail") or body.get("message") or body.get("error")
                       or body)[:200]
    except ValueError:
        pass
    return re.sub(r"\s+", " ", response.text)[:200]

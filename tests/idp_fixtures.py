"""A running instance with the embedded IdP mounted at its issuer path, and a scripted
browser: ``rig = await start_idp(start_instance)``."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from argon2 import PasswordHasher

from discovery.idp import Idp
from discovery.service import Directory
from scenarios.agent import form_fields

WEB_CB = "https://app.example/cb"
CONF_CB = "https://conf.example/cb"
PEER = "https://cloud.paris.test"
CONF_SECRET = "conf-secret-value"
PASSWORD = "correct horse battery"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Rig:
    url: str
    issuer: str
    idp: Idp
    directory: Directory
    db: Any
    verifiers: dict[str, str] = field(default_factory=dict)  # state → PKCE verifier
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def browser(self) -> httpx.AsyncClient:
        c = httpx.AsyncClient(timeout=30, follow_redirects=False)
        self.clients.append(c)
        return c

    def auth_params(self, client_id: str = "web", redirect_uri: str = WEB_CB,
                    **extra: str | None) -> dict[str, str]:
        verifier, challenge = pkce()
        state = secrets.token_urlsafe(8)
        self.verifiers[state] = verifier
        params = {"response_type": "code", "client_id": client_id,
                  "redirect_uri": redirect_uri, "scope": "openid profile email",
                  "state": state, "nonce": secrets.token_urlsafe(8),
                  "code_challenge": challenge, "code_challenge_method": "S256"}
        params.update(extra)  # type: ignore[arg-type]
        return {k: v for k, v in params.items() if v is not None}

    async def login(self, browser: httpx.AsyncClient, params: dict[str, str],
                    username: str = "einstein", password: str = PASSWORD,
                    tamper: Callable[[dict[str, str]], None] | None = None) -> httpx.Response:
        """GET /authorize, fill in the form, POST it; the response to the POST."""
        page = await browser.get(f"{self.issuer}/authorize", params=params)
        assert page.status_code == 200, page.text
        fields = form_fields(page.text)
        data = {"authz": fields["authz"], "csrf": fields["csrf"],
                "username": username, "password": password}
        if tamper:
            tamper(data)
        return await browser.post(f"{self.issuer}/login", data=data)

    async def code_for(self, browser: httpx.AsyncClient | None = None,
                       **params: str | None) -> tuple[str, dict[str, str]]:
        """A fresh authorization code (and the request that obtained it)."""
        p = self.auth_params(**params)
        r = await self.login(browser or self.browser(), p)
        assert r.status_code == 302, r.text
        q = query(r.headers["location"])
        assert q["state"] == p["state"]
        return q["code"], p

    async def redeem(self, code: str, p: dict[str, str], **extra: str) -> httpx.Response:
        data = {"grant_type": "authorization_code", "code": code, "client_id": p["client_id"],
                "redirect_uri": p["redirect_uri"], "code_verifier": self.verifiers[p["state"]],
                **extra}
        async with httpx.AsyncClient(timeout=30) as c:
            return await c.post(f"{self.issuer}/token", data=data)

    async def refresh(self, token: str, client_id: str = "web") -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as c:
            return await c.post(f"{self.issuer}/token", data={
                "grant_type": "refresh_token", "refresh_token": token, "client_id": client_id})


IDP_SETTINGS = {
    "clients": [
        {"client_id": "web", "redirect_uris": [WEB_CB]},
        {"client_id": "cli", "loopback_redirect_paths": ["/callback"]},
        {"client_id": "conf", "public": False, "redirect_uris": [CONF_CB],
         "secret_hash": PasswordHasher().hash(CONF_SECRET)},
    ],
    "resource_peers": [PEER],
    "login_attempts_per_minute": 3,
}


async def start_idp(start_instance: Callable) -> Rig:
    running = await start_instance(discovery=IDP_SETTINGS)
    component = running.instance.ctx.components["discovery"]
    settings = running.instance.settings
    issuer = settings.discovery.issuer
    directory = component.directory
    await directory.add_user("einstein", display_name="Albert Einstein",
                             email="einstein@zurich.test", password=PASSWORD)
    # Browsers go into running.clients, which start_instance closes.
    return Rig(running.url, issuer, component.idp, directory, running.instance.ctx.db,
               clients=running.clients)

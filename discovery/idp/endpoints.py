"""HTTP routes of the IdP, relative to the issuer path (the lead mounts them there).

Everything protocol-shaped goes through authlib (``IdpServer``); these handlers only read
requests, keep browser state (session and CSRF cookies, rate limits) and render pages.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit

from anyio import to_thread
from starlette.applications import Starlette
from starlette.datastructures import ImmutableMultiDict
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from discovery.idp.grants import user_claims
from discovery.idp.keys import ALGORITHM
from discovery.idp.pages import error_page, login_page
from discovery.idp.ratelimit import SlidingWindow
from discovery.idp.server import IdpServer, Incoming
from discovery.idp.sessions import CSRF_COOKIE, SESSION_COOKIE, BrowserSecrets, LoggedIn
from fedspace.sqltypes import now_ms

GENERIC_FAILURE = "Invalid username or password."


async def _params(request: Request) -> ImmutableMultiDict[str, str]:
    if request.method == "GET":
        return ImmutableMultiDict(request.query_params.multi_items())
    form = await request.form()
    return ImmutableMultiDict([(k, v) for k, v in form.multi_items() if isinstance(v, str)])


class Endpoints:
    def __init__(self, server: IdpServer, browser: BrowserSecrets,
                 limiter: SlidingWindow) -> None:
        self.server = server
        self.browser = browser
        self.limiter = limiter
        self.settings = server.settings

    def app(self) -> Starlette:
        routes = [
            Route("/.well-known/openid-configuration", self.configuration),
            Route("/jwks.json", self.jwks),
            Route("/authorize", self.authorize, methods=["GET", "POST"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/token", self.token, methods=["POST"]),
            Route("/userinfo", self.userinfo, methods=["GET", "POST"]),
            Route("/end_session", self.end_session, methods=["GET", "POST"]),
        ]
        cors = Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"],
                          allow_headers=["Authorization", "Content-Type"], max_age=3600)
        return Starlette(routes=routes, middleware=[cors])

    # -- metadata ----------------------------------------------------------------------

    async def configuration(self, request: Request) -> Response:
        iss = self.server.issuer
        return JSONResponse({
            "issuer": iss,
            "authorization_endpoint": f"{iss}/authorize",
            "token_endpoint": f"{iss}/token",
            "userinfo_endpoint": f"{iss}/userinfo",
            "jwks_uri": f"{iss}/jwks.json",
            "end_session_endpoint": f"{iss}/end_session",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "token_endpoint_auth_methods_supported":
                ["none", "client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["public"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce",
                                 "at_hash", "preferred_username", "name", "email"],
            "prompt_values_supported": ["none", "login"],
        })

    async def jwks(self, request: Request) -> Response:
        keys = await to_thread.run_sync(self.server.keys.jwks)
        return JSONResponse(keys, headers={"Cache-Control": "public, max-age=60"},
                            media_type="application/jwk-set+json")

    # -- authorization endpoint and login form -------------------------------------------

    def _incoming(self, request: Request, authz: str) -> Incoming:
        return Incoming("GET", f"{self.server.issuer}/authorize?{authz}", request.headers,
                        ImmutableMultiDict(parse_qsl(authz, keep_blank_values=True)),
                        interactive=True)

    async def _session(self, request: Request) -> LoggedIn | None:
        who = self.browser.read_session(request.cookies.get(SESSION_COOKIE), self.server.issuer)
        if who is None:
            return None
        user = await self.server.directory.user_by_id(who.user_id)
        return who if user is not None and not user.disabled else None

    def _cookie(self, response: Response, name: str, value: str, max_age: int | None) -> None:
        issuer = urlsplit(self.server.issuer)
        response.set_cookie(name, value, max_age=max_age, path=issuer.path or "/",
                            secure=issuer.scheme == "https", httponly=True, samesite="lax")

    def _form(self, request: Request, incoming: Incoming, authz: str, *, message: str = "",
              username: str = "", status: int = 200) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        response = login_page(
            domain=self.settings.domain, client=incoming.params.get("client_id", ""),
            action=f"{self.server.issuer}/login", authz=authz,
            csrf=self.browser.csrf_token(cookie, authz), username=username,
            message=message, status=status)
        if cookie != request.cookies.get(CSRF_COOKIE):
            self._cookie(response, CSRF_COOKIE, cookie, None)
        return response

    async def authorize(self, request: Request) -> Response:
        params = await _params(request)
        authz = urlencode(list(params.multi_items()))
        incoming = self._incoming(request, authz)
        force_login = "login" in params.get("prompt", "").split()
        who = None if force_login else await self._session(request)
        response = await to_thread.run_sync(self.server.authorize, incoming, who)
        return response or self._form(request, incoming, authz)

    async def login(self, request: Request) -> Response:
        form = await _params(request)
        authz = form.get("authz", "")
        username = form.get("username", "").strip()
        incoming = self._incoming(request, authz)
        # A broken or forged authorization request never gets as far as a password check.
        refused = await to_thread.run_sync(self.server.authorize, incoming, None)
        if refused is not None:
            return refused
        if not self.browser.check_csrf(request.cookies.get(CSRF_COOKIE), authz,
                                       form.get("csrf", "")):
            return self._form(request, incoming, authz, status=403, username=username,
                              message="This form has expired. Please sign in again.")
        limit = self.settings.discovery.login_attempts_per_minute
        keys = (f"user:{username.lower()}", f"addr:{request.client.host if request.client else ''}")
        if any(self.limiter.exceeded(k, limit) for k in keys):
            response = self._form(request, incoming, authz, status=429, username=username,
                                  message="Too many failed sign-in attempts. "
                                          "Please wait a minute and try again.")
            response.headers["Retry-After"] = "60"
            return response
        user = await self.server.directory.check_password(username, form.get("password", ""))
        if user is None:
            for k in keys:
                self.limiter.hit(k)
            return self._form(request, incoming, authz, username=username,
                              message=GENERIC_FAILURE)
        who = LoggedIn(user.id, now_ms())
        response = await to_thread.run_sync(self.server.authorize, incoming, who)
        assert response is not None
        self._cookie(response, SESSION_COOKIE,
                     self.browser.session_cookie(who, self.server.issuer), None)
        return response

    # -- token, userinfo, logout ---------------------------------------------------------

    async def token(self, request: Request) -> Response:
        incoming = Incoming("POST", f"{self.server.issuer}/token", request.headers,
                            await _params(request))
        return await to_thread.run_sync(self.server.token, incoming)

    async def userinfo(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        claims = None
        if scheme.lower() == "bearer" and token:
            claims = await to_thread.run_sync(self.server.verify_access_token, token.strip())
        user = await self.server.directory.user_by_id(str(claims["sub"])) if claims else None
        if claims is None or user is None or user.disabled:
            error = ', error="invalid_token"' if token else ""
            return JSONResponse({"error": "invalid_token"}, 401,
                                headers={"WWW-Authenticate": f'Bearer realm="fedspace"{error}'})
        return JSONResponse(user_claims(user, str(claims.get("scope", ""))),
                            headers={"Cache-Control": "no-store"})

    async def end_session(self, request: Request) -> Response:
        params = await _params(request)
        target = params.get("post_logout_redirect_uri")
        client_id = params.get("client_id")
        hint = params.get("id_token_hint")
        if not client_id and hint:
            client_id = await to_thread.run_sync(self.server.id_token_audience, hint)
        client = self.server.query_client(client_id) if client_id else None
        response: Response
        if not target:
            response = error_page(200, "You have been signed out.", title="Signed out")
        elif client is not None and client.check_post_logout_redirect_uri(target):
            state = params.get("state")
            sep = "&" if "?" in target else "?"
            response = RedirectResponse(
                f"{target}{sep}{urlencode({'state': state})}" if state else target, 302)
        else:
            response = error_page(400, "You have been signed out, but the address to return "
                                        "to is not registered for this application.",
                                  title="Signed out")
        self._cookie(response, SESSION_COOKIE, "", 0)
        return response

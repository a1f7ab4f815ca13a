"""HTTP routes of the discovery service (WebFinger, app passwords); logic lives elsewhere."""

# No ``from __future__ import annotations``: FastAPI must resolve the routes' local
# ``Caller`` annotation as an object, not a string.

import hmac
import logging
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import RedirectResponse, Response

from discovery import webfinger
from discovery.basic import AppPasswordVerifier
from discovery.service import AppPassword, Directory, DirectoryError
from discovery.sessions import SESSION_COOKIE, SESSION_TTL, WebSessions, same_origin
from discovery.weblogin import CALLBACK_PATH, PENDING_TTL, LoginError, WebLogin, safe_next
from discovery.weblogin_pages import login_page, refusal_page
from fedspace.auth import Authenticator, Principal
from fedspace.problem import Problem
from fedspace.settings import Settings

# RFC 7033 §5: WebFinger is for browsers too, so every answer (errors included) is CORS-open.
CORS = {"Access-Control-Allow-Origin": "*"}


def webfinger_router(settings: Settings) -> APIRouter:
    router = APIRouter()

    @router.get("/.well-known/webfinger", include_in_schema=False)
    async def get_webfinger(
        resource: str = "",
        rel: Annotated[list[str] | None, Query()] = None,
    ) -> Response:
        """Errors are problem+json: 400 for a missing/malformed resource, 404 for a
        domain this instance does not serve."""
        try:
            body = webfinger.jrd(settings, resource, rel or ())
        except webfinger.MalformedResource as exc:
            raise Problem(400, str(exc), headers=CORS) from None
        except webfinger.UnknownDomain as exc:
            raise Problem(404, str(exc), headers=CORS) from None
        return Response(orjson.dumps(body), media_type=webfinger.JRD, headers=CORS)

    return router


class AppPasswordCreate(BaseModel):
    label: str = Field("app password", min_length=1, max_length=255)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _shape(pw: AppPassword) -> dict[str, Any]:
    return {"id": pw.id, "label": pw.label, "createdDateTime": _iso(pw.created_ms),
            "lastUsedDateTime": _iso(pw.last_used_ms)}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def app_password_router(
    directory: Directory, auth: Authenticator, basic: AppPasswordVerifier
) -> APIRouter:
    """``/api/v1/me/app-passwords``: list (with last use), create (secret shown once), revoke."""
    router = APIRouter(prefix="/api/v1/me/app-passwords")

    async def caller(request: Request) -> Principal:
        principal = await auth.authenticate(request)
        if request.headers.get("authorization", "").lower().startswith("basic "):
            # A leaked app password must not be able to mint more of itself.
            raise Problem(403, "app passwords cannot manage app passwords: sign in with "
                               "OpenID Connect, or use `fedspace users app-password`")
        if principal.kind != "user":
            raise Problem(403, "federated guests have no app passwords on this instance")
        return principal

    Caller = Annotated[Principal, Depends(caller)]

    @router.get("")
    async def list_app_passwords(principal: Caller) -> Response:
        found = await directory.list_app_passwords(principal.username)
        return _json({"value": [_shape(pw) for pw in found]})

    @router.post("", status_code=201)
    async def create_app_password(principal: Caller, body: AppPasswordCreate) -> Response:
        pw, secret = await directory.create_app_password(principal.username, body.label)
        return _json({**_shape(pw), "password": secret}, 201)

    @router.delete("/{password_id}", status_code=204)
    async def revoke_app_password(principal: Caller, password_id: str) -> Response:
        try:
            await directory.revoke_app_password(principal.username, password_id)
        except DirectoryError:
            raise Problem(404, f"no app password {password_id!r}") from None
        basic.forget()
        return Response(status_code=204)

    return router


PENDING_COOKIE = "fedspace_login"  # the encrypted pending state, sent to the callback only
CSRF_COOKIE = "fedspace_csrf"  # binds the login form's token to this browser
log = logging.getLogger("fedspace.weblogin")


def web_login_router(login: WebLogin, sessions: WebSessions, settings: Settings) -> APIRouter:
    """Browser sign-in (``/login``, ``/oidc-callback``, ``/logout``): HTML pages, never
    problem+json, and every refusal says why without echoing codes or secrets."""
    router = APIRouter(include_in_schema=False)

    def cookie(response: Response, name: str, value: str | None, *, path: str = "/",
               max_age: int | None = None) -> None:
        """HttpOnly, SameSite=Lax (sent on the IdP's redirect back), Secure on https;
        ``value`` None deletes the cookie."""
        secure = settings.public_url.startswith("https:")
        if value is None:
            response.delete_cookie(name, path=path, secure=secure, httponly=True,
                                   samesite="lax")
        else:
            response.set_cookie(name, value, max_age=max_age, path=path, secure=secure,
                                httponly=True, samesite="lax")

    def form(request: Request, *, next_path: str, address: str = "", message: str = "",
             status: int = 200) -> Response:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        response = login_page(domain=settings.domain, csrf=login.seal.csrf(token),
                              next_path=next_path, address=address, message=message,
                              status=status)
        if token != request.cookies.get(CSRF_COOKIE):
            cookie(response, CSRF_COOKIE, token)
        return response

    def refused(exc: LoginError) -> Response:
        log.info("web sign-in refused", extra={"status": exc.status, "reason": exc.title})
        return refusal_page(exc.status, exc.title, str(exc))

    @router.get("/login")
    async def login_form(request: Request, next: str = "/") -> Response:
        return form(request, next_path=safe_next(next))

    @router.post("/login")
    async def login_start(request: Request) -> Response:
        """Start the code flow at the address's IdP (or ours); the form is CSRF-checked
        so no other site can start a sign-in (login CSRF) in this browser."""
        fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        next_path = safe_next(fields.get("next"))
        address = fields.get("address", "").strip()
        if not login.seal.check_csrf(request.cookies.get(CSRF_COOKIE), fields.get("csrf", "")):
            return form(request, next_path=next_path, address=address, status=403,
                        message="This form has expired. Please try again.")
        own = fields.get("action") == "own"
        if not own and not address:
            return form(request, next_path=next_path, status=400,
                        message="Enter your address, or sign in with an account of this "
                                "instance.")
        try:
            url, pending = await login.start(None if own else address, next_path)
        except LoginError as exc:
            return refused(exc)
        response = RedirectResponse(url, 303)
        cookie(response, PENDING_COOKIE, login.seal.seal(pending), path=CALLBACK_PATH,
               max_age=PENDING_TTL)
        return response

    @router.get(CALLBACK_PATH)
    async def login_finish(request: Request) -> Response:
        query = request.query_params
        pending = login.seal.unseal(request.cookies.get(PENDING_COOKIE))
        response: Response
        try:
            if pending is None:
                raise LoginError(400, "This sign-in has expired or was started in another "
                                      "browser. Please start again.")
            if not hmac.compare_digest(query.get("state", "").encode(), pending.state.encode()):
                raise LoginError(400, "This answer does not belong to the sign-in started in "
                                      "this browser (state mismatch). Please start again.")
            if "error" in query:
                why = query.get("error_description") or query["error"]
                raise LoginError(400, f"The identity provider did not sign you in: {why}")
            if not query.get("code"):
                raise LoginError(400, "The identity provider's answer has no code.")
            principal = await login.finish(pending, query["code"])
        except LoginError as exc:
            response = refused(exc)
        else:
            value = await sessions.create(principal)
            log.info("web sign-in", extra={"principal": principal.id, "kind": principal.kind})
            response = RedirectResponse(pending.next, 303)
            cookie(response, SESSION_COOKIE, value, max_age=SESSION_TTL)
        cookie(response, PENDING_COOKIE, None, path=CALLBACK_PATH)  # one answer per flow
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        if not same_origin(request, settings.public_url):
            return refusal_page(403, "Sign-out refused",
                                "Sign out from this instance's own pages.")
        value = request.cookies.get(SESSION_COOKIE)
        if value:
            await sessions.delete(value)
        response = RedirectResponse("/login", 303)
        cookie(response, SESSION_COOKIE, None)
        return response

    return router

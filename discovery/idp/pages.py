"""The IdP's HTML: the login form and error pages (no scripts, everything escaped)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from string import Template

from starlette.responses import HTMLResponse

_LOGIN = Template((Path(__file__).parent / "login.html").read_text())
# No framing (clickjacking) and no caching of pages that carry CSRF tokens.
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY",
           "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                      "frame-ancestors 'none'"}


def login_page(*, domain: str, client: str, action: str, authz: str, csrf: str,
               username: str = "", message: str = "", status: int = 200) -> HTMLResponse:
    body = _LOGIN.substitute(
        domain=escape(domain), client=escape(client), action=escape(action),
        authz=escape(authz), csrf=escape(csrf), username=escape(username),
        message=f'<p class="error" role="alert">{escape(message)}</p>' if message else "")
    return HTMLResponse(body, status, headers=HEADERS)


def error_page(status: int, message: str, title: str = "Sign-in failed") -> HTMLResponse:
    body = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
            f"{escape(title)}</title></head><body><h1>{escape(title)}</h1>"
            f"<p>{escape(message)}</p></body></html>")
    return HTMLResponse(body, status, headers=HEADERS)

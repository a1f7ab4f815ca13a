"""The sign-in pages of cloud.D: address form and refusals (no scripts, all escaped).

They wear the embedded IdP's style sheet and security headers, so both halves of a login
look alike and neither can be framed or cached with its CSRF token.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from starlette.responses import HTMLResponse

from discovery.idp.pages import HEADERS

_STYLE = re.search(r"<style>.*?</style>",
                   (Path(__file__).parent / "idp" / "login.html").read_text(), re.S)
STYLE = _STYLE.group(0) if _STYLE else ""


def _page(title: str, body: str, status: int) -> HTMLResponse:
    html = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title>{STYLE}</head><body><main>{body}</main>"
            f"</body></html>")
    return HTMLResponse(html, status, headers=HEADERS)


def login_page(*, domain: str, csrf: str, next_path: str, address: str = "",
               message: str = "", status: int = 200) -> HTMLResponse:
    alert = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
    body = f"""<h1>Sign in to {escape(domain)}</h1>
{alert}
<form method="post" action="/login">
<input type="hidden" name="csrf" value="{escape(csrf)}">
<input type="hidden" name="next" value="{escape(next_path)}">
<label for="address">Your address</label>
<input id="address" type="text" name="address" value="{escape(address)}"
  placeholder="name@example.org" autocomplete="username" autocapitalize="none" autofocus>
<p class="note">Sign in with the identity provider of your organization.</p>
<button type="submit" name="action" value="address">Continue</button>
<button type="submit" name="action" value="own">Sign in with a {escape(domain)} account</button>
</form>"""
    return _page(f"Sign in · {domain}", body, status)


def refusal_page(status: int, title: str, message: str) -> HTMLResponse:
    body = (f'<h1>{escape(title)}</h1><p class="error" role="alert">{escape(message)}</p>'
            f'<p class="note"><a href="/login">Back to sign-in</a></p>')
    return _page(title, body, status)

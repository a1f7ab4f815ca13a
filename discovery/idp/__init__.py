"""The embedded OpenID Connect provider (``idp.D``).

Public entry: ``create_idp(ctx, directory)`` → ``Idp``, whose ``app`` serves the issuer's
routes relative to the issuer path (mount it there, or on the IdP's own host).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette

from discovery.idp.endpoints import Endpoints
from discovery.idp.keys import KeyStore
from discovery.idp.ratelimit import SlidingWindow
from discovery.idp.server import IdpServer
from discovery.idp.sessions import BrowserSecrets
from discovery.idp.store import GrantStore
from discovery.service import Directory
from fedspace.runtime import Context

__all__ = ["Idp", "create_idp"]


@dataclass(frozen=True)
class Idp:
    app: Starlette
    keys: KeyStore
    server: IdpServer


def create_idp(ctx: Context, directory: Directory) -> Idp:
    d = ctx.settings.discovery
    assert d.keys_dir is not None  # derived from data_dir by the settings
    keys = KeyStore(d.keys_dir, d.access_token_ttl)
    server = IdpServer(ctx.settings, directory, GrantStore(ctx.db), keys)
    app = Endpoints(server, BrowserSecrets(d.keys_dir), SlidingWindow()).app()
    return Idp(app, keys, server)

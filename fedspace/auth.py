"""Who is calling: one pluggable verifier chain in front of every API.

A ``Verifier`` turns request credentials into a ``Principal``. Verifiers are provided by
the discovery service (app passwords now, OIDC bearer tokens later); tests may install
their own. There is no unauthenticated path: a request no verifier accepts gets 401.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from starlette.requests import HTTPConnection

from fedspace.problem import Problem


@dataclass(frozen=True, slots=True)
class Principal:
    id: str
    username: str
    display_name: str
    groups: frozenset[str] = field(default_factory=frozenset)
    is_admin: bool = False
    kind: Literal["user", "guest"] = "user"
    # The only spaces this principal may reach (an OCM share's bearer); None: no limit.
    scope: frozenset[str] | None = None


class Unauthorized(Exception):
    """Credentials were presented but are not valid (as opposed to absent)."""

    def __init__(self, scheme: str, error: str, description: str) -> None:
        super().__init__(description)
        self.scheme = scheme
        self.error = error
        self.description = description


class Verifier(Protocol):
    """``scheme`` names it in WWW-Authenticate challenges; a verifier of credentials a
    client cannot be challenged for (a session cookie) sets ``challenges = False``."""

    scheme: str

    async def verify(self, conn: HTTPConnection) -> Principal | None:
        """The caller, or None when the request has no credentials for this scheme."""


FirstSeenHook = Callable[[Principal], Awaitable[None]]


class Authenticator:
    """Runs the verifier chain and the first-seen hooks (e.g. personal space creation)."""

    def __init__(self, verifiers: Sequence[Verifier] = (), realm: str = "fedspace") -> None:
        self.verifiers: list[Verifier] = list(verifiers)
        self.realm = realm
        self._first_seen: list[FirstSeenHook] = []
        self._seen: set[str] = set()

    def on_first_seen(self, hook: FirstSeenHook) -> None:
        self._first_seen.append(hook)

    def _challenge(self, failure: Unauthorized | None = None) -> dict[str, str]:
        challenges = []
        for v in self.verifiers:
            if not getattr(v, "challenges", True):
                continue
            c = f'{v.scheme} realm="{self.realm}"'
            if failure is not None and failure.scheme == v.scheme:
                c += f', error="{failure.error}", error_description="{failure.description}"'
            challenges.append(c)
        return {"WWW-Authenticate": ", ".join(challenges)} if challenges else {}

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        for verifier in self.verifiers:
            try:
                principal = await verifier.verify(conn)
            except Unauthorized as exc:
                raise Problem(401, exc.description, headers=self._challenge(exc)) from None
            if principal is not None:
                if principal.id not in self._seen:
                    for hook in self._first_seen:
                        await hook(principal)
                    self._seen.add(principal.id)
                return principal
        raise Problem(401, "authentication required", headers=self._challenge())

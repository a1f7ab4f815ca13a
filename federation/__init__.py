"""Federation between instances: Open Cloud Mesh discovery and endpoints, RFC 9421 request
signatures, trust policy, and the outbox that delivers share notifications.

Public entry: ``create(ctx)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from federation.component import FederationComponent
    from fedspace.runtime import Context


def create(ctx: Context) -> FederationComponent:
    from federation.component import FederationComponent

    return FederationComponent(ctx)

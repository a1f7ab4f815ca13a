"""Discovery and identity: the user directory and how callers are authenticated.

Public entry: ``create(ctx)``. WebFinger and the embedded OpenID Connect provider
arrive with the identity issue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from discovery.component import DiscoveryComponent
    from fedspace.runtime import Context


def create(ctx: Context) -> DiscoveryComponent:
    from discovery.component import DiscoveryComponent

    return DiscoveryComponent(ctx)

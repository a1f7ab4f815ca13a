"""Storage provider: holds spaces, serves their content over WebDAV.

Public entry: ``create(ctx)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fedspace.runtime import Context
    from provider.component import ProviderComponent


def create(ctx: Context) -> ProviderComponent:
    from provider.component import ProviderComponent

    return ProviderComponent(ctx)

"""The spaces registry: spaces, members and roles, providers, drive changes.

Public entry: ``create(ctx)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fedspace.runtime import Context
    from registry.component import RegistryComponent


def create(ctx: Context) -> RegistryComponent:
    from registry.component import RegistryComponent

    return RegistryComponent(ctx)

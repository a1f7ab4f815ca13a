"""Discovery/identity slice of the configuration (``[discovery]``, ``FEDSPACE_DISCOVERY__*``)."""

from pydantic import BaseModel, Field


class DiscoverySettings(BaseModel):
    app_password_cache_seconds: float = Field(
        30.0, ge=0, description="how long a verified app password is remembered in memory"
    )

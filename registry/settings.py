"""Registry slice of the configuration (``[registry]`` in TOML, ``FEDSPACE_REGISTRY__*``)."""

from pydantic import BaseModel, Field

GIB = 1024**3


class RegistrySettings(BaseModel):
    personal_quota: int = Field(10 * GIB, ge=0, description="bytes; 0 = unlimited")
    project_quota: int = Field(10 * GIB, ge=0, description="default for new project spaces")
    max_page_size: int = Field(1000, ge=1, description="upper bound for drive listings")

"""Provider slice of the configuration (``[provider]`` in TOML, ``FEDSPACE_PROVIDER__*``)."""

from pathlib import Path

from pydantic import BaseModel, Field


class ProviderSettings(BaseModel):
    id: str = Field("provider-1", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    storage_root: Path | None = Field(None, description="blob store; default <data_dir>/storage")
    registry_address: str | None = Field(
        None, description="host:port of the registry's gRPC server (provider-only mode)"
    )
    dav_url: str | None = Field(
        None, description="URL the registry forwards WebDAV requests to (provider-only mode)"
    )
    max_upload_size: int = Field(64 * 1024**3, ge=1, description="bytes per PUT")

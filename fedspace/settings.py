"""Effective configuration: defaults < TOML file < ``FEDSPACE_*`` environment < arguments.

Each service package owns its slice (``registry.settings`` etc.); this module composes
them so one file and one environment prefix configure a whole instance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url

from discovery.settings import DiscoverySettings
from federation.settings import FederationSettings
from provider.settings import ProviderSettings
from registry.settings import RegistrySettings

CONFIG_ENV = "FEDSPACE_CONFIG"


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_size: int = Field(1024 * 1024, ge=1, description="limit for XML/JSON request bodies")
    extra_hosts: list[str] = Field(
        default_factory=list,
        description='more listeners for the same app: "addr" (same port as http.port) or '
        '"addr:port" ("[v6]:port"); the rig gives cloud.D, idp.D and D one address each')
    tls_cert_file: Path | None = Field(None, description="PEM certificate (chain): serve https")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def extra_listeners(self) -> list[tuple[str, int | None]]:
        """``extra_hosts`` as (address, port); None: the main listener's bound port."""
        return [_listener(h) for h in self.extra_hosts]

    @field_validator("extra_hosts")
    @classmethod
    def _valid_listeners(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            _listener(host)
        return hosts

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        files = (self.tls_cert_file, self.tls_key_file)
        if (files[0] is None) != (files[1] is None):
            raise ValueError("set both http.tls_cert_file and http.tls_key_file, or neither")
        for path in files:
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file not found: {path}")
        return self


def _listener(text: str) -> tuple[str, int | None]:
    """``"127.0.0.2"``, ``"127.0.0.2:8443"``, ``"[::1]:8443"`` → (address, port or None)."""
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or (port and not (port.isdigit() and int(port) <= 65535)):
        raise ValueError(f"invalid listener {text!r}: expected addr or addr:port")
    return host, int(port) if port else None


class GrpcSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(9142, ge=0, le=65535)


class OutboundSettings(BaseModel):
    """The one guarded client for outbound discovery fetches (WebFinger, OIDC, JWKS, OCM)."""

    allow_http: bool = Field(False, description="dev mode: allow plain-http targets")
    allow_private_addresses: bool = Field(
        False, description="allow loopback/private targets (the rig sets this)")
    hosts: dict[str, str] = Field(
        default_factory=dict,
        description="name map host → ip[:port], used instead of DNS (the rig's map)")
    ca_file: Path | None = Field(None, description="extra CA bundle (the rig's test CA)")
    timeout: float = Field(10.0, gt=0)
    max_response_bytes: int = Field(1024 * 1024, ge=1024)


class LogSettings(BaseModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FEDSPACE_", env_nested_delimiter="__", extra="forbid"
    )

    domain: str = "localhost"
    public_url: str = Field(
        "", description="external base URL; default http(s)://host:port (https with TLS)")
    data_dir: Path = Path("fedspace-data")
    database_url: str = Field("", description="SQLAlchemy async URL; default SQLite in data_dir")
    internal_secret: SecretStr = Field(
        SecretStr(""),
        description="shared by registry and providers to sign internal tokens; "
        "generated into data_dir when empty",
    )
    http: HttpSettings = HttpSettings()
    grpc: GrpcSettings = GrpcSettings()
    log: LogSettings = LogSettings()
    outbound: OutboundSettings = OutboundSettings()
    registry: RegistrySettings = RegistrySettings()
    provider: ProviderSettings = ProviderSettings()
    discovery: DiscoverySettings = DiscoverySettings()
    federation: FederationSettings = FederationSettings()
    _derived: set[str] = PrivateAttr(default_factory=set)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def public_url_derived(self) -> bool:
        """True when public_url was not configured but derived from the HTTP listener."""
        return "public_url" in self._derived

    def rebase(self, public_url: str) -> None:
        """Set a derived public_url (the bound port is known) and everything derived from it."""
        self.public_url = public_url
        if "issuer" in self._derived:
            self.discovery.issuer = f"{public_url}/idp"
        if "audience" in self._derived:
            self.discovery.audience = public_url

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if not self.public_url:
            scheme = "https" if self.http.tls else "http"
            self.public_url = f"{scheme}://{self.http.host}:{self.http.port}"
            self._derived.add("public_url")
        self.public_url = self.public_url.rstrip("/")
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{(self.data_dir / 'fedspace.db').as_posix()}"
        if not self.discovery.issuer:
            self.discovery.issuer = f"{self.public_url}/idp"
            self._derived.add("issuer")
        if not self.discovery.audience:
            self.discovery.audience = self.public_url
            self._derived.add("audience")
        if self.discovery.keys_dir is None:
            self.discovery.keys_dir = self.data_dir / "keys"
        if self.provider.storage_root is None:
            self.provider.storage_root = self.data_dir / "storage"
        return self

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with every secret (and the DB password) masked."""
        data = self.model_dump(mode="json")
        data["database_url"] = make_url(self.database_url).render_as_string(hide_password=True)
        return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read settings; a missing or unreadable config file is a clear error, not a default."""
    if config_file is not None:
        if not config_file.is_file():
            raise FileNotFoundError(f"config file not found: {config_file}")
        os.environ[CONFIG_ENV] = str(config_file)
    return Settings(**overrides)

"""Settings: one pydantic-settings class, `CMP_` environment variables, built once.

`__main__` builds it and passes it down; tests build their own. A bad value stops
start-up with one line naming the variable (`load_settings`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")


def _default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("cmp", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CMP_", extra="ignore", frozen=True)

    database_url: SecretStr | None = None
    # A connection that bypasses a transaction-mode pooler (PgBouncer): LISTEN for cache
    # invalidations and migrations need a session of their own. Unset: database_url.
    database_direct_url: SecretStr | None = None
    # asyncpg's prepared-statement cache per connection; 0 behind a transaction-mode
    # pooler, where a named statement may be on another server connection. Unset: asyncpg's.
    database_statement_cache: int | None = Field(default=None, ge=0, le=10_000)
    # "refuse": no CMP_DATABASE_URL is an error rather than a private embedded server
    # (set in the container image, where its data would die with the container).
    embedded_database: Literal["allow", "refuse"] = "allow"
    data_dir: Path = Field(default_factory=_default_data_dir)
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    admin_key: SecretStr | None = None
    signing_key_file: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "console"
    # Proxies whose X-Forwarded-For is believed (CIDRs); empty = use the peer address.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Headers a trusted proxy sets with the visitor's country (ISO 3166-1) and region
    # (ISO 3166-2, or its part after the dash); believed only from CMP_TRUSTED_PROXIES.
    geo_country_header: str | None = None
    geo_region_header: str | None = None
    demo: bool = False
    migrate_on_start: bool = True
    # Database pool: the ingest writer and state reader each hold a few connections.
    pool_size: int = Field(default=8, ge=2, le=200)
    # Group commit: most events per flush, flushes in flight, pending events before 503.
    # Flushes of one site serialise on its chain head, but a second one in flight is
    # sent while the first commits, so the database goes on to it at once; it starts
    # only for a batch worth a transaction (cmp.commit.OVERLAP_EVENTS), so small
    # requests still gather into one batch behind the flush in flight. A flush's rows
    # and their encoding are held until it commits: bigger batches cost memory, for no
    # measured gain in requests/s (a bulk load spends a little less CPU with them:
    # loadtest/README.md).
    batch_max: int = Field(default=250, ge=1, le=10_000)
    flushes_in_flight: int = Field(default=2, ge=1, le=16)
    queue_max: int = Field(default=20_000, ge=1)
    # A group commit (or a batched state read) that takes longer is cancelled and its
    # requests answered 503.
    commit_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Per (site, IP prefix) token bucket on the collect endpoints.
    rate_per_second: float = Field(default=50.0, gt=0)
    rate_burst: int = Field(default=200, ge=1)
    purge_interval_seconds: int = Field(default=86_400, ge=1)
    # Fault isolation (docs/api.md, Operations): every wait for a database connection is
    # bounded (503); long reads (exports, subject history, stats) have their own small
    # pool, a cap per site, and must be taken by the client at a minimum pace; bodies and
    # headers that stall are cut off.
    acquire_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    long_read_pool_size: int = Field(default=3, ge=1, le=50)
    long_reads_per_site: int = Field(default=2, ge=1, le=50)
    export_write_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    body_timeout_seconds: float = Field(default=15.0, gt=0, le=30)
    keepalive_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    checkpoint_interval_seconds: int = Field(default=60, ge=1)
    # Transparency log: the host in each site's checkpoint origin
    # (`<public_host>/sites/<site_id>`, also the note key name; keep it stable), and how
    # often new records are integrated into the Merkle tree and signed (the receipt
    # delay after commit is about this plus the integration time).
    public_host: str = "localhost"
    log_integration_seconds: float = Field(default=1.0, gt=0, le=5)

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("geo_country_header", "geo_region_header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.fullmatch(value):
            raise ValueError("must be an HTTP header name, e.g. CF-IPCountry")
        return value

    @field_validator("public_host")
    @classmethod
    def _note_name(cls, value: str) -> str:
        if not value or any(c.isspace() or c in "+|{" for c in value):
            raise ValueError("must be a host name without spaces, '+', '|' or '{'")
        return value

    def session_dsn(self, dsn: str) -> str:
        """The DSN for LISTEN and migrations: the direct URL if set, else `dsn`."""
        direct = self.database_direct_url
        return direct.get_secret_value() if direct is not None else dsn

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key_file or self.data_dir / "signing-key.pem"

    @property
    def signing_key_variable(self) -> str:
        """The variable an error about the signing key file names."""
        return "CMP_SIGNING_KEY_FILE" if self.signing_key_file else "CMP_DATA_DIR"


class ConfigError(Exception):
    """Start-up configuration is unusable; the message is one line naming the variable."""


def load_settings() -> Settings:
    # CMP_SECRETS_DIR: files named like the variables (compose and Kubernetes secrets),
    # e.g. /run/secrets/CMP_ADMIN_KEY; the environment wins over a file.
    secrets = os.environ.get("CMP_SECRETS_DIR")
    try:
        if secrets and Path(secrets).is_dir():
            return Settings(_secrets_dir=secrets)
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "CMP_" + str(err["loc"][0]).upper() if err["loc"] else "CMP_*"
        raise ConfigError(f"{name}: {err['msg']}") from None

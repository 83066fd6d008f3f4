"""`dialer.toml`: where it is found, what it may contain, and how it is validated.

Credentials are `SecretStr` so that printing a model (or an error about it) never shows them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)

from dialer import redaction
from dialer.campaign_spec import ACCOUNT_NAME
from dialer.durations import parse_duration
from dialer.errors import ConfigError
from dialer.providers.registry import Account
from dialer.tomlfile import interpolate_env, read_toml, validate

DEFAULT_CONFIG_NAME = "dialer.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DialerConfig(_Strict):
    """The whole of `dialer.toml`. Every key is optional: no file at all is a valid setup."""

    database_url: SecretStr | None = None
    public_url: AnyHttpUrl | None = None
    listen: str | None = Field(default=None, pattern=r"^[^:\s]+:\d{1,5}$")
    admin_token: SecretStr | None = None
    default_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    max_dials_per_number_per_day: int = Field(default=2, ge=1, le=100)
    accounts: dict[str, Account] = Field(default_factory=dict)
    # How long `dialer run` rides out a database that is away before it gives up (exit 1).
    database_outage_limit: str = "5m"
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("database_outage_limit")
    @classmethod
    def _outage_limit(cls, value: str) -> str:
        seconds = parse_duration(value).total_seconds()
        if not 1 <= seconds <= 86400:
            raise ValueError("between 1s and 24h")
        return value

    @property
    def outage_limit_s(self) -> float:
        return parse_duration(self.database_outage_limit).total_seconds()

    @field_validator("accounts", mode="before")
    @classmethod
    def _account_names(cls, value: object) -> object:
        """Account names appear in callback URLs and metrics labels: URL-safe as written."""
        if isinstance(value, dict):
            for name in value:
                if not re.match(ACCOUNT_NAME, str(name)):
                    raise ValueError(
                        f"account name {name!r}: use 1-63 lower-case letters, digits, '_' or"
                        " '-', starting with a letter or digit"
                    )
        return value


def config_path(explicit: str | None) -> Path | None:
    """Where the configuration comes from: --config, then DIALER_CONFIG, then ./dialer.toml."""
    if explicit:
        return Path(explicit)
    if os.environ.get("DIALER_CONFIG"):
        return Path(os.environ["DIALER_CONFIG"])
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.exists() else None


def load_config(explicit: str | None = None) -> DialerConfig:
    """Load and validate the configuration; an explicitly named file that is missing is an error."""
    path = config_path(explicit)
    if path is None:
        return DialerConfig()
    data, text = read_toml(path, "configuration file")
    try:
        data = interpolate_env(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    config = validate(DialerConfig, data, path, text)
    redaction.remember(*_secret_values(config))
    return config.model_copy(update={"source": path})


def _secret_values(model: BaseModel) -> list[str]:
    """Every SecretStr in the configuration, nested accounts included."""
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        values = value.values() if isinstance(value, dict) else [value]
        for item in values:
            if isinstance(item, SecretStr):
                found.append(item.get_secret_value())
            elif isinstance(item, BaseModel):
                found += _secret_values(item)
    return found


def database_url_from(config: DialerConfig) -> str | None:
    """DIALER_DATABASE_URL overrides the file; None means: use the embedded PostgreSQL."""
    env = os.environ.get("DIALER_DATABASE_URL")
    if env:
        return env
    return config.database_url.get_secret_value() if config.database_url else None

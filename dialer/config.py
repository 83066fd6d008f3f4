"""`dialer.toml`: where it is found, what it may contain, and how it is validated.

Credentials are `SecretStr` so that printing a model (or an error about it) never shows them.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
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


WEBHOOK_EVENTS = ("attempt.settled", "contact.final", "campaign.finished")
WebhookEvent = Literal["attempt.settled", "contact.final", "campaign.finished"]
NAME = r"^[a-z0-9][a-z0-9_.:/-]{0,199}$"


class WebhookConfig(_Strict):
    """One `[[webhooks]]` endpoint. `secret` is a Standard Webhooks secret: `whsec_` and the
    base64 of 24 to 64 random bytes (receivers' libraries take it as it is)."""

    url: AnyHttpUrl
    secret: SecretStr
    events: list[WebhookEvent] = Field(default=list(get_args(WebhookEvent)), min_length=1)
    name: str | None = Field(default=None, pattern=NAME)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        key = secret_bytes(value.get_secret_value())
        if key is None or not 24 <= len(key) <= 64:
            raise ValueError(
                "must be 'whsec_' followed by the base64 of 24 to 64 random bytes"
                " (e.g. python -c \"import os,base64; print('whsec_' +"
                ' base64.b64encode(os.urandom(32)).decode())")'
            )
        return value

    @property
    def endpoint(self) -> str:
        """The name deliveries, logs, metrics and the dashboard use: `name`, else the URL's
        host alone (its user, password, path and query may carry a credential)."""
        if self.name:
            return self.name
        return (urlsplit(str(self.url)).hostname or "webhook").lower()

    @property
    def legacy_endpoint(self) -> str:
        """The name versions before 0.1 (issue 19) gave an unnamed endpoint: host and path.
        Its waiting deliveries move to `endpoint` when a process registers it."""
        if self.name:
            return self.name
        parts = urlsplit(str(self.url))
        return f"{parts.netloc}{parts.path}".rstrip("/").lower()

    @property
    def shown_url(self) -> str:
        """The URL as people may see it: scheme, host and port; anything after is masked."""
        return masked_url(str(self.url))

    @property
    def url_secrets(self) -> list[str]:
        """The parts of the URL that may be credentials, to mask wherever text is shown."""
        return url_credentials(str(self.url))

    @property
    def key(self) -> bytes:
        key = secret_bytes(self.secret.get_secret_value())
        assert key is not None  # validated
        return key


def masked_url(url: str) -> str:
    """`url` without user, password, path or query (any of which may hold a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    shown = f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    hidden = parts.username or parts.password or parts.path.strip("/") or parts.query
    return shown + ("/****" if hidden else "")


def url_credentials(url: str) -> list[str]:
    """What of `url` may be a credential, to be masked wherever text is shown: the whole URL,
    its password, its path (with its leading slash) and query, and any user name or query
    value long enough to be a token (8 characters: short words would mask ordinary text)."""
    parts = urlsplit(url)
    found = [url, parts.password, parts.query]
    if parts.path.strip("/"):
        found.append(parts.path)
    found += [v for v in (parts.username, *[v for _, v in parse_qsl(parts.query)]) if v]
    found += [unquote(v) for v in found if v]
    return [f for f in found if f and (len(f) >= 8 or f in (parts.password,))]


def secret_bytes(secret: str) -> bytes | None:
    """The key of a `whsec_...` secret, or None if it is not base64."""
    text = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


class ApiToken(_Strict):
    """One bearer token of the campaign API: `read` sees, `write` changes."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    token: SecretStr
    scopes: list[Literal["read", "write"]] = Field(min_length=1)

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters (a random string)")
        return value


class ApiConfig(_Strict):
    tokens: list[ApiToken] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> ApiConfig:
        names = [t.name for t in self.tokens]
        if len(set(names)) != len(names):
            raise ValueError("token names must be unique")
        return self


class DialerConfig(_Strict):
    """The whole of `dialer.toml`. Every key is optional: no file at all is a valid setup."""

    database_url: SecretStr | None = None
    public_url: AnyHttpUrl | None = None
    listen: str | None = Field(default=None, pattern=r"^[^:\s]+:\d{1,5}$")
    admin_token: SecretStr | None = None  # at least 16 characters, as API tokens
    default_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    max_dials_per_number_per_day: int = Field(default=2, ge=1, le=100)
    accounts: dict[str, Account] = Field(default_factory=dict)
    api: ApiConfig = Field(default_factory=ApiConfig)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    # How long `dialer run` rides out a database that is away before it gives up (exit 1).
    database_outage_limit: str = "5m"
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("admin_token")
    @classmethod
    def _admin_token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters (a random string)")
        return value

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

    @model_validator(mode="after")
    def _webhook_names(self) -> DialerConfig:
        names = [w.endpoint for w in self.webhooks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"webhooks: two endpoints named {twice[0]!r}; give each a `name`")
        return self

    @field_validator("accounts", mode="before")
    @classmethod
    def _account_names(cls, value: object) -> object:
        """Account names appear in callback URLs and metrics labels: URL-safe as written."""
        if isinstance(value, dict):
            for name in value:
                if not re.fullmatch(ACCOUNT_NAME, str(name)):
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
    # A database URL is masked by its password, not as a whole: config show, logs and errors
    # name its user, host and database (as they do for one from $DIALER_DATABASE_URL).
    url = config.database_url.get_secret_value() if config.database_url else ""
    redaction.remember(*(v for v in _secret_values(config) if v != url))
    redaction.remember(*redaction.url_secrets(url))
    for hook in config.webhooks:
        redaction.remember(*hook.url_secrets)
    return config.model_copy(update={"source": path})


def _secret_values(model: BaseModel) -> list[str]:
    """Every SecretStr in the configuration, nested accounts included."""
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, dict):
            values = list(value.values())
        elif isinstance(value, list):
            values = value
        else:
            values = [value]
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

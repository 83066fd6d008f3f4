"""What every provider account of dialer.toml has: where its API is, its rate and its channels.

Each provider module declares its own account model on this base, beside its adapter
(providers.registry pairs them by `kind`).
"""

from __future__ import annotations

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from dialer.durations import Rate, parse_rate


class AccountBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: AnyHttpUrl
    rate: str = Field(description="requests allowed by the provider, e.g. '200/min'")
    channels: int = Field(gt=0, le=10_000, description="simultaneous calls the account may hold")

    @field_validator("rate")
    @classmethod
    def _rate_is_valid(cls, value: str) -> str:
        parse_rate(value)
        return value

    @property
    def parsed_rate(self) -> Rate:
        return parse_rate(self.rate)

"""What every provider account of dialer.toml has: where its API is, its rate and its channels.

Each provider module declares its own account model on this base, beside its adapter
(providers.registry pairs them by `kind`).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from dialer.durations import Rate, parse_duration, parse_rate
from dialer.phones import PhoneError, normalize
from dialer.policy.late import LATE_PLACEMENT_MAX, LATE_PLACEMENT_MIN


class AccountBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str  # each provider's model narrows it to its own name (providers.registry)
    base_url: AnyHttpUrl
    rate: str = Field(description="requests allowed by the provider, e.g. '200/min'")
    channels: int = Field(gt=0, le=10_000, description="simultaneous calls the account may hold")
    late_placement: str = Field(
        default="5m",  # policy.late.LATE_PLACEMENT_DEFAULT
        description="how late the provider (or a front before it) may place a call whose"
        " create request got no answer: such an attempt keeps its channel, and its contact is"
        " not dialed again, until this long after the request (policy.late)",
    )

    caller_ids: list[str] | None = Field(
        default=None,
        max_length=1000,
        description="numbers rented on this account, in E.164: a campaign of a pool shows them on"
        " this account when its caller_id has no plain number and no entry naming the account",
    )

    @field_validator("caller_ids")
    @classmethod
    def _caller_ids_are_e164(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        checked = []
        for number in value:
            try:
                checked.append(normalize(number, None))
            except PhoneError as exc:
                raise ValueError(f"{number!r}: {exc} (write it in E.164, +CC…)") from None
        return checked

    @field_validator("rate")
    @classmethod
    def _rate_is_valid(cls, value: str) -> str:
        parse_rate(value)
        return value

    @field_validator("late_placement")
    @classmethod
    def _late_placement_is_valid(cls, value: str) -> str:
        parse_duration(value, at_least=LATE_PLACEMENT_MIN, at_most=LATE_PLACEMENT_MAX)
        return value

    @property
    def parsed_rate(self) -> Rate:
        return parse_rate(self.rate)

    @property
    def late_placement_span(self) -> timedelta:
        return parse_duration(self.late_placement)

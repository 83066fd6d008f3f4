"""The campaign file: a TOML document describing whom to call, when, through which account.

The validated spec is stored as `campaigns.spec` (JSON), so every process that dials the campaign
reads the same rules from the database, not from a file that may have changed since.
"""

from __future__ import annotations

import codecs
import re
import zoneinfo
from datetime import date, time, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dialer.durations import parse_duration
from dialer.phones import PhoneError, normalize
from dialer.policy.packs import (
    JURISDICTION,
    RulePack,
    builtin_packs,
    checked_caps,
    checked_quiet,
)
from dialer.tomlfile import read_toml, validate

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # \Z: no trailing newline
ACCOUNT_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # appears in callback URLs: URL-safe by itself
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?\Z")
_NOT_ZONES = {"Factory", "localtime", "posixrules"}  # files of the zone database, not places

# Bounds of each duration key: past these a value is a typo (a "ring_timeout" of 2h, a retry
# in 10 years), and a stall or an overflow later.
RETRY_DELAY_MAX = timedelta(days=365)
RING_TIMEOUT = (timedelta(seconds=1), timedelta(minutes=10))
MAX_CALL_DURATION = (timedelta(seconds=1), timedelta(days=1))
SETTLE_GRACE_MAX = timedelta(days=7)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@cache
def is_campaign_name(text: str) -> bool:
    """Whether `text` can name a campaign (anything else, such as a NUL byte or a newline
    from a request's path, is not even looked up)."""
    return bool(_NAME.match(text))


def zone_names() -> frozenset[str]:
    """The IANA zones of this machine's zone database: places, not its folders or files."""
    return frozenset(
        name
        for name in zoneinfo.available_timezones()
        if name not in _NOT_ZONES and not name.startswith(("posix/", "right/"))
    )


def check_timezone(value: str) -> str:
    """Accept only IANA zone names that exist here ('Asia/Kolkata'), never silently UTC, and
    never a folder of the zone database ('America')."""
    if value not in zone_names():
        raise ValueError(f"unknown timezone {value!r} (use an IANA name such as 'Asia/Kolkata')")
    return value


def _check_duration(value: str, at_most: timedelta = RETRY_DELAY_MAX) -> str:
    parse_duration(value, at_most=at_most)
    return value


def _clock(value: Any) -> time:
    """A local time of day written "HH:MM" (or "HH:MM:SS"): no numbers, no UTC offsets (the
    window is in each contact's own zone)."""
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise ValueError(f'expected a time of day as "HH:MM" (such as "09:30"), got {value!r}')
    return time.fromisoformat(value)


Clock = Annotated[time, BeforeValidator(_clock)]


class Window(_Strict):
    """Local hours during which a contact may be called, on the listed weekdays."""

    start: Clock = time(9, 0)
    end: Clock = time(20, 0)
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS))

    @model_validator(mode="after")
    def _start_before_end(self) -> Window:
        if self.start >= self.end:
            raise ValueError("window.start must be earlier than window.end")
        if not self.days:
            raise ValueError("window.days must list at least one day")
        return self


class RetryPolicy(_Strict):
    """How often and how soon to call again after each outcome."""

    max_attempts: int = Field(default=3, ge=1, le=50)
    busy: str | list[str] = "20m"
    no_answer: str | list[str] = Field(default="2h", alias="no-answer")
    failed: str | list[str] | Literal["never"] = "1h"
    unknown: str = "1d"
    # Answered by a machine, voicemail or fax (machine_detection): a delay (or list) before
    # calling again, or "done" to count the message left as delivered (a voicemail drop).
    machine: str | list[str] | Literal["done"] = "4h"

    @field_validator("busy", "no_answer", "failed", "machine")
    @classmethod
    def _delays(cls, value: str | list[str], info: ValidationInfo) -> str | list[str]:
        if value == "done" and info.field_name != "machine":
            raise ValueError('"done" is for retry.machine only (a voicemail counted as delivered)')
        if value in ("never", "done"):
            return value
        if isinstance(value, list) and len(value) > 100:
            raise ValueError("a list of delays has at most 100 entries")
        for item in [value] if isinstance(value, str) else value:
            _check_duration(item)
        if isinstance(value, list) and not value:
            raise ValueError("a list of delays must not be empty")
        return value

    @field_validator("unknown")
    @classmethod
    def _unknown_delay(cls, value: str) -> str:
        return value if value == "never" else _check_duration(value)


class StopAfter(_Strict):
    """The campaign's goal: it is `completed` once this many calls were answered."""

    completed: int | None = Field(default=None, ge=1, le=100_000_000)
    human: int | None = Field(default=None, ge=1, le=100_000_000)  # with machine_detection

    @model_validator(mode="after")
    def _one_goal(self) -> StopAfter:
        if (self.completed is None) == (self.human is None):
            raise ValueError("give one of completed or human")
        return self

    @property
    def answered(self) -> int:
        return self.completed if self.completed is not None else self.human or 0


class CallerIdEntry(_Strict):
    """A caller id rented from one account of the pool: `{ number = "+1…", account = "a" }`."""

    number: str
    account: str = Field(pattern=ACCOUNT_NAME)


class CampaignSpec(_Strict):
    """Everything a campaign file may say. Unknown keys are errors, so typos cannot hide."""

    name: str
    # The account it dials through, or a pool of them (`accounts`): the campaign then dials
    # at the sum of their rates, each account within its own limits. `account` with a pool
    # names its primary account (the first, if not given).
    account: str = Field(pattern=ACCOUNT_NAME)
    accounts: list[str] | None = Field(default=None, max_length=50)
    default_region: str  # before caller_id, which is read in it
    # A number, or a list; an entry may name the account of the pool it belongs to (a number
    # is rented from one provider): an account with named entries shows only those; the others
    # show the plain numbers (or their own `caller_ids` of dialer.toml, when the campaign has
    # no plain number).
    caller_id: str | list[str | CallerIdEntry] = Field(default_factory=list)
    # Which caller id an attempt shows (policy.caller_ids): a contact's retries keep its first
    # number (sticky), also preferring the contact's own area (local), or in turn (rotate).
    caller_id_policy: Literal["sticky", "local", "rotate"] = "sticky"
    # Rest a caller id for the rest of the day when its answer rate over at least 50 settled
    # attempts today falls below this (a number flagged as spam).
    rest_caller_id_below: float | None = Field(default=None, gt=0, lt=1)
    # Rest a caller id for the rest of the day when carriers blocked (SIP 603/608) more than
    # this share of its calls over at least 20 today (policy.attestation).
    rest_caller_id_blocked_above: float | None = Field(default=None, gt=0, lt=1)
    connect_to: str | None = None
    agent_number: str | None = None
    contacts: str | None = None
    phone_column: str = "phone"
    timezone: str
    encoding: str | None = None
    window: Window = Field(default_factory=Window)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    start_date: date | None = None
    end_date: date | None = None
    holidays: list[date] = Field(default_factory=list)
    ring_timeout: str = "30s"
    max_call_duration: str = "1h"
    settle_grace: str = "60s"  # how long past ring + call time to wait for a late final event
    # Ask the provider who answered: "detect" (as soon as it knows), "message-end" (after a
    # machine's greeting, so the call's flow plays after the beep). Only providers that can.
    machine_detection: Literal["off", "detect", "message-end"] = "off"
    # Stop when the goal is met: `completed` for good answered calls (`human` with detection),
    # or when the provider-reported cost reaches max_cost (in the account's currency).
    stop_after: StopAfter | None = None
    max_cost: float | None = Field(default=None, gt=0, le=1e12)
    # The laws the campaign is bound by (policy.packs): built-in pack names, or in a campaign
    # file paths of a team's own packs (read at load and kept in `rule_packs`).
    rule_packs: list[RulePack] = Field(default_factory=list, max_length=20)
    rules: list[str] = Field(default_factory=list, max_length=20)
    # Caps count calls to a number on this subject, across every campaign sharing it.
    subject: str | None = Field(default=None, min_length=1, max_length=200)
    caps: list[str] = Field(default_factory=list, max_length=20)
    no_call_after_conversation: str | None = None
    # A contact whose row and number tell no jurisdiction is taken to be here ("US-NY").
    default_jurisdiction: str | None = None
    # Dial only numbers whose latest consent event in this scope is a grant (dialer consent).
    requires_consent: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "a campaign name is 1-100 letters, digits, '.', '_' or '-', starting with a letter"
                " or digit"
            )
        return value

    @field_validator("caller_id")
    @classmethod
    def _caller_ids(
        cls, value: str | list[str | CallerIdEntry], info: ValidationInfo
    ) -> str | list[str | CallerIdEntry]:
        """Caller ids in E.164, read like contacts' numbers (default_region without +CC); each
        adapter writes them as its account sends numbers."""
        if isinstance(value, list) and len(value) > 1000:
            raise ValueError("caller_id lists at most 1000 numbers")
        region = info.data.get("default_region")
        if region is None:  # itself invalid, and reported
            return value
        normalized: list[str | CallerIdEntry] = []
        for raw in [value] if isinstance(value, str) else value:
            number = raw.number if isinstance(raw, CallerIdEntry) else str(raw)
            try:
                e164 = normalize(number, region)
            except PhoneError as exc:
                raise ValueError(f"{number!r}: {exc}") from None
            if isinstance(raw, CallerIdEntry):
                normalized.append(CallerIdEntry(number=e164, account=raw.account))
            else:
                normalized.append(e164)
        if isinstance(value, str):
            return str(normalized[0])
        return normalized

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("an empty pool names no account to dial through")
        for name in value:
            if not re.match(ACCOUNT_NAME, name):
                raise ValueError(f"{name!r} is not an account name")
        if len(set(value)) != len(value):
            twice = next(name for name in value if value.count(name) > 1)
            raise ValueError(f"account {twice!r} is named twice")
        return value

    @model_validator(mode="before")
    @classmethod
    def _one_or_a_pool(cls, data: Any) -> Any:
        """`account` alone is a pool of one; `accounts` alone has its first as the primary."""
        if not isinstance(data, dict):
            return data
        account, pool = data.get("account"), data.get("accounts")
        if pool is None:  # `account` alone (or nothing: "account: required key is missing")
            return data if account is None else data | {"accounts": [account]}
        if account is None and isinstance(pool, list) and pool and isinstance(pool[0], str):
            return data | {"account": pool[0]}
        return data

    @model_validator(mode="after")
    def _pool(self) -> CampaignSpec:
        """`account` one of the pool; every named caller id's account in the pool."""
        if self.accounts is not None and self.account not in self.accounts:
            raise ValueError(f"account {self.account!r} is not in accounts {self.accounts}")
        for entry in self.caller_id if isinstance(self.caller_id, list) else []:
            if isinstance(entry, CallerIdEntry) and entry.account not in self.pool:
                raise ValueError(
                    f"caller_id {entry.number} names account {entry.account!r}, which is not"
                    f" in the campaign's accounts {self.pool}"
                )
        return self

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {value!r} (use a two-letter code like 'IN')")
        return value.upper()

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                text = codecs.lookup(value)._is_text_encoding
            except LookupError:
                raise ValueError(f"unknown text encoding {value!r}") from None
            if not text:
                raise ValueError(f"{value!r} is not a text encoding (try 'cp1252' or 'latin-1')")
        return value

    @field_validator("ring_timeout")
    @classmethod
    def _ring_timeout(cls, value: str) -> str:
        parse_duration(value, at_least=RING_TIMEOUT[0], at_most=RING_TIMEOUT[1])
        return value

    @field_validator("max_call_duration")
    @classmethod
    def _max_call_duration(cls, value: str) -> str:
        parse_duration(value, at_least=MAX_CALL_DURATION[0], at_most=MAX_CALL_DURATION[1])
        return value

    @field_validator("settle_grace")
    @classmethod
    def _settle_grace(cls, value: str) -> str:
        return _check_duration(value, SETTLE_GRACE_MAX)

    @model_validator(mode="after")
    def _dates(self) -> CampaignSpec:
        if self.start_date and self.end_date and self.start_date > self.end_date:
            raise ValueError("start_date must not be after end_date")
        return self

    @model_validator(mode="after")
    def _human_needs_detection(self) -> CampaignSpec:
        if self.stop_after and self.stop_after.human and self.machine_detection == "off":
            raise ValueError(
                "stop_after.human needs machine_detection: without it a machine's answer is"
                " counted as completed (use stop_after.completed)"
            )
        return self

    @field_validator("caps")
    @classmethod
    def _caps(cls, value: list[str]) -> list[str]:
        return checked_caps(value)

    @field_validator("no_call_after_conversation")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        return checked_quiet(value)

    @field_validator("default_jurisdiction")
    @classmethod
    def _default_jurisdiction(cls, value: str | None) -> str | None:
        if value is not None and (value == "*" or not JURISDICTION.match(value)):
            raise ValueError(f"a jurisdiction such as 'US-NY' or 'IN', got {value!r}")
        return value

    @field_validator("rules")
    @classmethod
    def _known_packs(cls, value: list[str], info: ValidationInfo) -> list[str]:
        own = {pack.name for pack in info.data.get("rule_packs") or []}
        unknown = [name for name in value if name not in set(builtin_packs()) | own]
        if unknown:
            shipped = ", ".join(sorted(builtin_packs()))
            raise ValueError(
                f"unknown pack {unknown[0]!r} (built in: {shipped}; or the path of a pack file"
                " ending in .toml)"
            )
        if len(set(value)) != len(value):
            raise ValueError("a pack is named twice")
        return value

    @property
    def packs(self) -> list[RulePack]:
        """The packs named in `rules`, a team's own before the built-in ones of that name."""
        own = {pack.name: pack for pack in self.rule_packs}
        return [own.get(name) or builtin_packs()[name] for name in self.rules]

    @property
    def subject_name(self) -> str:
        """What caps count calls on: `subject`, else the campaign's name."""
        return self.subject or self.name

    @property
    def pool(self) -> list[str]:
        """The accounts it dials through, the primary first."""
        return [self.account] + [a for a in self.accounts or [] if a != self.account]

    @property
    def caller_ids(self) -> list[str]:
        """Every number it may show, on any account."""
        entries = [self.caller_id] if isinstance(self.caller_id, str) else self.caller_id
        return [e.number if isinstance(e, CallerIdEntry) else e for e in entries]

    def caller_ids_for(self, account: str, own: list[str] | None = None) -> list[str]:
        """The numbers it shows on `account`: the entries naming it, else the plain numbers,
        else the account's own `caller_ids` of dialer.toml (`own`)."""
        entries = [self.caller_id] if isinstance(self.caller_id, str) else self.caller_id
        named = [e.number for e in entries if isinstance(e, CallerIdEntry) and e.account == account]
        plain = [e for e in entries if isinstance(e, str)]
        return named or plain or list(own or [])

    def to_json(self) -> dict:
        """The form stored in `campaigns.spec`: the file's own key names, dates as ISO strings."""
        return self.model_dump(mode="json", by_alias=True)


class CampaignFile(BaseModel):
    """A campaign spec plus where it was read from, for resolving its CSV path."""

    model_config = ConfigDict(frozen=True)
    path: Path
    spec: CampaignSpec

    def contacts_path(self, override: str | None = None) -> Path | None:
        """The CSV to load: --csv if given, else `contacts` relative to the campaign file."""
        if override:
            return Path(override)
        if self.spec.contacts is None:
            return None
        return (self.path.parent / self.spec.contacts).resolve()


def load_campaign_file(path: Path) -> CampaignFile:
    """Read and validate a campaign file; errors name the file, the key and its line. Rule
    packs named by path (`rules = ["our-pack.toml"]`, relative to the file) are read now and
    kept in the spec, so every process applies the same rules whatever happens to the file."""
    data, text = read_toml(path, "campaign file")
    if isinstance(data.get("rules"), list):
        data = _inline_pack_files(data, path)
    spec = validate(CampaignSpec, data, path, text)
    return CampaignFile(path=path, spec=spec)


def _inline_pack_files(data: dict[str, Any], path: Path) -> dict[str, Any]:
    names, packs = [], list(data.get("rule_packs") or [])
    for entry in data["rules"]:
        if not (isinstance(entry, str) and entry.endswith(".toml")):
            names.append(entry)
            continue
        pack_path = (path.parent / entry).resolve()
        pack_data, pack_text = read_toml(pack_path, "rule pack file")
        pack = validate(RulePack, pack_data, pack_path, pack_text)
        names.append(pack.name)
        packs.append(pack.model_dump(mode="json"))
    return data | {"rules": names, "rule_packs": packs}

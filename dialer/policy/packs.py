"""Rule packs: the laws a campaign names (`rules = ["us-tcpa", "us-states"]`), as data.

A pack is a TOML file (the built-in ones in `dialer/packs/`, or a team's own beside its
campaign): rules, each for some jurisdictions ("US", "US-FL", "IN", or "*" for any), with
calling hours in the called party's local time, caps over rolling windows ("3/24h": at most
three calls to a number on the campaign's `subject` in any 24 hours), and a quiet time after a
conversation; each rule cites its source.

What binds a contact is the strictest of every rule that may apply to it (hours intersect, every
cap counts, the longest quiet time wins), read per *jurisdiction key* (CampaignRules.key_for):

- a jurisdiction some rule names ("US-FL"): the rules for it, its country ("US") and "*";
- a country whose subdivision is known but named by no rule ("US-CA" -> "US-*"): the country's
  rules and "*";
- a country whose subdivision is unknown ("US": a toll-free number, no `state` column): every
  rule of that country and its subdivisions, since the person may be in any of them;
- a jurisdiction that cannot be told at all (no country): every rule of every pack named ("?");
- anywhere else: the "*" rules and the campaign's own caps only.

The claim reads the same keys in SQL (db.due, db.contacts); tests keep the two readings equal.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dialer.durations import parse_duration

JURISDICTION = re.compile(r"^(\*|[A-Z]{2}(-[A-Z0-9]{1,3})?)\Z")
_CAP = re.compile(r"^\s*(\d{1,6})\s*/\s*(.+)\Z")
CAP_WINDOW_MAX = timedelta(days=366)
REGISTRY_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
UNKNOWN = "?"  # the key of a contact whose jurisdiction cannot be told
ANYWHERE = "*"


@dataclass(frozen=True, order=True)
class Cap:
    """At most `count` calls in any `window` (per number and subject)."""

    count: int
    window: timedelta

    def __str__(self) -> str:
        return f"{self.count}/{self.window_text}"

    @property
    def window_text(self) -> str:
        """The window as people write it: '24h', '7d', '90m'."""
        return span_text(self.window)


def span_text(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds % 86400 == 0 and seconds > 2 * 86400:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


def checked_caps(caps: list[str]) -> list[str]:
    """`caps` as written ("3/24h"), each read by parse_cap (its ValueError names it)."""
    for cap in caps:
        parse_cap(cap)
    return caps


def checked_quiet(quiet: str | None) -> str | None:
    """A quiet time after a conversation: from a minute to CAP_WINDOW_MAX, or none."""
    if quiet is not None:
        parse_duration(quiet, at_least=timedelta(minutes=1), at_most=CAP_WINDOW_MAX)
    return quiet


def parse_cap(text: str) -> Cap:
    """'3/24h' -> Cap(3, 24 h); ValueError naming what is wrong ('3/0h', '-1/24h', 'x')."""
    match = _CAP.match(text) if isinstance(text, str) and len(text) <= 40 else None
    if not match:
        raise ValueError(f"expected a cap such as '3/24h' or '7/7d', got {text!r}")
    count = int(match.group(1))
    if count < 1:
        raise ValueError(f"a cap allows at least one call, got {text!r}")
    try:
        window = parse_duration(
            match.group(2).strip(), at_least=timedelta(minutes=1), at_most=CAP_WINDOW_MAX
        )
    except ValueError as exc:
        raise ValueError(f"cap {text!r}: {exc}") from None
    return Cap(count, window)


class Hours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock(cls, value: object) -> object:
        if not isinstance(value, str) or not re.match(r"^\d\d:\d\d(:\d\d)?\Z", value):
            raise ValueError(f"a time of day such as '08:00', got {value!r}")
        return value


def _known_codes(value: list[str]) -> list[str]:
    for code in value:
        if not JURISDICTION.match(code):
            raise ValueError(f"jurisdiction {code!r}: 'US', 'US-FL', 'IN' or '*'")
    return value


class PackRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    jurisdictions: list[str] = Field(min_length=1)
    hours: Hours | None = None
    caps: list[str] = Field(default_factory=list)
    no_call_after_conversation: str | None = None
    source: str = Field(min_length=10)  # where the rule comes from: a rule without one is refused

    @field_validator("jurisdictions")
    @classmethod
    def _jurisdictions(cls, value: list[str]) -> list[str]:
        return _known_codes(value)

    @field_validator("caps")
    @classmethod
    def _caps(cls, value: list[str]) -> list[str]:
        return checked_caps(value)

    @field_validator("no_call_after_conversation")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        return checked_quiet(value)


class RegistryRule(BaseModel):
    """A do-not-call registry the pack's law makes binding: how fresh the copy dialed against
    must be (`max_age`, whole days), and how long after a number's registration it binds
    (`takes_effect_after`): `dialer dnc import --registry NAME --as-of DATE` records both."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=REGISTRY_NAME)
    jurisdictions: list[str] = Field(min_length=1)
    max_age: str | None = None
    takes_effect_after: str | None = None
    source: str = Field(min_length=10)

    @field_validator("max_age")
    @classmethod
    def _whole_days(cls, value: str | None) -> str | None:
        if value is not None:
            span = parse_duration(value, at_least=timedelta(days=1), at_most=CAP_WINDOW_MAX)
            if span % timedelta(days=1):
                raise ValueError(f"a registry's age is whole days ('31d'), got {value!r}")
        return value

    @field_validator("takes_effect_after")
    @classmethod
    def _delay(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value, at_least=timedelta(0), at_most=CAP_WINDOW_MAX)
        return value

    @field_validator("jurisdictions")
    @classmethod
    def _jurisdictions(cls, value: list[str]) -> list[str]:
        return _known_codes(value)

    @property
    def max_age_days(self) -> int | None:
        return parse_duration(self.max_age).days if self.max_age else None

    @property
    def binds_after(self) -> timedelta | None:
        return parse_duration(self.takes_effect_after) if self.takes_effect_after else None


class RulePack(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    version: str = Field(min_length=1, max_length=40)
    title: str
    rules: list[PackRule] = Field(min_length=1)
    registries: list[RegistryRule] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


@cache
def builtin_packs() -> dict[str, RulePack]:
    """The packs shipped in dialer/packs/, by name."""
    found: dict[str, RulePack] = {}
    for entry in resources.files("dialer.packs").iterdir():
        if entry.name.endswith(".toml"):
            pack = RulePack.model_validate(tomllib.loads(entry.read_text(encoding="utf-8")))
            found[pack.name] = pack
    return found


@dataclass(frozen=True)
class Limits:
    """What binds the contacts of one jurisdiction key: the strictest of the rules that may
    apply to them."""

    hours: tuple[time, time] | None  # None: the campaign's window alone
    caps: tuple[Cap, ...]
    quiet_after_conversation: timedelta | None
    rules: tuple[str, ...]  # "pack@version/rule", for explanations and the record

    @property
    def never(self) -> bool:
        """Hours that do not overlap at all: nobody of this key may be called."""
        return self.hours is not None and self.hours[0] >= self.hours[1]


@dataclass(frozen=True)
class CampaignRules:
    """The rules one campaign is bound by, per jurisdiction key."""

    limits: dict[str, Limits]
    # The registries the packs make binding, with the pack that names each ("us-tcpa@...").
    registries: tuple[tuple[str, RegistryRule], ...] = ()

    @classmethod
    def of(
        cls,
        packs: list[RulePack],
        caps: list[Cap] | None = None,
        quiet: timedelta | None = None,
    ) -> CampaignRules:
        rules = [(pack, rule) for pack in packs for rule in pack.rules]
        named = {code for _, rule in rules for code in rule.jurisdictions if code != ANYWHERE}
        countries = {code.split("-")[0] for code in named}
        keys: dict[str, list[tuple[RulePack, PackRule]]] = {}
        for code in named | countries:
            country = code.split("-")[0]
            if "-" in code:  # the subdivision, its country, anywhere
                wanted = {code, country, ANYWHERE}
                keys[code] = [(p, r) for p, r in rules if wanted & set(r.jurisdictions)]
            else:  # the country, subdivision unknown: every rule of it and of its parts
                keys[code] = [
                    (p, r)
                    for p, r in rules
                    if any(
                        j in (country, ANYWHERE) or j.startswith(country + "-")
                        for j in r.jurisdictions
                    )
                ]
                wanted = {country, ANYWHERE}
                keys[f"{country}-*"] = [(p, r) for p, r in rules if wanted & set(r.jurisdictions)]
        keys[UNKNOWN] = list(rules)
        keys[ANYWHERE] = [(p, r) for p, r in rules if ANYWHERE in r.jurisdictions]
        return cls(
            {key: _strictest(found, caps or [], quiet) for key, found in keys.items()},
            tuple((pack.label, registry) for pack in packs for registry in pack.registries),
        )

    def key_for(self, jurisdiction: str | None) -> str:
        """Which key binds a contact of `jurisdiction` (the SQL reading: db.due)."""
        if jurisdiction is None:
            return UNKNOWN
        if jurisdiction in self.limits:
            return jurisdiction
        country = jurisdiction.split("-")[0]
        if "-" in jurisdiction and f"{country}-*" in self.limits:
            return f"{country}-*"
        return ANYWHERE

    def for_jurisdiction(self, jurisdiction: str | None) -> Limits:
        return self.limits[self.key_for(jurisdiction)]

    def hours_parameters(self) -> tuple[list[str], list[time | None], list[time | None]]:
        """The keys with their hours, as arrays for SQL (db.due)."""
        keys = sorted(self.limits)
        hours = [self.limits[k].hours for k in keys]
        return keys, [h[0] if h else None for h in hours], [h[1] if h else None for h in hours]

    def cap_parameters(self) -> tuple[list[str], list[int], list[float]]:
        """Every (key, count, window in seconds), as arrays for SQL (db.contacts)."""
        rows = [
            (key, cap.count, cap.window.total_seconds())
            for key in sorted(self.limits)
            for cap in self.limits[key].caps
        ]
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]

    def quiet_parameters(self) -> tuple[list[str], list[float]]:
        """Every key with a quiet time after a conversation, in seconds (db.contacts)."""
        keys = [k for k in sorted(self.limits) if self.limits[k].quiet_after_conversation]
        quiet = [self.limits[k].quiet_after_conversation for k in keys]
        return keys, [q.total_seconds() for q in quiet if q is not None]


def _strictest(
    found: list[tuple[RulePack, PackRule]], caps: list[Cap], quiet: timedelta | None
) -> Limits:
    hours = [rule.hours for _, rule in found if rule.hours is not None]
    window = (max(h.start for h in hours), min(h.end for h in hours)) if hours else None
    all_caps = set(caps) | {parse_cap(c) for _, rule in found for c in rule.caps}
    quiets = [
        parse_duration(r.no_call_after_conversation)
        for _, r in found
        if r.no_call_after_conversation
    ]
    if quiet is not None:
        quiets.append(quiet)
    return Limits(
        hours=window,
        caps=tuple(sorted(all_caps)),
        quiet_after_conversation=max(quiets) if quiets else None,
        rules=tuple(f"{pack.label}/{rule.id}" for pack, rule in found),
    )


@dataclass(frozen=True)
class Hold:
    """Why a number may not be called on a subject now, and until when."""

    until: datetime
    why: str  # "cap 3/24h: 3 calls in 24 h (at ...)" or "quiet 7d after a conversation at ..."


def holds(
    limits: Limits, calls: list[datetime], conversations: list[datetime], now: datetime
) -> list[Hold]:
    """Every cap and quiet time of `limits` that holds a number now, given the times of its
    calls on the subject (attempts that reached the dialing stage) and of its conversations
    (calls a person answered): the Python reading of db.contacts' _LAW_HOLDS."""
    found = []
    for cap in limits.caps:
        recent = sorted((c for c in calls if c > now - cap.window), reverse=True)[: cap.count]
        if len(recent) >= cap.count:
            shown = ", ".join(f"{c:%Y-%m-%d %H:%M}" for c in sorted(recent))
            found.append(
                Hold(
                    min(recent) + cap.window,
                    f"cap {cap}: {len(recent)} calls within {cap.window_text} (at {shown} UTC)",
                )
            )
    quiet = limits.quiet_after_conversation
    if quiet is not None:
        talked = [c for c in conversations if c > now - quiet]
        if talked:
            last = max(talked)
            when = f"{last:%Y-%m-%d %H:%M} UTC"
            found.append(
                Hold(last + quiet, f"quiet {span_text(quiet)} after a conversation at {when}")
            )
    return found

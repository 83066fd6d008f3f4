"""Calling-window arithmetic: may this contact be called at this instant, and if not, when?

All instants are timezone-aware UTC datetimes (from the database clock); the window is applied
in the contact's own timezone, falling back to the campaign's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from dialer.campaign_spec import ALL_DAYS, CampaignSpec
from dialer.durations import parse_duration
from dialer.policy.packs import CampaignRules, parse_cap
from dialer.policy.zones import zone

SEARCH_DAYS = 400  # how far ahead to look for the next allowed day before saying "never"


@dataclass(frozen=True, eq=False)
class CallingRules:
    timezone: str
    start: time
    end: time
    weekdays: frozenset[int]  # 0 = Monday
    holidays: frozenset[date]
    start_date: date | None = None
    end_date: date | None = None
    # The laws named (policy.packs): hours per jurisdiction narrow the window; caps and quiet
    # times are judged at claim (db.contacts). None: the campaign's window alone.
    law: CampaignRules | None = None
    consent_scope: str | None = None  # requires_consent: only numbers with a live grant

    @classmethod
    def of(cls, spec: CampaignSpec) -> CallingRules:
        law = None
        if spec.rules or spec.caps or spec.no_call_after_conversation:
            quiet = spec.no_call_after_conversation
            law = CampaignRules.of(
                spec.packs,
                [parse_cap(c) for c in spec.caps],
                parse_duration(quiet) if quiet else None,
            )
        return cls(
            timezone=spec.timezone,
            start=spec.window.start,
            end=spec.window.end,
            weekdays=frozenset(ALL_DAYS.index(d) for d in spec.window.days),
            holidays=frozenset(spec.holidays),
            start_date=spec.start_date,
            end_date=spec.end_date,
            law=law,
            consent_scope=spec.requires_consent,
        )

    def sql_parameters(self) -> tuple:
        """The window as the parameters of the SQL window test (zone, start, end, ISO weekdays,
        holidays, start date, end date, the jurisdiction keys with their hours, the consent
        scope required), in that order."""
        keys, starts, ends = self.law.hours_parameters() if self.law else ([], [], [])
        return (
            self.timezone,
            self.start,
            self.end,
            [d + 1 for d in sorted(self.weekdays)],
            sorted(self.holidays),
            self.start_date,
            self.end_date,
            keys,
            starts,
            ends,
            self.consent_scope,
        )

    def hours_for(self, jurisdiction: str | None) -> tuple[time, time]:
        """The campaign's hours narrowed by the laws' hours for this jurisdiction (start >= end:
        never)."""
        if self.law is None:
            return self.start, self.end
        hours = self.law.for_jurisdiction(jurisdiction).hours
        if hours is None:
            return self.start, self.end
        return max(self.start, hours[0]), min(self.end, hours[1])

    def day_allowed(self, day: date) -> bool:
        if self.start_date and day < self.start_date:
            return False
        if self.end_date and day > self.end_date:
            return False
        return day.weekday() in self.weekdays and day not in self.holidays

    def zones(self, timezone: str | None) -> list[str]:
        """A contact's zones: its own (one, or "WEST EAST" for a number spanning zones, see
        policy.zones), else the campaign's. The window must be open in each."""
        return (timezone or self.timezone).split()

    def is_open(
        self, when: datetime, timezone: str | None = None, jurisdiction: str | None = None
    ) -> bool:
        hours = self.hours_for(jurisdiction)
        return all(self._open_in(when, name, hours) for name in self.zones(timezone))

    def _open_in(self, when: datetime, name: str, hours: tuple[time, time]) -> bool:
        local = when.astimezone(zone(name))
        return self.day_allowed(local.date()) and hours[0] <= local.time() < hours[1]

    def next_open(
        self, when: datetime, timezone: str | None = None, jurisdiction: str | None = None
    ) -> datetime | None:
        """The earliest instant >= `when` inside the window (in every zone of the contact,
        within its jurisdiction's hours), or None if there is none left."""
        names = self.zones(timezone)
        hours = self.hours_for(jurisdiction)
        if hours[0] >= hours[1]:
            return None
        for _ in range(SEARCH_DAYS):
            candidates = [self._next_open_in(when, name, hours) for name in names]
            if None in candidates:
                return None
            latest = max(c for c in candidates if c is not None)
            if self.is_open(latest, timezone, jurisdiction):
                return latest
            when = latest + timedelta(seconds=1)  # an earlier zone closed meanwhile: move on
        return None

    def _next_open_in(self, when: datetime, name: str, hours: tuple[time, time]) -> datetime | None:
        tz = zone(name)
        local_day = when.astimezone(tz).date()
        for offset in range(SEARCH_DAYS):
            day = local_day + timedelta(days=offset)
            if self.end_date and day > self.end_date:
                return None
            if not self.day_allowed(day):
                continue
            opens = datetime.combine(day, hours[0], tzinfo=tz)
            closes = datetime.combine(day, hours[1], tzinfo=tz)
            if when < closes:
                return max(when, opens)
        return None

    def closes_at(
        self, when: datetime, timezone: str | None = None, jurisdiction: str | None = None
    ) -> datetime | None:
        """When the window that is open at `when` closes (None if it is not open): in the first
        of the contact's zones to close."""
        if not self.is_open(when, timezone, jurisdiction):
            return None
        end = self.hours_for(jurisdiction)[1]
        return min(
            datetime.combine(when.astimezone(zone(name)).date(), end, tzinfo=zone(name))
            for name in self.zones(timezone)
        )

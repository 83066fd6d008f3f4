"""Calling-window arithmetic: may this contact be called at this instant, and if not, when?

All instants are timezone-aware UTC datetimes (from the database clock); the window is applied
in the contact's own timezone, falling back to the campaign's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from dialer.campaign_spec import ALL_DAYS, CampaignSpec

SEARCH_DAYS = 400  # how far ahead to look for the next allowed day before saying "never"


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True)
class CallingRules:
    timezone: str
    start: time
    end: time
    weekdays: frozenset[int]  # 0 = Monday
    holidays: frozenset[date]
    start_date: date | None = None
    end_date: date | None = None

    @classmethod
    def of(cls, spec: CampaignSpec) -> CallingRules:
        return cls(
            timezone=spec.timezone,
            start=spec.window.start,
            end=spec.window.end,
            weekdays=frozenset(ALL_DAYS.index(d) for d in spec.window.days),
            holidays=frozenset(spec.holidays),
            start_date=spec.start_date,
            end_date=spec.end_date,
        )

    def sql_parameters(self) -> tuple:
        """The window as the parameters of the SQL window test (zone, start, end, ISO weekdays,
        holidays, start date, end date), in that order."""
        return (
            self.timezone,
            self.start,
            self.end,
            [d + 1 for d in sorted(self.weekdays)],
            sorted(self.holidays),
            self.start_date,
            self.end_date,
        )

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

    def is_open(self, when: datetime, timezone: str | None = None) -> bool:
        return all(self._open_in(when, name) for name in self.zones(timezone))

    def _open_in(self, when: datetime, name: str) -> bool:
        local = when.astimezone(zone(name))
        return self.day_allowed(local.date()) and self.start <= local.time() < self.end

    def next_open(self, when: datetime, timezone: str | None = None) -> datetime | None:
        """The earliest instant >= `when` inside the window (in every zone of the contact), or
        None if there is none left."""
        names = self.zones(timezone)
        for _ in range(SEARCH_DAYS):
            candidates = [self._next_open_in(when, name) for name in names]
            if None in candidates:
                return None
            latest = max(c for c in candidates if c is not None)
            if self.is_open(latest, timezone):
                return latest
            when = latest + timedelta(seconds=1)  # an earlier zone closed meanwhile: move on
        return None

    def _next_open_in(self, when: datetime, name: str) -> datetime | None:
        tz = zone(name)
        local_day = when.astimezone(tz).date()
        for offset in range(SEARCH_DAYS):
            day = local_day + timedelta(days=offset)
            if self.end_date and day > self.end_date:
                return None
            if not self.day_allowed(day):
                continue
            opens = datetime.combine(day, self.start, tzinfo=tz)
            closes = datetime.combine(day, self.end, tzinfo=tz)
            if when < closes:
                return max(when, opens)
        return None

    def closes_at(self, when: datetime, timezone: str | None = None) -> datetime | None:
        """When the window that is open at `when` closes (None if it is not open): in the first
        of the contact's zones to close."""
        if not self.is_open(when, timezone):
            return None
        return min(
            datetime.combine(when.astimezone(zone(name)).date(), self.end, tzinfo=zone(name))
            for name in self.zones(timezone)
        )

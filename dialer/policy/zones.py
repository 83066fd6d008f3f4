"""A contact's timezone from its number, read so that nobody is called outside the window.

`phonenumbers` knows which zones a number may be in. One zone: that zone. Several (a US
toll-free number, a Russian mobile): the contact gets its westernmost and easternmost zones,
written "WEST EAST" in `contacts.timezone`. Being inside the window in both of them means being
inside it in every zone between them (the window is within one day and the span is shorter), so
the window rules check just those two. Where the span leaves no common calling hours, the row is
refused with a reason: a timezone column is needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as number_zones

UNKNOWN = "Etc/Unknown"


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The zone of an IANA name, read once (kept here, light to import: load workers read
    zones without the campaign models that the window rules bring)."""
    return ZoneInfo(name)


@lru_cache(maxsize=512)
def _country_zones(country_code: int) -> tuple[str, ...]:
    # phonenumbers' own country-level list (private in name, stable for years: pinned <10).
    probe = phonenumbers.PhoneNumber(country_code=country_code, national_number=0)
    return tuple(number_zones._country_level_time_zones_for_number(probe))


def _country_code(e164: str) -> int:
    for length in (1, 2, 3):
        code = int(e164[1 : 1 + length])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return code
    raise ValueError(f"no country code in {e164}")


# stands for "a country of several zones: the number tells which" (no zone has this name)
_BY_NUMBER: tuple[str, ...] = ("(several: read the number)",)
_by_country: dict[str, tuple[str, ...]] = {}


def zones_for(e164: str) -> tuple[str, ...]:
    """The zones the number may be in (empty if unknown). Single-zone countries need no parse,
    and are looked up once: "+" and three digits always tell the country (country codes are
    prefix-free and at most three digits long)."""
    country = e164[:4]
    found = _by_country.get(country)
    if found is None:
        zones = _country_zones(_country_code(e164))
        found = _known(zones) if len(zones) == 1 else _BY_NUMBER
        _by_country[country] = found
    if found is not _BY_NUMBER:
        return found
    return _known(number_zones.time_zones_for_number(phonenumbers.parse(e164)))


def _known(zones: Iterable[str]) -> tuple[str, ...]:
    return tuple(z for z in zones if z != UNKNOWN)


def _offset(name: str, at: datetime) -> timedelta:
    return at.astimezone(zone(name)).utcoffset() or timedelta(0)


@lru_cache(maxsize=4096)
def _span(zones: tuple[str, ...], start: time, end: time) -> str | None:
    now = datetime.now(UTC)
    ordered = sorted(zones, key=lambda name: (_offset(name, now), name))
    west, east = ordered[0], ordered[-1]
    spread = _offset(east, now) - _offset(west, now)
    if spread == timedelta(0):
        return west
    window = datetime.combine(now.date(), end) - datetime.combine(now.date(), start)
    if spread >= window:
        raise ValueError(
            f"the number may be anywhere from {west} to {east}: no hours of the calling window"
            " are inside it in all of them (add a timezone column)"
        )
    return f"{west} {east}"


def inferred_timezone(e164: str, start: time, end: time) -> str | None:
    """The contact's timezone ("ZONE", or "WEST EAST"), None if the number does not say;
    ValueError when its zones have no common calling hours."""
    zones = zones_for(e164)
    if not zones:
        return None
    return zones[0] if len(zones) == 1 else _span(tuple(sorted(zones)), start, end)

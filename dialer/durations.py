"""Parsing of the human duration and rate notations used in campaign and config files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_RATE_UNITS |= {"h": 3600, "hour": 3600}
MAX_RATE_PER_S = 1000  # requests a second: far beyond any provider account seen
MIN_RATE_PER_S = 1 / 3600  # one request an hour: slower figures are typos (and overflow)


MAX_DURATION = timedelta(days=3660)  # ten years: past this a figure is a typo, not a plan


class OutOfRange(ValueError):
    """A well-formed duration outside the bounds allowed where it is used."""


def parse_duration(
    text: str, *, at_most: timedelta = MAX_DURATION, at_least: timedelta = timedelta(0)
) -> timedelta:
    """Parse '30s', '20m', '2h', '1d', '500ms' into a timedelta within [at_least, at_most];
    raise ValueError otherwise (never OverflowError, whatever the digits)."""
    match = _DURATION.match(text) if isinstance(text, str) and len(text) <= 40 else None
    if not match:
        raise ValueError(f"expected a duration such as '30s', '20m', '2h' or '1d', got {text!r}")
    value, unit = match.groups()
    seconds = float(value) * _UNITS[unit]
    if seconds > at_most.total_seconds() or seconds < at_least.total_seconds():
        raise OutOfRange(
            f"{text.strip()} is outside the allowed range"
            f" ({describe_duration(at_least)} to {describe_duration(at_most)})"
        )
    return timedelta(seconds=seconds)


def describe_duration(span: timedelta) -> str:
    """A bound as people write it: '10m', '1d', '365d'."""
    seconds = span.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Rate:
    """A request rate written 'N/min', 'N/s' or 'N/h'; kept as written so it can be shown back."""

    count: float
    per_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds

    @property
    def interval_s(self) -> float:
        """Seconds between two requests at this rate (the GCRA emission interval)."""
        return self.per_seconds / self.count

    def __str__(self) -> str:
        unit = {1: "s", 60: "min", 3600: "h"}.get(int(self.per_seconds), f"{self.per_seconds}s")
        count = int(self.count) if self.count == int(self.count) else self.count
        return f"{count}/{unit}"


def parse_rate(text: str) -> Rate:
    """Parse '200/min', '50/s', '1000/h' into a Rate; raise ValueError otherwise."""
    match = _RATE.match(text) if isinstance(text, str) and len(text) <= 40 else None
    if not match:
        raise ValueError(f"expected a rate such as '200/min', '50/s' or '1000/h', got {text!r}")
    count, unit = match.groups()
    if float(count) <= 0:
        raise ValueError(f"a rate must be positive, got {text!r}")
    rate = Rate(float(count), _RATE_UNITS[unit])
    if rate.per_second < MIN_RATE_PER_S * (1 - 1e-9):
        raise ValueError(f"{text.strip()} is slower than any dialing allows (at least 1/h)")
    if rate.per_second > MAX_RATE_PER_S:
        raise ValueError(
            f"{text.strip()} is more than any provider grants (at most {MAX_RATE_PER_S}/s)"
        )
    return rate

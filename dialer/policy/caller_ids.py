"""Which caller id an attempt shows: the number people are likeliest to pick up.

- `sticky` (the default): a contact's retries show the number its first attempt showed, so a
  person called back sees the number they already saw; a first attempt gets the least-used
  number.
- `local`: the same, among the campaign's numbers in the contact's own country and area code
  (else country, else any).
- `rotate`: the numbers in turn, by attempt (as before caller ids were chosen).

A number that is resting (its answer rate fell below `rest_caller_id_below`) is never shown;
"least used" counts this process's recent attempts, ties broken in the campaign's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

import phonenumbers


@cache
def area_of(e164: str) -> tuple[int, str]:
    """(country calling code, area code) of a number; the area code is empty for numbers
    with none (mobiles in many countries, toll-free)."""
    number = phonenumbers.parse(e164)
    national = phonenumbers.national_significant_number(number)
    length = phonenumbers.length_of_geographical_area_code(number)
    return number.country_code or 0, national[:length]


def _local(callers: Sequence[str], to: str) -> list[str]:
    """The callers sharing `to`'s country and area code, else its country, else all."""
    country, area = area_of(to)
    same_area = [c for c in callers if area and area_of(c) == (country, area)]
    same_country = [c for c in callers if area_of(c)[0] == country]
    return same_area or same_country or list(callers)


def choose_caller(
    policy: str,
    callers: Sequence[str],
    to: str,
    *,
    first: str | None,
    usage: Mapping[str, int],
    resting: frozenset[str] = frozenset(),
    attempt_id: int = 0,
) -> str | None:
    """The caller id for an attempt to `to` whose contact's first attempt showed `first`
    (None for a first attempt); None when every number is resting (nothing may be shown)."""
    eligible = [c for c in callers if c not in resting]
    if not eligible:
        return None
    if policy == "rotate":
        return eligible[attempt_id % len(eligible)]
    pool = _local(eligible, to) if policy == "local" else eligible
    if first in pool:
        return first
    order = {c: i for i, c in enumerate(callers)}
    return min(pool, key=lambda c: (usage.get(c, 0), order[c]))


REST_MINIMUM = 50  # settled attempts of a number today before its answer rate is judged


def is_tired(settled: int, answered: int, threshold: float | None) -> bool:
    """Whether a number rests for the rest of the day: judged on at least REST_MINIMUM settled
    attempts, its answer rate is below the campaign's `rest_caller_id_below`."""
    return threshold is not None and settled >= REST_MINIMUM and answered < threshold * settled

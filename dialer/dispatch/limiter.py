"""The rate limiter's arithmetic, apart from the database that stores its state.

A GCRA clock per account: request k of a batch has its slot `ahead + k * interval` seconds from
now (`ahead` is how far the account's theoretical arrival time lies past now), and may leave at
most `early` seconds before its slot. Pure functions, so the guarantee can be tested without a
database: over any window of the provider's unit, no more requests leave than its figure.
"""

from __future__ import annotations

import math


def ready_slots(ahead_s: float, early_s: float, interval_s: float, waiting: int) -> int:
    """How many of `waiting` requests may be sent now: those whose slot opens within `early_s`.

    Rounded down, never toward zero: a slot even a little past `early_s` waits (the old
    `int()` let one leave up to a whole interval early, one request too many in a window).
    """
    if waiting <= 0 or ahead_s > early_s:
        return 0
    return min(waiting, math.floor((early_s - ahead_s) / interval_s) + 1)

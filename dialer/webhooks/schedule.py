"""When a failed webhook delivery is tried again (pure: no clock, no I/O).

After the n-th failed try the next comes DELAYS_S[n-1] later (the last figure repeats), with
±20% jitter so that a receiver coming back is not hit by every event at once; none after 24
hours from the event (or its replay). The steps stay short for the first minutes, so a
receiver that was down for a minute has its events about a minute after it is back at most.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

DELAYS_S = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
GIVE_UP_AFTER = timedelta(hours=24)


def retry_at(
    tries: int, since: datetime, now: datetime, rng: random.Random | None = None
) -> datetime | None:
    """The time of the next try after `tries` failed ones, or None: retries are exhausted."""
    delay = DELAYS_S[min(max(tries, 1), len(DELAYS_S)) - 1]
    deadline = since + GIVE_UP_AFTER
    if now + timedelta(seconds=0.8 * delay) > deadline:
        return None  # even the earliest the jitter allows is too late
    # a jittered time past the deadline is the deadline: the last try is not lost to the jitter
    return min(now + timedelta(seconds=delay * (rng or random).uniform(0.8, 1.2)), deadline)

"""When a silent call is due for a status look-up: the one schedule (read in SQL by db.attempts).

A call that has gone quiet is asked about early, instead of holding its channel until ring
timeout + maximum call length + grace (minutes) when its final callback was lost:

- no event since it was sent, or since it started ringing: after the ring timeout + LOOKUP_GRACE;
- answered, no final event: after min(max call length, ANSWERED_QUIET) + LOOKUP_GRACE;
- the provider says it is still live: again after 10 s, 20 s, 40 s... up to BACKOFF_CAP.

`attempts.settle_by` holds the time of the next look-up. Look-ups use a share of the account's
rate (LOOKUP_SHARE, per reconciling process, counted on the account's shared request clock so
dials slow down for them), oldest first; the rest wait for the next round.
"""

from __future__ import annotations

from datetime import timedelta

LOOKUP_GRACE = timedelta(seconds=3)  # a final callback later than this is taken as lost
ANSWERED_QUIET = timedelta(seconds=30)  # an answered call talks this long before we first ask
BACKOFF_FIRST = timedelta(seconds=10)
BACKOFF_CAP = timedelta(minutes=2)
LOOKUP_SHARE = 0.25  # of the account's request rate, per reconciler round


def lookups_per_round(rate_per_s: float, round_s: float) -> int:
    """How many look-up requests one reconciler round may send for an account."""
    return max(1, int(LOOKUP_SHARE * rate_per_s * round_s))

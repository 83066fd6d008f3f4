"""When a silent call is due for a status look-up: the one schedule, as SQL over an attempt.

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


def after_event_sql(state: str, ring_s: str, talk_s: str) -> str:
    """SQL for the next look-up time of an attempt that just reached `state` (SQL expressions
    for the new state, its ring timeout and its maximum call length in seconds)."""
    quiet = ANSWERED_QUIET.total_seconds()
    grace = LOOKUP_GRACE.total_seconds()
    return (
        f"now() + make_interval(secs => CASE WHEN {state} = 'in-progress'"
        f" THEN least({talk_s}, {quiet}) ELSE {ring_s} END + {grace})"
    )


def after_live_answer_sql(lookups: str) -> str:
    """SQL for the next look-up time after the provider said the call is still live, given how
    many look-ups it had."""
    first, cap = BACKOFF_FIRST.total_seconds(), BACKOFF_CAP.total_seconds()
    return f"now() + make_interval(secs => least({cap}, {first} * power(2, least({lookups}, 10))))"


def lookups_per_round(rate_per_s: float, round_s: float) -> int:
    """How many look-up requests one reconciler round may send for an account."""
    return max(1, int(LOOKUP_SHARE * rate_per_s * round_s))

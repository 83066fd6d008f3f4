"""When a silent call is due for a status look-up: the one schedule (read in SQL by db.attempts).

A call that has gone quiet is asked about early, instead of holding its channel until ring
timeout + maximum call length + grace (minutes) when its final callback was lost:

- no event since it was sent, or since it started ringing: after the ring timeout + LOOKUP_GRACE;
- answered, no final event: after min(max call length, ANSWERED_QUIET) + LOOKUP_GRACE;
- the provider says it is still live: again after 10 s, 20 s, 40 s... up to BACKOFF_CAP.

`attempts.settle_by` holds the time of the next look-up. Look-ups use a share of the account's
rate (LOOKUP_SHARE, per reconciling process, counted on the account's shared request clock so
dials slow down for them), oldest first; the rest wait for the next round.

**The idle rate.** When channels are what binds (or the campaign's last calls are all live),
dialing leaves the account's rate unused, and a live call whose final callback was lost would
hold its channel until the schedule above asks about it. So each round, while the account's
shared request clock is idle (no request waiting for a slot), the reconciler spends the free
slots on live calls that have a call id to ask about and are past IDLE_FROM of the typical
length of their phase (ringing: from the request; answered: from the answer; typical: the
median over the account's last TYPICAL_OVER settled calls, else the campaign's ring timeout
and ANSWERED_QUIET), most overdue first (the call most likely ended), each at most once every
IDLE_REASK across every process (`attempts.looked_up_at`). A slot is taken only when the clock
would let a request go at once (dispatch.limiter.booked_if_idle), so dials never wait behind
these look-ups for more than the one in flight, and every request stays within the account's
rate (Exotel counts look-ups against its 200/min).
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


IDLE_FROM = 0.5  # of a phase's typical length: a call this far in may have ended unheard
IDLE_REASK = timedelta(seconds=10)  # one call is asked about at most this often on idle rate
TYPICAL_OVER = 200  # settled calls whose median phase lengths say what is typical
TYPICAL_FLOOR_S = 5.0  # a typical phase is never taken as shorter than this

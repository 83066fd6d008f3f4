"""Calls a provider places late: how long after a request that got no answer a call may still
appear, and what that means for the attempt's channel and its contact's next dial.

A create-call request that timed out (or got a 5xx, or whose sender crashed) may have reached
the provider, or a front before it (a proxy, a load balancer, the provider's own queue), which
can place the call after we gave up waiting. Nothing of ours can leave later than the send
window plus the client's timeout (providers.send_deadline: 25 s), but what a front already took
it may hand on when its own upstream answers: 60 s is nginx's default proxy timeout, 100 s
Cloudflare's, and Bandwidth queues calls for up to 5 minutes of its CPS (docs/late-placement.md
cites each). So, within the account's `late_placement` (default LATE_PLACEMENT_DEFAULT after
the request):

- an attempt sent with no call id back is never closed `unknown`: it stays live and keeps its
  channel, so a call placed late lands on a channel held for it, never over the account's
  limit; the reconciler keeps asking the provider's list of calls to the number meanwhile;
- its contact is never dialed again (an `unknown` outcome's retry waits for the span's end,
  whatever the campaign's `unknown` delay); and just before a redial, the provider's list of
  calls to the number is read once more: a call placed since that no attempt claims is adopted
  by the `unknown` attempt and the redial is not sent.

What remains possible is written in the README: a call placed after this span, on a provider
whose list does not show it in time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

LATE_PLACEMENT_DEFAULT = timedelta(minutes=5)
LATE_PLACEMENT_MIN = timedelta(seconds=25)  # send window + client timeout: ours alone
LATE_PLACEMENT_MAX = timedelta(days=1)  # Twilio queues up to 24 h of calls (error 22005)
LIST_AGAIN_FIRST = timedelta(seconds=10)  # while waiting out the span: ask the list again
LIST_AGAIN_CAP = timedelta(seconds=60)


def may_close_unknown(
    requested_at: datetime | None, late_until: datetime | None, now: datetime
) -> bool:
    """Whether an attempt sent with no call id back may be closed `unknown` now: only once no
    late placement of its request is to be expected any more."""
    return requested_at is None or late_until is None or now >= late_until


def list_again_in(lookups: int, now: datetime, late_until: datetime) -> timedelta:
    """When to read the provider's call list again for an attempt still inside its span: a
    backoff from LIST_AGAIN_FIRST, capped, and never past the span's end."""
    step = min(LIST_AGAIN_CAP, LIST_AGAIN_FIRST * (2 ** min(lookups, 6)))
    return max(timedelta(seconds=1), min(step, late_until - now))


def redial_not_before(requested_at: datetime | None, span: timedelta) -> datetime | None:
    """The earliest moment the contact of an attempt closed `unknown` may be dialed again."""
    return None if requested_at is None else requested_at + span

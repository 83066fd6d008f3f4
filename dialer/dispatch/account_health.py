"""When an account stops getting new sends, and for how long: the rule of failover.

A campaign with a pool of accounts dials through those that are healthy. An account rests
(every process sees it at its next claim: dispatch.claim reads it under the account's lock)
when its API fails, never because of a person's answer (busy, a decline, no answer are
outcomes of the contact):
- it cannot be reached (the request never left): at once;
- it refuses our credentials or the account (401/403, no balance): at once, longer;
- UNSURE_IN_A_ROW answers in a row that may or may not have placed a call (5xx, timeouts).
A rest lasts rest_s(streak), growing with the streak of rests, capped so that a recovered
account gets its share back within REST_CAP_S; its first request after the rest is its probe
(one that fails places no call). An operator's pause (`dialer account pause`) lasts until
resumed. Reservations made before the rest are released unsent at the send's compare-and-set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REST_FIRST_S = 2.0
REST_CAP_S = 30.0
REFUSED_REST_S = 60.0  # credentials refused: a person must act; look again each minute
UNSURE_IN_A_ROW = 3


def rest_s(streak: int, *, refused: bool = False) -> float:
    """How long an account rests after its `streak`-th failure in a row (0-based)."""
    if refused:
        return REFUSED_REST_S
    return min(REST_CAP_S, REST_FIRST_S * 2 ** min(streak, 10))


@dataclass
class HealthWatch:
    """This process's view of each account's requests: when to rest one, and when a success
    should tell the others it works again."""

    unsure: dict[str, int] = field(default_factory=dict)  # ambiguous answers in a row
    rested: set[str] = field(default_factory=set)  # rested by this process, not yet working

    def unreachable(self, account: str) -> bool:
        """The request never left: rest the account now."""
        self.unsure.pop(account, None)
        self.rested.add(account)
        return True

    def refused(self, account: str) -> bool:
        """The provider refused the account: rest it now."""
        self.unsure.pop(account, None)
        self.rested.add(account)
        return True

    def ambiguous(self, account: str) -> bool:
        """An answer that may have placed a call: rest the account after UNSURE_IN_A_ROW."""
        self.unsure[account] = self.unsure.get(account, 0) + 1
        if self.unsure[account] < UNSURE_IN_A_ROW:
            return False
        self.unsure.pop(account)
        self.rested.add(account)
        return True

    def worked(self, account: str) -> bool:
        """The provider accepted a call: whether its rest should be said to be over."""
        self.unsure.pop(account, None)
        if account in self.rested:
            self.rested.discard(account)
            return True
        return False

"""What a provider's refusal of a call request means: for the attempt, for the account's rate,
and for the account itself. One pure mapping from the adapters' errors (providers.base)."""

from __future__ import annotations

from dataclasses import dataclass

from dialer.policy.states import AttemptState
from dialer.providers.base import ProviderError
from dialer.providers.errors import NotDialed, RateLimited, Rejected
from dialer.settle import Settlement


@dataclass(frozen=True)
class Refusal:
    """How one refused request is recorded."""

    said: str  # the log line's message
    detail: str  # the provider's words (masked by the adapter)
    # How the attempt ends now; None: the call may exist (an ambiguous answer), so it stays
    # live, never resent, for callbacks or the reconciler to settle.
    settlement: Settlement | None
    slows_account: bool = False  # a 429: every process on the account waits, the rate slows
    retry_after: float | None = None  # the provider's Retry-After, with slows_account
    refuses_account: bool = False  # bad credentials or no balance: its campaigns pause
    unreachable: bool = False  # the provider could not be reached: the account rests
    unsure: bool = False  # the call may exist: a run of these rests the account


def refusal(error: ProviderError) -> Refusal:
    """The record of a request the provider refused or answered ambiguously."""
    detail = error.detail
    if isinstance(error, RateLimited):
        return Refusal(
            "rate limited (429)",
            detail,
            Settlement.not_placed(f"429: {detail}"),
            slows_account=True,
            retry_after=error.retry_after,
        )
    if isinstance(error, NotDialed):
        return Refusal(
            "not dialed", detail, Settlement.not_placed(detail), unreachable=error.unreachable
        )
    if isinstance(error, Rejected):
        if error.account_wide:
            return Refusal("rejected", detail, Settlement.not_placed(detail), refuses_account=True)
        rejected = Settlement(AttemptState.REJECTED, error=detail, do_not_call=error.do_not_call)
        return Refusal("rejected", detail, rejected)
    # Ambiguous, or any other ProviderError: the request may have left and the call exist.
    return Refusal("ambiguous answer, left to reconcile", detail, None, unsure=True)

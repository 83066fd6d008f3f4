"""Each refusal of a call request recorded as it means (dispatch.refusals)."""

from __future__ import annotations

from dialer.dispatch.refusals import refusal
from dialer.policy.states import AttemptState, TransitionName
from dialer.providers.base import ProviderError
from dialer.providers.errors import Ambiguous, NotDialed, RateLimited, Rejected


def test_a_429_slows_the_account_and_the_attempt_does_not_count() -> None:
    said = refusal(RateLimited("slow down", retry_after=3.0))
    assert (said.slows_account, said.retry_after, said.refuses_account) == (True, 3.0, False)
    assert said.settlement is not None
    assert said.settlement.outcome == AttemptState.NOT_DIALED
    assert said.settlement.transition == TransitionName.NOT_PLACED
    assert said.settlement.error == "429: slow down"


def test_not_dialed_is_uncounted() -> None:
    said = refusal(NotDialed("queue full"))
    assert said.settlement is not None and said.settlement.outcome == AttemptState.NOT_DIALED
    assert not said.slows_account and not said.refuses_account


def test_a_rejected_number_ends_rejected_and_may_list_it_do_not_call() -> None:
    said = refusal(Rejected("blocked number", do_not_call=True))
    assert said.settlement is not None
    assert said.settlement.outcome == AttemptState.REJECTED
    assert said.settlement.do_not_call and not said.refuses_account


def test_a_refused_account_is_uncounted_and_refuses_the_account() -> None:
    said = refusal(Rejected("401", account_wide=True))
    assert said.refuses_account
    assert said.settlement is not None and said.settlement.outcome == AttemptState.NOT_DIALED


def test_an_ambiguous_answer_leaves_the_attempt_live() -> None:
    assert refusal(Ambiguous("timeout")).settlement is None
    assert refusal(ProviderError("502 from a proxy")).settlement is None

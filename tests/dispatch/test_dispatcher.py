"""The dispatcher in-process, on the in-memory store (dispatch.memory_store) and an adapter
that answers from a script: the claim loop, stopping, draining, exit decisions and the mapping
of provider refusals, in milliseconds. The PostgreSQL store keeps the process tests
(test_end_to_end, test_faults, test_lawful...)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.calls import CallRequest
from dialer.campaign_spec import CampaignSpec
from dialer.campaigns import Campaign
from dialer.db.outage import Outage
from dialer.dispatch.account_run import AccountRun
from dialer.dispatch.dispatcher import Dispatcher, ExitCode
from dialer.dispatch.limiter import AccountLimits
from dialer.dispatch.memory_store import MemoryDispatchStore
from dialer.policy.states import AttemptState, ContactState
from dialer.policy.window import CallingRules
from dialer.providers.base import InboundCallback, Provider
from dialer.providers.errors import Ambiguous, RateLimited, Rejected
from dialer.providers.http import HttpAnswer, HttpRequest
from dialer.supervise import Supervisor

ACCOUNT = "scripted"
Answer = Callable[[CallRequest], Awaitable[str]]


class ScriptedProvider(Provider):
    """An adapter whose create-call answer is a coroutine per request (no HTTP): the port
    the dispatcher sends through, as a test plays the provider."""

    kind = "scripted"

    def __init__(self, answer: Answer) -> None:
        super().__init__(ACCOUNT, "secret")
        self.answer = answer
        self.placed: list[CallRequest] = []

    @property
    def secrets(self) -> list[str]:
        return ["secret"]

    def create_request(self, call: CallRequest) -> HttpRequest:
        raise AssertionError("not sent over HTTP")

    def read_created(self, answer: HttpAnswer) -> str | None:
        raise AssertionError("not sent over HTTP")

    def parse_callback(self, callback: InboundCallback):
        raise AssertionError("no callbacks here")

    async def place_call(self, session, call: CallRequest, deadline: object | None = None):
        self.placed.append(call)
        return await self.answer(call)


def campaign(campaign_id: int = 1, **spec: object) -> Campaign:
    made = CampaignSpec.model_validate(
        {
            "name": f"c{campaign_id}",
            "account": ACCOUNT,
            "caller_id": ["+918047112233"],
            "default_region": "IN",
            "timezone": "UTC",
            "window": {"start": "00:00", "end": "23:59:59"},
        }
        | spec
    )
    return Campaign(campaign_id, made.name, ACCOUNT, made, CallingRules.of(made))


NUMBERS = [f"+9198450{n:05d}" for n in range(40)]


def dialing(
    answer: Answer,
    *,
    numbers: list[str] = NUMBERS,
    rate: float = 2000.0,
    channels: int = 8,
    **options: object,
) -> tuple[Dispatcher, MemoryDispatchStore, ScriptedProvider]:
    store = MemoryDispatchStore()
    limits = AccountLimits(ACCOUNT, "scripted", rate, 1.0, channels)
    store.add_account(limits)
    chosen = campaign()
    store.add_campaign(chosen, numbers)
    provider = ScriptedProvider(answer)
    session = aiohttp.ClientSession()  # never used: the scripted adapter sends nothing
    dispatcher = Dispatcher(
        store,
        session,
        [AccountRun(limits, provider, [chosen])],
        "http://127.0.0.1:9",
        outage=Outage(limit_s=30),
        **options,  # type: ignore[arg-type]
    )
    return dispatcher, store, provider


async def run(dispatcher: Dispatcher) -> int:
    try:
        return await asyncio.wait_for(dispatcher.run(), timeout=60)
    finally:
        await dispatcher.session.close()


def answered_at_once(store_of: Callable[[], MemoryDispatchStore], outcome=AttemptState.COMPLETED):
    """Accept each call and send its final word on the next turn of the loop."""

    async def answer(call: CallRequest) -> str:
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: store_of().finish(call.attempt_id, outcome))
        return f"call-{call.attempt_id}"

    return answer


async def test_every_contact_is_dialed_once_within_channels_and_the_run_ends_done() -> None:
    most_live = 0
    holder: list[MemoryDispatchStore] = []
    finish = answered_at_once(lambda: holder[0])

    async def answer(call: CallRequest) -> str:
        nonlocal most_live
        most_live = max(most_live, len(holder[0].live(ACCOUNT)))
        return await finish(call)

    dispatcher, store, provider = dialing(answer, channels=5, wait=True)
    holder.append(store)
    assert await run(dispatcher) == ExitCode.DONE
    assert Counter(c.to for c in provider.placed) == Counter(NUMBERS)  # each number once
    assert most_live <= 5  # never more calls live than the account's channels
    assert {c.state for c in store.contacts.values()} == {ContactState.DONE}
    assert store.status[1] == "completed"
    assert dispatcher.dialed == len(NUMBERS)
    assert dispatcher.accounts[0].ended == "every contact is final"


def timed_dialing(
    **options: object,
) -> tuple[Dispatcher, MemoryDispatchStore, ScriptedProvider, list[float]]:
    """dialing(), with --wait and calls answered at once, and when each request left (the
    loop's clock), in order."""
    sent_at: list[float] = []
    holder: list[MemoryDispatchStore] = []
    finish = answered_at_once(lambda: holder[0])

    async def answer(call: CallRequest) -> str:
        sent_at.append(asyncio.get_running_loop().time())
        return await finish(call)

    dispatcher, store, provider = dialing(answer, wait=True, **options)  # type: ignore[arg-type]
    holder.append(store)
    return dispatcher, store, provider, sent_at


async def test_requests_never_leave_faster_than_the_account_rate() -> None:
    dispatcher, _, _, sent_at = timed_dialing(numbers=NUMBERS[:12], rate=40.0)
    assert await run(dispatcher) == ExitCode.DONE
    # 40/s aimed at 95%: 12 requests span at least 11 intervals of 1/38 s, less the early
    # margin the limiter allows one request (limits.early_s)
    assert sent_at[-1] - sent_at[0] >= 11 / 38 - 0.05


async def test_the_sends_of_a_span_commit_together_and_still_leave_on_their_slots() -> None:
    """At 50 calls a second a claim's sends commit `dialing` a span (sender.SEND_SPAN_S) at a
    time, one commit for several calls; each still leaves on its own slot: no 51 requests
    (the figure, plus one) within a second."""
    numbers = [f"+9198451{n:05d}" for n in range(100)]
    dispatcher, store, provider, sent_at = timed_dialing(numbers=numbers, rate=50.0, channels=100)
    assert await run(dispatcher) == ExitCode.DONE
    assert sorted(c.to for c in provider.placed) == numbers  # each once
    commits = store.calls.count("begin_dial")
    assert commits <= len(numbers) / 3, f"{commits} dialing commits for {len(numbers)} calls"
    assert all(later - first >= 1.0 for first, later in zip(sent_at, sent_at[50:], strict=False))


async def test_a_loop_with_every_channel_live_waits_for_one_to_free_instead_of_asking() -> None:
    """One channel, calls that end 0.2 s after they are accepted: while the channel is live the
    claim loop asks nothing (no claim, no look-up of waiting contacts) until the call's end
    wakes it, and every such wait is ended by a call's end, not by its timeout."""
    holder: list[MemoryDispatchStore] = []

    async def answer(call: CallRequest) -> str:
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, lambda: holder[0].finish(call.attempt_id))
        return f"call-{call.attempt_id}"

    dispatcher, store, provider = dialing(answer, numbers=NUMBERS[:5], channels=1, wait=True)
    holder.append(store)
    woken: list[bool] = []
    waits = store.wait_for_channel

    async def wait_for_channel(
        account: str, unheard_s: float, heard_s: float, gather_s: float
    ) -> bool:
        woken.append(await waits(account, unheard_s, heard_s, gather_s))
        return woken[-1]

    store.wait_for_channel = wait_for_channel  # type: ignore[method-assign]
    assert await run(dispatcher) == ExitCode.DONE
    assert len(provider.placed) == 5
    assert woken and all(woken), woken
    asked = Counter(store.calls)
    assert asked["claim"] <= 3 * 5, asked
    assert asked["idle_facts"] <= 4, asked


async def test_calls_ending_together_are_claimed_together() -> None:
    """Four channels, calls that end 0.2 s after they are accepted, sent 20 ms apart (50/s):
    the four of a claim end within 60 ms, and the loop, woken by the first, claims them all in
    one claim (dispatcher.CHANNEL_GATHER_S) and, having taken the last free channels, waits
    for a call's end instead of asking again: about a claim a batch."""
    holder: list[MemoryDispatchStore] = []

    async def answer(call: CallRequest) -> str:
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, lambda: holder[0].finish(call.attempt_id))
        return f"call-{call.attempt_id}"

    numbers = [f"+9198452{n:05d}" for n in range(16)]
    dispatcher, store, provider = dialing(answer, numbers=numbers, rate=50.0, channels=4, wait=True)
    holder.append(store)
    assert await run(dispatcher) == ExitCode.DONE
    assert sorted(c.to for c in provider.placed) == numbers  # each once
    claims = store.calls.count("claim")
    assert claims <= len(numbers) / 4 + 2, f"{claims} claims for {len(numbers)} calls"


async def test_a_claim_of_a_span_of_sends_commits_them_once_wherever_its_slots_fall() -> None:
    """A claim's five sends whose slots open 20 ms apart from 50 ms after it (80 ms from the
    first to the last, across the clock's 100 ms mark): its spans start at its first slot
    (sender.SEND_SPAN_S), so one commit gives them all their slots, not two."""
    holder: list[MemoryDispatchStore] = []
    finish = answered_at_once(lambda: holder[0])
    all_sent = asyncio.Event()

    async def answer(call: CallRequest) -> str:
        if len(provider.placed) == 5:
            all_sent.set()
        return await finish(call)

    dispatcher, store, provider = dialing(answer, numbers=NUMBERS[:5], rate=50.0, channels=5)
    holder.append(store)
    account = dispatcher.accounts[0]
    made = await store.claim(
        account.limits, account.campaigns, max_batch=5, horizon_s=1.0, dial_cap=5
    )
    shifted = [replace(c, send_in_s=0.05 + n * 0.02) for n, c in enumerate(made.attempts)]
    started = time.monotonic()  # the sender's clock
    try:
        for item in shifted:
            dispatcher.sender.start(account, item, started, shifted[0].send_in_s)
        await asyncio.wait_for(all_sent.wait(), 30)
    finally:
        await dispatcher.sender.drain()
        await dispatcher.session.close()
    assert sorted(c.to for c in provider.placed) == sorted(NUMBERS[:5])
    assert store.calls.count("begin_dial") == 1, store.calls


async def test_a_stop_releases_reservations_and_records_the_request_in_flight() -> None:
    in_flight = asyncio.Event()
    let_go = asyncio.Event()

    async def answer(call: CallRequest) -> str:
        in_flight.set()
        await let_go.wait()  # the provider holds the first request
        return f"call-{call.attempt_id}"

    dispatcher, store, provider = dialing(answer, rate=5.0, channels=4)
    running = asyncio.create_task(run(dispatcher))
    await in_flight.wait()
    dispatcher.signalled()
    await asyncio.sleep(0)
    let_go.set()
    code = await running
    assert code == ExitCode.WORK_LEFT
    assert dispatcher.stopped_by_signal
    sent = [a for a in store.attempts.values() if a.state == AttemptState.ACCEPTED]
    assert [a.call_id for a in sent] == [f"call-{provider.placed[0].attempt_id}"]
    released = [a for a in store.attempts.values() if a.state == AttemptState.NOT_DIALED]
    assert released and all(a.error == "stopped before sending" for a in released)
    assert not [a for a in store.attempts.values() if a.state == AttemptState.RESERVED]
    for attempt in released:  # its contact waits, the attempt uncounted
        contact = store.contacts[attempt.contact_id]
        assert (contact.state, contact.attempts) == (ContactState.PENDING, 0)


async def test_a_deadline_already_passed_claims_nothing_and_says_so() -> None:
    past = datetime.now().astimezone() - timedelta(seconds=1)
    dispatcher, store, provider = dialing(answered_at_once(lambda: store), deadline=past)
    assert await run(dispatcher) == ExitCode.WORK_LEFT
    assert provider.placed == [] and "claim" not in store.calls
    assert dispatcher.accounts[0].ended == "the --until/--for deadline was reached"


async def test_nothing_due_before_the_run_limit_ends_with_work_left() -> None:
    dispatcher, store, provider = dialing(answered_at_once(lambda: store), idle_s=5.0)
    later = datetime.now().astimezone() + timedelta(hours=1)
    for contact in store.contacts.values():
        contact.next_attempt_at = later
    assert await run(dispatcher) == ExitCode.WORK_LEFT
    assert provider.placed == []
    assert "after this run's limit" in (dispatcher.accounts[0].ended or "")


async def test_a_429_slows_the_account_and_its_contact_is_dialed_again() -> None:
    refused: set[str] = set()
    holder: list[MemoryDispatchStore] = []
    finish = answered_at_once(lambda: holder[0])

    async def answer(call: CallRequest) -> str:
        if not refused:
            refused.add(call.to)
            raise RateLimited("too many requests", retry_after=0.2)
        return await finish(call)

    dispatcher, store, provider = dialing(answer, numbers=NUMBERS[:5], wait=True)
    holder.append(store)
    assert await run(dispatcher) == ExitCode.DONE
    assert "push_back_rate" in store.calls
    assert store.limiters[ACCOUNT].rate_factor < 1.0  # the shared rate slowed
    first = [a for a in store.attempts.values() if a.state == AttemptState.NOT_DIALED]
    assert [a.error for a in first] == ["429: too many requests"]
    assert Counter(c.to for c in provider.placed)[next(iter(refused))] == 2  # asked again
    assert {c.state for c in store.contacts.values()} == {ContactState.DONE}


async def test_an_account_refused_pauses_its_campaigns_and_exits_2() -> None:
    async def answer(call: CallRequest) -> str:
        raise Rejected("401 bad credentials", account_wide=True)

    dispatcher, store, _ = dialing(answer, rate=5.0)
    assert await run(dispatcher) == ExitCode.BAD_CONFIG
    assert store.status[1] == "paused"
    assert store.paused_why[1] == "provider refused the account: 401 bad credentials"
    assert dispatcher.account_failure == (
        f"account {ACCOUNT}: provider refused the account: 401 bad credentials"
    )
    # the refused request does not count; nothing stays reserved
    assert all(a.state == AttemptState.NOT_DIALED for a in store.attempts.values())


async def test_a_number_rejected_ends_rejected_and_the_others_are_dialed() -> None:
    holder: list[MemoryDispatchStore] = []
    finish = answered_at_once(lambda: holder[0])

    async def answer(call: CallRequest) -> str:
        if call.to == NUMBERS[0]:
            raise Rejected("21215: number not allowed")
        return await finish(call)

    dispatcher, store, _ = dialing(answer, numbers=NUMBERS[:6], wait=True)
    holder.append(store)
    assert await run(dispatcher) == ExitCode.DONE
    outcomes = {store.contacts[a.contact_id].phone_e164: a.state for a in store.attempts.values()}
    assert outcomes[NUMBERS[0]] == AttemptState.REJECTED
    assert set(outcomes.values()) == {AttemptState.REJECTED, AttemptState.COMPLETED}


async def test_an_ambiguous_answer_is_never_resent_and_stays_for_the_reconciler() -> None:
    async def answer(call: CallRequest) -> str:
        raise Ambiguous("timed out after the request left")

    dispatcher, store, provider = dialing(answer, numbers=NUMBERS[:3], idle_s=0.5)
    assert await run(dispatcher) == ExitCode.WORK_LEFT
    assert sorted(c.to for c in provider.placed) == NUMBERS[:3]  # each sent once, no more
    assert {a.state for a in store.attempts.values()} == {AttemptState.DIALING}
    assert {a.error for a in store.attempts.values()} == {"timed out after the request left"}
    assert "calls in flight settle without this run" in (dispatcher.accounts[0].ended or "")


async def test_a_paused_campaign_sends_nothing_more() -> None:
    holder: list[MemoryDispatchStore] = []
    finish = answered_at_once(lambda: holder[0])

    async def answer(call: CallRequest) -> str:
        holder[0].status[1] = "paused"  # an operator pauses it after the first call
        return await finish(call)

    dispatcher, store, provider = dialing(answer, rate=20.0, channels=2)
    holder.append(store)
    assert await run(dispatcher) == ExitCode.WORK_LEFT
    # what was reserved when the pause came is released at the send's compare-and-set
    assert len(provider.placed) <= 2
    assert not store.live(ACCOUNT)


async def test_a_sender_that_dies_stops_the_run_as_failed_and_names_itself() -> None:
    dispatcher, store, _ = dialing(answered_at_once(lambda: store), numbers=NUMBERS[:1])
    store.failing["record_accepted"] = [RuntimeError("a bug in recording")]
    supervisor = Supervisor()
    dispatcher.supervisor = supervisor
    assert await run(dispatcher) == ExitCode.ERROR
    assert isinstance(dispatcher.failure, RuntimeError)
    assert supervisor.death is not None and supervisor.death.task.startswith("sender of attempt")


async def test_a_database_outage_is_ridden_out() -> None:
    holder: list[MemoryDispatchStore] = []
    dispatcher, store, provider = dialing(
        answered_at_once(lambda: holder[0]), numbers=NUMBERS[:4], wait=True
    )
    holder.append(store)
    store.failing["claim"] = [ConnectionRefusedError("database restarting")]
    store.failing["record_accepted"] = [ConnectionResetError("cut mid-statement")]
    assert await run(dispatcher) == ExitCode.DONE
    assert Counter(c.to for c in provider.placed) == Counter(NUMBERS[:4])
    assert dispatcher.outage.started is None  # recovered


@pytest.mark.parametrize("stale", [True, False])
async def test_a_registry_copy_that_turns_stale_stops_its_campaign(stale: bool) -> None:
    dispatcher, store, provider = dialing(
        answered_at_once(lambda: store), numbers=NUMBERS[:2], wait=True
    )
    if stale:
        store.stale[1] = ["us-dnc copy is 40 days old (at most 31)"]
    code = await run(dispatcher)
    assert code == (ExitCode.BAD_CONFIG if stale else ExitCode.DONE)
    assert (provider.placed == []) is stale
    assert bool(dispatcher.refused) is stale


def pool_run(
    rates: list[float], channels: list[int], rest: tuple[int, int] | None
) -> tuple[MemoryDispatchStore, dict[str, list[float]], list[str], int]:
    """One campaign on a pool of accounts (a0, a1, …) of these rates and channels, on the
    memory store; `rest` = (after how many sends, which account) rests that account for a
    moment. Per account, when its sends were committed; problems seen at send time."""
    names = [f"a{i}" for i in range(len(rates))]
    store = MemoryDispatchStore()
    problems: list[str] = []
    committed: dict[str, list[float]] = {name: [] for name in names}
    sends = 0

    def answer_for(name: str, limit: int) -> Answer:
        async def answer(call: CallRequest) -> str:
            nonlocal sends
            attempt = store.attempts[call.attempt_id]
            if len(store.live(name)) > limit:
                problems.append(f"{name}: {len(store.live(name))} live > {limit} channels")
            rested = store.resting.get(name)
            assert attempt.requested_at is not None
            if (
                rested is not None
                and rested[1] == "test rest"
                and rested[0] - timedelta(seconds=0.2) <= attempt.requested_at < rested[0]
            ):
                problems.append(f"{name}: sent at {attempt.requested_at} while resting")
            committed[name].append(attempt.requested_at.timestamp())
            sends += 1
            if rest is not None and sends == rest[0]:
                until = store.clock() + timedelta(seconds=0.2)
                store.resting[names[rest[1]]] = (until, "test rest")
            asyncio.get_running_loop().call_soon(store.finish, call.attempt_id)
            return f"{name}-{call.attempt_id}"

        return answer

    pooled = campaign(account=names[0], accounts=names)
    store.add_campaign(pooled, NUMBERS)
    runs = []
    for name, rate, limit in zip(names, rates, channels, strict=True):
        limits = AccountLimits(name, "scripted", rate, 1.0, limit)
        store.add_account(limits)
        provider = ScriptedProvider(answer_for(name, limit))
        provider.name = name
        runs.append(AccountRun(limits, provider, [pooled]))

    async def go() -> int:
        async with aiohttp.ClientSession() as session:
            dispatcher = Dispatcher(store, session, runs, "http://127.0.0.1:9", wait=True)
            return await asyncio.wait_for(dispatcher.run(), 60)

    code = asyncio.run(go())
    return store, committed, problems, code


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rates=st.lists(st.sampled_from([30.0, 60.0, 120.0]), min_size=2, max_size=3),
    channels=st.lists(st.integers(2, 6), min_size=3, max_size=3),
    rest=st.none() | st.tuples(st.integers(1, 30), st.integers(0, 1)),
)
def test_a_pool_sends_only_through_healthy_accounts_within_each_ones_limits(
    rates: list[float], channels: list[int], rest: tuple[int, int] | None
) -> None:
    store, committed, problems, code = pool_run(rates, channels[: len(rates)], rest)
    assert code == ExitCode.DONE and problems == []
    assert {c.state for c in store.contacts.values()} == {ContactState.DONE}
    assert sum(len(times) for times in committed.values()) == len(NUMBERS)  # each once
    for (name, times), rate in zip(committed.items(), rates, strict=True):
        times.sort()
        for i, start in enumerate(times):  # any 1 s window: at most the rate (+1: early)
            in_window = sum(1 for t in times[i:] if t < start + 1.0)
            assert in_window <= rate + 1, (name, rate, in_window)


async def run_waiting(look_up_s: float, due_in_s: float) -> list[str]:
    """A run whose every contact is due in `due_in_s`, reading its first waiting contacts
    taking `look_up_s` (a big campaign's): run to its end, which is done with every number
    dialed once; the store's calls, in order."""
    dispatcher, store, provider = dialing(answered_at_once(lambda: store), idle_s=30.0)
    store.firsts_take_s = look_up_s
    soon = datetime.now().astimezone() + timedelta(seconds=due_in_s)
    for contact in store.contacts.values():
        contact.next_attempt_at = soon
    assert await run(dispatcher) == ExitCode.DONE
    assert Counter(call.to for call in provider.placed) == Counter(NUMBERS)
    return store.calls


async def test_an_idle_run_reuses_a_slow_look_up_and_decides_its_end_on_a_fresh_one() -> None:
    """While the contacts' retry delay runs out, an idle round reuses the last look-up
    (FIRSTS_BUSY_SHARE: 0.1 s to read, kept 2 s) instead of reading them again; once they are
    dialed, the run still ends done, on a fresh one."""
    calls = await run_waiting(look_up_s=0.1, due_in_s=1.2)
    idle_rounds = [c for c in calls if c.startswith("idle_facts")]
    assert "idle_facts without firsts" in idle_rounds  # reused while the delay ran out
    assert idle_rounds[-1] == "idle_facts"  # the end: decided on a fresh look-up


async def test_a_campaign_with_nothing_due_is_not_claimed_while_the_look_up_is_kept() -> None:
    """Reading the first waiting contacts takes 0.2 s (kept for 4 s) and they are due in
    2.5 s: the run claims once, finds nothing, and claims again only when they are due (an
    idle round every 0.5 s meanwhile), instead of a claim walking every contact each round."""
    calls = await run_waiting(look_up_s=0.2, due_in_s=2.5)
    before_due = calls[: calls.index("begin_dial")]
    assert before_due.count("claim") <= 3, before_due  # at the start and when due (+1 early)
    assert before_due.count("idle_facts without firsts") >= 3  # the idle rounds went on

"""Answers shared for a moment: one computation for many askers, and a slow one kept longer so
that a page polled every 2 s never keeps the database busy (a fake clock: no waiting)."""

from __future__ import annotations

import asyncio

from dialer.shared_answers import SharedAnswers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_many_askers_share_one_computation() -> None:
    clock = Clock()
    shared = SharedAnswers(1.0, clock=clock)
    release = asyncio.Event()
    computed = 0

    async def compute() -> int:
        nonlocal computed
        computed += 1
        await release.wait()
        return computed

    askers = [asyncio.ensure_future(shared.get("k", compute)) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*askers) == [1] * 50 and computed == 1


async def test_a_slow_answer_is_kept_until_computing_it_is_a_fifth_of_the_time() -> None:
    clock = Clock()
    shared = SharedAnswers(1.0, busy_share=0.2, clock=clock)
    computed = 0

    async def slow() -> int:  # takes 3 s of the clock (a campaign of 900,000 contacts)
        nonlocal computed
        computed += 1
        clock.now += 3.0
        return computed

    assert await shared.get("campaigns", slow) == 1
    assert shared.kept_for("campaigns") == 15.0  # 3 s / 0.2
    clock.now += 14.9
    assert await shared.get("campaigns", slow) == 1  # still the kept answer
    clock.now += 0.2
    assert await shared.get("campaigns", slow) == 2  # 15 s on: computed again

    async def fast() -> str:  # a quick answer keeps the floor of 1 s
        clock.now += 0.01
        return "fresh"

    assert await shared.get("other", fast) == "fresh" and shared.kept_for("other") == 1.0


async def test_a_forgotten_answer_is_computed_again_by_the_next_asker() -> None:
    """What an idle claim loop does when a kept answer may not decide (dispatch.ending)."""
    clock = Clock()
    shared = SharedAnswers(0.0, busy_share=0.05, clock=clock)
    computed = 0

    async def slow() -> int:
        nonlocal computed
        computed += 1
        clock.now += 0.5
        return computed

    assert await shared.get("firsts", slow) == 1
    clock.now += 5.0
    assert await shared.get("firsts", slow) == 1  # kept: 20 x 0.5 s
    shared.forget("firsts")
    assert await shared.get("firsts", slow) == 2

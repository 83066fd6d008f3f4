"""dialer.batching: items submitted together are flushed as one batch, each gets its own
result, and a failed flush fails only its own batch."""

from __future__ import annotations

import asyncio

import pytest

from dialer.batching import Batcher


async def test_items_submitted_in_one_tick_are_one_batch_each_with_its_result() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(flush)
    futures = [batcher.submit(i) for i in range(5)]
    assert all(isinstance(f, asyncio.Future) for f in futures)  # no task per item
    assert await asyncio.gather(*futures) == [0, 10, 20, 30, 40]
    assert batches == [[0, 1, 2, 3, 4]]


class HeldFlush:
    """A flush that records its batches and holds each until `release` is set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.flushing = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(items)
        self.flushing.set()
        await self.release.wait()
        return [item.upper() for item in items]


async def test_items_submitted_while_a_batch_is_flushed_go_in_the_next_one() -> None:
    flush = HeldFlush()
    batcher: Batcher[str, str] = Batcher(flush)
    first = batcher.submit("a")
    await flush.flushing.wait()
    later = [batcher.submit("b"), batcher.submit("c")]
    flush.release.set()
    assert await first == "A"
    assert await asyncio.gather(*later) == ["B", "C"]
    assert flush.batches == [["a"], ["b", "c"]]


async def test_a_failed_flush_fails_its_own_batch_only() -> None:
    calls = 0

    async def flush(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError("database gone")
        return items

    batcher: Batcher[int, int] = Batcher(flush)
    failed = [batcher.submit(1), batcher.submit(2)]
    for future in failed:
        with pytest.raises(ConnectionResetError):
            await future
    assert await batcher.submit(3) == 3


async def test_a_caller_that_stops_waiting_does_not_stop_the_batch() -> None:
    flushed: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        await asyncio.sleep(0)
        flushed.append(items)
        return items

    batcher: Batcher[int, int] = Batcher(flush)
    gone = batcher.submit(1)
    kept = batcher.submit(2)
    gone.cancel()
    assert await kept == 2
    assert flushed == [[1, 2]]


async def test_an_item_that_finds_no_batch_in_flight_waits_for_company() -> None:
    """With `gather_s`, items arriving apart share one batch: flushed once `most` wait."""
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        return items

    batcher: Batcher[int, int] = Batcher(flush, gather_s=30.0, most=3)
    first = batcher.submit(1)
    for _ in range(3):
        await asyncio.sleep(0)  # the batcher has run and is waiting
    assert batches == [] and not first.done()
    second = batcher.submit(2)
    await asyncio.sleep(0)
    third = batcher.submit(3)
    async with asyncio.timeout(5):  # `most` ends the wait, not the 30 s
        assert await asyncio.gather(first, second, third) == [1, 2, 3]
    assert batches == [[1, 2, 3]]


async def test_a_lone_item_goes_when_the_gathering_time_is_up() -> None:
    batcher: Batcher[int, int] = Batcher(_echo, gather_s=0.01, most=100)
    async with asyncio.timeout(5):
        assert await batcher.submit(7) == 7


async def test_items_that_waited_for_a_batch_in_flight_go_without_gathering() -> None:
    flush = HeldFlush()
    batcher: Batcher[str, str] = Batcher(flush, gather_s=30.0, most=2)
    first = [batcher.submit("a"), batcher.submit("b")]
    await flush.flushing.wait()
    later = batcher.submit("c")
    flush.release.set()
    async with asyncio.timeout(5):  # not held back 30 s: it already waited a whole flush
        assert await later == "C"
    assert await asyncio.gather(*first) == ["A", "B"]
    assert flush.batches == [["a", "b"], ["c"]]


async def test_a_batcher_stopped_while_gathering_cancels_what_waits() -> None:
    batcher: Batcher[int, int] = Batcher(_echo, gather_s=30.0)
    waiting = batcher.submit(1)
    await asyncio.sleep(0)
    assert batcher._task is not None
    batcher._task.cancel()  # as a shutdown cancels every task
    with pytest.raises(asyncio.CancelledError):  # not left waiting for ever
        async with asyncio.timeout(5):
            await waiting


async def _echo(items: list[int]) -> list[int]:
    return items

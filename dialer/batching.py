"""Turning many concurrent one-row database updates into one statement per batch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

# How long a callback that finds no batch being stored waits for others to share its
# statement (dialer.callbacks.app): its 200 comes up to this much later. At 50 calls a second
# it cut a settled call's statements from 14.3 to 11.0, and under load PostgreSQL's CPU a
# callback by a third (bench/RESULTS.md); 20 ms cut statements further but slowed intake with
# 64 requests in flight, each of which waits for its answer.
GATHER_S = 0.01
# ... or until this many wait: under load a batch this big forms within a few milliseconds,
# and holding it for more saves PostgreSQL little while every answer waits. With 64 requests
# in flight, 16 took 3,402 callbacks/s against 3,039 with 64, side by side (bench/RESULTS.md).
GATHER_MOST = 16

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """`await submit(item)` returns that item's result from `flush(items)`, run once per batch.

    `flush` gets every item submitted since the last batch and returns one result per item.
    One batch is flushed at a time: items submitted meanwhile make the next one, flushed as
    soon as it ends. With `gather_s`, an item that finds no batch being flushed waits up to
    that long for company (or until `most` items wait), so that items arriving a few
    milliseconds apart share one statement instead of taking one each.
    """

    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[list[Result]]],
        *,
        gather_s: float = 0.0,
        most: int = 64,
    ) -> None:
        self._flush = flush
        self._gather_s = gather_s
        self._most = most
        self._items: list[tuple[Item, asyncio.Future[Result]]] = []
        self._task: asyncio.Task | None = None
        self._enough: asyncio.Event | None = None  # set when `most` items wait

    def submit(self, item: Item) -> asyncio.Future[Result]:
        """Add `item` to the next batch; its result (or the batch's error) comes in the future
        returned. A plain future, not a coroutine: awaiting it costs no task of its own."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._items.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="batcher")
        elif self._enough is not None and len(self._items) >= self._most:
            self._enough.set()
        return future

    async def _run(self) -> None:
        gather = self._gather_s > 0  # the first batch after a pause waits for company
        while self._items:
            try:
                if gather:
                    await self._wait_for_company()
                else:
                    await asyncio.sleep(0)  # let every caller that is ready add its item
            except BaseException as exc:  # cancelled while gathering: fail what waits
                self._fail(self._items, exc)
                self._items = []
                raise
            gather = False
            batch, self._items = self._items, []
            try:
                results = await self._flush([item for item, _ in batch])
            except BaseException as exc:
                self._fail(batch, exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _wait_for_company(self) -> None:
        """Up to `gather_s`, or until `most` items wait."""
        if len(self._items) >= self._most:
            return
        self._enough = asyncio.Event()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._gather_s):
                    await self._enough.wait()
        finally:
            self._enough = None

    @staticmethod
    def _fail(batch: list[tuple[Item, asyncio.Future[Result]]], exc: BaseException) -> None:
        for _, future in batch:
            if future.done():
                continue
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)

"""Turning many concurrent one-row database updates into one statement per tick."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """`await submit(item)` returns that item's result from `flush(items)`, run once per batch.

    `flush` gets every item submitted since the last batch and returns one result per item.
    """

    def __init__(self, flush: Callable[[list[Item]], Awaitable[list[Result]]]) -> None:
        self._flush = flush
        self._items: list[tuple[Item, asyncio.Future[Result]]] = []
        self._task: asyncio.Task | None = None

    def submit(self, item: Item) -> asyncio.Future[Result]:
        """Add `item` to the next batch; its result (or the batch's error) comes in the future
        returned. A plain future, not a coroutine: awaiting it costs no task of its own."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._items.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="batcher")
        return future

    async def _run(self) -> None:
        while self._items:
            await asyncio.sleep(0)  # let every caller that is ready add its item
            batch, self._items = self._items, []
            try:
                results = await self._flush([item for item, _ in batch])
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

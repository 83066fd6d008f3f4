"""Answers shared by every asker for a moment: one computation at a time per key, its result
kept for `ttl_s`, so a thousand clients asking the same thing cost one computation. An answer
that took long to compute is kept longer (`busy_share`: its computation may take at most that
share of the time), so a heavy page polled every 2 s never keeps the database busy."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

MAX_KEYS = 256  # keys kept at once (the oldest go first): strangers' keys cannot grow it


class SharedAnswers:
    def __init__(
        self, ttl_s: float, busy_share: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.busy_share = busy_share
        self.clock = clock
        self._kept: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._took: dict[str, float] = {}
        self._running: dict[str, asyncio.Future] = {}

    async def get(self, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        """The answer for `key`: kept if fresh, else the one being computed, else computed now
        (an error is not kept: the next asker tries again)."""
        kept = self._kept.get(key)
        if kept is not None and self.clock() - kept[0] < self.kept_for(key):
            return kept[1]
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(self._timed(key, compute))
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(running)

    def forget(self, key: str) -> None:
        """Drop the answer kept for `key`: the next asker computes it again."""
        self._kept.pop(key, None)

    def kept_for(self, key: str) -> float:
        """How long the answer for `key` is kept: `ttl_s`, or longer if it is slow to compute."""
        return max(self.ttl_s, self._took.get(key, 0.0) / self.busy_share)

    async def _timed(self, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        started = self.clock()
        result = await compute()
        self._took[key] = self.clock() - started
        return result

    def _finished(self, key: str, done: asyncio.Future) -> None:
        self._running.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        self._kept[key] = (self.clock(), done.result())
        self._kept.move_to_end(key)
        while len(self._kept) > MAX_KEYS:
            gone, _ = self._kept.popitem(last=False)
            self._took.pop(gone, None)

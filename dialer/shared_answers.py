"""Answers shared by every asker for a moment: one computation at a time per key, its result
kept for `ttl_s`, so a thousand clients asking the same thing cost one computation."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

MAX_KEYS = 256  # keys kept at once (the oldest go first): strangers' keys cannot grow it


class SharedAnswers:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._kept: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._running: dict[str, asyncio.Future] = {}

    async def get(self, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        """The answer for `key`: kept if fresh, else the one being computed, else computed now
        (an error is not kept: the next asker tries again)."""
        kept = self._kept.get(key)
        if kept is not None and time.monotonic() - kept[0] < self.ttl_s:
            return kept[1]
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(compute())
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(running)

    def _finished(self, key: str, done: asyncio.Future) -> None:
        self._running.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        self._kept[key] = (time.monotonic(), done.result())
        self._kept.move_to_end(key)
        while len(self._kept) > MAX_KEYS:
            self._kept.popitem(last=False)

"""What every fake provider shares: limits, the life of a call, callback delivery, statistics.

A fake is an aiohttp app made of a `Dialect` (the provider's own routes, auth, request checks,
answers and callback format, written from its documentation) and this engine, which decides each
call's outcome from a seeded random stream, plays it out in time and delivers the dialect's
callbacks (duplicated or out of order if asked). The engine's statistics are the witness the
tests compare the dialer's records with: per attempt, the outcome the provider decided.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from aiohttp import BasicAuth, web

from dialer.sim.server import peak_in_window

STAGES = ("initiated", "ringing", "answered", "final")


LAG_TICK_S = 0.005  # how often the fake checks that its own loop runs on time
STALL_S = 0.02  # a wake-up this late is a stall of the fake's own (arrivals timed late)


@dataclass
class FakeSettings:
    rate: tuple[int, float] | None = (20, 1.0)  # requests per window (seconds); None: unlimited
    channels: int = 8  # 0: unlimited
    seed: int = 1
    outcomes: dict[str, float] = field(
        default_factory=lambda: {"completed": 0.5, "no-answer": 0.25, "busy": 0.15, "failed": 0.1}
    )
    ring: tuple[float, float] = (0.05, 0.3)
    talk: tuple[float, float] = (1.0, 2.0)
    duplicates: float = 0.0  # share of callbacks delivered twice (or more, see redeliver)
    reorder: float = 0.0  # share of callbacks delivered after the next one
    storm: float = 0.0  # share of requests answered 429 whatever the rate, spread evenly
    retry_after: bool = True  # send Retry-After with 429s
    lose: float = 0.0  # share of calls whose callbacks are never sent (reconciliation tests)
    placed_500: float = 0.0  # share of create requests answered 500 after placing the call
    phantom_500: float = 0.0  # share answered 500 without placing anything
    # Answering-machine detection (where the dialect has it): an outcome "machine" is a call a
    # machine answered; its result callback comes this long after the answer (past the final
    # status callback when longer than the talk), and is lost for this share of calls.
    amd_delay: tuple[float, float] = (0.0, 0.5)
    amd_lost: float = 0.0


@dataclass
class Delivery:
    """One callback request, exactly as the provider sends it."""

    url: str
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    after: float = 0.0  # seconds past its stage (an asynchronous result's own delay)


@dataclass
class FakeCall:
    call_id: str
    attempt_id: int | None
    to: str  # E.164
    outcome: str  # what the provider decided for the customer
    callback_url: str
    params: dict[str, Any]  # the create request, as the dialect read it
    status: str = "queued"
    duration: int = 0
    lost: bool = False  # its callbacks were never sent
    started: float = field(default_factory=time.time)


def basic_auth_is(request: web.Request, login: str, password: str) -> bool:
    """Whether the request carries exactly these HTTP Basic credentials."""
    try:
        auth = BasicAuth.decode(request.headers.get("Authorization", ""))
    except ValueError:
        return False
    return (auth.login, auth.password) == (login, password)


class Dialect(Protocol):
    def routes(self, fake: FakeProvider) -> list[web.RouteDef]: ...

    def callbacks(self, call: FakeCall, stage: str, sequence: int) -> list[Delivery]:
        """The callbacks the provider sends when `call` reaches `stage` (maybe none)."""
        ...

    def reported(self, outcome: str) -> str:
        """The outcome the dialer should record for a call the provider decided `outcome`
        for: providers that cannot tell busy from no-answer report what they can."""
        ...


class FakeProvider:
    def __init__(self, dialect: Dialect, settings: FakeSettings) -> None:
        self.dialect = dialect
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.ids = itertools.count(1)
        self.counts: Counter[str] = Counter()
        self.requests: list[float] = []
        self.recent: deque[float] = deque()
        # When this fake's own event loop was held up (LagWatch): a request that reached it
        # meanwhile is seen, and timed, only when the loop runs again.
        self.stalls: deque[tuple[float, float]] = deque(maxlen=10_000)
        self.rate_429_seen: list[dict[str, Any]] = []
        self.active = 0
        self.peak_active = 0
        self.calls: dict[str, FakeCall] = {}
        self.per_number: Counter[str] = Counter()
        self.per_attempt: Counter[int] = Counter()
        self.tasks: set[asyncio.Task] = set()
        self.session: aiohttp.ClientSession | None = None
        self.app = web.Application()
        self.app.add_routes([*dialect.routes(self), web.get("/_fake/stats", self._stats)])
        self.app.cleanup_ctx.append(self._client)

    async def _client(self, app: web.Application):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            self.session = session
            watching = asyncio.create_task(self._watch_lag())
            yield
            watching.cancel()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(watching, *self.tasks, return_exceptions=True)

    async def _watch_lag(self) -> None:
        """Note every time this fake's loop woke more than STALL_S late (the test process not
        scheduled on a busy machine, or busy elsewhere): (when it should have, when it did)."""
        while True:
            due = time.monotonic() + LAG_TICK_S
            await asyncio.sleep(LAG_TICK_S)
            woke = time.monotonic()
            if woke - due > STALL_S:
                self.stalls.append((due, woke))

    # ---- limits -----------------------------------------------------------------------------

    def admit(self, *, uses_channel: bool = True, rated: bool = True) -> float | None:
        """Count one API request against the limits: None if it may proceed, else the seconds
        to put in Retry-After (the dialect answers 429 in its own words). `rated=False`: a
        request the provider's calls-per-second limit does not count (a status look-up where
        the limit is on creating calls)."""
        now = time.monotonic()
        self.counts["requests"] += 1
        self.requests.append(now)
        served = self.counts["requests"]
        storm = self.settings.storm
        if storm and int(served * storm) != int((served - 1) * storm):
            # a call refused, or a look-up (a status or list request: no attempt to record)
            self.counts["storm_429" if uses_channel else "storm_429_lookup"] += 1
            return 1.0
        rate = self.settings.rate if rated else None
        if rate is not None:
            count, window = rate
            while self.recent and self.recent[0] <= now - window:
                self.recent.popleft()
            if len(self.recent) >= count:
                # A request timed late by this fake's own stall may have arrived before the
                # window began: such a 429 is the fake's doing, counted apart (still answered).
                edge = now - window
                own = any(start <= edge + STALL_S and end >= edge for start, end in self.stalls)
                self.counts["rate_429_fake_stalled" if own else "rate_429"] += 1
                self.rate_429_seen.append(
                    {
                        "window_s": [round(t - now, 3) for t in self.recent],
                        "stalls_s": [
                            (round(a - now, 3), round(b - now, 3))
                            for a, b in self.stalls
                            if b >= edge - 1
                        ],
                    }
                )
                return self.recent[0] + window - now
            self.recent.append(now)
        if uses_channel and self.settings.channels and self.active >= self.settings.channels:
            self.counts["channel_429"] += 1
            return 1.0
        return None

    def fault(self) -> str | None:
        """A server error for this create request, if the settings ask for one: `placed` (the
        call goes ahead, the answer is lost) or `phantom` (nothing happens)."""
        draw = self.rng.random()
        if draw < self.settings.phantom_500:
            self.counts["phantom_500"] += 1
            return "phantom"
        if draw < self.settings.phantom_500 + self.settings.placed_500:
            self.counts["placed_500"] += 1
            return "placed"
        return None

    def retry_after_headers(self, wait: float) -> dict[str, str]:
        return {"Retry-After": str(max(1, int(wait + 0.999)))} if self.settings.retry_after else {}

    # ---- calls ------------------------------------------------------------------------------

    def open_call(
        self, to: str, attempt_id: int | None, callback_url: str, params: dict[str, Any]
    ) -> FakeCall:
        """Accept a call: decide its outcome and start playing it out."""
        call_id = params.pop("_call_id", None) or f"{next(self.ids):032x}"
        outcome = self.rng.choices(
            list(self.settings.outcomes), weights=list(self.settings.outcomes.values())
        )[0]
        call = FakeCall(call_id, attempt_id, to, outcome, callback_url, params)
        self.calls[call_id] = call
        self.counts["accepted"] += 1
        self.per_number[to] += 1
        if attempt_id is not None:
            self.per_attempt[attempt_id] += 1
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        call.lost = bool(self.settings.lose and self.rng.random() < self.settings.lose)
        task = asyncio.create_task(self._live(call, silent=call.lost))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return call

    def plan(self, call: FakeCall) -> list[tuple[float, str]]:
        """When the call reaches each stage, in seconds from acceptance."""
        ring = self.rng.uniform(*self.settings.ring)
        talk = self.rng.uniform(*self.settings.talk)
        if call.outcome in ("completed", "machine"):
            call.duration = max(1, round(talk))
            answered = (ring, "answered")
            return [(0.0, "initiated"), (0.02, "ringing"), answered, (ring + talk, "final")]
        if call.outcome == "failed":
            return [(0.0, "initiated"), (0.05, "final")]
        return [(0.0, "initiated"), (0.02, "ringing"), (ring, "final")]

    async def _live(self, call: FakeCall, *, silent: bool) -> None:
        plan = self.plan(call)
        deliveries: list[tuple[float, Delivery]] = []
        for sequence, (at, stage) in enumerate(plan):
            for delivery in [] if silent else self.dialect.callbacks(call, stage, sequence):
                delay = at + delivery.after
                if self.settings.reorder and self.rng.random() < self.settings.reorder:
                    delay += self.rng.uniform(0.05, 0.4)
                deliveries.append((delay, delivery))
                if self.settings.duplicates and self.rng.random() < self.settings.duplicates:
                    deliveries.append((delay + self.rng.uniform(0.0, 0.3), delivery))
        started = time.monotonic()
        senders = [
            asyncio.create_task(self._deliver(started + delay, d)) for delay, d in deliveries
        ]
        for at, stage in plan:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            call.status = call.outcome if stage == "final" else stage
        self.active -= 1
        await asyncio.gather(*senders)

    async def _deliver(self, when: float, delivery: Delivery) -> None:
        await asyncio.sleep(max(0.0, when - time.monotonic()))
        headers = {"Content-Type": delivery.content_type} | delivery.headers
        assert self.session is not None
        for backoff in (0.3, 0.6, 1.2, None):
            try:
                async with self.session.post(
                    delivery.url, data=delivery.body, headers=headers
                ) as response:
                    self.counts[f"callback_{response.status}"] += 1
                    if response.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError):
                self.counts["callback_errors"] += 1
            if backoff is None:
                break
            await asyncio.sleep(backoff)
        self.counts["callbacks_lost"] += 1

    # ---- what the provider saw --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return dict(self.counts) | {
            "rate_429_seen": self.rate_429_seen,
            "active": self.active,
            "peak_concurrency": self.peak_active,
            "peak_requests_per_window": peak_in_window(
                self.requests, (self.settings.rate or (0, 1.0))[1]
            ),
            "per_number": dict(self.per_number),
            "per_attempt": {str(k): v for k, v in self.per_attempt.items()},
            "calls": {
                c.call_id: {
                    "attempt_id": c.attempt_id,
                    "to": c.to,
                    "outcome": c.outcome,
                    "reported": self.dialect.reported(c.outcome),
                    "lost": c.lost,
                }
                for c in self.calls.values()
            },
        }

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

"""`dialer sim-provider`: a small calls API that behaves like a strict real provider.

- `POST /v1/calls` (JSON, `Authorization: Bearer <secret>`): 401 without the secret, 400 for a
  missing field, 429 + Retry-After beyond its rate (a sliding window of the rate's unit) or when
  every channel is busy, else 201 `{"call_id": ...}`.
- Each call then lives on its own: `initiated`, `ringing`, `answered` and a final outcome drawn
  from a seeded distribution, each POSTed as JSON to the call's `status_callback`, signed with
  `X-Sim-Signature` = hex HMAC-SHA256(secret, path + "\\n" + body); optionally duplicated or
  delivered out of order. A channel is busy from acceptance until the final event is sent.
  The final event carries `sip_code` (200, 486 busy, 480 no answer, 404; 603 when a person
  declines or a carrier blocks the caller id: --declines, --blocked) and `verstat`.
- `GET /v1/calls/{id}`: the call's current status (for reconciliation); `GET /v1/calls?to=N`:
  the calls to number N, newest first, each with `created` (epoch seconds).
- `GET /stats`: what the provider saw, so tests can check the dialer from the outside.
- `POST /v1/admin/revoke` (with the secret): the credentials are revoked from now on; every
  request answers 401 (an account whose key was rotated or suspended).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from dialer.sim.settings import SimSettings
from dialer.sim.signing import sign

REQUIRED = ("to", "from", "status_callback")


@dataclass
class SimCall:
    call_id: str
    to: str
    attempt_id: Any
    callback: str
    outcome: str
    status: str = "queued"
    duration_s: int = 0
    created: float = field(default_factory=time.time)
    lose_final: bool = False
    ring_s: float = 0.0
    talk_s: float = 0.0
    caller: str = ""
    sip_code: int = 200


@dataclass
class SimState:
    settings: SimSettings
    rng: random.Random  # each call's outcome, ring and talk, drawn in order of creation
    loss_rng: random.Random  # which finals are lost: apart, so losing changes no call's life
    noise_rng: random.Random  # duplicates and reordering
    network_rng: random.Random  # declines and blocks: apart, so they change no other draw
    requests: list[float] = field(default_factory=list)
    recent: deque[float] = field(default_factory=deque)
    active: int = 0
    peak_active: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    per_number: Counter[str] = field(default_factory=Counter)
    calls: dict[str, SimCall] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    tasks: set[asyncio.Task] = field(default_factory=set)
    call_seconds: float = 0.0  # channel time used by finished calls, for makespan bounds
    deliveries_pending: int = 0  # callbacks planned, not yet sent nor given up
    revoked: bool = False  # POST /v1/admin/revoke: every request answers 401


STATE = web.AppKey("state", SimState)
SESSION = web.AppKey("session", aiohttp.ClientSession)


def _authorized(state: SimState, request: web.Request) -> bool:
    given = request.headers.get("Authorization", "")
    return not state.revoked and hmac.compare_digest(given, f"Bearer {state.settings.secret}")


async def revoke(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorized(state, request):
        return web.json_response({"error": "invalid credentials"}, status=401)
    state.revoked = True
    return web.json_response({"revoked": True})


def _rate_limited(state: SimState, now: float) -> float | None:
    """Seconds until a slot frees up if this request exceeds the rate, else None."""
    rate = state.settings.rate
    if rate is None:
        return None
    window = rate.per_seconds
    while state.recent and state.recent[0] <= now - window:
        state.recent.popleft()
    if len(state.recent) >= rate.count:
        return state.recent[0] + window - now
    return None


async def create_call(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = time.monotonic()
    state.counts["requests"] += 1
    state.requests.append(now)
    if not _authorized(state, request):
        state.counts["rejected_auth"] += 1
        return web.json_response({"error": "invalid credentials"}, status=401)
    if request.content_type != "application/json":
        state.counts["rejected_bad_request"] += 1
        return web.json_response({"error": "content type must be application/json"}, status=415)
    try:
        body = await request.json()
    except ValueError:
        body = None
    missing = [k for k in REQUIRED if not isinstance(body, dict) or not body.get(k)]
    if missing:
        state.counts["rejected_bad_request"] += 1
        return web.json_response({"error": f"missing field: {', '.join(missing)}"}, status=400)
    wait = _rate_limited(state, now)
    state.recent.append(now)
    if wait is not None:
        state.counts["rejected_rate"] += 1
        return _too_many("rate limit exceeded", wait)
    if state.settings.channels and state.active >= state.settings.channels:
        state.counts["rejected_channels"] += 1
        return _too_many("all channels busy", 1.0)
    call = SimCall(
        call_id=f"SIM{next(state.ids):08d}",
        to=body["to"],
        attempt_id=body.get("attempt_id"),
        callback=body["status_callback"],
        outcome=_pick(state.rng, state.settings.outcomes),
        ring_s=state.rng.uniform(*state.settings.ring),
        talk_s=state.rng.uniform(*state.settings.talk),
        lose_final=state.loss_rng.random() < state.settings.lose_final,
        caller=str(body["from"]),
    )
    _network(state, call)
    state.calls[call.call_id] = call
    if state.settings.journal:  # written before the answer: a kill loses no accepted call
        _journal(state.settings.journal, call)
    state.counts["accepted"] += 1
    state.per_number[call.to] += 1
    state.active += 1
    state.peak_active = max(state.peak_active, state.active)
    task = asyncio.create_task(_live(request.app, call))
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)
    return web.json_response({"call_id": call.call_id, "status": "queued"}, status=201)


SIP_OF_OUTCOME = {"completed": 200, "busy": 486, "no-answer": 480, "failed": 404}


def _network(state: SimState, call: SimCall) -> None:
    """What the network does to the call: a carrier blocks a share of a caller id's calls
    (603, failed), a person declines a share (486 busy or 603 failed); else the outcome's
    own SIP code."""
    settings, rng = state.settings, state.network_rng
    call.sip_code = SIP_OF_OUTCOME[call.outcome]
    if rng.random() < settings.blocked.get(call.caller, 0.0):
        call.outcome, call.sip_code = "failed", 603
    elif rng.random() < settings.declines:
        call.outcome, call.sip_code = ("busy", 486) if rng.random() < 0.5 else ("failed", 603)


def _journal(path: str, call: SimCall) -> None:
    record = {"call_id": call.call_id, "to": call.to, "attempt_id": call.attempt_id}
    record |= {"outcome": call.outcome, "at": time.time(), "from": call.caller}
    record |= {"sip_code": call.sip_code}
    with open(path, "a", encoding="utf-8") as journal:
        journal.write(json.dumps(record) + "\n")
        journal.flush()


def _too_many(message: str, wait: float) -> web.Response:
    retry_after = max(1, int(wait + 0.999))
    return web.json_response(
        {"error": message}, status=429, headers={"Retry-After": str(retry_after)}
    )


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


async def _live(app: web.Application, call: SimCall) -> None:
    """Play one call's life: timed status events, then free the channel."""
    state = app[STATE]
    settings = state.settings
    rng = state.noise_rng
    ring, talk = call.ring_s, call.talk_s
    plan: list[tuple[float, str, dict[str, Any]]] = [(0.0, "initiated", {})]
    # the final event says how the network ended the call and how it saw the caller id
    network = {"sip_code": call.sip_code, "verstat": settings.verstat}
    if call.outcome == "failed":
        plan.append((min(ring, 0.2), "failed", network))
    else:
        plan.append((min(0.05, ring / 4), "ringing", {}))
        if call.outcome == "completed":
            plan.append((ring, "answered", {}))
            plan.append((ring + talk, "completed", {"duration": round(talk)} | network))
        elif call.outcome == "busy":
            plan.append((min(ring, 0.5), "busy", network))
        else:
            plan.append((ring, "no-answer", network))
    deliveries = []
    for sequence, (at, status, extra) in enumerate(plan):
        # Like real providers' (Twilio's To, Exotel's To), an event names the number called.
        event = {"call_id": call.call_id, "attempt_id": call.attempt_id, "status": status}
        event["to"] = call.to
        event |= {"sequence": sequence, "timestamp": time.time() + at} | extra
        delay = at
        if settings.reorder and sequence < len(plan) - 1 and rng.random() < settings.reorder:
            delay = plan[sequence + 1][0] + rng.uniform(0.01, 0.2)  # arrives after the next one
        deliveries.append((delay, event))
        if settings.duplicates and rng.random() < settings.duplicates:
            deliveries.append((delay + rng.uniform(0.0, 0.1), event))
    final_at = plan[-1][0]
    started = time.monotonic()
    state.deliveries_pending += len(deliveries)
    senders = [asyncio.create_task(_deliver_at(app, call, started + d, e)) for d, e in deliveries]
    await asyncio.sleep(final_at)
    call.status = call.outcome
    call.duration_s = round(talk) if call.outcome == "completed" else 0
    state.active -= 1
    state.call_seconds += final_at
    await asyncio.gather(*senders)


async def _deliver_at(app: web.Application, call: SimCall, when: float, event: dict) -> None:
    try:
        await _deliver(app, call, when, event)
    finally:
        app[STATE].deliveries_pending -= 1


async def _deliver(app: web.Application, call: SimCall, when: float, event: dict) -> None:
    await asyncio.sleep(max(0.0, when - time.monotonic()))
    if event["status"] in ("ringing", "answered") and call.status == "queued":
        call.status = "ringing" if event["status"] == "ringing" else "in-progress"
    state = app[STATE]
    if not state.settings.callbacks:
        return
    if call.lose_final and event["status"] == call.outcome:
        state.counts["finals_lost"] += 1
        return
    body = json.dumps(event).encode()
    path = urlsplit(call.callback).path
    headers = {
        "Content-Type": "application/json",
        "X-Sim-Signature": sign(state.settings.secret, path, body),
    }
    for attempt, backoff in enumerate((0.5, 1.0, 2.0, None)):
        try:
            async with app[SESSION].post(call.callback, data=body, headers=headers) as response:
                if response.status < 500:
                    state.counts["callbacks_sent"] += 1
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        if backoff is None:
            break
        state.counts["callback_retries"] += 1
        await asyncio.sleep(backoff * (attempt + 1))
    state.counts["callbacks_lost"] += 1


async def get_call(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorized(state, request):
        return web.json_response({"error": "invalid credentials"}, status=401)
    call = state.calls.get(request.match_info["call_id"])
    if call is None:
        return web.json_response({"error": "no such call"}, status=404)
    return web.json_response(_call_record(call))


def _call_record(call: SimCall) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "attempt_id": call.attempt_id,
        "to": call.to,
        "status": call.status,
        "duration": call.duration_s,
        "created": call.created,
    }


async def list_calls(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not _authorized(state, request):
        return web.json_response({"error": "invalid credentials"}, status=401)
    to = request.query.get("to", "")
    calls = [_call_record(c) for c in reversed(state.calls.values()) if c.to == to]
    return web.json_response({"calls": calls})


def peak_in_window(times: list[float], window: float) -> int:
    """Most timestamps inside any half-open interval of length `window`."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while times[start] <= moment - window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    window = state.settings.rate.per_seconds if state.settings.rate else 1.0
    body = dict(state.counts) | {
        "active": state.active,
        # nothing more will happen unless asked: no call live, no callback still to send
        "quiet": state.active == 0 and state.deliveries_pending == 0,
        "call_seconds": round(state.call_seconds, 3),
        "peak_concurrency": state.peak_active,
        "window_s": window,
        "peak_requests_per_window": peak_in_window(state.requests, window),
        "peak_requests_per_second": peak_in_window(state.requests, 1.0),
        "per_number": dict(state.per_number),
        "calls": {
            c.call_id: {"to": c.to, "attempt_id": c.attempt_id, "outcome": c.outcome}
            for c in state.calls.values()
        },
    }
    return web.json_response(body)


def create_app(settings: SimSettings) -> web.Application:
    app = web.Application()
    app[STATE] = SimState(
        settings=settings,
        rng=random.Random(settings.seed),
        loss_rng=random.Random(settings.seed + 1),
        noise_rng=random.Random(settings.seed + 2),
        network_rng=random.Random(settings.seed + 3),
    )

    async def client(app: web.Application):
        timeout = aiohttp.ClientTimeout(total=5)
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            app[SESSION] = session
            yield
            for task in list(app[STATE].tasks):
                task.cancel()

    app.cleanup_ctx.append(client)
    app.add_routes(
        [
            web.post("/v1/calls", create_call),
            web.get("/v1/calls", list_calls),
            web.get("/v1/calls/{call_id}", get_call),
            web.get("/stats", stats),
            web.post("/v1/admin/revoke", revoke),
        ]
    )
    return app

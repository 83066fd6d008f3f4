"""The aiohttp app that receives provider callbacks, plus /healthz and the reconciler.

`POST /callbacks/{account}/{attempt_id}?token=...` (and `/callbacks/{account}?token=...` for
providers that post every call's events to one fixed URL, correlated by their call id or our
id echoed in the payload): the adapter verifies the request (URL token, signature, echoed
key) and normalizes it; the raw event is stored in `call_events` and applied in one
transaction, and only then is 2xx returned, so a provider retries anything we did not keep.
A request that fails verification gets 403 and is stored nowhere (it is logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import aiohttp
import asyncpg
from aiohttp import web

from dialer.batching import Batcher
from dialer.callbacks.bodies import BodyError, parse_body
from dialer.campaigns import CampaignCache
from dialer.dashboard.api import add_dashboard
from dialer.metrics import CALLBACK_SECONDS, CALLBACKS, metrics_handler
from dialer.policy.states import is_terminal
from dialer.providers.base import CallEvent, Forbidden, InboundCallback, Provider
from dialer.reconcile import RECONCILE_EVERY, reconcile_once
from dialer.settle import apply_event, apply_progress_batch

log = logging.getLogger("dialer.serve")
ProgressItem = tuple[str, int | None, CallEvent]  # account, attempt id if known, event


@dataclass
class Receiver:
    pool: asyncpg.Pool
    adapters: dict[str, Provider]
    public_url: str
    session: aiohttp.ClientSession | None = None
    cache: CampaignCache = field(default_factory=CampaignCache)

    def __post_init__(self) -> None:
        self.progress: Batcher[ProgressItem, bool] = Batcher(self._store_progress)

    async def _store_progress(self, items: list[ProgressItem]) -> list[bool]:
        by_account: dict[str, list[tuple[int | None, CallEvent]]] = {}
        for account, attempt_id, event in items:
            by_account.setdefault(account, []).append((attempt_id, event))
        new: set[tuple[str, str]] = set()
        async with self.pool.acquire() as conn:
            for account, batch in by_account.items():
                keys = await apply_progress_batch(conn, account, batch)
                new |= {(account, key) for key in keys}
        return [(account, event.dedupe_key) in new for account, _, event in items]


RECEIVER = web.AppKey("receiver", Receiver)


async def callback(request: web.Request) -> web.Response:
    started = time.perf_counter()
    account = request.match_info["account"]
    response, result = await _callback(request, account)
    if request.app[RECEIVER].adapters.get(account) is not None:  # no label per stranger's path
        CALLBACKS.labels(account, result).inc()
        CALLBACK_SECONDS.labels(account).observe(time.perf_counter() - started)
    return response


async def _callback(request: web.Request, account: str) -> tuple[web.Response, str]:
    """Verify, store and apply one callback: (the response, stored | repeated | refused)."""
    receiver = request.app[RECEIVER]
    adapter = receiver.adapters.get(account)
    raw_attempt = request.match_info.get("attempt_id")
    attempt_id = int(raw_attempt) if raw_attempt and raw_attempt.isdigit() else None
    body = await request.read()
    if adapter is None or (raw_attempt is not None and attempt_id is None):
        log.warning("callback refused", extra={"account": account, "reason": "unknown route"})
        return _refused(), "refused"
    try:
        fields, document = parse_body(request.headers.get("Content-Type", ""), body)
    except BodyError as exc:
        log.warning("callback refused", extra={"account": account, "reason": str(exc)})
        return _refused(), "refused"
    inbound = InboundCallback(
        url=receiver.public_url + request.path_qs,
        headers=request.headers,
        body=body,
        fields=fields,
        json=document,
        attempt_id=attempt_id,
    )
    try:
        event = adapter.parse_callback(inbound)
    except Forbidden as exc:
        log.warning(
            "callback refused",
            extra={"account": account, "attempt": attempt_id, "reason": str(exc)},
        )
        return _refused(), "refused"
    attempt_id = attempt_id if attempt_id is not None else event.attempt_id
    if is_terminal(event.status):
        async with receiver.pool.acquire() as conn:
            new = await apply_event(conn, receiver.cache, account, attempt_id, event)
    else:  # progress events from concurrent requests share one statement (group commit)
        new = await receiver.progress.submit((account, attempt_id, event))
    log.debug(
        "callback stored" if new else "callback repeated",
        extra={"account": account, "attempt": attempt_id, "status": event.status},
    )
    return web.json_response({"stored": new}), "stored" if new else "repeated"


def _refused() -> web.Response:
    return web.json_response({"error": "forbidden"}, status=403)


async def healthz(request: web.Request) -> web.Response:
    receiver = request.app[RECEIVER]
    try:
        async with receiver.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return web.json_response({"database": f"unreachable: {type(exc).__name__}"}, status=503)
    return web.json_response({"database": "ok"})


def create_app(
    receiver: Receiver, *, reconcile: bool = True, admin_token: str | None = None
) -> web.Application:
    """Callbacks, /healthz, /metrics, and the dashboard at / with its JSON under /api/."""
    app = web.Application(client_max_size=1 << 20)
    app[RECEIVER] = receiver
    add_dashboard(app, receiver.pool, admin_token)
    app.add_routes(
        [
            web.post("/callbacks/{account}", callback),
            web.post("/callbacks/{account}/{attempt_id}", callback),
            web.get("/healthz", healthz),
            web.get("/metrics", metrics_handler(receiver.pool)),
        ]
    )
    if reconcile:
        app.cleanup_ctx.append(_reconciler)
    return app


async def _reconciler(app: web.Application):
    task = asyncio.create_task(reconcile_forever(app[RECEIVER]), name="reconciler")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def reconcile_forever(receiver: Receiver) -> None:
    """Reconcile every few seconds; a failed round (database away) is logged and retried."""
    while True:
        try:
            await reconcile_once(receiver.pool, receiver.cache, receiver.adapters, receiver.session)
        except (OSError, asyncpg.PostgresError) as exc:
            log.error("reconcile round failed", extra={"error": repr(exc)})
        await asyncio.sleep(RECONCILE_EVERY.total_seconds())

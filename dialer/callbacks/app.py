"""The aiohttp app that receives provider callbacks, plus /healthz and the reconciler.

`POST /callbacks/{account}/{attempt_id}?token=...` (and `/callbacks/{account}?token=...` for
providers that post every call's events to one fixed URL, correlated by their call id or our
id echoed in the payload): the adapter verifies the request (URL token, signature, echoed
key) and normalizes it; the raw event is stored in `call_events` and applied in one
transaction, and only then is 2xx returned, so a provider retries anything we did not keep.
A request that fails verification gets 4xx and is stored nowhere (it is logged); the URL token
is checked before the body is read. An authentic callback that cannot be trusted to settle its
attempt (unreadable, absurd values, another attempt's call id) is stored held, answered 200,
and left to the reconciler (callbacks.screening). Bad input never gets a 5xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field, replace

import aiohttp
import asyncpg
from aiohttp import web
from multidict import MultiDict

from dialer import redaction
from dialer.batching import GATHER_MOST, GATHER_S, Batcher
from dialer.callbacks.bodies import BodyError, parse_body
from dialer.callbacks.screening import MAX_BIGINT, Screened, clean_payload, screen
from dialer.calls import CallEvent
from dialer.campaigns import CampaignCache
from dialer.db import server
from dialer.db.outage import DATABASE_FAILURES
from dialer.faults import fault_point
from dialer.metrics import CALLBACK_SECONDS, CALLBACKS, RECONCILE_FAILURES
from dialer.policy.states import is_terminal
from dialer.providers.base import InboundCallback, Provider
from dialer.providers.errors import Forbidden, Unreadable
from dialer.reconcile import RECONCILE_EVERY, reconcile_once, take_turn
from dialer.settle import apply_event, apply_finals, apply_progress
from dialer.supervise import Supervisor

log = logging.getLogger("dialer.serve")
BODY_SECONDS = 10.0  # a callback body not received by then is dropped (408)
MAX_RAW_BODY = 64 * 1024  # of an unreadable body, what is kept
ProgressItem = tuple[str, int | None, CallEvent]  # account, attempt id if known, event


@dataclass
class Receiver:
    pool: asyncpg.Pool
    adapters: dict[str, Provider]
    public_url: str
    session: aiohttp.ClientSession | None = None
    cache: CampaignCache = field(default_factory=CampaignCache)

    def __post_init__(self) -> None:
        self.progress: Batcher[ProgressItem, bool | Exception] = Batcher(
            self._store_progress, gather_s=GATHER_S, most=GATHER_MOST
        )
        self.finals: Batcher[ProgressItem, str | Exception] = Batcher(
            self._store_finals, gather_s=GATHER_S, most=GATHER_MOST
        )
        for adapter in self.adapters.values():  # whatever they echo is masked before storage
            redaction.remember(*adapter.secrets, users=adapter.auth_users)

    async def _store_progress(self, items: list[ProgressItem]) -> list[bool | Exception]:
        """Progress events from concurrent requests, of any accounts, stored and applied in one
        batch (settle.apply_progress): whether each was new, or its own error."""
        async with self.pool.acquire() as conn:
            return list(await apply_progress(conn, self.cache, items))

    async def _store_finals(self, items: list[ProgressItem]) -> list[str | Exception]:
        """Final events from concurrent requests, of any accounts, settled in one batch
        (settle.apply_finals): each item's answer, or its own error (an event the database
        refuses; its provider retries it)."""
        async with self.pool.acquire() as conn:
            return list(await apply_finals(conn, self.cache, items))


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
    """Verify, store and apply one callback: (the response, stored | repeated | held | refused).

    Cheapest checks first: the route, then the URL token (before the body is read), then the
    body within its caps, then the adapter's own signature, then the values (screening).
    """
    receiver = request.app[RECEIVER]
    adapter = receiver.adapters.get(account)
    raw_attempt = request.match_info.get("attempt_id")
    attempt_id = _attempt_number(raw_attempt)
    if adapter is None or (raw_attempt is not None and attempt_id is None):
        return _refused(account, None, "unknown route", 404), "refused"
    try:
        adapter.check_token_value(request.query.get("token"))
    except Forbidden as exc:
        return _refused(account, attempt_id, str(exc), 403), "refused"
    try:
        async with asyncio.timeout(BODY_SECONDS):
            body = await request.read()
    except TimeoutError:
        return _refused(account, attempt_id, "body not received in time", 408), "refused"
    try:
        fields, document = parse_body(request.headers.get("Content-Type", ""), body)
    except BodyError as exc:
        return _refused(account, attempt_id, str(exc), 400), "refused"
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
        return _refused(account, attempt_id, str(exc), 403), "refused"
    except Exception as exc:  # authentic, but nothing we can read as an event: keep it, held
        reason = f"unreadable callback: {exc}" if isinstance(exc, Unreadable) else None
        reason = reason or f"unreadable callback ({type(exc).__name__})"
        screened = Screened(unreadable_event(body, fields, document), (reason,), held=True)
    else:
        screened = screen(event)
        if not adapter.answers_lookups:  # asking closes the call unknown: wait for its word
            screened = replace(screened, ask_provider=False)
    return await _keep(receiver, account, attempt_id, screened)


async def _keep(
    receiver: Receiver, account: str, attempt_id: int | None, screened: Screened
) -> tuple[web.Response, str]:
    """Store (and unless held, apply) a screened event; 200 either way, so the provider stops
    retrying what we have kept."""
    event = screened.event
    attempt_id = attempt_id if attempt_id is not None else event.attempt_id
    extra = {"account": account, "attempt": attempt_id, "status": event.status}
    if screened.held or screened.problems:
        log.warning("callback with problems", extra=extra | {"problem": screened.problem})
    if is_terminal(event.status) and not (screened.held or screened.problems):
        # final words from concurrent requests are settled together (settle.apply_finals)
        settled = await receiver.finals.submit((account, attempt_id, event))
        if isinstance(settled, Exception):
            raise settled
        result = settled
    elif screened.held or is_terminal(event.status) or event.detection_result:
        async with receiver.pool.acquire() as conn:
            result = await apply_event(
                conn,
                receiver.cache,
                account,
                attempt_id,
                event,
                held=screened.held,
                problem=screened.problem,
                ask_provider=screened.ask_provider,
            )
    else:  # progress events from concurrent requests share one statement (group commit)
        new = await receiver.progress.submit((account, attempt_id, event))
        if isinstance(new, Exception):
            raise new
        result = "stored" if new else "repeated"
    log.debug(f"callback {result}", extra=extra)
    answer: dict[str, object] = {"stored": result != "repeated"}
    if result == "held" or (screened.held and result == "repeated"):
        answer |= {"applied": False, "problem": screened.problem or "held"}
        return web.json_response(answer), "held"
    return web.json_response(answer), result


_ATTEMPT = re.compile(r"^[0-9]{1,19}\Z")


def _attempt_number(raw: str | None) -> int | None:
    """The attempt id of a callback path: ASCII digits within bigint, else None."""
    if raw is None or not _ATTEMPT.match(raw):
        return None
    number = int(raw)
    return number if 1 <= number <= MAX_BIGINT else None


def unreadable_event(body: bytes, fields: MultiDict[str], document: object) -> CallEvent:
    """An authentic callback we cannot read, as a held event keyed by its bytes (a redelivery
    of the same bytes is stored once)."""
    if fields:
        payload: dict[str, object] = {"fields": [[k, v] for k, v in fields.items()]}
    elif document is not None:
        payload = {"json": document}
    else:
        payload = {"body": body[:MAX_RAW_BODY].decode("utf-8", "replace")}
    payload, _ = clean_payload(payload)
    digest = hashlib.sha256(body).hexdigest()
    return CallEvent(status="unreadable", dedupe_key=f"unreadable:{digest}", payload=payload)


def _refused(account: str, attempt_id: int | None, reason: str, status: int) -> web.Response:
    log.warning(
        "callback refused", extra={"account": account, "attempt": attempt_id, "reason": reason}
    )
    message = {400: "bad request", 403: "forbidden", 404: "not found", 408: "timeout"}[status]
    return web.json_response({"error": message}, status=status)


def callbacks_app(receiver: Receiver) -> web.Application:
    """Provider callbacks, to be mounted at /callbacks (dialer.web): POST /ACCOUNT[/ATTEMPT],
    on the receiver's connections, bodies up to 1 MiB."""
    app = web.Application(client_max_size=1 << 20)
    app[RECEIVER] = receiver
    app.add_routes(
        [
            web.post("/{account}", callback),
            web.post("/{account}/{attempt_id}", callback),
        ]
    )
    return app


def healthz_handler(supervisor: Supervisor, pool: asyncpg.Pool):
    """GET /healthz: 503 naming the task that died, or the database unreachable; else 200."""

    async def healthz(request: web.Request) -> web.Response:
        death = supervisor.death
        if death is not None:
            return web.json_response(
                {"died": {"task": death.task, "error": repr(death.error)}}, status=503
            )
        try:
            async with pool.acquire(timeout=2) as conn:
                await server.ping(conn)
        except DATABASE_FAILURES as exc:  # a connection closed under it included
            return web.json_response({"database": f"unreachable: {type(exc).__name__}"}, status=503)
        return web.json_response({"database": "ok"})

    return healthz


async def reconcile_forever(
    pool: asyncpg.Pool,
    cache: CampaignCache,
    adapters: dict[str, Provider],
    session: aiohttp.ClientSession | None,
) -> None:
    """Reconcile every few seconds on `pool`, when this process has the turn (one round across
    every process: reconcile.take_turn); a failed round (database away, or anything else) is
    logged, counted and retried: this loop ends only when cancelled."""
    while True:
        fault_point("reconciler-round")
        try:
            async with pool.acquire() as conn:
                mine = await take_turn(conn)
            if mine:
                fault_point("reconciler-turn-taken")
                await reconcile_once(pool, cache, adapters, session)
        except Exception as exc:
            log.error("reconcile round failed", extra={"error": repr(exc)})
            RECONCILE_FAILURES.labels("round").inc()
        await asyncio.sleep(RECONCILE_EVERY.total_seconds())

"""The campaign API under /api/v1: what the CLI does for a campaign, for a CRM.

Every request but the OpenAPI document needs `Authorization: Bearer <token>` with a token of
`[api] tokens` in dialer.toml: `read` to look, `write` to change. Bodies are validated exactly
as the CLI validates files (CampaignSpec, the loader); errors are problem documents naming the
field or row at fault (api.problems). Uploads and results stream: memory stays flat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pydantic
from aiohttp import web

from dialer import dnc
from dialer.account_status import account_status, resting_caller_ids
from dialer.api.openapi import openapi
from dialer.api.problems import from_error, problem
from dialer.api.uploads import Converted, json_lines_to_csv, save_body
from dialer.campaign_checks import refuse_unknown_account, refuse_unsupported
from dialer.campaign_control import set_status, withdraw_revoked
from dialer.campaign_spec import CampaignFile, CampaignSpec, is_campaign_name
from dialer.campaigns import from_row
from dialer.config import ApiToken, DialerConfig
from dialer.consent import event_from_fields
from dialer.db import accounts as db_accounts
from dialer.db import api_requests, campaigns, reporting, server
from dialer.db import consent as consent_ledger
from dialer.db.export import export_csv, export_json_lines, sync_point
from dialer.db.outage import TRANSIENT
from dialer.db.types import Connection
from dialer.errors import (
    ConfigError,
    ConflictError,
    DialerError,
    InputError,
    InvalidFields,
    MediaTypeError,
    NotFoundError,
    TooLargeError,
)
from dialer.forget import LOG_FILES_NOTE, forget
from dialer.loading.loader import load_campaign, upsert_campaign
from dialer.loading.summary import LISTED_REJECTS
from dialer.phones import PhoneError, normalize
from dialer.providers.secrets import same_secret
from dialer.tomlfile import field_problems, nul_carriers

log = logging.getLogger("dialer.api")
CONFIG = web.AppKey("api_config", DialerConfig)
POOL = web.AppKey("api_pool", asyncpg.Pool)
TOKEN = web.RequestKey("api_token", ApiToken)
PREFIX = "/api/v1"
MAX_JSON_BYTES = 1 << 20
CSV_TYPES = ("text/csv", "application/csv")
JSON_LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
KEY = re.compile(r"^[\x21-\x7e]{1,200}\Z")
CURSOR_YEARS = (2000, 9000)  # a `since` outside these was never a cursor of ours
ACQUIRE_S = 5.0  # all of the API's connections busy this long: 503, Retry-After
BODY_STALL_S = 30.0  # an upload that sends nothing for this long is dropped (408)
# A results client that takes nothing of a write for this long is dropped: under the 10 s a
# transaction (the JSON lines cursor) may sit idle before PostgreSQL ends the session.
WRITE_TIMEOUT_S = 8.0


class ClientStalled(Exception):
    """A client stopped reading a streamed answer (its socket buffers are full)."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _token(request: web.Request) -> ApiToken | None:
    given = request.headers.get("Authorization", "")
    if not given.startswith("Bearer "):
        return None
    secret = given.removeprefix("Bearer ").strip()
    for token in request.app[CONFIG].api.tokens:
        if same_secret(secret, token.token.get_secret_value()):
            return token
    return None


def needs(scope: str) -> Callable[[Handler], Handler]:
    """The handler runs only for a token with `scope`; every error becomes a problem."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            token = _token(request)
            if token is None:
                # The route, not the path: a path may hold a number (DELETE /contacts/...).
                route = request.match_info.route.resource
                where = route.canonical if route is not None else request.method
                log.warning("api request refused", extra={"path": where, "why": "token"})
                return problem(401, "a valid bearer token is needed (see [api] in dialer.toml)")
            if scope not in token.scopes:
                return problem(403, f"token {token.name!r} lacks the {scope!r} scope")
            request[TOKEN] = token
            try:
                return await handler(request)
            except DialerError as exc:
                return from_error(exc)
            except TRANSIENT as exc:  # database away, restarting, read-only, locked; disk full
                log.error("api request failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                response = problem(
                    503,
                    "the database (or the server's disk) cannot take this now: try again; an"
                    " Idempotency-Key makes a repeat safe",
                )
                response.headers["Retry-After"] = "5"
                return response
            except asyncpg.PostgresError as exc:
                log.error("api request failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                return problem(500, "the request failed; the server log says why")

        return guarded

    return wrap


async def _campaign_row(conn: Connection, name: str) -> asyncpg.Record:
    """The named campaign; a name no campaign can have (a NUL byte, a newline) is not looked
    up at all."""
    row = await campaigns.by_name(conn, name) if is_campaign_name(name) else None
    if row is None:
        raise NotFoundError(f"no such campaign: {name if is_campaign_name(name) else repr(name)}")
    return row


async def _json_body(request: web.Request) -> object:
    if request.content_type != "application/json":
        raise MediaTypeError("send the body as application/json")
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise TooLargeError("request body: over 1 MiB")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidFields("the body is not JSON", [("body", "not JSON")]) from None
    carrying = nul_carriers(document)
    if carrying:
        problems = [(where, "a NUL byte (\\u0000), which cannot be stored") for where in carrying]
        raise InvalidFields(f"{carrying[0]}: a NUL byte (\\u0000)", problems[:100])
    return document


def _summary(row: asyncpg.Record | None) -> dict:
    return {k: _plain(v) for k, v in dict(row or {}).items()}


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    return float(value)  # type: ignore[arg-type]


@needs("read")
async def list_campaigns(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn:
        rows = await reporting.campaign_list(conn)
    return web.json_response({"campaigns": [_summary(r) for r in rows]})


@needs("read")
async def show_campaign(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn:
        row = await _campaign_row(conn, request.match_info["name"])
        summary = await reporting.campaign_summary(conn, row["id"])
    return web.json_response(
        {
            "name": row["name"],
            "account": row["account"],
            "status": row["status"],
            "status_reason": row["status_reason"],
            "summary": _summary(summary),
        }
    )


@needs("write")
async def put_campaign(request: web.Request) -> web.Response:
    """Create the campaign, or change it while it has not dialed (as `campaign load`)."""
    name = request.match_info["name"]
    data = await _json_body(request)
    if not isinstance(data, dict):
        raise InvalidFields("the body must be a JSON object", [("body", "not an object")])
    if data.get("name", name) != name:
        raise InvalidFields("name differs from the path", [("name", "must equal the path's")])
    if "contacts" in data:
        raise InvalidFields(
            "contacts are appended with POST .../contacts",
            [("contacts", "not a key of the API (POST the contacts)")],
        )
    try:
        spec = CampaignSpec.model_validate(data | {"name": name})
    except pydantic.ValidationError as exc:
        problems = field_problems(exc, data)
        raise InvalidFields(
            f"campaign {name}: " + "; ".join(f"{k}: {m}" for k, m in problems), problems
        ) from None
    _refuse_unsupported(spec, request.app[CONFIG])
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn, conn.transaction():
        _, action = await upsert_campaign(conn, spec)
    log.info("api campaign", extra={"campaign": name, "action": action})
    status = 201 if action == "created" else 200
    return web.json_response({"name": name, "action": action}, status=status)


def _refuse_unsupported(spec: CampaignSpec, config: DialerConfig) -> None:
    """campaign_checks' refusals, as 422 problems naming the field at fault."""
    try:
        refuse_unknown_account(spec, config)
    except ConfigError as exc:
        raise InvalidFields(exc.message, [("account", exc.message)]) from None
    try:
        refuse_unsupported(spec, config)
    except ConfigError as exc:
        raise InvalidFields(exc.message, [("machine_detection", exc.message)]) from None


@needs("write")
async def append_contacts(request: web.Request) -> web.Response:
    """Load a CSV or JSON-lines body into the campaign, all or nothing, as `campaign load`."""
    name = request.match_info["name"]
    kind = request.content_type
    if kind not in CSV_TYPES + JSON_LINES_TYPES:
        raise MediaTypeError(f"send contacts as text/csv or application/x-ndjson, not {kind!r}")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not KEY.match(key):
        raise InvalidFields("bad Idempotency-Key", [("Idempotency-Key", "1-200 visible ASCII")])
    folder = Path(tempfile.mkdtemp(prefix="dialer-api-"))
    try:
        body = folder / "body"
        digest = await save_body(request.content, body, BODY_STALL_S)
        scoped = f"{request[TOKEN].name}:{key}" if key else None
        fingerprint = f"POST {request.path} {kind} {digest}"
        # Converted before any transaction opens: a million JSON lines take longer than a
        # transaction may sit idle (PostgreSQL ends it after 10 s).
        source = folder / "contacts.csv"
        if kind in JSON_LINES_TYPES:
            converted = await asyncio.to_thread(json_lines_to_csv, body, source)
        else:
            converted = None
            await asyncio.to_thread(body.rename, source)
        async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn, conn.transaction():
            if scoped is not None:
                earlier = await api_requests.claim(conn, scoped, fingerprint)
                if earlier is not None:
                    return _replayed(earlier, fingerprint)
            status, answer = await _load(conn, name, source, converted, folder)
            if scoped is not None:
                await api_requests.answer(conn, scoped, status, answer)
        return web.json_response(answer, status=status)
    finally:
        await asyncio.to_thread(shutil.rmtree, folder, True)


def _replayed(earlier: asyncpg.Record, fingerprint: str) -> web.Response:
    if earlier["request"] != fingerprint:
        raise ConflictError("this Idempotency-Key was used for another request")
    response = web.json_response(json.loads(earlier["answer"]), status=earlier["status"])
    response.headers["Idempotent-Replayed"] = "true"
    return response


async def _load(
    conn: Connection,
    name: str,
    source: Path,
    converted: Converted | None,
    folder: Path,
) -> tuple[int, dict]:
    row = await _campaign_row(conn, name)
    try:
        spec = from_row(row).spec
    except ValueError as exc:
        raise ConflictError(f"campaign {name}: stored spec not readable: {exc}") from None
    campaign = CampaignFile(path=folder / "campaign.toml", spec=spec)
    try:
        summary = await load_campaign(conn, campaign, str(source))
    except InputError as exc:  # the message names our temporary file: name the body instead
        exc.message = exc.message.replace(str(source), "body")
        exc.args = (exc.message,)
        raise
    answer = summary.to_json()
    for hidden in ("source", "rejects_file"):
        answer.pop(hidden, None)
    line = converted.line_of if converted else (lambda row_no: row_no)
    rows = [{"row": line(n), "reason": r} for n, r in summary.rejected_rows]
    if converted is not None and converted.rejected:
        answer["rejected"] += converted.rejected
        answer["rows_read"] += converted.rejected
        reasons = answer["rejects_by_reason"]
        for reason, count in converted.reject_counts.items():
            reasons[reason] = reasons.get(reason, 0) + count
        rows = sorted(
            [{"row": n, "reason": r} for n, r in converted.rejects] + rows,
            key=lambda item: item["row"],
        )
    answer["rejected_rows"] = rows[:LISTED_REJECTS]
    answer["rejected_rows_truncated"] = answer["rejected"] > LISTED_REJECTS
    log.info("api contacts loaded", extra={"campaign": name, "loaded": summary.loaded})
    return 200, answer


@needs("write")
async def control(request: web.Request) -> web.Response:
    name, action = request.match_info["name"], request.match_info["action"]
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn:
        message = await set_status(conn, name, action)
    log.info("api control", extra={"campaign": name, "action": action})
    return web.json_response({"name": name, "action": action, "message": message})


def _status_json(status: dict) -> dict:
    return {k: _plain(v) if not isinstance(v, list) else v for k, v in status.items()}


@needs("read")
async def list_accounts(request: web.Request) -> web.Response:
    """Every registered account's health, limits and live calls (dialer account list)."""
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn:
        found = await account_status(conn, None)
    return web.json_response({"accounts": [_status_json(s) for s in found]})


@needs("read")
async def show_account(request: web.Request) -> web.Response:
    """One account, with the caller ids resting today (dialer account show)."""
    name = request.match_info["account"]
    config = request.app[CONFIG]
    own = config.accounts[name].caller_ids if name in config.accounts else None
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn:
        found = await account_status(conn, [name])
        if not found:
            raise NotFoundError(f"no account {name!r} is registered")
        resting = await resting_caller_ids(conn, name, own)
    return web.json_response(_status_json(found[0] | {"caller_ids_resting": resting}))


@needs("write")
async def account_control(request: web.Request) -> web.Response:
    """Pause or resume an account in every process (dialer account pause|resume)."""
    name, action = request.match_info["account"], request.match_info["action"]
    reason = f"paused through the API by token {request[TOKEN].name!r}"
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn:
        if action == "pause":
            known = await db_accounts.pause(conn, name, reason)
        else:
            known = await db_accounts.resume(conn, name)
    if not known:
        raise NotFoundError(f"no account {name!r} is registered")
    log.info("api account control", extra={"account": name, "action": action})
    return web.json_response({"name": name, "action": action})


@needs("read")
async def results(request: web.Request) -> web.StreamResponse:
    """The campaign's results as CSV (as `dialer export`) or JSON lines, streamed; `since`
    takes the previous answer's `Dialer-Next-Cursor` for the contacts changed since."""
    name = request.match_info["name"]
    fmt = request.query.get("format", "csv")
    if fmt not in ("csv", "jsonl"):
        raise InvalidFields("format: csv or jsonl", [("format", "csv or jsonl")])
    since = _cursor(request.query.get("since"))
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn:
        row = await _campaign_row(conn, name)
        until = await sync_point(conn)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8"
                if fmt == "csv"
                else "application/x-ndjson",
                "Dialer-Next-Cursor": cursor_text(until),
            }
        )
        await response.prepare(request)

        async def write(chunk: bytes) -> None:
            try:
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await response.write(chunk)
            except TimeoutError:
                raise ClientStalled from None

        try:
            if fmt == "csv":
                changed = (since, until) if since else None
                await export_csv(conn, name, write, changed=changed)
            else:
                await export_json_lines(conn, row["id"], write, (since, until if since else None))
        except ConnectionResetError:  # the client stopped reading: nothing to answer
            log.info("results stream ended by the client", extra={"campaign": name})
            return response
        except ClientStalled:  # it holds a connection of ours and reads nothing: drop it
            log.warning(
                f"results stream dropped: the client read nothing for {WRITE_TIMEOUT_S:g} s",
                extra={"campaign": name, "peer": request.remote},
            )
            if request.transport is not None:
                request.transport.abort()
            return response
    await response.write_eof()
    return response


def cursor_text(when: datetime) -> str:
    """A cursor as sent: UTC with a `Z`, so it survives a URL pasted by hand (a `+` in a
    query string reads as a space)."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _cursor(text: str | None) -> datetime | None:
    if text is None:
        return None
    text = text.strip()
    head, _, offset = text.rpartition(" ")
    if head and re.fullmatch(r"\d{2}(:?\d{2})?", offset):
        text = f"{head}+{offset}"  # an offset's `+` pasted into a URL arrives as a space
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidFields(
            "since: not a cursor", [("since", "a Dialer-Next-Cursor value")]
        ) from None
    if when.tzinfo is None:
        raise InvalidFields("since: needs its offset", [("since", "a Dialer-Next-Cursor value")])
    try:
        in_utc = when.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not CURSOR_YEARS[0] <= in_utc.year <= CURSOR_YEARS[1]:
        raise InvalidFields(
            "since: out of range", [("since", "a Dialer-Next-Cursor value (years 2000-9000)")]
        )
    return when


class DncBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    numbers: list[str] = pydantic.Field(min_length=1, max_length=100_000)
    reason: str | None = pydantic.Field(default=None, max_length=500)
    region: str | None = pydantic.Field(default=None, pattern=r"^[A-Za-z]{2}$")


async def _numbers(request: web.Request) -> tuple[list[str], DncBody]:
    data = await _json_body(request)
    try:
        body = DncBody.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = field_problems(exc, data if isinstance(data, dict) else {})
        raise InvalidFields("; ".join(f"{k}: {m}" for k, m in problems), problems) from None
    region = (body.region or request.app[CONFIG].default_region or "").upper() or None
    good, wrong = dnc.normalize_all(body.numbers, region)
    bad = [(f"numbers[{index}]", message) for index, message in wrong]
    if bad:
        detail = "; ".join(f"{where}: {what}" for where, what in bad[:20])
        raise InvalidFields(f"nothing changed, fix these first: {detail}", bad[:100])
    return good, body


@needs("write")
async def dnc_add(request: web.Request) -> web.Response:
    numbers, body = await _numbers(request)
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn:
        change = await dnc.add_numbers(conn, numbers, body.reason)
    return web.json_response(
        {
            "added": change.added,
            "already_listed": change.already_listed,
            "contacts_suppressed": change.contacts_suppressed,
        }
    )


class ConsentsBody(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    events: list[dict[str, str]] = pydantic.Field(min_length=1, max_length=10_000)


@needs("write")
async def consents_add(request: web.Request) -> web.Response:
    """Append consent events to the ledger (as `dialer consent import`), all or nothing."""
    data = await _json_body(request)
    try:
        body = ConsentsBody.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = field_problems(exc, data if isinstance(data, dict) else {})
        raise InvalidFields("; ".join(f"{k}: {m}" for k, m in problems), problems) from None
    region = request.app[CONFIG].default_region
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn:
        now = await server.now(conn)
        events, bad = [], []
        for index, fields in enumerate(body.events):
            values = {k.lower(): str(v) for k, v in fields.items()}
            event, wrong = event_from_fields(
                values, region=region, scope=None, source=None, action=None, now=now
            )
            bad += [(f"events[{index}].{field}", what) for field, what in wrong]
            if event is not None:
                events.append(event)
        if bad:
            detail = "; ".join(f"{where}: {what}" for where, what in bad[:20])
            raise InvalidFields(f"nothing was written, fix these first: {detail}", bad[:100])
        async with conn.transaction():
            ids = await consent_ledger.append(conn, events)
            released = await withdraw_revoked(conn, [e for e in events if e.action == "revoke"])
    return web.json_response({"appended": len(ids), "reservations_withdrawn": released})


@needs("write")
async def forget_contact(request: web.Request) -> web.Response:
    """Erase a number on request, as `dialer forget` (dialer.forget), without waiting for a
    call in flight: then 409 with Retry-After, the number held (never dialed again)."""
    raw = request.match_info["number"]
    try:
        number = normalize(raw, request.app[CONFIG].default_region)
    except PhoneError as exc:
        raise InvalidFields(f"number: {exc}", [("number", str(exc))]) from None
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn:
        report = await forget(conn, [number], f"api:{request[TOKEN].name}", wait_s=0)
    log.info("api erasure", extra={"erased": report.complete})  # never the number
    if not report.complete:
        response = problem(
            409,
            "a call to this number is in flight: it is held (no new call starts) and is erased"
            " when the request is repeated after the call ends",
        )
        response.headers["Retry-After"] = "30"
        return response
    return web.json_response(
        {
            "erased": True,
            "reservations_released": report.released,
            "rows_changed": report.changed,
            "files": [
                {**f, "written_at": f["written_at"].isoformat() if f["written_at"] else None}
                for f in report.files
            ],
            "also": [LOG_FILES_NOTE],
        }
    )


@needs("write")
async def dnc_remove(request: web.Request) -> web.Response:
    numbers, _ = await _numbers(request)
    async with request.app[POOL].acquire(timeout=ACQUIRE_S) as conn:
        removed = await dnc.remove_numbers(conn, numbers)
    return web.json_response({"removed": removed})


@web.middleware
async def problems_for_http_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (no such route, wrong method) are problems too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, f"{exc.reason}: {request.method} {request.path}")


def api_app(pool: asyncpg.Pool, config: DialerConfig) -> web.Application:
    """The campaign API, to be mounted at PREFIX (dialer.web): its pool, its configuration,
    its problem answers."""
    app = web.Application(client_max_size=1 << 20)
    app[POOL] = pool
    app[CONFIG] = config
    app.middlewares.append(problems_for_http_errors)
    name = "/campaigns/{name}"
    app.add_routes(
        [
            web.get("/openapi.json", openapi),
            web.get("/campaigns", list_campaigns),
            web.get(name, show_campaign),
            web.put(name, put_campaign),
            web.post(name + "/contacts", append_contacts),
            web.post(name + "/{action:pause|resume|cancel}", control),
            web.get(name + "/results", results),
            web.post("/dnc", dnc_add),
            web.post("/dnc/remove", dnc_remove),
            web.post("/consents", consents_add),
            web.delete("/contacts/{number}", forget_contact),
            web.get("/accounts", list_accounts),
            web.get("/accounts/{account}", show_account),
            web.post("/accounts/{account}/{action:pause|resume}", account_control),
        ]
    )
    return app

"""TeleCMI PIOPIY outbound calls (`make_call`), and what TeleCMI's two outbound kinds share.

- Create: `POST {base}/v1/make_call`, JSON with the credentials in the body (`appid`,
  `secret`) and numbers as JSON integers (international digits, no `+`). Success needs both
  HTTP 200 and body `code` 200; 420 (bad appid/secret) and 422/501/502 (a required property
  missing: our request can never succeed) refuse the whole account.
- Callbacks go to the event URL configured for the app in TeleCMI's dashboard, not per call:
  `POST /callbacks/{account}?token=...`. They are correlated by our attempt id in
  `extra_params` (echoed as a JSON string) and by `request_id`. `type: event` are live events;
  `type: cdr` is one final record per leg (`answered` or `missed`), redelivered up to 4 times.
  The customer's leg decides; the other leg's records never settle the call.
- `missed` is refined with `hangup_reason` where TeleCMI gives it: `sent_reject`/`recv_reject`
  -> busy, `recv_cancel` or none -> no-answer, anything else -> failed. We do not use the
  "no ringing event seen -> failed" reading: it would make the outcome depend on the order in
  which callbacks arrive.
- Reconciliation: the `out_answered` / `out_missed` CDR lists (on `reports_url`), matched by
  number and time (they carry no request_id), each page paced by the account's budget.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr

from dialer.calls import CallEvent, CallRequest, PlacedCall
from dialer.providers.account import AccountBase
from dialer.providers.base import InboundCallback, Pace, Provider, ProviderError
from dialer.providers.errors import Rejected, Unreadable
from dialer.providers.http import HttpAnswer, HttpRequest, classify, json_body, lookup, unanswered
from dialer.providers.words import from_epoch, normal_word, to_int

if TYPE_CHECKING:  # the HTTP client is imported when a call is sent, not to read an account
    import aiohttp

LIVE_WORDS = {
    "started": "accepted",
    "out_started": "accepted",
    "ringing": "ringing",
    "out_ringing": "ringing",
    "answered": "in-progress",
    "out_answered": "in-progress",
    "out_bridged": "in-progress",
}
BUSY_REASONS = {"sent_reject", "recv_reject"}
NO_ANSWER_REASONS = {"recv_cancel", "sent_cancel", ""}
ACCOUNT_CODES = {400, 401, 404, 407, 420, 422, 501, 502}  # credentials, or our request's shape
CDR_PAGE = 20  # TeleCMI's largest page
CDR_PAGES_PER_ROUND = 25  # at most this many pages per list and reconciler round
MATCH_EARLY = timedelta(seconds=5)  # a CDR's time may precede our request time by clock skew
ATTEMPT_KEY = "dialer_attempt"


def digits(e164: str) -> int:
    """TeleCMI's numbers: international digits as a JSON integer."""
    return int(e164.lstrip("+"))


class TelecmiAccount(AccountBase):
    kind: Literal["telecmi"]
    appid: str = Field(pattern=r"^[0-9]+$")
    secret: SecretStr
    # make_call lives on piopiy.telecmi.com (base_url), the CDR list APIs used to reconcile
    # silent calls on rest.telecmi.com.
    reports_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("https://rest.telecmi.com"), description="host of the CDR list APIs"
    )


class TelecmiCommon(Provider):
    """Callback parsing and CDR reconciliation, the same for both TeleCMI kinds."""

    customer_leg = "a"
    calls_per_lookup = 100  # one round reads the CDR lists' pages for all of its calls

    def __init__(self, name: str, secret: str, appid: str, reports_url: str) -> None:
        self._secret = secret
        super().__init__(name, secret)
        self.appid = appid
        self.reports_url = reports_url.rstrip("/")

    @property
    def secrets(self) -> list[str]:
        return [self._secret, self.callback_token]

    def callback_url(self, base: str, attempt_id: int | None) -> str:
        """TeleCMI posts to the app's one event URL: no attempt id in the path."""
        return super().callback_url(base, None)

    def read_created(self, answer: HttpAnswer) -> str | None:
        data = json_body(answer)
        body = data if isinstance(data, dict) else {}
        code = to_int(body.get("code"))
        if answer.status == 200 and code in (200, None) and body:
            given = body.get("data")
            inner: dict[str, Any] = given if isinstance(given, dict) else {}
            call_id = body.get("request_id") or inner.get("request_id") or inner.get("user")
            if call_id:
                return str(call_id)
            raise ProviderError("HTTP 200 without a request_id")
        status = code if answer.status == 200 and code else answer.status
        message = body.get("msg") or body.get("message") or body.get("error") or answer.text()
        detail = f"HTTP {answer.status}, code {code}: {message}"[:300]
        raise classify(status, answer.headers, detail, account_refused=status in ACCOUNT_CODES)

    def parse_callback(self, callback: InboundCallback) -> CallEvent:
        self.check_token(callback)
        record = callback.json
        if not isinstance(record, dict) or record.get("type") not in ("event", "cdr"):
            raise Unreadable("not a TeleCMI event or CDR")
        kind = str(record["type"])
        leg = str(record.get("leg") or self.customer_leg).lower()
        word = normal_word(record.get("status")).replace("-", "_")  # TeleCMI writes out_answered
        request_id = record.get("request_id")
        if kind == "cdr":
            reason = normal_word(record.get("hangup_reason")).replace("-", "_")
            state = self._cdr_state(leg, word, reason)
        else:
            state = LIVE_WORDS.get(word, "accepted") if leg == self.customer_leg else "accepted"
        leg_id = record.get("cmiuuid") or record.get("cmiuid") or request_id
        return CallEvent(
            status=state,
            dedupe_key=f"{leg_id}:{leg}:{kind}:{word}",
            provider_call_id=str(request_id) if request_id else None,
            attempt_id=callback.attempt_id or attempt_from(record.get("extra_params")),
            occurred_at=_from_ms(record.get("time")),
            duration_s=to_int(record.get("duration")) if state == "completed" else None,
            payload=record,
        )

    def _cdr_state(self, leg: str, word: str, reason: str) -> str:
        if leg != self.customer_leg:
            return "accepted"  # the other party's record: says nothing of the customer
        if word == "answered":
            return "completed"
        if word != "missed":
            return word or "(no status)"  # a CDR in words we do not know: held, looked up
        if reason in BUSY_REASONS:
            return "busy"
        return "no-answer" if reason in NO_ANSWER_REASONS else "failed"

    async def fetch_statuses(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, CallEvent | None]:
        dated = [c for c in calls if c.requested_at is not None]
        times = [c.requested_at for c in calls if c.requested_at is not None]
        if not times:
            return {}
        start = min(times) - timedelta(minutes=1)
        found: dict[int, CallEvent | None] = {}
        complete = True
        for listing, state in (("out_answered", "completed"), ("out_missed", "no-answer")):
            records, whole = await self._cdr_list(session, listing, start, pace)
            complete = complete and whole
            for call, record in _match(dated, records, set(found)).items():
                found[call] = CallEvent(
                    status=state,
                    dedupe_key=f"{record.get('cmiuid')}:poll:{listing}",
                    duration_s=to_int(record.get("duration")) if state == "completed" else None,
                    payload={"polled": record},
                )
        if not complete:  # a list could not be read whole: the others are not known missing
            found |= {c.attempt_id: None for c in dated if c.attempt_id not in found}
        return found

    async def _cdr_list(
        self, session: aiohttp.ClientSession, listing: str, start: datetime, pace: Pace
    ) -> tuple[list[dict[str, Any]], bool]:
        """The CDRs of the list since `start`, and whether it was read whole."""
        records: list[dict[str, Any]] = []
        end_ms = int(datetime.now(UTC).timestamp() * 1000)
        for page in range(1, CDR_PAGES_PER_ROUND + 1):
            await pace()
            body = {
                "appid": int(self.appid),
                "secret": self._secret,
                "start_date": int(start.timestamp() * 1000),
                "end_date": end_ms,
                "page": page,
                "limit": CDR_PAGE,
            }
            url = f"{self.reports_url}/v2/{listing}"
            answer = await lookup(session, HttpRequest("POST", url, json=body))
            if unanswered(answer):
                return records, False
            data = json_body(answer) if answer and answer.status == 200 else None
            rows = data.get("cdr") if isinstance(data, dict) else None
            if not isinstance(rows, list) or not rows:
                return records, True
            records += [r for r in rows if isinstance(r, dict)]
            total = to_int(data.get("count")) if isinstance(data, dict) else None
            if len(rows) < CDR_PAGE or len(records) >= (total or 0):
                return records, True
        return records, False  # more pages than one round reads


class TelecmiProvider(TelecmiCommon):
    kind = "telecmi"

    def __init__(self, name: str, account: TelecmiAccount) -> None:
        super().__init__(
            name, account.secret.get_secret_value(), account.appid, str(account.reports_url)
        )
        self.base_url = str(account.base_url).rstrip("/")

    def create_request(self, call: CallRequest) -> HttpRequest:
        if not call.connect_to:
            raise Rejected(
                "the campaign has no connect_to (the answer_url returning PCMO actions)",
                account_wide=True,
            )
        body = {
            "appid": int(self.appid),
            "secret": self._secret,
            "from": digits(call.caller_id),
            "to": digits(call.to),
            "answer_url": call.connect_to,
            "duration": call.max_duration_s,
            "extra_params": {ATTEMPT_KEY: call.attempt_id},
        }
        return HttpRequest("POST", f"{self.base_url}/v1/make_call", json=body)


def attempt_from(extra: Any) -> int | None:
    """Our attempt id from `extra_params`, which TeleCMI echoes as a JSON string."""
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return None
    if isinstance(extra, Mapping):
        return to_int(extra.get(ATTEMPT_KEY))
    return None


def _from_ms(value: Any) -> datetime | None:
    milliseconds = to_int(value)
    return from_epoch(milliseconds / 1000) if milliseconds else None


def _match(
    calls: Sequence[PlacedCall], records: list[dict[str, Any]], settled: set[int]
) -> dict[int, dict[str, Any]]:
    """Each call gets the earliest unused CDR for its number at or after its request time."""
    by_number: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: to_int(r.get("time")) or 0):
        by_number.setdefault(str(record.get("to", "")).lstrip("+"), []).append(record)
    matched: dict[int, dict[str, Any]] = {}
    dated = [c for c in calls if c.requested_at is not None]
    for call in sorted(dated, key=lambda c: c.requested_at or datetime.min):
        if call.attempt_id in settled or call.requested_at is None:
            continue
        since = (call.requested_at - MATCH_EARLY).timestamp() * 1000
        candidates = by_number.get(call.phone_e164.lstrip("+"), [])
        for index, record in enumerate(candidates):
            if (to_int(record.get("time")) or 0) >= since:
                matched[call.attempt_id] = candidates.pop(index)
                break
    return matched

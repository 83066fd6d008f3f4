"""Plivo's Voice API: `Call/` with JSON, form callbacks signed with Plivo's V3 signature.

- Create: `POST {base}/v1/Account/{auth_id}/Call/`, JSON, HTTP Basic (auth id, auth token):
  `from`/`to` as country code and number without `+`, `answer_url` the campaign's
  `connect_to` (Plivo XML: required, it is the call's flow), `ring_url` and `hangup_url` the
  attempt's callback URL, `ring_timeout`, `time_limit`; answering-machine detection
  asynchronous (`machine_detection = "true"`, `machine_detection_url`). The answer is 201
  `{"api_id", "message": "call fired", "request_uuid"}`: the request's id, not the call's;
  the call is known by its callbacks' `CallUUID` (lookups need it).
- Errors: 401 (bad credentials) and 402/403 refuse the account; 429 holds it; a 400 naming
  `to` refuses the number, one naming `from` or `answer_url` the account.
- Callbacks: form posts to the ring and hangup URLs (`CallUUID`, `RequestUUID`, `CallStatus`
  ringing | in-progress | completed | busy | failed | timeout | no-answer | cancel, `Duration`,
  `BillDuration`, `HangupCause`, `HangupCauseCode`, `HangupSource`; the machine detection
  callback `Machine` true | false). Authentic when the URL token matches and
  `X-Plivo-Signature-V3` verifies: base64 HMAC-SHA256 with the auth token over the URL (its
  query sorted), then `.` and the sorted form fields as name+value, then `.` and the
  `X-Plivo-Signature-V3-Nonce` (Plivo's `validate_v3_signature`). V3 carries no timestamp, and
  a nonce seen before is accepted: a replay can only repeat a genuine callback, which is
  stored once and moves nothing back, while a provider's retry of a callback this process
  answered 5xx (the database away) may well carry the same nonce, and must not be lost.
- Look-ups: `GET …/Call/{CallUUID}/` (the call's record) and `GET …/Call/?to_number=`.
- Rate: 2 calls a second by default; in India, a second for every 25 channels.

Pages: https://www.plivo.com/docs/voice/api/call/make-a-call/,
https://www.plivo.com/docs/voice/xml/request/, https://www.plivo.com/docs/account/api/application/
(see docs/providers-plivo.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from pydantic import AnyHttpUrl, Field, SecretStr

from dialer.calls import CallEvent, CallRequest, PlacedCall
from dialer.providers.account import AccountBase
from dialer.providers.base import InboundCallback, Pace, Provider, ProviderError
from dialer.providers.errors import Forbidden, Rejected, Unreadable
from dialer.providers.http import HttpAnswer, HttpRequest, classify, json_body
from dialer.providers.secrets import same_secret
from dialer.providers.words import (
    first,
    from_iso,
    listed_event,
    normal_word,
    polled_event,
    state_of_word,
    to_cost,
    to_int,
)

if TYPE_CHECKING:  # the HTTP client is imported when a call is sent, not to read an account
    import aiohttp

# Plivo's own words for how a call ended, in ours (the rest are Twilio's words already)
WORDS = {"timeout": "failed", "cancel": "canceled"}
RING_TIMEOUT_S = (15, 120)


class PlivoAccount(AccountBase):
    kind: Literal["plivo"]
    base_url: AnyHttpUrl = AnyHttpUrl("https://api.plivo.com")
    rate: str = Field(default="2/s", description="Plivo's default: 2 calls a second")
    auth_id: str = Field(pattern=r"^[A-Z0-9]{10,40}$")
    auth_token: SecretStr


class PlivoProvider(Provider):
    idle_lookups = True
    kind = "plivo"

    def __init__(self, name: str, account: PlivoAccount) -> None:
        self._token = account.auth_token.get_secret_value()
        super().__init__(name, self._token)
        self.auth_id = account.auth_id
        self.api = f"{str(account.base_url).rstrip('/')}/v1/Account/{account.auth_id}"

    @property
    def secrets(self) -> list[str]:
        return [self._token, self.callback_token]

    @property
    def auth_users(self) -> list[str]:
        return [self.auth_id]

    def cannot_detect_machines(self, mode: str = "detect") -> str | None:
        if mode == "detect":
            return None
        why = "Plivo reports a machine when it detects one, not the end of its message"
        return why + ': use machine_detection = "detect"'

    def create_request(self, call: CallRequest) -> HttpRequest:
        if not call.connect_to:
            raise Rejected(
                "the campaign has no connect_to (the URL of the call's Plivo XML: answer_url)",
                account_wide=True,
            )
        body: dict[str, Any] = {
            "from": call.caller_id.lstrip("+"),
            "to": call.to.lstrip("+"),
            "answer_url": call.connect_to,
            "answer_method": "POST",
            "ring_url": call.callback_url,
            "ring_method": "POST",
            "hangup_url": call.callback_url,
            "hangup_method": "POST",
            "ring_timeout": min(max(call.ring_timeout_s, RING_TIMEOUT_S[0]), RING_TIMEOUT_S[1]),
            "time_limit": call.max_duration_s,
        }
        if call.machine_detection != "off":
            why = self.cannot_detect_machines(call.machine_detection)
            if why is not None:
                raise Rejected(why, account_wide=True)
            body |= {
                "machine_detection": "true",
                "machine_detection_url": call.callback_url,
                "machine_detection_method": "POST",
            }
        return HttpRequest("POST", f"{self.api}/Call/", json=body, auth=(self.auth_id, self._token))

    def read_created(self, answer: HttpAnswer) -> str | None:
        data = json_body(answer)
        if 200 <= answer.status < 300:
            if not isinstance(data, dict) or not data.get("request_uuid"):
                raise ProviderError(f"HTTP {answer.status} without a request_uuid")
            return None  # the request's id, not the call's: the call is known by CallUUID
        message = (
            str(data.get("error") or data.get("message") or "")
            if isinstance(data, dict)
            else answer.text()
        )
        detail = f"HTTP {answer.status}: {message[:300]}"
        if answer.status == 400:
            text = message.lower()
            if "from" in text or "answer_url" in text:
                raise Rejected(detail, account_wide=True)
            raise Rejected(detail)
        raise classify(answer.status, answer.headers, detail)

    def parse_callback(self, callback: InboundCallback) -> CallEvent:
        self.check_token(callback)
        self._check_signature(callback)
        fields = callback.fields
        call_uuid = first(fields, "CallUUID")
        if not call_uuid:
            raise Unreadable("no CallUUID")
        machine = first(fields, "Machine")
        if machine is not None and first(fields, "CallStatus") in (None, "in-progress"):
            answered_by = "machine" if str(machine).lower() == "true" else "human"
            return CallEvent(
                status="in-progress",
                dedupe_key=f"{call_uuid}:amd:{answered_by}",
                provider_call_id=str(call_uuid),
                attempt_id=callback.attempt_id,
                answered_by=answered_by,
                payload=dict(fields),
                detection_result=True,
            )
        word = normal_word(first(fields, "CallStatus"))
        word = WORDS.get(word, word)
        state = state_of_word(word) or word
        duration = to_int(first(fields, "Duration")) if state == "completed" else None
        return CallEvent(
            status=state,
            dedupe_key=f"{call_uuid}:{word}",
            provider_call_id=str(call_uuid),
            attempt_id=callback.attempt_id,
            occurred_at=from_iso(first(fields, "EndTime", "AnswerTime", "StartTime")),
            duration_s=duration,
            payload=dict(fields),
            cost=to_cost(first(fields, "TotalCost")),
        )

    def _check_signature(self, callback: InboundCallback) -> None:
        given = callback.headers.get("X-Plivo-Signature-V3", "")
        nonce = callback.headers.get("X-Plivo-Signature-V3-Nonce", "")
        if not given or not nonce:
            raise Forbidden("no X-Plivo-Signature-V3 or its nonce")
        expected = signature_v3(self._token, callback.url, callback.fields, nonce)
        if not any(same_secret(part.strip(), expected) for part in given.split(",")):
            raise Forbidden("bad X-Plivo-Signature-V3")

    async def fetch_statuses(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, CallEvent | None]:
        def request_for(call_id: str) -> HttpRequest:
            url = f"{self.api}/Call/{call_id}/"
            return HttpRequest("GET", url, auth=(self.auth_id, self._token))

        def read(call: PlacedCall, data: dict[str, Any]) -> CallEvent | None:
            word = normal_word(first(data, "call_state", "call_status", "status"))
            state = state_of_word(WORDS.get(word, word))
            if state is None:
                return None
            duration, cost = first(data, "call_duration"), first(data, "total_amount")
            return polled_event(call, state, data, duration=duration, cost=cost)

        return await self.poll_each(session, calls, pace, request_for, read)

    async def find_placed(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, list[CallEvent] | None]:
        """`Call/?to_number=`: the number's calls (20 at most, newest first)."""

        def request_for(call: PlacedCall) -> HttpRequest:
            query = urlencode({"to_number": call.phone_e164.lstrip("+"), "limit": 20})
            url = f"{self.api}/Call/?{query}"
            return HttpRequest("GET", url, auth=(self.auth_id, self._token))

        def read(record: dict) -> tuple[CallEvent, datetime | None] | None:
            call_uuid = first(record, "call_uuid")
            if not call_uuid:
                return None
            word = normal_word(first(record, "call_state", "call_status"))
            event = listed_event(
                str(call_uuid), WORDS.get(word, word), first(record, "call_duration"), record
            )
            return event, from_iso(first(record, "initiation_time", "answer_time"))

        return await self.list_each(session, calls, pace, request_for, "objects", read)


def signature_v3(token: str, url: str, params: Mapping[str, Any], nonce: str) -> str:
    """Plivo's V3 signature of a POST callback to `url` with form `params`."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = parse_qs(parts.query, keep_blank_values=True)
    sorted_query = "&".join(
        "&".join(f"{key}={value}" for value in sorted(query[key])) for key in sorted(query)
    )
    names = sorted(set(params.keys()))
    posted = "".join(
        "".join(f"{name}{value}" for value in sorted(_values(params, name))) for name in names
    )
    if sorted_query or names:
        base += "?" + sorted_query
    if sorted_query and names:
        base += "."
    message = f"{base}{posted}.{nonce}"
    digest = hmac.new(token.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _values(params: Mapping[str, Any], name: str) -> list[str]:
    getall = getattr(params, "getall", None)
    values = getall(name) if getall is not None else [params[name]]
    return [str(v) for v in values]

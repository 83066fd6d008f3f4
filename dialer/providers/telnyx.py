"""Telnyx, through its TeXML API (Twilio-shaped, JSON requests, Ed25519-signed callbacks).

Why TeXML rather than Call Control v2: a dialer call is "place it with its flow described up
front, then follow its status", which is what TeXML does (the flow is the campaign's
`connect_to` TeXML document, or the TeXML application's own URL), with status callbacks for
each stage. Call Control would make the dialer a live controller that must answer every webhook
with commands (answer, speak, bridge) while the call lasts.

- Create: `POST {base}/v2/texml/Accounts/{account_sid}/Calls`, JSON, `Authorization: Bearer`
  with the API key; `ApplicationSid`, `To`, `From`, `Url` (the campaign's `connect_to`; else
  the application's own), `StatusCallback` with the events `initiated ringing answered
  completed` (space-separated), `Timeout` (5-120 s) and `TimeLimit` (30-14400 s);
  answering-machine detection asynchronously (`MachineDetection` Enable | DetectMessageEnd,
  `AsyncAmd`, `AsyncAmdStatusCallback`). Telnyx documents the answer as `{from, to, status}`:
  a call id is taken where one comes back (`sid`, `call_sid`, also under `data`), else the
  call is known by its first callback (`CallSid`, to the attempt's own URL).
- Errors: JSON:API `errors[]` with `code`, `title`, `detail` and `source.pointer`. 401/402/403
  refuse the account; a 4xx pointing at `/To` refuses the number; one pointing at `/From`,
  `/ApplicationSid` or `/Url` refuses the account; 429 with Retry-After holds it.
- Callbacks: form posts with Twilio's field names (`CallSid`, `CallStatus`, `SequenceNumber`,
  `CallDuration`, `Timestamp` in ISO 8601, `HangupCause`, `ShakenStirAttestation`; the AMD
  callback `AnsweredBy`). Authentic when the URL token matches and `telnyx-signature-ed25519`
  (base64) verifies over `{telnyx-timestamp}|{raw body}` with the account's public key, with a
  timestamp within 5 minutes (older: a replay).
- Look-ups: `GET …/Calls/{sid}` (status, duration, answered_by, price) and `GET …/Calls?To=`.

Pages: https://developers.telnyx.com/api-reference/texml-rest-commands/initiate-an-outbound-call,
https://developers.telnyx.com/api-reference/callbacks/texml-call-completed,
https://developers.telnyx.com/api-reference/callbacks/texml-call-amd
(see docs/providers-telnyx.md).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import AnyHttpUrl, Field, SecretStr, field_validator

from dialer.calls import CallEvent, CallRequest, PlacedCall
from dialer.policy.attestation import sip_code
from dialer.providers.account import AccountBase
from dialer.providers.base import InboundCallback, Pace, Provider, ProviderError
from dialer.providers.errors import Forbidden, Rejected, Unreadable
from dialer.providers.http import HttpAnswer, HttpRequest, classify, json_body
from dialer.providers.words import (
    calls_resource_event,
    first,
    from_iso,
    listed_event,
    normal_word,
    short_text,
    state_of_word,
    to_int,
)

if TYPE_CHECKING:  # the HTTP client is imported when a call is sent, not to read an account
    import aiohttp

EVENTS = "initiated ringing answered completed"
TIMEOUT_S = (5, 120)  # Timeout: the ring time Telnyx allows
TIME_LIMIT_S = (30, 14_400)  # TimeLimit
SIGNATURE = "telnyx-signature-ed25519"
TIMESTAMP = "telnyx-timestamp"
TOLERANCE_S = 300  # a callback signed longer ago (or ahead) than this is a replay
ACCOUNT_POINTERS = ("/From", "/ApplicationSid", "/Url", "/StatusCallback")


class TelnyxAccount(AccountBase):
    """A Telnyx account's TeXML application: its API key, the account sid of its TeXML URLs,
    the application's id and the public key that verifies its webhooks."""

    kind: Literal["telnyx"]
    base_url: AnyHttpUrl = AnyHttpUrl("https://api.telnyx.com")
    rate: str = Field(
        default="6/s",
        description="Telnyx answers 429 beyond 30 dials in a rolling 5 s: 6/s keeps every"
        " 5-second window within it",
    )
    api_key: SecretStr
    account_sid: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    application_sid: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    public_key: str = Field(description="the base64 Ed25519 public key of Mission Control")

    @field_validator("public_key")
    @classmethod
    def _is_an_ed25519_key(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64 (copy the public key from Mission Control)") from None
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
        return value.strip()


class TelnyxProvider(Provider):
    idle_lookups = True  # a call's status by its id (policy.lookups: the idle rate)
    kind = "telnyx"

    def __init__(self, name: str, account: TelnyxAccount) -> None:
        self._key = account.api_key.get_secret_value()
        super().__init__(name, self._key)
        self.api = f"{str(account.base_url).rstrip('/')}/v2/texml/Accounts/{account.account_sid}"
        self.application_sid = account.application_sid
        self._verify = VerifyKey(base64.b64decode(account.public_key))
        self.clock = time.time  # a test may move it

    @property
    def secrets(self) -> list[str]:
        return [self._key, self.callback_token]

    def cannot_detect_machines(self, mode: str = "detect") -> str | None:
        return None  # MachineDetection Enable | DetectMessageEnd, both asynchronous

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}

    def create_request(self, call: CallRequest) -> HttpRequest:
        body: dict[str, Any] = {
            "ApplicationSid": self.application_sid,
            "To": call.to,
            "From": call.caller_id,
            "StatusCallback": call.callback_url,
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": EVENTS,
            "Timeout": min(max(call.ring_timeout_s, TIMEOUT_S[0]), TIMEOUT_S[1]),
            "TimeLimit": min(max(call.max_duration_s, TIME_LIMIT_S[0]), TIME_LIMIT_S[1]),
        }
        if call.connect_to:
            body["Url"] = call.connect_to
        if call.machine_detection != "off":
            mode = "Enable" if call.machine_detection == "detect" else "DetectMessageEnd"
            body |= {
                "MachineDetection": mode,
                "AsyncAmd": True,
                "AsyncAmdStatusCallback": call.callback_url,
                "AsyncAmdStatusCallbackMethod": "POST",
            }
        return HttpRequest("POST", f"{self.api}/Calls", self._headers(), json=body)

    def read_created(self, answer: HttpAnswer) -> str | None:
        data = json_body(answer)
        if 200 <= answer.status < 300:
            record = data.get("data", data) if isinstance(data, dict) else None
            if not isinstance(record, dict):
                raise ProviderError(f"HTTP {answer.status}: an answer that is not a call")
            sid = first(record, "sid", "call_sid", "CallSid", "call_control_id")
            return str(sid) if sid else None  # known by its first callback otherwise
        code, pointer, message = _error(data, answer)
        detail = f"HTTP {answer.status}" + (f" (code {code})" if code else "") + f": {message}"
        if answer.status < 500 and answer.status not in (401, 402, 403, 429):
            if pointer.startswith("/To"):
                raise Rejected(detail)
            if pointer.startswith(ACCOUNT_POINTERS):
                raise Rejected(detail, account_wide=True)
        raise classify(answer.status, answer.headers, detail)

    def parse_callback(self, callback: InboundCallback) -> CallEvent:
        self.check_token(callback)
        self._check_signature(callback)
        fields = callback.fields
        sid = first(fields, "CallSid", "CallSidLegacy")
        if not sid:
            raise Unreadable("no CallSid")
        if first(fields, "CallStatus") is None and first(fields, "AnsweredBy") is not None:
            answered_by = str(first(fields, "AnsweredBy"))
            return CallEvent(
                status="in-progress",
                dedupe_key=f"{sid}:amd:{answered_by.lower()}",
                provider_call_id=str(sid),
                attempt_id=callback.attempt_id,
                answered_by=answered_by,
                payload=dict(fields),
                detection_result=True,
            )
        word = first(fields, "CallStatus")
        state = state_of_word(word) or normal_word(word)
        sequence = to_int(first(fields, "SequenceNumber"))
        return CallEvent(
            status=state,
            dedupe_key=f"{sid}:{sequence if sequence is not None else '-'}:{str(word).lower()}",
            provider_call_id=str(sid),
            attempt_id=callback.attempt_id,
            sequence=sequence,
            occurred_at=from_iso(first(fields, "Timestamp", "OccurredAt")),
            duration_s=to_int(first(fields, "CallDuration")) if state == "completed" else None,
            answered_by=first(fields, "AnsweredBy"),
            payload=dict(fields),
            sip_code=sip_code(first(fields, "SipResponseCode", "SipHangupCause")),
            stir_verstat=short_text(first(fields, "ShakenStirAttestation", "StirVerstat")),
        )

    def _check_signature(self, callback: InboundCallback) -> None:
        """Ed25519 over `{timestamp}|{body}`, the timestamp within TOLERANCE_S of now."""
        signature = _header(callback, SIGNATURE)
        stamp = _header(callback, TIMESTAMP)
        if not signature or not stamp:
            raise Forbidden(f"no {SIGNATURE} or {TIMESTAMP}")
        try:
            sent = int(stamp)
            raw = base64.b64decode(signature, validate=True)
        except (ValueError, binascii.Error):
            raise Forbidden(f"unreadable {SIGNATURE} or {TIMESTAMP}") from None
        if abs(self.clock() - sent) > TOLERANCE_S:
            raise Forbidden(f"{TIMESTAMP} is {self.clock() - sent:.0f} s off: a replay")
        try:
            self._verify.verify(stamp.encode() + b"|" + callback.body, raw)
        except (BadSignatureError, ValueError):
            raise Forbidden(f"bad {SIGNATURE}") from None

    async def fetch_statuses(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, CallEvent | None]:
        def request_for(call_id: str) -> HttpRequest:
            return HttpRequest("GET", f"{self.api}/Calls/{call_id}", self._headers())

        return await self.poll_each(session, calls, pace, request_for, calls_resource_event)

    async def find_placed(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, list[CallEvent] | None]:
        """`Calls?To=`: the number's calls (one page of 50, newest first)."""

        def request_for(call: PlacedCall) -> HttpRequest:
            query = urlencode({"To": call.phone_e164, "PageSize": 50})
            return HttpRequest("GET", f"{self.api}/Calls?{query}", self._headers())

        def read(record: dict) -> tuple[CallEvent, datetime | None] | None:
            sid = first(record, "sid", "call_sid")
            if not sid:
                return None
            event = listed_event(str(sid), record.get("status"), record.get("duration"), record)
            return event, from_iso(first(record, "date_created", "start_time"))

        return await self.list_each(session, calls, pace, request_for, "calls", read)


def _header(callback: InboundCallback, name: str) -> str | None:
    for key, value in callback.headers.items():
        if key.lower() == name:
            return value
    return None


def _error(data: Any, answer: HttpAnswer) -> tuple[str | None, str, str]:
    """(code, source pointer, message) of a JSON:API error answer."""
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        error = errors[0]
        source = error.get("source")
        source = source if isinstance(source, dict) else {}
        message = " - ".join(str(error[k]) for k in ("title", "detail") if error.get(k))
        return (
            str(error["code"]) if error.get("code") else None,
            str(source.get("pointer") or ""),
            message[:300],
        )
    return None, "", answer.text()

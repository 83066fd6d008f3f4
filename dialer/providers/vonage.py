"""Vonage's Voice API: calls created with an application JWT, events in signed JWT webhooks.

- Create: `POST {base}/v1/calls`, JSON, `Authorization: Bearer` with a JWT (RS256, signed with
  the application's private key; claims `application_id`, `iat`, `jti`, `exp` 15 minutes on).
  `to`/`from` as `{"type": "phone", "number"}` without `+`, `answer_url` the campaign's
  `connect_to` (its NCCO; required), `event_url` the attempt's callback URL (POST),
  `ringing_timer` (1-120 s), `length_timer` (1-7200 s); machine detection `continue` (the
  result comes as an event `machine` or `human`). The answer is 201 `{"uuid", "status",
  "direction", "conversation_uuid"}`: `uuid` is the call's id.
- Errors: 401/403 refuse the account; 429 holds it; 400/422 with `invalid_parameters` naming
  `to` refuse the number, naming `from`/`answer_url` the account.
- Events: JSON posts to `event_url`, `status` started | ringing | answered | machine | human |
  completed | busy | cancelled | failed | rejected | timeout | unanswered, with `uuid`,
  `timestamp`, `duration` and `price` when completed, `detail` on failures. Authentic when the
  URL token matches and the `Authorization: Bearer` JWT verifies with the account's signature
  secret (HS256), its `payload_hash` is the SHA-256 of the body, its `api_key` ours, and its
  `iat` within 5 minutes of now (older: a replay).
- Look-ups: `GET …/v1/calls/{uuid}`; `GET …/v1/calls?date_start=…&date_end=…` (Vonage lists by
  time only: the calls to the number are picked out of the window).
- Rate: Vonage answers 429 beyond 3 calls a second.

Pages: https://developer.vonage.com/en/api/voice#createCall,
https://developer.vonage.com/en/voice/voice-api/webhook-reference,
https://developer.vonage.com/en/getting-started/concepts/webhooks#decoding-signed-webhooks
(see docs/providers-vonage.md).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator

from dialer.calls import CallEvent, CallRequest, PlacedCall
from dialer.providers.account import AccountBase
from dialer.providers.base import InboundCallback, Pace, Provider, ProviderError
from dialer.providers.errors import Forbidden, Rejected, Unreadable
from dialer.providers.http import HttpAnswer, HttpRequest, classify, json_body
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

# Vonage's words in ours; `machine` and `human` are detection results, not states
WORDS = {
    "started": "initiated",
    "cancelled": "canceled",
    "rejected": "failed",
    "timeout": "no-answer",
    "unanswered": "no-answer",
}
DETECTION = {"machine", "human"}
RINGING_TIMER_S = (1, 120)
LENGTH_TIMER_S = (1, 7200)
TOLERANCE_S = 300
LIST_WINDOW = timedelta(minutes=10)


class VonageAccount(AccountBase):
    kind: Literal["vonage"]
    base_url: AnyHttpUrl = AnyHttpUrl("https://api.nexmo.com")
    rate: str = Field(default="3/s", description="Vonage answers 429 beyond 3 calls a second")
    application_id: str = Field(pattern=r"^[0-9a-fA-F-]{36}$")
    private_key: SecretStr = Field(description="the application's private key, PEM")
    api_key: str = Field(pattern=r"^[A-Za-z0-9]{4,40}$")
    signature_secret: SecretStr = Field(description="the account's signature secret")

    @field_validator("private_key")
    @classmethod
    def _pem(cls, value: SecretStr) -> SecretStr:
        if "PRIVATE KEY-----" not in value.get_secret_value():
            raise ValueError("a PEM private key (-----BEGIN PRIVATE KEY----- …), with its lines")
        return value


class VonageProvider(Provider):
    idle_lookups = True
    kind = "vonage"

    def __init__(self, name: str, account: VonageAccount) -> None:
        self._private = account.private_key.get_secret_value()
        self._secret = account.signature_secret.get_secret_value()
        super().__init__(name, self._secret)
        self.application_id = account.application_id
        self.api_key = account.api_key
        self.api = f"{str(account.base_url).rstrip('/')}/v1/calls"
        self.clock = time.time

    @property
    def secrets(self) -> list[str]:
        return [self._private, self._secret, self.callback_token]

    def cannot_detect_machines(self, mode: str = "detect") -> str | None:
        if mode == "detect":
            return None
        return 'Vonage reports machine or human, not the end of a message: use "detect"'

    def _token(self) -> str:
        now = int(self.clock())
        claims = {
            "application_id": self.application_id,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "exp": now + 15 * 60,
        }
        import jwt  # here: reading a Vonage account needs no JWT library (nor its cryptography)

        return jwt.encode(claims, self._private, algorithm="RS256")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token()}"}

    def create_request(self, call: CallRequest) -> HttpRequest:
        if not call.connect_to:
            raise Rejected(
                "the campaign has no connect_to (the URL of the call's NCCO: answer_url)",
                account_wide=True,
            )
        body: dict[str, Any] = {
            "to": [{"type": "phone", "number": call.to.lstrip("+")}],
            "from": {"type": "phone", "number": call.caller_id.lstrip("+")},
            "answer_url": [call.connect_to],
            "answer_method": "GET",
            "event_url": [call.callback_url],
            "event_method": "POST",
            "ringing_timer": min(max(call.ring_timeout_s, RINGING_TIMER_S[0]), RINGING_TIMER_S[1]),
            "length_timer": min(max(call.max_duration_s, LENGTH_TIMER_S[0]), LENGTH_TIMER_S[1]),
        }
        if call.machine_detection != "off":
            why = self.cannot_detect_machines(call.machine_detection)
            if why is not None:
                raise Rejected(why, account_wide=True)
            body["machine_detection"] = "continue"
        return HttpRequest("POST", self.api, self._headers(), json=body)

    def read_created(self, answer: HttpAnswer) -> str | None:
        data = json_body(answer)
        if 200 <= answer.status < 300:
            call_id = first(data, "uuid") if isinstance(data, dict) else None
            if not call_id:
                raise ProviderError(f"HTTP {answer.status} without a call uuid")
            return str(call_id)
        names, message = _problem(data, answer)
        detail = f"HTTP {answer.status}: {message}"
        if answer.status in (400, 422):
            if any(n.startswith(("from", "answer_url", "event_url")) for n in names):
                raise Rejected(detail, account_wide=True)
            raise Rejected(detail)
        raise classify(answer.status, answer.headers, detail)

    def parse_callback(self, callback: InboundCallback) -> CallEvent:
        self.check_token(callback)
        self._check_signature(callback)
        event = callback.json
        if not isinstance(event, dict):
            raise Unreadable("not a JSON event")
        call_id = first(event, "uuid")
        if not call_id:
            raise Unreadable("no uuid")
        word = normal_word(first(event, "status"))
        stamp = first(event, "timestamp")
        if word in DETECTION:
            return CallEvent(
                status="in-progress",
                dedupe_key=f"{call_id}:amd:{word}",
                provider_call_id=str(call_id),
                attempt_id=callback.attempt_id,
                answered_by=word,
                occurred_at=from_iso(stamp),
                payload=event,
                detection_result=True,
            )
        word = WORDS.get(word, word)
        state = state_of_word(word) or word
        return CallEvent(
            status=state,
            dedupe_key=f"{call_id}:{word}",
            provider_call_id=str(call_id),
            attempt_id=callback.attempt_id,
            occurred_at=from_iso(stamp),
            duration_s=to_int(first(event, "duration")) if state == "completed" else None,
            payload=event,
            cost=to_cost(first(event, "price")),
        )

    def _check_signature(self, callback: InboundCallback) -> None:
        """The signed webhook: an HS256 JWT over the payload's SHA-256, recent, for our key."""
        import jwt

        header = callback.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise Forbidden("no signed webhook JWT (Authorization: Bearer)")
        try:
            claims = jwt.decode(
                header[7:], self._secret, algorithms=["HS256"], options={"verify_exp": False}
            )
        except jwt.PyJWTError:
            raise Forbidden("the webhook JWT does not verify with the signature secret") from None
        if claims.get("payload_hash") != hashlib.sha256(callback.body).hexdigest():
            raise Forbidden("the webhook's payload_hash is not its body's")
        if claims.get("api_key") not in (None, self.api_key):
            raise Forbidden("the webhook JWT is another account's")
        issued = claims.get("iat")
        if not isinstance(issued, int | float) or abs(self.clock() - issued) > TOLERANCE_S:
            raise Forbidden("the webhook JWT's iat is missing or too old: a replay")

    async def fetch_statuses(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, CallEvent | None]:
        def request_for(call_id: str) -> HttpRequest:
            return HttpRequest("GET", f"{self.api}/{call_id}", self._headers())

        def read(call: PlacedCall, data: dict[str, Any]) -> CallEvent | None:
            word = normal_word(first(data, "status"))
            state = state_of_word(WORDS.get(word, word))
            if state is None:
                return None
            duration, cost = first(data, "duration"), first(data, "price")
            return polled_event(call, state, data, duration=duration, cost=cost)

        return await self.poll_each(session, calls, pace, request_for, read)

    async def find_placed(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, list[CallEvent] | None]:
        """Vonage lists calls by time only: the window around the request, the number's."""
        found: dict[int, list[CallEvent] | None] = {}
        for call in calls:

            def request_for(one: PlacedCall) -> HttpRequest:
                at = one.requested_at or datetime.now(UTC)
                window = {
                    "date_start": _iso(at - LIST_WINDOW),
                    "date_end": _iso(at + LIST_WINDOW),
                    "page_size": 100,
                    "order": "desc",
                }
                return HttpRequest("GET", f"{self.api}?{urlencode(window)}", self._headers())

            def read(record: dict, number: str = call.phone_e164.lstrip("+")) -> Any:
                call_id = first(record, "uuid")
                to = record.get("to")
                if not call_id or not isinstance(to, dict) or str(to.get("number")) != number:
                    return None
                word = normal_word(first(record, "status"))
                event = listed_event(
                    str(call_id), WORDS.get(word, word), first(record, "duration"), record
                )
                return event, from_iso(first(record, "start_time"))

            found |= await self.list_each(
                session, [call], pace, request_for, "_embedded.calls", read
            )
        return found


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _problem(data: Any, answer: HttpAnswer) -> tuple[list[str], str]:
    """(the invalid parameters' names, the message) of a problem answer."""
    if not isinstance(data, dict):
        return [], answer.text()
    invalid = data.get("invalid_parameters")
    names = [
        str(p.get("name", "")).lower()
        for p in invalid if isinstance(p, dict)
    ] if isinstance(invalid, list) else []  # fmt: skip
    message = " - ".join(str(data[k]) for k in ("title", "detail") if data.get(k))
    return names, (message or answer.text())[:300]

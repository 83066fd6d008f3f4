"""Twilio's 2010-04-01 Calls API, and the same API elsewhere (SignalWire, Restcomm, TeleAPI).

- Create: `POST {base}{path_prefix}/Accounts/{sid}/Calls.json`, form body, Basic auth, `Url`
  from the campaign's `connect_to`; `StatusCallbackEvent` listed as the account's dialect
  expects (Twilio: the key repeated per value; Restcomm: space-, TeleAPI: comma-separated).
- Callbacks: form posts; `CallStatus` in any case (TeleAPI upper-cases); `SequenceNumber`
  orders them (the forward-only state machine makes arrival order irrelevant); `AnsweredBy`
  (or TeleAPI's `VoicemailDetector`) kept. Authentic when the URL token matches and, for
  Twilio itself, `X-Twilio-Signature` verifies (Twilio's algorithm; URL tried with and without
  its default port, as Twilio's own validator does).
- Look-ups: `Calls/{Sid}.json`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr

from dialer.calls import CallEvent, CallRequest, PlacedCall
from dialer.policy.attestation import sip_code
from dialer.providers.account import AccountBase
from dialer.providers.base import InboundCallback, Pace, Provider, ProviderError
from dialer.providers.errors import Forbidden, Rejected, Unreadable
from dialer.providers.http import HttpAnswer, HttpRequest, classify, json_body
from dialer.providers.secrets import same_secret
from dialer.providers.words import (
    calls_resource_event,
    first,
    listed_event,
    normal_word,
    short_text,
    state_of_word,
    to_int,
)

if TYPE_CHECKING:  # the HTTP client is imported when a call is sent, not to read an account
    import aiohttp

EVENTS = ("initiated", "ringing", "answered", "completed")
# Twilio error codes that condemn the number, not the account (21211 invalid To, 21214 To not
# reachable, 21216 account may not call this number, 21217 not a valid number, 21219 trial:
# unverified To, 13223/13224 invalid number format).
NUMBER_CODES = {21211, 21214, 21216, 21217, 21219, 13223, 13224}
# ... and codes that mean the request can never succeed for any number on this account or
# campaign (20003 authentication, 21210/21212 caller id not valid or not verified, 21205
# invalid Url, 21215 geographic permissions, 10004 call concurrency of a trial, 20005 suspended).
ACCOUNT_CODES = {20003, 20005, 21205, 21210, 21212, 21215}


class TwilioAccount(AccountBase):
    """Twilio, and the same API elsewhere: SignalWire (`/api/laml/2010-04-01`), Restcomm
    (`/restcomm/2012-04-24`), TeleAPI (`/call/2012-04-24`)."""

    kind: Literal["twilio"]
    account_sid: str
    auth_token: SecretStr
    path_prefix: str = Field(default="/2010-04-01", pattern=r"^/[A-Za-z0-9._/-]*[A-Za-z0-9]$")
    # How StatusCallbackEvent lists several events: Twilio repeats the key, Restcomm's docs say
    # space-separated, TeleAPI's comma-separated. Default: chosen from path_prefix.
    events_format: Literal["repeat", "comma", "space"] | None = None
    # Require X-Twilio-Signature on callbacks. Default: only for Twilio itself (path prefix
    # /2010-04-01); SignalWire signs with a separate signing key and Restcomm/TeleAPI do not
    # sign, so those rely on the callback URL token alone.
    verify_signature: bool | None = None

    @property
    def event_list_style(self) -> str:
        if self.events_format:
            return self.events_format
        if self.path_prefix.startswith("/restcomm/"):
            return "space"
        return "comma" if self.path_prefix.startswith("/call/") else "repeat"

    @property
    def machine_detection_style(self) -> str | None:
        """How this API detects answering machines: "amd" (Twilio and SignalWire, the
        2010-04-01 API: MachineDetection with AsyncAmd), "voicemail" (TeleAPI: DetectVoicemail,
        one mode only), or None (Restcomm documents none)."""
        if self.path_prefix.endswith("/2010-04-01"):
            return "amd"
        return "voicemail" if self.path_prefix.startswith("/call/") else None

    @property
    def signed_callbacks(self) -> bool:
        if self.verify_signature is not None:
            return self.verify_signature
        return self.path_prefix == "/2010-04-01"


class TwilioProvider(Provider):
    idle_lookups = True  # a call's status by its id (policy.lookups: the idle rate)
    kind = "twilio"

    def __init__(self, name: str, account: TwilioAccount) -> None:
        self._token = account.auth_token.get_secret_value()
        super().__init__(name, self._token)
        self.account_sid = account.account_sid
        self.api = (
            f"{str(account.base_url).rstrip('/')}{account.path_prefix}"
            f"/Accounts/{account.account_sid}"
        )
        self.event_style = account.event_list_style
        self.signed = account.signed_callbacks
        self.detection = account.machine_detection_style
        self.path_prefix = account.path_prefix

    @property
    def secrets(self) -> list[str]:
        return [self._token, self.callback_token]

    @property
    def auth_users(self) -> list[str]:
        return [self.account_sid]

    def cannot_detect_machines(self, mode: str = "detect") -> str | None:
        if self.detection == "amd":
            return None
        if self.detection == "voicemail":
            return (
                None
                if mode == "detect"
                else 'TeleAPI\'s DetectVoicemail has one mode: use machine_detection = "detect"'
            )
        return f"the API at {self.path_prefix} (Restcomm) documents no answering-machine detection"

    def create_request(self, call: CallRequest) -> HttpRequest:
        if not call.connect_to:
            raise Rejected(
                "the campaign has no connect_to (the URL of the call's TwiML/RCML/LaML)",
                account_wide=True,
            )
        form = [
            ("To", call.to),
            ("From", call.caller_id),
            ("Url", call.connect_to),
            ("StatusCallback", call.callback_url),
            ("StatusCallbackMethod", "POST"),
        ]
        if self.event_style == "repeat":
            form += [("StatusCallbackEvent", event) for event in EVENTS]
        else:
            separator = "," if self.event_style == "comma" else " "
            form.append(("StatusCallbackEvent", separator.join(EVENTS)))
        form += [("Timeout", str(call.ring_timeout_s)), ("TimeLimit", str(call.max_duration_s))]
        form += self._detection_fields(call)
        return HttpRequest(
            "POST", f"{self.api}/Calls.json", form=form, auth=(self.account_sid, self._token)
        )

    def _detection_fields(self, call: CallRequest) -> list[tuple[str, str]]:
        """Answering-machine detection, asynchronous so the call's flow is not held up: the
        result comes in its own callback (to the attempt's callback URL) and on the call
        resource, not on the final status callback. We never send SendDigits, which would make
        Twilio ignore detection."""
        if call.machine_detection == "off":
            return []
        why = self.cannot_detect_machines(call.machine_detection)
        if why is not None:
            raise Rejected(why, account_wide=True)
        if self.detection == "voicemail":
            return [("DetectVoicemail", "yes")]
        mode = "Enable" if call.machine_detection == "detect" else "DetectMessageEnd"
        return [
            ("MachineDetection", mode),
            ("AsyncAmd", "true"),
            ("AsyncAmdStatusCallback", call.callback_url),
            ("AsyncAmdStatusCallbackMethod", "POST"),
        ]

    def read_created(self, answer: HttpAnswer) -> str | None:
        data = json_body(answer)
        if 200 <= answer.status < 300:
            if isinstance(data, dict) and data.get("status") == "error":
                raise Rejected(f"HTTP {answer.status}: {data.get('error')}", account_wide=True)
            sid = first(data, "sid") if isinstance(data, dict) else _xml_text(answer, "Sid")
            if sid:
                return str(sid)
            raise ProviderError(f"HTTP {answer.status} without a call sid")
        code, message = _error(answer, data)
        detail = f"HTTP {answer.status}" + (f" (code {code})" if code else "") + f": {message}"
        if code in NUMBER_CODES and answer.status < 500:
            raise Rejected(detail)
        raise classify(answer.status, answer.headers, detail, account_refused=code in ACCOUNT_CODES)

    def parse_callback(self, callback: InboundCallback) -> CallEvent:
        self.check_token(callback)
        if self.signed:
            given = callback.headers.get("X-Twilio-Signature", "")
            if not any(
                same_secret(given, signature(self._token, url, callback.fields))
                for url in url_variants(callback.url)
            ):
                raise Forbidden("bad or missing X-Twilio-Signature")
        fields = callback.fields
        sid = first(fields, "CallSid")
        if not sid:
            raise Unreadable("no CallSid")
        if first(fields, "CallStatus") is None and first(fields, "AnsweredBy") is not None:
            return self._detection_result(callback, str(sid))
        # A word we do not know is passed on as it is: screening holds it and asks the provider.
        state = state_of_word(first(fields, "CallStatus")) or normal_word(
            first(fields, "CallStatus")
        )
        sequence = to_int(first(fields, "SequenceNumber"))
        word = str(first(fields, "CallStatus")).lower()
        stamp = first(fields, "Timestamp")
        return CallEvent(
            status=state,
            dedupe_key=f"{sid}:{sequence if sequence is not None else '-'}:{word}",
            provider_call_id=str(sid),
            attempt_id=callback.attempt_id,
            sequence=sequence,
            occurred_at=_rfc2822(stamp),
            duration_s=to_int(first(fields, "CallDuration")) if state == "completed" else None,
            answered_by=first(fields, "AnsweredBy", "VoicemailDetector"),
            payload=dict(fields),
            # on the final event: the SIP code that ended the call; the caller id's
            # STIR/SHAKEN verification as the far end saw it (policy.attestation)
            sip_code=sip_code(first(fields, "SipResponseCode", "SipCode")),
            stir_verstat=short_text(first(fields, "StirVerstat", "StirStatus")),
        )

    def _detection_result(self, callback: InboundCallback, sid: str) -> CallEvent:
        """The asynchronous AMD callback: AnsweredBy (and MachineDetectionDuration), no status;
        it says the call was answered, and by whom."""
        answered_by = str(first(callback.fields, "AnsweredBy"))
        return CallEvent(
            status="in-progress",
            dedupe_key=f"{sid}:amd:{answered_by.lower()}",
            provider_call_id=sid,
            attempt_id=callback.attempt_id,
            answered_by=answered_by,
            payload=dict(callback.fields),
            detection_result=True,
        )

    async def fetch_statuses(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, CallEvent | None]:
        def request_for(call_id: str) -> HttpRequest:
            url = f"{self.api}/Calls/{call_id}.json"
            return HttpRequest("GET", url, auth=(self.account_sid, self._token))

        return await self.poll_each(session, calls, pace, request_for, calls_resource_event)

    async def find_placed(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, list[CallEvent] | None]:
        """Calls.json?To=: the number's calls, newest first (by date_created, RFC 2822 with
        its zone), one page of 50: a call of ours is among the newest."""

        def request_for(call: PlacedCall) -> HttpRequest:
            query = urlencode({"To": call.phone_e164, "PageSize": 50})
            url = f"{self.api}/Calls.json?{query}"
            return HttpRequest("GET", url, auth=(self.account_sid, self._token))

        def read(record: dict) -> tuple[CallEvent, datetime | None] | None:
            if not record.get("sid"):
                return None
            sid = str(record["sid"])
            event = listed_event(sid, record.get("status"), record.get("duration"), record)
            return event, _rfc2822(record.get("date_created"))

        return await self.list_each(session, calls, pace, request_for, "calls", read)


def signature(token: str, url: str, params: Any) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 over the URL followed by every parameter name and
    value, names sorted and each name's values sorted, with no separators."""
    data = url
    names = sorted(set(params.keys())) if params else []
    for name in names:
        values = params.getall(name) if hasattr(params, "getall") else [params[name]]
        for value in sorted(values):
            data += name + value
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def url_variants(url: str) -> list[str]:
    """The URL as given, without its port, and with its port (the scheme's default if none):
    the three forms Twilio's own validator accepts, since Twilio signs either way."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    without = urlunsplit(parts._replace(netloc=host))
    with_port = urlunsplit(parts._replace(netloc=f"{host}:{port}"))
    return list(dict.fromkeys([url, without, with_port]))


def _error(answer: HttpAnswer, data: Any) -> tuple[int | None, str]:
    if isinstance(data, dict):
        message = data.get("message") or data.get("error") or data.get("Message") or ""
        return to_int(data.get("code")), str(message)[:300]
    message = _xml_text(answer, "Message")
    return to_int(_xml_text(answer, "Code")), (message or answer.text())[:300]


def _xml_text(answer: HttpAnswer, tag: str) -> str | None:
    try:
        node = ET.fromstring(answer.body).find(f".//{tag}")
    except ET.ParseError:
        return None
    return node.text if node is not None else None


def _rfc2822(value: Any):
    try:
        return parsedate_to_datetime(str(value)) if value else None
    except (TypeError, ValueError):
        return None

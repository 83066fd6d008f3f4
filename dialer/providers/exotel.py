"""Exotel Voice v1: `Calls/connect.json`, Basic auth, form bodies, unsigned status callbacks.

- Create: `POST {base}/v1/Accounts/{sid}/Calls/connect.json`. The customer is always `From`,
  the first leg Exotel dials: then no agent waits on a customer who does not pick up, and the
  customer's outcome is leg 1's. The answered customer is connected to the campaign's
  `connect_to` flow (`Url`) or, number to number, to its `agent_number` (`To`).
- Our attempt id travels in `CustomField` (echoed in `terminal` callbacks) and in the
  callback URL's path; the URL also carries the account's token (Exotel does not sign).
- Errors come as JSON (`{"RestException": {...}}`) or, from some paths, XML; a 403 that names
  TRAI NDNC/DND regulations refuses the number for good (it goes on the do-not-call list).
- Look-ups: `Calls/{Sid}.json?details=true`, or `Calls.json?Sid=a,b,...` for up to 100 at once;
  both count against the same 200/min as dialing (the reconciler paces them).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

import phonenumbers
from pydantic import SecretStr

from dialer.calls import CallEvent, CallRequest, PlacedCall
from dialer.providers.account import AccountBase
from dialer.providers.base import InboundCallback, Pace, Provider, ProviderError
from dialer.providers.errors import Rejected, Unreadable
from dialer.providers.http import HttpAnswer, HttpRequest, classify, json_body, lookup, unanswered
from dialer.providers.words import FINAL_WORDS, first, normal_word, state_of_word, to_cost, to_int

if TYPE_CHECKING:  # the HTTP client is imported when a call is sent, not to read an account
    import aiohttp

LOOKUP_BATCH = 100  # Exotel's limit of Sids per bulk call-details request
CUSTOM_PREFIX = "dialer-attempt:"


class ExotelAccount(AccountBase):
    kind: Literal["exotel"]
    sid: str
    api_key: SecretStr
    api_token: SecretStr
    number_format: Literal["e164", "national0"] = "e164"


class ExotelProvider(Provider):
    kind = "exotel"
    calls_per_lookup = LOOKUP_BATCH
    idle_lookups = True  # calls' status by their ids (policy.lookups: the idle rate)

    def __init__(self, name: str, account: ExotelAccount) -> None:
        self._key = account.api_key.get_secret_value()
        self._token = account.api_token.get_secret_value()
        super().__init__(name, self._token)
        self.sid = account.sid
        self.number_format = account.number_format
        self.api = f"{str(account.base_url).rstrip('/')}/v1/Accounts/{account.sid}"

    @property
    def secrets(self) -> list[str]:
        return [self._key, self._token, self.callback_token]

    @property
    def auth_users(self) -> list[str]:
        return [self._key]

    def render(self, e164: str) -> str:
        """A number as the account wants it: E.164, or the legacy 0-prefixed national form."""
        if self.number_format == "e164" or not e164.startswith("+"):
            return e164
        parsed = phonenumbers.parse(e164)
        return "0" + phonenumbers.national_significant_number(parsed)

    def create_request(self, call: CallRequest) -> HttpRequest:
        form = [("From", self.render(call.to)), ("CallerId", self.render(call.caller_id))]
        if call.agent_number:
            form.append(("To", self.render(call.agent_number)))
        elif call.connect_to:
            form.append(("Url", call.connect_to))
        else:
            raise Rejected(
                "the campaign names neither connect_to (an Exotel flow URL) nor agent_number",
                account_wide=True,
            )
        form += [
            ("CallType", "trans"),
            ("TimeOut", str(call.ring_timeout_s)),
            ("TimeLimit", str(call.max_duration_s)),
            ("CustomField", f"{CUSTOM_PREFIX}{call.attempt_id}"),
            ("StatusCallback", call.callback_url),
            ("StatusCallbackEvents[0]", "terminal"),
            ("StatusCallbackEvents[1]", "answered"),
            ("StatusCallbackContentType", "application/json"),
        ]
        return HttpRequest(
            "POST", f"{self.api}/Calls/connect.json", form=form, auth=(self._key, self._token)
        )

    def read_created(self, answer: HttpAnswer) -> str | None:
        if answer.status == 200:
            sid = _call_fields(answer).get("Sid")
            if sid:
                return str(sid)
            raise ProviderError("HTTP 200 without a call Sid")
        message = _error_message(answer)
        detail = f"HTTP {answer.status}: {message}"
        lowered = message.lower()
        ndnc = answer.status == 403 and ("ndnc" in lowered or "dnd" in lowered)
        raise classify(answer.status, answer.headers, detail, do_not_call=ndnc)

    def parse_callback(self, callback: InboundCallback) -> CallEvent:
        self.check_token(callback)
        fields = _callback_fields(callback)
        sid = str(first(fields, "CallSid") or "")
        status = normal_word(first(fields, "Status"))
        event_type = str(first(fields, "EventType") or "terminal").lower()
        if not sid:
            raise Unreadable("not an Exotel status callback (no CallSid)")
        customer = _customer_leg(fields.get("Legs"))
        if event_type == "answered":
            state = "in-progress"
        elif customer is not None and customer.get("Status") in FINAL_WORDS:
            state = str(customer["Status"])  # the customer's leg decides (see module notes)
        elif event_type == "terminal" and state_of_word(status) not in FINAL_WORDS:
            state = status or "(no status)"  # a final event in words we do not know: held
        else:
            state = state_of_word(status) or "accepted"
        duration = to_int(first(fields, "ConversationDuration")) or to_int(
            (customer or {}).get("OnCallDuration")
        )
        return CallEvent(
            status=state,
            dedupe_key=f"{sid}:{event_type}",
            provider_call_id=sid,
            attempt_id=callback.attempt_id or _attempt_from(first(fields, "CustomField")),
            duration_s=duration if state == "completed" else None,
            answered_by=_answered_by(customer),
            payload=fields,
        )

    async def fetch_statuses(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, CallEvent | None]:
        by_sid = {c.provider_call_id: c.attempt_id for c in calls if c.provider_call_id}
        sids = list(by_sid)
        found: dict[int, CallEvent | None] = {}
        for start in range(0, len(sids), LOOKUP_BATCH):
            chunk = sids[start : start + LOOKUP_BATCH]
            await pace()
            if len(chunk) == 1:
                url = f"{self.api}/Calls/{chunk[0]}.json?details=true"
            else:
                url = f"{self.api}/Calls.json?Sid={','.join(chunk)}&details=true"
            answer = await lookup(session, HttpRequest("GET", url, auth=(self._key, self._token)))
            if unanswered(answer):
                found |= {by_sid[sid]: None for sid in chunk}
                continue
            data = json_body(answer) if answer and answer.status == 200 else None
            for record in _call_records(data):
                sid = str(record.get("Sid", ""))
                if sid in by_sid:
                    found[by_sid[sid]] = _polled_event(sid, record)
        return found

    async def find_placed(
        self, session: aiohttp.ClientSession, calls: Sequence[PlacedCall], pace: Pace
    ) -> dict[int, list[CallEvent] | None]:
        """Bulk call details filtered by `To` (newest first, the last 31 days by default),
        one page of 50; `DateCreated` has no zone, so it is matched loosely (base.placed_around)
        and the reconciler adopts a listed call only if it is the one call no attempt claims."""

        def request_for(call: PlacedCall) -> HttpRequest:
            query = urlencode({"To": call.phone_e164, "PageSize": 50, "details": "true"})
            return HttpRequest(
                "GET", f"{self.api}/Calls.json?{query}", auth=(self._key, self._token)
            )

        def read(record: dict) -> tuple[CallEvent, datetime | None] | None:
            if not record.get("Sid"):
                return None
            return _polled_event(str(record["Sid"]), record), _naive_time(record.get("DateCreated"))

        return await self.list_each(session, calls, pace, request_for, "Calls", read)


def _naive_time(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def _call_fields(answer: HttpAnswer) -> dict[str, Any]:
    data = json_body(answer)
    if isinstance(data, dict) and isinstance(data.get("Call"), dict):
        return data["Call"]
    try:
        call = ET.fromstring(answer.body).find(".//Call")
    except ET.ParseError:
        return {}
    return {child.tag: (child.text or "") for child in call} if call is not None else {}


def _error_message(answer: HttpAnswer) -> str:
    data = json_body(answer)
    if isinstance(data, dict) and isinstance(data.get("RestException"), dict):
        return str(data["RestException"].get("Message", ""))[:300]
    try:
        node = ET.fromstring(answer.body).find(".//Message")
    except ET.ParseError:
        node = None
    return (node.text or "")[:300] if node is not None else answer.text()


def _callback_fields(callback: InboundCallback) -> dict[str, Any]:
    """JSON callbacks as they are; form callbacks flattened, with `Legs[i][Key]` regrouped."""
    if isinstance(callback.json, dict):
        return dict(callback.json)
    fields: dict[str, Any] = {}
    legs: dict[int, dict[str, str]] = {}
    for key, value in callback.fields.items():
        if key.startswith("Legs[") and "][" in key:
            index, _, name = key[5:].partition("][")
            if index.isdigit():
                legs.setdefault(int(index), {})[name.rstrip("]")] = value
                continue
        fields[key] = value
    if legs:
        fields["Legs"] = [legs[i] for i in sorted(legs)]
    elif isinstance(fields.get("Legs"), str):
        try:
            fields["Legs"] = json.loads(fields["Legs"])
        except ValueError:
            fields.pop("Legs")
    return fields


def _customer_leg(legs: Any) -> Mapping[str, Any] | None:
    if isinstance(legs, list) and legs and isinstance(legs[0], dict):
        leg = dict(legs[0])
        if isinstance(leg.get("Status"), str):
            leg["Status"] = normal_word(leg["Status"])
        return leg
    return None


def _answered_by(leg: Mapping[str, Any] | None) -> str | None:
    value = (leg or {}).get("AnsweredBy")
    return str(value).lower() if value and value != "NA" else None


def _attempt_from(custom: Any) -> int | None:
    text = str(custom or "")
    if text.startswith(CUSTOM_PREFIX) and text[len(CUSTOM_PREFIX) :].isdigit():
        return int(text[len(CUSTOM_PREFIX) :])
    return None


def _call_records(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        return []
    if isinstance(data.get("Call"), dict):
        return [data["Call"]]
    calls = data.get("Calls")
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _polled_event(sid: str, record: Mapping[str, Any]) -> CallEvent:
    status = normal_word(record.get("Status"))
    given = record.get("Details")
    details: dict[str, Any] = given if isinstance(given, dict) else {}
    leg1 = normal_word(details.get("Leg1Status"))  # the customer's leg
    if status in FINAL_WORDS and leg1 in FINAL_WORDS:
        status = leg1
    state = state_of_word(status) or "accepted"
    duration = to_int(details.get("ConversationDuration")) or to_int(record.get("Duration"))
    return CallEvent(
        status=state,
        dedupe_key=f"{sid}:poll:{state}",
        provider_call_id=sid,
        duration_s=duration if state == "completed" else None,
        payload={"polled": dict(record)},
        cost=to_cost(record.get("Price")),  # in the account's currency, which it does not name
    )

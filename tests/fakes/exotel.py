"""A fake Exotel Voice v1, as its documentation describes it.

- `POST /v1/Accounts/{sid}/Calls/connect[.json]`: Basic auth (API key, token) or 401; form
  bodies only; `From`, `CallerId` and one of `Url`/`To` required (400 in Exotel's words);
  numbers in the format the account uses; TRAI NDNC numbers refused with 403; beyond the rate
  429. Answers JSON for `.json`, XML otherwise.
- Status callbacks: with `StatusCallbackEvents` and both `From` and `To` (number to number)
  the rich fields (`EventType`, `CustomField`, `Legs`, `ConversationDuration`), as JSON if
  `StatusCallbackContentType=application/json`, else multipart; with a flow (`Url`), only the
  four documented fields, multipart. Never signed.
- `GET Calls/{Sid}.json` and `GET Calls.json?Sid=a,b` (at most 100) count against the rate.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from aiohttp import web

from tests.fakes.engine import Delivery, FakeCall, FakeProvider, basic_auth_is

NDNC_SUFFIX = "1313"  # numbers ending so are on the TRAI NDNC register in this fake
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


class ExotelDialect:
    def __init__(self, sid: str, key: str, token: str, *, number_format: str = "e164") -> None:
        self.sid, self.key, self.token = sid, key, token
        self.pattern = re.compile(r"^\+[1-9]\d{7,14}$" if number_format == "e164" else r"^0\d{10}$")
        self.ndnc_refused: list[str] = []

    def routes(self, fake: FakeProvider) -> list[web.RouteDef]:
        base = f"/v1/Accounts/{self.sid}"

        async def connect(request: web.Request) -> web.Response:
            as_json = request.path.endswith(".json")
            if not self._authorized(request):
                return _error(401, "Authentication is required to view this page.", as_json)
            if request.content_type not in FORMS:
                return _error(400, "Invalid call parameters: body must be form data", as_json)
            form = await request.post()
            for name in ("From", "CallerId"):
                if not form.get(name):
                    return _error(400, f"Invalid call parameters: no '{name}' specified", as_json)
            if not form.get("Url") and not form.get("To"):
                return _error(400, "Invalid call parameters: no 'Url' or 'To' specified", as_json)
            customer = str(form["From"])
            if not self.pattern.match(customer):
                return _error(400, f"Invalid call parameters: 'From' {customer} invalid", as_json)
            wait = fake.admit()
            if wait is not None:
                body = _error_body(429, "Too Many Requests", as_json, code="RATE_LIMIT_EXCEEDED")
                return _answer(body, 429, as_json, fake.retry_after_headers(wait))
            if customer.endswith(NDNC_SUFFIX):
                self.ndnc_refused.append(customer)
                message = f"Call to {customer} cannot be made because of TRAI NDNC regulations"
                return _error(403, message, as_json)
            tail = str(form.get("CustomField", "")).rpartition(":")[2]
            attempt = int(tail) if tail.isdigit() else None
            params = {k: str(v) for k, v in form.items()}
            params["events"] = [v for k, v in form.items() if k.startswith("StatusCallbackEvents")]
            call = fake.open_call(
                _e164(customer), attempt, str(form.get("StatusCallback", "")), params
            )
            return _answer(_call_body(call, self.sid, "in-progress", as_json), 200, as_json)

        async def details(request: web.Request) -> web.Response:
            if not self._authorized(request):
                return _error(401, "Authentication is required to view this page.", True)
            wait = fake.admit(uses_channel=False)
            if wait is not None:
                return _error(429, "Too Many Requests", True)
            fake.counts["lookups"] += 1
            sids = request.match_info.get("sid") or request.query.get("Sid", "")
            found = [fake.calls[s] for s in sids.split(",")[:100] if s in fake.calls]
            if not sids and request.query.get("To"):  # bulk details by number, newest first
                numbers = request.query["To"].split(",")[:5]
                found = [c for c in reversed(fake.calls.values()) if c.to in numbers][:50]
            records = [self._record(c) for c in found]
            if request.match_info.get("sid"):
                if not records:
                    return _error(404, "Call not found", True)
                return web.json_response({"Call": records[0]})
            return web.json_response({"Metadata": {"Total": len(records)}, "Calls": records})

        return [
            web.post(f"{base}/Calls/connect.json", connect),
            web.post(f"{base}/Calls/connect", connect),
            web.get(f"{base}/Calls.json", details),
            web.get(base + "/Calls/{sid}.json", details),
        ]

    def _authorized(self, request: web.Request) -> bool:
        return basic_auth_is(request, self.key, self.token)

    def _record(self, call: FakeCall) -> dict[str, Any]:
        final = call.status in ("completed", "busy", "no-answer", "failed")
        status = call.status if final else "in-progress"
        return {
            "Sid": call.call_id,
            "To": call.to,
            # the account's local time, with no zone (India: UTC+05:30)
            "DateCreated": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(call.started + 19800)),
            "Status": status,
            "Duration": call.duration if final else None,
            "Price": f"{0.6 * call.duration:.2f}" if call.status == "completed" else "0.00",
            "Details": {
                "Leg1Status": call.status if final else None,
                "ConversationDuration": call.duration if call.status == "completed" else 0,
            },
        }

    def callbacks(self, call: FakeCall, stage: str, sequence: int) -> list[Delivery]:
        params = call.params
        rich = bool(params.get("To")) and bool(params.get("events"))
        if stage == "answered" and rich and "answered" in params["events"]:
            return [self._delivery(call, self._rich(call, "answered"), params)]
        if stage != "final":
            return []
        if not rich:  # the flow variant: only the four documented fields
            fields = {
                "CallSid": call.call_id,
                "Status": call.outcome,
                "RecordingUrl": "",
                "DateUpdated": "2026-11-22 10:00:00",
            }
            return [_multipart_delivery(call.callback_url, fields)]
        return [self._delivery(call, self._rich(call, "terminal"), params)]

    def _rich(self, call: FakeCall, event_type: str) -> dict[str, Any]:
        terminal = event_type == "terminal"
        customer = call.outcome if terminal else "in-progress"
        agent = ("completed" if call.outcome == "completed" else None) if terminal else None
        # Exotel's quirk: the overall Status reads `completed` once any leg connected.
        overall = "completed" if call.outcome == "completed" else call.outcome
        fields: dict[str, Any] = {
            "CallSid": call.call_id,
            "EventType": event_type,
            "Status": overall if terminal else "in-progress",
            "DateCreated": "2026-11-22 10:00:00",
            "To": call.params.get("To"),
            "From": call.params.get("From"),
            "Direction": "outbound-api",
            "ConversationDuration": call.duration if call.outcome == "completed" else 0,
            "Legs": [
                {"OnCallDuration": call.duration, "Status": customer, "AnsweredBy": "Human"},
                {"OnCallDuration": call.duration, "Status": agent, "AnsweredBy": "NA"},
            ],
        }
        if terminal:
            fields["CustomField"] = call.params.get("CustomField")
        return fields

    def _delivery(self, call: FakeCall, fields: dict[str, Any], params: dict) -> Delivery:
        if params.get("StatusCallbackContentType") == "application/json":
            return Delivery(call.callback_url, json.dumps(fields).encode(), "application/json")
        flat = {k: v for k, v in fields.items() if k != "Legs"}
        for index, leg in enumerate(fields["Legs"]):
            for key, value in leg.items():
                flat[f"Legs[{index}][{key}]"] = "" if value is None else value
        return _multipart_delivery(call.callback_url, flat)

    def reported(self, outcome: str) -> str:
        return outcome


def _e164(number: str) -> str:
    return number if number.startswith("+") else "+91" + number[1:]


def _multipart_delivery(url: str, fields: dict[str, Any]) -> Delivery:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{'' if value is None else value}\r\n"
        )
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return Delivery(url, body, f"multipart/form-data; boundary={boundary}")


def _call_body(call: FakeCall, sid: str, status: str, as_json: bool) -> str:
    record = {
        "Sid": call.call_id,
        "ParentCallSid": "",
        "AccountSid": sid,
        "To": call.params.get("To", ""),
        "From": call.params.get("From", ""),
        "Status": status,
        "Direction": "outbound-api",
        "Uri": f"/v1/Accounts/{sid}/Calls/{call.call_id}",
    }
    if as_json:
        return json.dumps({"Call": record})
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in record.items())
    return f"<?xml version='1.0'?><TwilioResponse><Call>{inner}</Call></TwilioResponse>"


def _error_body(status: int, message: str, as_json: bool, code: str | None = None) -> str:
    if as_json:
        inner: dict[str, Any] = {"Status": status, "Message": message}
        if code:
            inner["Code"] = code
        return json.dumps({"RestException": inner})
    return (
        "<TwilioResponse><RestException>"
        f"<Status>{status}</Status><Message>{message}</Message>"
        "</RestException></TwilioResponse>"
    )


def _error(status: int, message: str, as_json: bool) -> web.Response:
    return _answer(_error_body(status, message, as_json), status, as_json)


def _answer(body: str, status: int, as_json: bool, headers: dict | None = None) -> web.Response:
    kind = "application/json" if as_json else "application/xml"
    return web.Response(text=body, status=status, content_type=kind, headers=headers)

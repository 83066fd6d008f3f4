"""A fake TeleCMI: PIOPIY `make_call` or CHUB `click2call`, as their documentation describes.

- `POST /v1/make_call` (JSON; `appid` + `secret` in the body; numbers as JSON integers):
  HTTP 200 with body `code` 420 for bad credentials (the body code matters, not only the HTTP
  status), 501 for a missing property, 502 for a property of the wrong type, 429 past the
  rate, else `{"data": {"status": "progress", "request_id": ...}, "code": 200}`.
- `POST /v2/webrtc/click2call`: 400 (user_id/secret missing, or not exactly one of webrtc and
  followme), 404 (unknown user_id), 407 (bad secret), else `{"code": 200, "request_id": ...}`.
- Events and CDRs go to the app's one event URL (set in the dashboard, here the constructor),
  JSON, `extra_params` echoed as a JSON string. make_call: the customer is leg `a`;
  click2call: the agent is leg `a` (dialed first) and the customer leg `b`, never dialed if the
  agent misses. One CDR per leg at the end, `answered` or `missed` with `hangup_reason`;
  each CDR is delivered 1 to 4 times (TeleCMI redelivers at +5/+10/+15 min).
- `POST /v2/out_answered`, `/v2/out_missed`: the CDR lists (appid + secret, ms window, pages of
  at most 20), without request_id.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.engine import Delivery, FakeCall, FakeProvider

REASONS = {"busy": "sent_reject", "no-answer": "recv_cancel", "failed": "recv_refuse"}


class TelecmiDialect:
    def __init__(self, mode: str, appid: str, secret: str, event_url: str, user_id: str = ""):
        self.mode, self.appid, self.secret, self.event_url = mode, appid, secret, event_url
        self.user_id = user_id
        self.customer_leg = "a" if mode == "make_call" else "b"

    def routes(self, fake: FakeProvider) -> list[web.RouteDef]:
        async def make_call(request: web.Request) -> web.Response:
            body = await _json(request)
            if body is None:
                return _answer(501, 501, "Missing required property")
            for name in ("appid", "secret", "from", "to", "answer_url"):
                if name not in body:
                    return _answer(501, 501, f"Missing required property: {name}")
            if str(body["appid"]) != self.appid or body["secret"] != self.secret:
                return _answer(200, 420, "Invalid app id or secret, failed to authenticate token")
            if not all(isinstance(body[n], int) for n in ("from", "to", "appid")):
                return _answer(502, 502, "The property required is missing: numbers are numbers")
            return self._open(fake, body)

        async def click2call(request: web.Request) -> web.Response:
            body = await _json(request)
            if body is None or not body.get("user_id") or not body.get("secret"):
                return _answer(400, 400, "user_id parameter missing , secret parameter missing")
            if body["user_id"] != self.user_id:
                return _answer(404, 404, "invalid user_id")
            if body["secret"] != self.secret:
                return _answer(407, 407, "invalid app secret")
            if bool(body.get("webrtc", True)) == bool(body.get("followme", False)):
                return _answer(400, 400, "Enable webrtc or followme")
            if not isinstance(body.get("to"), int):
                return _answer(400, 400, "to must be a number")
            return self._open(fake, body)

        async def cdr_list(request: web.Request) -> web.Response:
            body = await _json(request) or {}
            if str(body.get("appid")) != self.appid or body.get("secret") != self.secret:
                return _answer(200, 420, "Invalid app id or secret")
            if fake.admit(uses_channel=False) is not None:
                return _answer(429, 429, "Too many requests")
            fake.counts["lookups"] += 1
            answered = request.path.endswith("out_answered")
            rows = [
                self._cdr_row(c)
                for c in fake.calls.values()
                if c.status in ("completed", "busy", "no-answer", "failed", "canceled")
                and (c.status == "completed") == answered
                and body.get("start_date", 0) <= c.started * 1000 <= body.get("end_date", 1e15)
            ]
            rows.sort(key=lambda r: r["time"], reverse=True)
            limit = min(int(body.get("limit", 10)), 20)
            page = int(body.get("page", 1))
            chunk = rows[(page - 1) * limit : page * limit]
            return web.json_response({"count": len(rows), "cdr": chunk})

        return [
            web.post("/v1/make_call", make_call),
            web.post("/v2/webrtc/click2call", click2call),
            web.post("/v2/out_answered", cdr_list),
            web.post("/v2/out_missed", cdr_list),
        ]

    def _open(self, fake: FakeProvider, body: dict[str, Any]) -> web.Response:
        wait = fake.admit()
        if wait is not None:
            return _answer(429, 429, "Too many requests", fake.retry_after_headers(wait))
        extra = body.get("extra_params") or {}
        attempt = extra.get("dialer_attempt") if isinstance(extra, dict) else None
        request_id = f"req{next(fake.ids):012d}"
        params = {"_call_id": request_id, "extra": json.dumps(extra), "body": body}
        fake.open_call(f"+{body['to']}", attempt, self.event_url, params)
        if self.mode == "click2call":
            return web.json_response(
                {"code": 200, "msg": "Call initiated", "request_id": request_id}
            )
        data = {"status": "progress", "request_id": request_id}
        return web.json_response({"data": data, "code": 200})

    def _cdr_row(self, call: FakeCall) -> dict[str, Any]:
        return {
            "cmiuid": f"{call.call_id}-{self.customer_leg}",
            "duration": call.duration,
            "billedsec": call.duration,
            "from": "919100000000",
            "to": int(call.to.lstrip("+")),
            "time": int(call.started * 1000),
        }

    # ---- callbacks --------------------------------------------------------------------------

    def callbacks(self, call: FakeCall, stage: str, sequence: int) -> list[Delivery]:
        customer, agent = self.customer_leg, "b" if self.customer_leg == "a" else "a"
        canceled = call.outcome == "canceled"
        events: list[dict[str, Any]] = []
        if stage == "initiated":
            if self.mode == "click2call":  # the agent's leg first
                events += [self._event(call, "a", s) for s in ("started", "ringing")]
                if not canceled:
                    events += [
                        self._event(call, "a", "answered"),
                        self._event(call, "b", "started"),
                    ]
            else:
                events.append(self._event(call, customer, "started"))
        elif stage == "ringing" and not canceled:
            events.append(self._event(call, customer, "ringing"))
        elif stage == "answered":
            status = "answered" if self.mode == "click2call" else "out_answered"
            events.append(self._event(call, customer, status))
            if self.mode == "make_call":
                events.append(self._event(call, agent, "out_bridged"))
        elif stage == "final":
            if canceled:
                events += self._cdrs(call, "a", "missed", "recv_cancel")
            else:
                word = "answered" if call.outcome == "completed" else "missed"
                events += self._cdrs(call, customer, word, REASONS.get(call.outcome, ""))
                if self.mode == "click2call" or call.outcome == "completed":
                    events += self._cdrs(call, agent, "answered", "sent_bye")
        return [
            Delivery(self.event_url, json.dumps(e).encode(), "application/json") for e in events
        ]

    def _event(self, call: FakeCall, leg: str, status: str) -> dict[str, Any]:
        return {
            "type": "event",
            "appid": int(self.appid),
            "request_id": call.call_id,
            "cmiuuid": f"{call.call_id}-{leg}",
            "conversation_uuid": call.call_id,
            "direction": "outbound",
            "extra_params": call.params["extra"],
            "from": 919100000000,
            "to": str(call.to.lstrip("+")),  # events sometimes carry numbers as strings
            "leg": leg,
            "status": status,
            "time": int(time.time() * 1000),
        }

    def _cdrs(self, call: FakeCall, leg: str, word: str, reason: str) -> list[dict[str, Any]]:
        record = self._event(call, leg, word) | {
            "type": "cdr",
            "duration": call.duration if word == "answered" else 0,
            "start_time": int(call.started),
            "end_time": int(time.time()),
            "hangup_reason": reason,
            "call_rate": "0.40",
        }
        return [record] * (1 + int(call.call_id[-4:]) % 4)  # redeliveries

    def reported(self, outcome: str) -> str:
        return outcome


async def _json(request: web.Request) -> dict[str, Any] | None:
    if request.content_type != "application/json":
        return None
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _answer(status: int, code: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": message}, status=status, headers=headers)

"""A fake Telnyx TeXML Calls API, written from Telnyx's pages (see docs/providers-telnyx.md).

Strict where the real one is: `Authorization: Bearer` with the API key (401, JSON:API errors),
JSON bodies only (415), `ApplicationSid`/`To`/`From` required and the application known (422
with a `source.pointer`), `Timeout` 5-120 and `TimeLimit` 30-14400 (422), the status events
space-separated, invalid numbers refused (422 pointing at `/To`), 429 with Retry-After beyond
30 dials in a rolling 5 s. The create answer is `{from, to, status}` as documented (no call
id: a call is known by its callbacks). Callbacks are form posts signed with Ed25519 over
`{timestamp}|{body}` (headers `telnyx-signature-ed25519`, `telnyx-timestamp`); the AMD result
comes to `AsyncAmdStatusCallback` on its own.
"""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from nacl.signing import SigningKey

from tests.fakes.engine import Delivery, FakeCall, FakeProvider

EVENTS = {"initiated", "ringing", "answered", "completed"}
INVALID_SUFFIX = "0000"
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
MACHINE_WORDS = {
    "Enable": ["machine_start", "fax"],
    "DetectMessageEnd": ["machine_end_beep", "machine_end_silence", "machine_end_other"],
}


class TelnyxDialect:
    def __init__(self, account_sid: str, api_key: str, application_sid: str) -> None:
        self.sid, self.key, self.application = account_sid, api_key, application_sid
        self.signing = SigningKey.generate()
        self.invalid_refused: list[str] = []
        self.clock = time.time  # when callbacks say they were signed (a test may shift it)

    @property
    def public_key(self) -> str:
        return base64.b64encode(bytes(self.signing.verify_key)).decode()

    def routes(self, fake: FakeProvider) -> list[web.RouteDef]:
        base = f"/v2/texml/Accounts/{self.sid}"

        async def create(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {self.key}":
                return _error(401, "10009", "Authentication failed", "")
            if request.content_type != "application/json":
                return _error(415, "10015", "Unsupported media type", "")
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "10015", "Malformed JSON", "")
            if not isinstance(body, dict):
                return _error(400, "10015", "Malformed JSON", "")
            for name in ("ApplicationSid", "To", "From"):
                if not body.get(name):
                    return _error(422, "10005", f"{name} is required", f"/{name}")
            if str(body["ApplicationSid"]) != self.application:
                return _error(422, "10005", "Unknown TeXML application", "/ApplicationSid")
            timeout, limit = body.get("Timeout", 30), body.get("TimeLimit", 14400)
            if not isinstance(timeout, int) or not 5 <= timeout <= 120:
                return _error(422, "10015", "Timeout must be 5-120", "/Timeout")
            if not isinstance(limit, int) or not 30 <= limit <= 14400:
                return _error(422, "10015", "TimeLimit must be 30-14400", "/TimeLimit")
            events = str(body.get("StatusCallbackEvent", "")).split(" ")
            if not set(events) <= EVENTS:
                return _error(
                    422,
                    "10015",
                    "StatusCallbackEvent: events separated by a space",
                    "/StatusCallbackEvent",
                )
            to = str(body["To"])
            if not E164.match(to) or to.endswith(INVALID_SUFFIX):
                self.invalid_refused.append(to)
                return _error(422, "10016", "Invalid phone number", "/To")
            wait = fake.admit()
            if wait is not None:
                return _error(429, "10011", "Too many requests", "", fake.retry_after_headers(wait))
            fault = fake.fault()
            if fault == "phantom":
                return _error(500, "10007", "Unexpected error", "")
            callback = str(body.get("StatusCallback", ""))
            tail = urlsplit(callback).path.rstrip("/").rpartition("/")[2]
            params: dict[str, Any] = {
                "events": events,
                "callback": callback,
                "_call_id": f"v3:{next(fake.ids):020d}",
            }
            if body.get("MachineDetection"):
                mode = body["MachineDetection"]
                if mode not in MACHINE_WORDS or body.get("AsyncAmd") is not True:
                    return _error(
                        422, "10015", "this fake answers asynchronous AMD only", "/MachineDetection"
                    )
                params["amd"] = {
                    "mode": mode,
                    "callback": str(body.get("AsyncAmdStatusCallback") or callback),
                    "delay": fake.rng.uniform(*fake.settings.amd_delay),
                    "lost": fake.rng.random() < fake.settings.amd_lost,
                    "machine_word": fake.rng.choice(MACHINE_WORDS[mode]),
                }
            call = fake.open_call(to, int(tail) if tail.isdigit() else None, callback, params)
            if fault == "placed":
                return _error(500, "10007", "Unexpected error", "")
            return web.json_response({"from": body["From"], "to": call.to, "status": "queued"})

        async def fetch(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {self.key}":
                return _error(401, "10009", "Authentication failed", "")
            if fake.admit(uses_channel=False, rated=False) is not None:
                return _error(429, "10011", "Too many requests", "")
            fake.counts["lookups"] += 1
            call = fake.calls.get(request.match_info["call"])
            if call is None:
                return _error(404, "10005", "Resource not found", "")
            return web.json_response(self._resource(call))

        async def listing(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {self.key}":
                return _error(401, "10009", "Authentication failed", "")
            if fake.admit(uses_channel=False, rated=False) is not None:
                return _error(429, "10011", "Too many requests", "")
            fake.counts["lists"] += 1
            to = request.query.get("To")
            size = min(int(request.query.get("PageSize", "50")), 1000)
            calls = [c for c in reversed(fake.calls.values()) if to is None or c.to == to]
            return web.json_response({"calls": [self._resource(c) for c in calls[:size]]})

        return [
            web.post(f"{base}/Calls", create),
            web.get(f"{base}/Calls", listing),
            web.get(base + "/Calls/{call}", fetch),
        ]

    def _answered_by(self, call: FakeCall) -> str | None:
        amd = call.params.get("amd")
        if amd is None:
            return None
        return amd["machine_word"] if call.outcome == "machine" else "human"

    def _resource(self, call: FakeCall) -> dict[str, Any]:
        final = call.status in ("completed", "busy", "no-answer", "failed", "machine")
        status = (
            call.status if final else ("in-progress" if call.status == "answered" else "ringing")
        )
        status = "completed" if status == "machine" else status
        answered = call.status in ("completed", "machine")
        return {
            "sid": call.call_id,
            "account_sid": self.sid,
            "to": call.to,
            "status": status,
            "duration": str(call.duration) if answered else None,
            "answered_by": self._answered_by(call) if answered else None,
            "price": f"-{0.007 * call.duration:.4f}" if call.status == "completed" else None,
            "price_unit": "USD",
            "date_created": datetime.fromtimestamp(call.started, UTC).isoformat(),
        }

    def callbacks(self, call: FakeCall, stage: str, sequence: int) -> list[Delivery]:
        subscribed = "completed" if stage == "final" else stage
        if subscribed not in call.params["events"]:
            return []
        word = {
            "initiated": "initiated",
            "ringing": "ringing",
            "answered": "in-progress",
            "final": "completed" if call.outcome == "machine" else call.outcome,
        }[stage]
        fields = {
            "AccountSid": self.sid,
            "CallSid": call.call_id,
            "CallSidLegacy": call.call_id,
            "CallStatus": word,
            "CallbackSource": "call-progress-events",
            "ConnectionId": self.application,
            "From": "+13125550100",
            "To": call.to,
            "SequenceNumber": str(sequence),
            "Timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "ShakenStirAttestation": "A",
            "ShakenStirValidated": "true",
        }
        if stage == "final":
            fields["HangupCause"] = {
                "busy": "user_busy",
                "no-answer": "timeout",
                "failed": "call_rejected",
            }.get(call.outcome, "normal_clearing")
            if call.outcome in ("completed", "machine"):
                fields["CallDuration"] = str(call.duration)
        return [self.signed(call.params["callback"], fields), *self._detection(call, stage)]

    def _detection(self, call: FakeCall, stage: str) -> list[Delivery]:
        amd = call.params.get("amd")
        if stage != "answered" or amd is None or amd["lost"]:
            return []
        fields = {
            "AccountSid": self.sid,
            "CallSid": call.call_id,
            "AnsweredBy": self._answered_by(call) or "unknown",
            "MachineDetectionDuration": str(int(amd["delay"] * 1000)),
        }
        delivery = self.signed(amd["callback"], fields)
        delivery.after = amd["delay"]
        return [delivery]

    def signed(self, url: str, fields: dict[str, str], *, at: float | None = None) -> Delivery:
        """A callback as Telnyx sends it: Ed25519 over `{timestamp}|{body}`."""
        body = urlencode(fields).encode()
        stamp = str(int(self.clock() if at is None else at))
        signature = self.signing.sign(stamp.encode() + b"|" + body).signature
        headers = {
            "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
            "telnyx-timestamp": stamp,
        }
        return Delivery(url, body, "application/x-www-form-urlencoded", headers)

    def reported(self, outcome: str) -> str:
        return outcome


def account_toml(
    base_url: str, dialect: TelnyxDialect, *, rate: str = "6/s", channels: int = 6
) -> str:
    """The dialer.toml keys of an account on this fake (after its [accounts.NAME] line)."""
    return (
        f'kind = "telnyx"\nbase_url = "{base_url}"\napi_key = "{dialect.key}"\n'
        f'account_sid = "{dialect.sid}"\napplication_sid = "{dialect.application}"\n'
        f'public_key = "{dialect.public_key}"\nrate = "{rate}"\nchannels = {channels}'
    )


def _error(
    status: int, code: str, title: str, pointer: str, headers: dict | None = None
) -> web.Response:
    error: dict[str, Any] = {"code": code, "title": title, "detail": title}
    if pointer:
        error["source"] = {"pointer": pointer}
    return web.Response(
        text=json.dumps({"errors": [error]}),
        status=status,
        content_type="application/json",
        headers=headers,
    )

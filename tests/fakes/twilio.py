"""A fake Twilio 2010-04-01 Calls API, and its relatives at other paths.

`variant` picks the relative: `twilio` (`/2010-04-01`, `StatusCallbackEvent` repeated per
value, callbacks signed with X-Twilio-Signature by the official `twilio` package),
`signalwire` (`/api/laml/2010-04-01`, same shape, sends both `answered` and `in-progress`),
`restcomm` (`/restcomm/2012-04-24`, one space-separated event list, unsigned) and `teleapi`
(`/call/2012-04-24`, comma-separated list, upper-case statuses, composite sids, unsigned).

Strict where the real one is: Basic auth (401, code 20003), form bodies only, `To`/`From`/`Url`
required (400, code 21201/21213/21205), event names validated in the variant's own list
format (400), invalid numbers (400, code 21211), 429 (code 20429) past the rate.
"""

from __future__ import annotations

import json
import re
import time
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from twilio.request_validator import RequestValidator

from tests.fakes.engine import Delivery, FakeCall, FakeProvider, basic_auth_is

EVENTS = {"initiated", "ringing", "answered", "completed"}
ANSWERED = ("completed", "machine")
MACHINE_WORDS = {  # what AnsweredBy says of a machine, per MachineDetection mode
    "Enable": ["machine_start", "fax"],
    "DetectMessageEnd": ["machine_end_beep", "machine_end_silence", "machine_end_other", "fax"],
    "voicemail": ["voicemail"],
}
PREFIX = {
    "twilio": "/2010-04-01",
    "signalwire": "/api/laml/2010-04-01",
    "restcomm": "/restcomm/2012-04-24",
    "teleapi": "/call/2012-04-24",
}
INVALID_SUFFIX = "0000"  # numbers ending so are not valid phone numbers to this fake
E164 = re.compile(r"^\+[1-9]\d{7,14}$")


class TwilioDialect:
    def __init__(self, variant: str, sid: str, token: str) -> None:
        self.variant, self.sid, self.token = variant, sid, token
        self.prefix = PREFIX[variant]
        self.signed = variant in ("twilio", "signalwire")
        self.invalid_refused: list[str] = []

    def routes(self, fake: FakeProvider) -> list[web.RouteDef]:
        base = f"{self.prefix}/Accounts/{self.sid}"

        async def create(request: web.Request) -> web.Response:
            if not self._authorized(request):
                return _error(401, 20003, "Authenticate")
            if request.content_type != "application/x-www-form-urlencoded":
                return _error(400, 20001, "Content-Type must be application/x-www-form-urlencoded")
            form = await request.post()
            for name, code in (("To", 21201), ("From", 21213), ("Url", 21205)):
                if not form.get(name):
                    return _error(400, code, f"No '{name}' is specified")
            events = self._events(form.getall("StatusCallbackEvent", []))
            if events is None:
                return _error(400, 21626, "StatusCallbackEvent is not in this API's list format")
            to = str(form["To"])
            if not E164.match(to) or to.endswith(INVALID_SUFFIX):
                self.invalid_refused.append(to)
                return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
            wait = fake.admit()
            if wait is not None:
                return _error(429, 20429, "Too Many Requests", fake.retry_after_headers(wait))
            fault = fake.fault()
            if fault == "phantom":
                return _error(500, 20500, "Internal Server Error")
            callback = str(form.get("StatusCallback", ""))
            tail = urlsplit(callback).path.rstrip("/").rpartition("/")[2]
            params = {"events": events, "callback": callback, "_call_id": self._sid(fake)}
            detection = self._detection(form)
            if isinstance(detection, web.Response):
                return detection
            if detection is not None:
                params["amd"] = detection | {
                    "delay": fake.rng.uniform(*fake.settings.amd_delay),
                    "lost": fake.rng.random() < fake.settings.amd_lost,
                    "machine_word": fake.rng.choice(MACHINE_WORDS[detection["mode"]]),
                }
            call = fake.open_call(to, int(tail) if tail.isdigit() else None, callback, params)
            if fault == "placed":  # Twilio: a 5xx on create is not idempotent
                return _error(500, 20500, "Internal Server Error")
            return web.json_response(self._resource(call), status=201)

        async def fetch(request: web.Request) -> web.Response:
            if not self._authorized(request):
                return _error(401, 20003, "Authenticate")
            if fake.admit(uses_channel=False) is not None:
                return _error(429, 20429, "Too Many Requests")
            fake.counts["lookups"] += 1
            call = fake.calls.get(request.match_info["call"])
            if call is None:
                return _error(404, 20404, "The requested resource was not found")
            return web.json_response(self._resource(call))

        async def listing(request: web.Request) -> web.Response:
            """Read multiple Call resources: filtered by To, newest first, one page."""
            if not self._authorized(request):
                return _error(401, 20003, "Authenticate")
            if fake.admit(uses_channel=False) is not None:
                return _error(429, 20429, "Too Many Requests")
            fake.counts["lists"] += 1
            to = request.query.get("To")
            size = min(int(request.query.get("PageSize", "50")), 1000)
            calls = [c for c in reversed(fake.calls.values()) if to is None or c.to == to]
            page = [self._resource(c) for c in calls[:size]]
            return web.json_response({"calls": page, "page": 0, "page_size": size})

        return [
            web.post(f"{base}/Calls.json", create),
            web.get(f"{base}/Calls.json", listing),
            web.get(base + "/Calls/{call}.json", fetch),
        ]

    def _detection(self, form) -> dict[str, Any] | web.Response | None:
        """Answering-machine detection as the create request asked for it, checked the way the
        API documents it: Twilio/SignalWire `MachineDetection` (Enable | DetectMessageEnd) with
        `AsyncAmd=true` and an `AsyncAmdStatusCallback`; TeleAPI `DetectVoicemail=yes`."""
        if self.variant in ("twilio", "signalwire"):
            mode = form.get("MachineDetection")
            if mode is None:
                return None
            if mode not in ("Enable", "DetectMessageEnd"):
                return _error(400, 21216, f"MachineDetection {mode!r} is not valid")
            if form.get("SendDigits"):
                return None  # Twilio ignores detection when SendDigits is sent
            if form.get("AsyncAmd") != "true" or not form.get("AsyncAmdStatusCallback"):
                return _error(400, 21200, "this fake answers asynchronous AMD only")
            return {"mode": mode, "callback": str(form["AsyncAmdStatusCallback"])}
        if self.variant == "teleapi" and form.get("DetectVoicemail") == "yes":
            return {"mode": "voicemail"}
        return None

    def _authorized(self, request: web.Request) -> bool:
        return basic_auth_is(request, self.sid, self.token)

    def _events(self, values: list[str]) -> list[str] | None:
        """The subscribed events, if written in this variant's list format."""
        if self.variant in ("twilio", "signalwire"):
            names = values
        elif len(values) == 1:
            names = values[0].split("," if self.variant == "teleapi" else " ")
        else:
            return None
        return names if names and set(names) <= EVENTS else None

    def _sid(self, fake: FakeProvider) -> str:
        sid = f"CA{next(fake.ids):032x}"
        return f"ID{sid[2:10]}-{sid}" if self.variant == "teleapi" else sid

    def _word(self, word: str) -> str:
        return word.upper() if self.variant == "teleapi" else word

    def _answered_by(self, call: FakeCall) -> str | None:
        """Who answered, as the API words it: with detection, the fake's decision."""
        amd = call.params.get("amd")
        if amd is None:
            return "human" if call.outcome == "completed" else None
        if amd["mode"] == "voicemail":
            return "voicemail" if call.outcome == "machine" else "person_found"
        return amd["machine_word"] if call.outcome == "machine" else "human"

    def _resource(self, call: FakeCall) -> dict[str, Any]:
        final = call.status in ("completed", "busy", "no-answer", "failed", "machine")
        status = (
            call.status if final else ("in-progress" if call.status == "answered" else "queued")
        )
        status = "completed" if status == "machine" else status
        return {
            "sid": call.call_id,
            "account_sid": self.sid,
            "to": call.to,
            "status": self._word(status),
            "duration": str(call.duration) if call.status in ("completed", "machine") else None,
            "answered_by": self._answered_by(call) if call.status in ANSWERED else None,
            "price": f"-{0.013 * call.duration:.4f}" if call.status == "completed" else None,
            "price_unit": "USD",
            "api_version": self.prefix.rpartition("/")[2],
            "date_created": formatdate(call.started, usegmt=True),
        }

    def callbacks(self, call: FakeCall, stage: str, sequence: int) -> list[Delivery]:
        events = call.params["events"]
        words = {
            "initiated": ["initiated"],
            "ringing": ["ringing"],
            "answered": ["answered", "in-progress"]
            if self.variant == "signalwire"
            else ["in-progress"],
            "final": ["completed" if call.outcome == "machine" else call.outcome],
        }[stage]
        subscribed = "completed" if stage == "final" else stage
        if subscribed not in events:
            return []
        deliveries = []
        for offset, word in enumerate(words):
            fields = {
                "AccountSid": self.sid,
                "CallSid": call.call_id,
                "CallStatus": self._word(word),
                "To": call.to,
                "From": "+14155550100",
                "Direction": "outbound-api",
                "ApiVersion": self.prefix.rpartition("/")[2],
                "CallbackSource": "call-progress-events",
                "SequenceNumber": str(sequence * 2 + offset),
                "Timestamp": formatdate(time.time(), usegmt=True),
            }
            if stage == "final" and call.outcome in ANSWERED:
                fields["CallDuration"] = str(call.duration)
                amd = call.params.get("amd")
                if amd is None:
                    fields["AnsweredBy"] = "human"
                elif amd["mode"] == "voicemail":  # TeleAPI: on the status callback itself
                    fields["VoicemailDetector"] = self._answered_by(call) or ""
                # Twilio's asynchronous AMD: never on the status callbacks, only in its own
            deliveries.append(self._signed(call.params["callback"], fields))
        return deliveries + self._detection_callback(call, stage)

    def _detection_callback(self, call: FakeCall, stage: str) -> list[Delivery]:
        """Twilio's AMD result: to AsyncAmdStatusCallback, its own delay after the answer."""
        amd = call.params.get("amd")
        if stage != "answered" or amd is None or amd["mode"] == "voicemail" or amd["lost"]:
            return []
        fields = {
            "AccountSid": self.sid,
            "CallSid": call.call_id,
            "AnsweredBy": self._answered_by(call) or "unknown",
            "MachineDetectionDuration": str(int(amd["delay"] * 1000)),
        }
        delivery = self._signed(amd["callback"], fields)
        delivery.after = amd["delay"]
        return [delivery]

    def _signed(self, url: str, fields: dict[str, str]) -> Delivery:
        headers = {}
        if self.signed:
            headers["X-Twilio-Signature"] = RequestValidator(self.token).compute_signature(
                url, fields
            )
        body = urlencode(fields).encode()
        return Delivery(url, body, "application/x-www-form-urlencoded", headers)

    def reported(self, outcome: str) -> str:
        return outcome  # "machine" is drawn only for campaigns that ask for detection


def account_toml(
    base_url: str,
    sid: str,
    token: str,
    *,
    variant: str = "twilio",
    rate: str = "20/s",
    channels: int = 6,
) -> str:
    """The dialer.toml keys of an account on this fake (after its [accounts.NAME] line)."""
    return (
        f'kind = "twilio"\nbase_url = "{base_url}"\naccount_sid = "{sid}"\n'
        f'auth_token = "{token}"\npath_prefix = "{PREFIX[variant]}"\n'
        f'rate = "{rate}"\nchannels = {channels}'
    )


def _error(status: int, code: int, message: str, headers: dict | None = None) -> web.Response:
    body = {"code": code, "message": message, "status": status}
    body["more_info"] = f"https://www.twilio.com/docs/errors/{code}"
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json", headers=headers
    )

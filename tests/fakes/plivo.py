"""A fake Plivo Voice API (Call/), written from Plivo's pages (see docs/providers-plivo.md).

Strict where the real one is: HTTP Basic with the auth id and token (401), JSON bodies (415),
`from`, `to` and `answer_url` required (400, `{"api_id", "error"}`), numbers as country code
and number without `+` (400), 2 calls a second (429). The create answer is 201 `{"api_id",
"message": "call fired", "request_uuid"}`. Callbacks: form posts to `ring_url` (ringing) and
`hangup_url` (the end: CallStatus, Duration, HangupCause...), and the machine detection result
to `machine_detection_url`, each signed with X-Plivo-Signature-V3 and its nonce, made by
Plivo's own SDK (`plivo.utils.signature_v3`).
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

from tests.fakes.engine import Delivery, FakeCall, FakeProvider, basic_auth_is

DIGITS = re.compile(r"^[1-9]\d{7,14}$")
INVALID_SUFFIX = "0000"
HANGUP = {  # the outcome, as Plivo's hangup callback says it
    "completed": ("completed", "NORMAL_CLEARING", "4000"),
    "machine": ("completed", "NORMAL_CLEARING", "4000"),
    "busy": ("busy", "USER_BUSY", "3010"),
    "no-answer": ("no-answer", "NO_ANSWER", "3000"),
    "failed": ("failed", "CALL_REJECTED", "3020"),
}


class PlivoDialect:
    def __init__(self, auth_id: str, token: str) -> None:
        self.auth_id, self.token = auth_id, token
        self.invalid_refused: list[str] = []

    def routes(self, fake: FakeProvider) -> list[web.RouteDef]:
        base = f"/v1/Account/{self.auth_id}"

        async def create(request: web.Request) -> web.Response:
            if not basic_auth_is(request, self.auth_id, self.token):
                return _error(401, "authentication failed")
            if request.content_type != "application/json":
                return _error(415, "content type must be application/json")
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "malformed JSON")
            if not isinstance(body, dict):
                return _error(400, "malformed JSON")
            for name in ("from", "to", "answer_url"):
                if not body.get(name):
                    return _error(400, f"{name} is required")
            to = str(body["to"])
            if not DIGITS.match(to) or to.endswith(INVALID_SUFFIX):
                self.invalid_refused.append(to)
                return _error(400, f"invalid to number: {to}")
            wait = fake.admit()
            if wait is not None:
                return _error(429, "too many requests", fake.retry_after_headers(wait))
            fault = fake.fault()
            if fault == "phantom":
                return _error(500, "internal error")
            hangup = str(body.get("hangup_url", ""))
            tail = urlsplit(hangup).path.rstrip("/").rpartition("/")[2]
            request_uuid = str(uuid.UUID(int=fake.rng.getrandbits(128)))
            params: dict[str, Any] = {
                "ring": str(body.get("ring_url", "")),
                "hangup": hangup,
                "request_uuid": request_uuid,
                "_call_id": str(uuid.UUID(int=fake.rng.getrandbits(128))),
            }
            if body.get("machine_detection") == "true" and body.get("machine_detection_url"):
                params["amd"] = {
                    "callback": str(body["machine_detection_url"]),
                    "delay": fake.rng.uniform(*fake.settings.amd_delay),
                    "lost": fake.rng.random() < fake.settings.amd_lost,
                }
            fake.open_call("+" + to, int(tail) if tail.isdigit() else None, hangup, params)
            if fault == "placed":
                return _error(500, "internal error")
            answer = {"api_id": str(uuid.uuid4()), "message": "call fired"}
            return web.json_response(answer | {"request_uuid": request_uuid}, status=201)

        async def fetch(request: web.Request) -> web.Response:
            if not basic_auth_is(request, self.auth_id, self.token):
                return _error(401, "authentication failed")
            if fake.admit(uses_channel=False, rated=False) is not None:
                return _error(429, "too many requests")
            fake.counts["lookups"] += 1
            call = fake.calls.get(request.match_info["call"])
            if call is None:
                return _error(404, "call not found")
            return web.json_response(self._record(call))

        async def listing(request: web.Request) -> web.Response:
            if not basic_auth_is(request, self.auth_id, self.token):
                return _error(401, "authentication failed")
            if fake.admit(uses_channel=False, rated=False) is not None:
                return _error(429, "too many requests")
            fake.counts["lists"] += 1
            to = request.query.get("to_number")
            limit = min(int(request.query.get("limit", "20")), 20)
            calls = [c for c in reversed(fake.calls.values()) if to is None or c.to == "+" + to]
            objects = [self._record(c) for c in calls[:limit]]
            return web.json_response({"meta": {"limit": limit}, "objects": objects})

        return [
            web.post(f"{base}/Call/", create),
            web.get(f"{base}/Call/", listing),
            web.get(base + "/Call/{call}/", fetch),
        ]

    def _record(self, call: FakeCall) -> dict[str, Any]:
        final = call.status in HANGUP
        status = (
            HANGUP[call.status][0]
            if final
            else ("in-progress" if call.status == "answered" else "ringing")
        )
        answered = call.status in ("completed", "machine")
        return {
            "call_uuid": call.call_id,
            "to_number": call.to.lstrip("+"),
            "call_status": status,
            "call_duration": call.duration if answered else 0,
            "total_amount": f"{0.006 * call.duration:.5f}" if answered else "0.00000",
            "initiation_time": datetime.fromtimestamp(call.started, UTC).isoformat(),
        }

    def callbacks(self, call: FakeCall, stage: str, sequence: int) -> list[Delivery]:
        common = {
            "CallUUID": call.call_id,
            "RequestUUID": call.params["request_uuid"],
            "From": "14155550100",
            "To": call.to.lstrip("+"),
            "Direction": "outbound",
        }
        if stage == "ringing" and call.params["ring"]:
            fields = common | {"CallStatus": "ringing", "Event": "Ring"}
            return [self.signed(call.params["ring"], fields)]
        if stage == "answered":
            return self._detection(call, common)
        if stage != "final":
            return []
        status, cause, code = HANGUP[call.outcome]
        answered = call.outcome in ("completed", "machine")
        fields = common | {
            "CallStatus": status,
            "Event": "Hangup",
            "HangupCause": cause,
            "HangupCauseCode": code,
            "HangupSource": "Callee",
            "Duration": str(call.duration if answered else 0),
            "BillDuration": str(call.duration if answered else 0),
            "EndTime": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        }
        return [self.signed(call.params["hangup"], fields)]

    def _detection(self, call: FakeCall, common: dict[str, str]) -> list[Delivery]:
        amd = call.params.get("amd")
        if amd is None or amd["lost"]:
            return []
        machine = "true" if call.outcome == "machine" else "false"
        delivery = self.signed(amd["callback"], common | {"Machine": machine})
        delivery.after = amd["delay"]
        return [delivery]

    def signed(self, url: str, fields: dict[str, str], nonce: str | None = None) -> Delivery:
        """A callback as Plivo sends it, signed by Plivo's SDK (V3, with a fresh nonce)."""
        nonce = nonce or secrets.token_hex(10)
        base = construct_post_url(url, dict(fields)).decode()
        signature = get_signature_v3(self.token.encode(), base, nonce.encode()).decode()
        headers = {"X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}
        return Delivery(
            url, urlencode(fields).encode(), "application/x-www-form-urlencoded", headers
        )

    def reported(self, outcome: str) -> str:
        return outcome


def account_toml(
    base_url: str, auth_id: str, token: str, *, rate: str = "2/s", channels: int = 6
) -> str:
    return (
        f'kind = "plivo"\nbase_url = "{base_url}"\nauth_id = "{auth_id}"\n'
        f'auth_token = "{token}"\nrate = "{rate}"\nchannels = {channels}'
    )


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    body = {"api_id": str(uuid.uuid4()), "error": message}
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json", headers=headers
    )

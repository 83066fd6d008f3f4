"""A fake Vonage Voice API (`/v1/calls`), written from Vonage's pages (docs/providers-vonage.md).

Strict where the real one is: a JWT of the application (RS256, verified with its public key,
`application_id` and a recent `iat` required) or 401; JSON bodies (415); `to` a list of
`{"type": "phone", "number"}` without `+`, `from`, `answer_url` a list, `ringing_timer`
1-120 and `length_timer` 1-7200 (400 with `invalid_parameters`); 3 calls a second (429). The
answer is 201 `{"uuid", "status": "started", "direction", "conversation_uuid"}`. Events are
JSON posts to `event_url`, each signed as Vonage signs webhooks: `Authorization: Bearer` an
HS256 JWT with the signature secret, its `payload_hash` the body's SHA-256 (made with PyJWT,
and checked in the tests with Vonage's own `vonage-jwt`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.engine import Delivery, FakeCall, FakeProvider

DIGITS = re.compile(r"^[1-9]\d{7,14}$")
INVALID_SUFFIX = "0000"
FINAL = {"completed": "completed", "machine": "completed", "busy": "busy"}


class VonageDialect:
    def __init__(self, application_id: str, api_key: str, signature_secret: str) -> None:
        self.application_id, self.api_key, self.secret = application_id, api_key, signature_secret
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.public_key = key.public_key()
        self.invalid_refused: list[str] = []
        self.clock = time.time

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        try:
            claims = jwt.decode(header[7:], self.public_key, algorithms=["RS256"])
        except jwt.PyJWTError:
            return False
        return claims.get("application_id") == self.application_id and "jti" in claims

    def routes(self, fake: FakeProvider) -> list[web.RouteDef]:
        async def create(request: web.Request) -> web.Response:
            if not self._authorized(request):
                return _problem(401, "Unauthorized", "invalid or missing application JWT")
            if request.content_type != "application/json":
                return _problem(415, "Unsupported Media Type", "JSON only")
            try:
                body = await request.json()
            except ValueError:
                return _problem(400, "Bad Request", "malformed JSON")
            invalid = _invalid(body)
            if invalid:
                return _problem(400, "Bad Request", "invalid parameters", invalid)
            to = str(body["to"][0]["number"])
            if to.endswith(INVALID_SUFFIX):
                self.invalid_refused.append(to)
                return _problem(
                    400,
                    "Bad Request",
                    "invalid number",
                    [{"name": "to", "reason": "not a valid number"}],
                )
            wait = fake.admit()
            if wait is not None:
                return _problem(
                    429,
                    "Too Many Requests",
                    "3 calls a second",
                    headers=fake.retry_after_headers(wait),
                )
            fault = fake.fault()
            if fault == "phantom":
                return _problem(500, "Internal Server Error", "")
            event_url = str(body["event_url"][0])
            tail = event_url.split("?")[0].rstrip("/").rpartition("/")[2]
            call_id = str(uuid.UUID(int=fake.rng.getrandbits(128)))
            params: dict[str, Any] = {
                "event_url": event_url,
                "_call_id": call_id,
                "amd": body.get("machine_detection") == "continue",
            }
            fake.open_call("+" + to, int(tail) if tail.isdigit() else None, event_url, params)
            if fault == "placed":
                return _problem(500, "Internal Server Error", "")
            return web.json_response(
                {
                    "uuid": call_id,
                    "status": "started",
                    "direction": "outbound",
                    "conversation_uuid": f"CON-{call_id}",
                },
                status=201,
            )

        async def fetch(request: web.Request) -> web.Response:
            if not self._authorized(request):
                return _problem(401, "Unauthorized", "")
            if fake.admit(uses_channel=False, rated=False) is not None:
                return _problem(429, "Too Many Requests", "")
            fake.counts["lookups"] += 1
            call = fake.calls.get(request.match_info["call"])
            if call is None:
                return _problem(404, "Not Found", "no such call")
            return web.json_response(self._record(call))

        async def listing(request: web.Request) -> web.Response:
            if not self._authorized(request):
                return _problem(401, "Unauthorized", "")
            if fake.admit(uses_channel=False, rated=False) is not None:
                return _problem(429, "Too Many Requests", "")
            fake.counts["lists"] += 1
            try:
                start = datetime.fromisoformat(request.query["date_start"].replace("Z", "+00:00"))
                end = datetime.fromisoformat(request.query["date_end"].replace("Z", "+00:00"))
            except (KeyError, ValueError):
                return _problem(400, "Bad Request", "date_start and date_end are required")
            calls = [
                c
                for c in reversed(fake.calls.values())
                if start.timestamp() <= c.started <= end.timestamp()
            ]
            page = [self._record(c) for c in calls[: int(request.query.get("page_size", "10"))]]
            return web.json_response({"count": len(page), "_embedded": {"calls": page}})

        return [
            web.post("/v1/calls", create),
            web.get("/v1/calls", listing),
            web.get("/v1/calls/{call}", fetch),
        ]

    def _status(self, call: FakeCall, outcome: str) -> str:
        """Vonage's word for the outcome (no-answer and failed each have two)."""
        if outcome == "no-answer":
            return "timeout" if call.call_id[-1] in "01234567" else "unanswered"
        if outcome == "failed":
            return "rejected" if call.call_id[-1] in "01234567" else "failed"
        return FINAL[outcome]

    def _record(self, call: FakeCall) -> dict[str, Any]:
        final = call.status in ("completed", "busy", "no-answer", "failed", "machine")
        status = (
            self._status(call, call.status)
            if final
            else ("answered" if call.status == "answered" else "ringing")
        )
        answered = call.status in ("completed", "machine")
        return {
            "uuid": call.call_id,
            "status": status,
            "to": {"type": "phone", "number": call.to.lstrip("+")},
            "duration": str(call.duration) if answered else "0",
            "price": f"{0.01 * call.duration:.4f}" if answered else "0",
            "start_time": datetime.fromtimestamp(call.started, UTC).isoformat(),
        }

    def callbacks(self, call: FakeCall, stage: str, sequence: int) -> list[Delivery]:
        base = {
            "uuid": call.call_id,
            "conversation_uuid": f"CON-{call.call_id}",
            "from": "14155550100",
            "to": call.to.lstrip("+"),
            "direction": "outbound",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        url = call.params["event_url"]
        if stage == "initiated":
            return [self.signed(url, base | {"status": "started"})]
        if stage == "ringing":
            return [self.signed(url, base | {"status": "ringing"})]
        if stage == "answered":
            events = [self.signed(url, base | {"status": "answered"})]
            if call.params.get("amd"):
                word = "machine" if call.outcome == "machine" else "human"
                events.append(self.signed(url, base | {"status": word}))
            return events
        event = base | {"status": self._status(call, call.outcome)}
        if call.outcome in ("completed", "machine"):
            event |= {"duration": str(call.duration), "price": f"{0.01 * call.duration:.4f}"}
        return [self.signed(url, event)]

    def signed(
        self, url: str, event: dict[str, Any], *, at: float | None = None, secret: str | None = None
    ) -> Delivery:
        """An event as Vonage sends it: JSON, with its signed-webhook JWT."""
        body = json.dumps(event).encode()
        claims = {
            "iat": int(self.clock() if at is None else at),
            "jti": str(uuid.uuid4()),
            "iss": "Vonage",
            "payload_hash": hashlib.sha256(body).hexdigest(),
            "api_key": self.api_key,
            "application_id": self.application_id,
        }
        token = jwt.encode(claims, secret or self.secret, algorithm="HS256")
        return Delivery(url, body, "application/json", {"Authorization": f"Bearer {token}"})

    def reported(self, outcome: str) -> str:
        return outcome


def _invalid(body: Any) -> list[dict[str, str]]:
    if not isinstance(body, dict):
        return [{"name": "body", "reason": "not an object"}]
    problems = []
    to = body.get("to")
    if not (
        isinstance(to, list)
        and to
        and isinstance(to[0], dict)
        and to[0].get("type") == "phone"
        and DIGITS.match(str(to[0].get("number", "")))
    ):
        problems.append({"name": "to", "reason": "a list of phone endpoints, digits without +"})
    source = body.get("from")
    if not (isinstance(source, dict) and DIGITS.match(str(source.get("number", "")))):
        problems.append({"name": "from", "reason": "a phone endpoint"})
    if not (isinstance(body.get("answer_url"), list) and body["answer_url"]):
        problems.append({"name": "answer_url", "reason": "a list of one URL"})
    if not (isinstance(body.get("event_url"), list) and body["event_url"]):
        problems.append({"name": "event_url", "reason": "a list of one URL"})
    for name, low, high in (("ringing_timer", 1, 120), ("length_timer", 1, 7200)):
        value = body.get(name, low)
        if not isinstance(value, int) or not low <= value <= high:
            problems.append({"name": name, "reason": f"{low}-{high}"})
    return problems


def account_toml(
    base_url: str, dialect: VonageDialect, *, rate: str = "3/s", channels: int = 6
) -> str:
    pem = dialect.private_pem.replace("\n", "\\n")
    return (
        f'kind = "vonage"\nbase_url = "{base_url}"\n'
        f'application_id = "{dialect.application_id}"\napi_key = "{dialect.api_key}"\n'
        f'private_key = "{pem}"\nsignature_secret = "{dialect.secret}"\n'
        f'rate = "{rate}"\nchannels = {channels}'
    )


def _problem(
    status: int, title: str, detail: str, invalid: list | None = None, headers: dict | None = None
) -> web.Response:
    body: dict[str, Any] = {
        "type": f"https://developer.vonage.com/api-errors#{status}",
        "title": title,
        "detail": detail,
    }
    if invalid:
        body["invalid_parameters"] = invalid
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json", headers=headers
    )

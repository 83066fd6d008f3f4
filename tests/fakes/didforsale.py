"""A fake DIDforSale `CallTermination`, as its "Make an Outbound Call" page describes it.

- `POST /didforsaleapi/index.php/api/V2/CallTermination/`: the API key as the `apikey`
  header or form field (else 401), form fields `from`, `to` (digits, no `+`) and `url`
  (else 400), 429 past the rate. The response is undocumented; this fake answers
  `{"status": "success"}` with no call id, so the dialer must correlate by its own id.
- Callbacks: form posts to `statusCallback` for the subscribed events (`initiated`,
  `ringing`, `answered`, `completed`), with the documented casing (`callSid`, `ParentCallSid`,
  `CallStatus`, the misspelled `CallDurartion`), `apikey=<secretKey>` echoed, and the
  `optional` string appended as a field. When the customer answers, the didML app dials a
  second party whose (B-leg) events go to the same URL.
- Only four words: busy, no-answer and failed all end as `completed` without `answered`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.engine import Delivery, FakeCall, FakeProvider

PATH = "/didforsaleapi/index.php/api/V2/CallTermination/"
DIGITS = re.compile(r"^[1-9]\d{7,14}$")


class DidforsaleDialect:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    def routes(self, fake: FakeProvider) -> list[web.RouteDef]:
        async def terminate(request: web.Request) -> web.Response:
            form = await request.post()
            key = request.headers.get("apikey") or form.get("apikey")
            if key != self.api_key:
                return web.json_response(
                    {"status": "error", "message": "Invalid API key"}, status=401
                )
            problems = [n for n in ("from", "to") if not DIGITS.match(str(form.get(n, "")))]
            problems += [] if form.get("url") else ["url"]
            if problems:
                message = f"invalid or missing {', '.join(problems)}"
                return web.json_response({"status": "error", "message": message}, status=400)
            wait = fake.admit()
            if wait is not None:
                return web.json_response(
                    {"status": "error", "message": "Too many requests"},
                    status=429,
                    headers=fake.retry_after_headers(wait),
                )
            optional = str(form.get("optional", ""))
            name, _, value = optional.partition("=")
            params: dict[str, Any] = {
                "callback": str(form.get("statusCallback", "")),
                "events": str(form.get("statusCallbackEvent", "completed")).split(","),
                "secret": str(form.get("secretKey", "")),
                "optional": (name, value),
                "_call_id": f"dfs-{next(fake.ids):010d}",
            }
            attempt = int(value) if value.isdigit() else None
            fake.open_call(f"+{form['to']}", attempt, params["callback"], params)
            return web.json_response({"status": "success", "message": "Call initiated"})

        return [web.post(PATH, terminate)]

    def callbacks(self, call: FakeCall, stage: str, sequence: int) -> list[Delivery]:
        word = "completed" if stage == "final" else stage
        if word not in call.params["events"]:
            return []
        deliveries = [self._delivery(call, call.call_id, "", word)]
        if call.outcome == "completed" and stage in ("answered", "final"):
            b_leg = f"{call.call_id}-b"  # the party the didML app connected the customer to
            deliveries.append(self._delivery(call, b_leg, call.call_id, word))
        return deliveries

    def _delivery(self, call: FakeCall, sid: str, parent: str, word: str) -> Delivery:
        fields = {
            "Called": call.to.lstrip("+"),
            "ParentCallSid": parent,
            "CallStatus": word,
            "Direction": "Outbound",
            "callSid": sid,
            "CallbackSource": "call-progress-event",
        }
        if word == "completed":
            answered = call.outcome == "completed"
            fields["CallDurartion"] = str(call.duration if answered else 0)
        if call.params["secret"]:
            fields["apikey"] = call.params["secret"]
        name, value = call.params["optional"]
        if name:
            fields[name] = value
        return Delivery(
            call.params["callback"], urlencode(fields).encode(), "application/x-www-form-urlencoded"
        )

    def reported(self, outcome: str) -> str:
        return "completed" if outcome == "completed" else "no-answer"

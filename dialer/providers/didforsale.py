"""DIDforSale "didML" outbound calls: `CallTermination`, four lifecycle words, echoed secret.

- Create: `POST {base}/didforsaleapi/index.php/api/V2/CallTermination/`. The page says the
  parameters go "in the post headers" but calls them "post variables": we send the API key as
  an `apikey` header and every parameter (the key too) as form fields, so either reading works.
  Numbers go without `+` (their examples are `19499300360`). The response is undocumented: any
  2xx is accepted, with the call id if one of the usual fields carries it, and a JSON body
  that says it failed refuses the account (a person should look before thousands fail).
- Callbacks: form posts, field names case-inconsistent (`callSid`, `CallDurartion` misspelled)
  so read case-insensitively; authentic when the URL token matches and the `apikey` echoed
  from our `secretKey` matches (constant time; it is removed before the event is stored).
  `optional` carries our attempt id. Both legs post to the same URL; the customer is the
  A-leg (its `ParentCallSid` is empty or itself); B-leg events never settle the call.
- Outcome: only `completed` is final and DIDforSale never says busy/failed/no-answer, so a
  completed leg with a duration is `completed`, and one without is `no-answer` unless the
  call was seen answered (then `completed`).
- No status API: silent calls end `unknown` after the campaign's settle time.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import SecretStr

from dialer.calls import CallEvent, CallRequest
from dialer.providers.account import AccountBase
from dialer.providers.base import InboundCallback, Provider
from dialer.providers.errors import Forbidden, Rejected, Unreadable
from dialer.providers.http import HttpAnswer, HttpRequest, classify, json_body
from dialer.providers.secrets import same_secret
from dialer.providers.words import first, normal_word, state_of_word, to_int

PATH = "/didforsaleapi/index.php/api/V2/CallTermination/"
EVENTS = "initiated,ringing,answered,completed"
WORDS = ("initiated", "ringing", "answered", "completed")  # all DIDforSale ever says
ID_FIELDS = ("callSid", "call_id", "callid", "sid", "uuid", "id")
ATTEMPT_KEY = "dialer_attempt"


class DidforsaleAccount(AccountBase):
    kind: Literal["didforsale"]
    api_key: SecretStr
    secret_key: SecretStr


class DidforsaleProvider(Provider):
    kind = "didforsale"

    def __init__(self, name: str, account: DidforsaleAccount) -> None:
        self._api_key = account.api_key.get_secret_value()
        self._secret_key = account.secret_key.get_secret_value()
        super().__init__(name, self._secret_key)
        self.url = str(account.base_url).rstrip("/") + PATH

    @property
    def secrets(self) -> list[str]:
        return [self._api_key, self._secret_key, self.callback_token]

    def create_request(self, call: CallRequest) -> HttpRequest:
        if not call.connect_to:
            raise Rejected(
                "the campaign has no connect_to (the didML application URL); without it"
                " DIDforSale would bridge every answered customer to the caller id",
                account_wide=True,
            )
        form = [
            ("apikey", self._api_key),
            ("from", call.caller_id.lstrip("+")),
            ("to", call.to.lstrip("+")),
            ("url", call.connect_to),
            ("statusCallback", call.callback_url),
            ("statusCallbackEvent", EVENTS),
            ("statusCallbackMethod", "POST"),
            ("secretKey", self._secret_key),
            ("optional", f"{ATTEMPT_KEY}={call.attempt_id}"),
        ]
        return HttpRequest("POST", self.url, headers={"apikey": self._api_key}, form=form)

    def read_created(self, answer: HttpAnswer) -> str | None:
        data = json_body(answer)
        if 200 <= answer.status < 300:
            if isinstance(data, dict):
                verdict = str(first(data, "status", "success") or "").lower()
                if verdict in ("error", "failed", "failure", "false"):
                    message = first(data, "message", "error", "msg") or answer.text()
                    raise Rejected(f"HTTP {answer.status}: {message}"[:300], account_wide=True)
                call_id = first(data, *ID_FIELDS)
                return str(call_id) if call_id else None
            return None
        message = first(data, "message", "error", "msg") if isinstance(data, dict) else None
        detail = f"HTTP {answer.status}: {message or answer.text()}"[:300]
        raise classify(answer.status, answer.headers, detail)

    def parse_callback(self, callback: InboundCallback) -> CallEvent:
        self.check_token(callback)
        fields: dict[str, Any] = {k: v for k, v in callback.query.items() if k != "token"}
        fields = {k: v[0] for k, v in fields.items()} | dict(callback.fields)
        echoed = str(first(fields, "apikey") or "")
        if not same_secret(echoed, self._secret_key):
            raise Forbidden("bad or missing echoed apikey")
        payload = {k: v for k, v in fields.items() if k.lower() != "apikey"}
        call_sid = str(first(fields, "callSid") or "")
        parent = str(first(fields, "ParentCallSid") or "")
        word = normal_word(first(fields, "CallStatus"))
        if not call_sid:
            raise Unreadable("not a call-progress event (no callSid)")
        customer = parent in ("", call_sid)
        duration = to_int(first(fields, "CallDurartion", "CallDuration"))
        completed_if_answered = False
        if not customer:
            state = "accepted"  # the B-leg (the party the didML app dialed)
        elif word not in WORDS:
            state = word or "(no status)"  # a word we do not know: held, and the call ended?
        elif word != "completed":
            state = state_of_word(word) or "accepted"
        elif duration:
            state = "completed"
        else:
            state, completed_if_answered = "no-answer", True
        return CallEvent(
            status=state,
            dedupe_key=f"{call_sid}:{word}",
            provider_call_id=call_sid if customer else parent,
            attempt_id=callback.attempt_id or _attempt_from(fields),
            duration_s=duration if state == "completed" else None,
            payload=payload,
            completed_if_answered=completed_if_answered,
        )


def _attempt_from(fields: dict[str, Any]) -> int | None:
    direct = to_int(first(fields, ATTEMPT_KEY))
    if direct is not None:
        return direct
    optional = str(first(fields, "optional") or "")
    name, _, value = optional.partition("=")
    return to_int(value) if name == ATTEMPT_KEY else None

"""TeleCMI CHUB click-to-call: an agent's phone rings first, then the customer is dialed.

- Create: `POST {base}/v2/webrtc/click2call`, JSON `{user_id, secret, to, extra_params,
  webrtc, followme, callerid}` (numbers as integers). 407 (bad secret), 404 (unknown
  user_id) and 400 (missing credentials, or neither webrtc nor followme) refuse the account.
- The customer is leg `b`. If the agent's leg `a` is missed, TeleCMI never dials the customer:
  the attempt ends `canceled` (nobody was called; the campaign's retry policy decides).
- Callbacks and CDR reconciliation as for `telecmi` (see telecmi.py); the CDR list APIs take
  the app id, which is the part of `user_id` after its underscore (`101_1111112` -> 1111112).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, model_validator

from dialer.calls import CallRequest
from dialer.providers.account import AccountBase
from dialer.providers.http import HttpRequest
from dialer.providers.telecmi import ATTEMPT_KEY, TelecmiCommon, digits


class TelecmiClick2CallAccount(AccountBase):
    kind: Literal["telecmi-click2call"]
    user_id: str = Field(pattern=r"^[0-9]+_[0-9]+$", description="agent id, e.g. 101_1111112")
    secret: SecretStr
    # Where the agent's leg rings: the WebRTC softphone, or (followme) their mobile. TeleCMI
    # refuses both on or both off.
    webrtc: bool = True
    followme: bool = False
    reports_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("https://rest.telecmi.com"), description="host of the CDR list APIs"
    )

    @model_validator(mode="after")
    def _one_agent_device(self) -> TelecmiClick2CallAccount:
        if self.webrtc == self.followme:
            raise ValueError("set exactly one of webrtc and followme to true")
        return self


class TelecmiClick2CallProvider(TelecmiCommon):
    kind = "telecmi-click2call"
    customer_leg = "b"

    def __init__(self, name: str, account: TelecmiClick2CallAccount) -> None:
        appid = account.user_id.rpartition("_")[2]
        super().__init__(name, account.secret.get_secret_value(), appid, str(account.reports_url))
        self.base_url = str(account.base_url).rstrip("/")
        self.user_id = account.user_id
        self.webrtc = account.webrtc
        self.followme = account.followme

    def create_request(self, call: CallRequest) -> HttpRequest:
        body = {
            "user_id": self.user_id,
            "secret": self._secret,
            "to": digits(call.to),
            "extra_params": {ATTEMPT_KEY: call.attempt_id},
            "webrtc": self.webrtc,
            "followme": self.followme,
            "callerid": digits(call.caller_id),
        }
        return HttpRequest("POST", f"{self.base_url}/v2/webrtc/click2call", json=body)

    def _cdr_state(self, leg: str, word: str, reason: str) -> str:
        if leg == "a" and word == "missed":
            return "canceled"  # the agent did not pick up: the customer was never dialed
        return super()._cdr_state(leg, word, reason)

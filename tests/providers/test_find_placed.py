"""The call lists the reconciler asks before closing a send with no call id `unknown`: each
adapter finds the call placed to the number around the request's time, and only that one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp

from dialer.calls import PlacedCall
from dialer.providers.exotel import ExotelProvider
from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.exotel import ExotelDialect
from tests.fakes.twilio import TwilioDialect
from tests.providers import test_exotel, test_twilio
from tests.providers.harness import serving


async def no_wait() -> None:
    return None


def asked_about(number: str) -> list[PlacedCall]:
    now = datetime.now(UTC)
    return [
        PlacedCall(1, None, number, now),  # sent just now: its call is listed
        PlacedCall(2, None, number, now - timedelta(days=2)),  # long before: not that call
        PlacedCall(3, None, "+919800000000", now),  # another number: nothing
    ]


async def test_exotel_lists_the_call_to_the_number() -> None:
    fake = FakeProvider(
        ExotelDialect(test_exotel.SID, test_exotel.KEY, test_exotel.TOKEN),
        FakeSettings(rate=None, channels=0),
    )
    async with serving(fake) as url, aiohttp.ClientSession() as session:
        exotel = ExotelProvider("exo", test_exotel.account(url))
        call_id = await exotel.place_call(session, test_exotel.CALL)
        found = await exotel.find_placed(session, asked_about(test_exotel.CALL.to), no_wait)
    assert [e.provider_call_id for e in found[1]] == [call_id]
    assert found[2] == [] and found[3] == []


async def test_twilio_lists_the_call_to_the_number() -> None:
    fake = FakeProvider(
        TwilioDialect("twilio", test_twilio.SID, test_twilio.TOKEN),
        FakeSettings(rate=None, channels=0),
    )
    async with serving(fake) as url, aiohttp.ClientSession() as session:
        twilio = test_twilio.adapter(base_url=url)
        call_id = await twilio.place_call(session, test_twilio.CALL)
        found = await twilio.find_placed(session, asked_about(test_twilio.CALL.to), no_wait)
    assert [e.provider_call_id for e in found[1]] == [call_id]
    assert found[2] == [] and found[3] == []

"""`dialer call-test`: one real call through the fake Twilio, shown step by step."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.twilio import TwilioDialect, account_toml
from tests.processes import free_port
from tests.providers.harness import Workspace, serving

pytestmark = pytest.mark.timeout(120)

SID, TOKEN = "AC" + "c3" * 16, "call-test-auth-token-42"


def configure(work: Workspace, url: str, token: str = TOKEN) -> None:
    work.configure("tw", account_toml(url, SID, token, rate="5/s", channels=2))


ARGS = (
    "--caller-id",
    "+14155550100",
    "--connect-to",
    "https://d.example.com/twiml",
    "--wait",
    "20s",
)


async def test_one_call_shows_request_answer_callbacks_and_outcome(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    fake = FakeProvider(TwilioDialect("twilio", SID, TOKEN), FakeSettings(seed=2))
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        configure(work, url)
        code, output = await work.dialer("call-test", "tw", "+14155550123", *ARGS)
        stats = fake.snapshot()
    assert code == 0, output
    (decided,) = [c["outcome"] for c in stats["calls"].values()]
    assert f"POST {url}/2010-04-01/Accounts/{SID}/Calls.json" in output
    assert f"Authorization: Basic {SID}:****" in output and "To=+14155550123" in output
    assert "StatusCallback=http://127.0.0.1:" in output and "token=****" in output
    assert "answer: HTTP 201" in output and "initiated" in output
    assert f"outcome: {decided}" in output
    assert TOKEN not in output
    stored = await own_db.fetchval("SELECT count(*) FROM call_events WHERE attempt_id IS NULL")
    assert stored >= 2


async def test_refusals_exit_2(own_database_url: str, tmp_path: Path, own_db) -> None:
    fake = FakeProvider(TwilioDialect("twilio", SID, TOKEN), FakeSettings())
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        configure(work, url, token="wrong-token-0000")
        code, output = await work.dialer("call-test", "tw", "+14155550123", *ARGS)
        assert code == 2 and "HTTP 401" in output and "wrong-token" not in output
        await own_db.execute("INSERT INTO dnc (phone_e164) VALUES ('+14155550199')")
        code, output = await work.dialer("call-test", "tw", "+14155550199", *ARGS)
        assert code == 2 and "do-not-call" in output
        code, output = await work.dialer("call-test", "tw", "12", *ARGS)
        assert code == 2 and "NUMBER '12'" in output
    assert fake.counts["accepted"] == 0


async def test_the_caller_id_is_sent_in_e164_as_campaigns_send_it(
    own_database_url: str, tmp_path: Path
) -> None:
    """A caller id written as a national number is read in the region, as a campaign's is."""
    fake = FakeProvider(TwilioDialect("twilio", SID, TOKEN), FakeSettings(seed=3))
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        configure(work, url)
        national = ("--caller-id", "(415) 555-0100", *ARGS[2:])
        code, output = await work.dialer(
            "call-test", "tw", "+14155550123", "--region", "US", *national
        )
        assert code == 0, output
        assert "From=+14155550100" in output, output
        code, output = await work.dialer(
            "call-test", "tw", "+14155550123", "--caller-id", "12", *ARGS[2:]
        )
        assert code == 2 and "--caller-id '12'" in output, output


def _telnyx():
    from tests.fakes.telnyx import TelnyxDialect, account_toml

    key = "KEY-call-test-0123456789"
    dialect = TelnyxDialect("acct-1", key, "1293384261075731499")
    return dialect, lambda url: account_toml(url, dialect), key, "+13125550123"


def _plivo():
    from tests.fakes.plivo import PlivoDialect, account_toml

    auth_id, token = "MACALLTEST0000000000", "plivo-call-test-token-0123456789"
    return (
        PlivoDialect(auth_id, token),
        lambda url: account_toml(url, auth_id, token),
        token,
        "+919845012345",
    )


def _vonage():
    from tests.fakes.vonage import VonageDialect, account_toml

    secret = "vonage-call-test-signature-secret-0123456789"
    dialect = VonageDialect("aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "abcd1234", secret)
    return dialect, lambda url: account_toml(url, dialect), secret, "+447911123456"


@pytest.mark.parametrize("make", [_telnyx, _plivo, _vonage], ids=["telnyx", "plivo", "vonage"])
async def test_call_test_works_with_each_new_provider(
    make, own_database_url: str, tmp_path: Path
) -> None:
    dialect, toml, secret, number = make()
    fake = FakeProvider(dialect, FakeSettings(seed=4, rate=(2, 1.0)))
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure("acct", toml(url))
        flow = ("--caller-id", "+14155550100", "--connect-to", "https://d.example.com/flow")
        code, output = await work.dialer("call-test", "acct", number, *flow, "--wait", "20s")
        stats = fake.snapshot()
    (decided,) = [c["outcome"] for c in stats["calls"].values()]
    assert code == 0, output
    assert f"outcome: {decided}" in output and secret not in output

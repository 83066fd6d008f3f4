"""5xx answers to create-call: the call may exist, so it is never re-sent blindly.

Against the fake Twilio, some requests get 500 after the call was placed (its callbacks, which
carry our attempt id, settle it) and some get 500 with nothing placed (no callbacks, no call id
to look up: the reconciler closes them as `unknown`, and only the campaign's `unknown` delay
lets the contact be tried again, as a new attempt).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.twilio import TwilioDialect, account_toml
from tests.processes import free_port
from tests.providers.harness import FINAL_CONTACT_STATES, Workspace, attempts_of, serving

pytestmark = pytest.mark.timeout(300)

SID, TOKEN = "AC" + "d4" * 16, "ambiguous-token-0001"


async def test_server_errors_are_never_resent_and_end_known_or_unknown(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    settings = FakeSettings(rate=(20, 1.0), channels=6, placed_500=0.15, phantom_500=0.1, seed=9)
    fake = FakeProvider(TwilioDialect("twilio", SID, TOKEN), settings)
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure("tw", account_toml(url, SID, TOKEN))
        twiml = 'connect_to = "https://d.example.com/twiml"'
        await work.load("amb", "tw", count=30, extra=twiml, call_limits=("2s", "3s", "1s"))
        code, output = await work.run_campaign("amb")
        stats = fake.snapshot()
    assert code == 0, output + work.serve_log()[-3000:]
    assert stats["placed_500"] >= 2 and stats["phantom_500"] >= 2, stats
    attempts = {a["id"]: a for a in await attempts_of(own_db, "amb")}
    # No attempt reached the provider twice, and no (contact, attempt_no) was reused.
    assert set(stats["per_attempt"].values()) == {1}
    assert max(Counter((a["contact_id"], a["attempt_no"]) for a in attempts.values()).values()) == 1
    # Calls placed despite the 500: settled with the provider's outcome, from its callbacks.
    for call in stats["calls"].values():
        assert attempts[call["attempt_id"]]["outcome"] == call["reported"]
    # Requests that placed nothing: closed as unknown, with the 500 on record, never re-sent.
    placed = {c["attempt_id"] for c in stats["calls"].values()}
    phantoms = [
        a for a in attempts.values() if a["id"] not in placed and a["state"] != "not_dialed"
    ]
    # (seen once in CI at 286bda8, not reproduced since: 8 against 7, the extra one attempt 1,
    # `rejected`; the whole record and the fake's counts say which request it was next time)
    why = [dict(a) for a in phantoms], {k: v for k, v in stats.items() if k != "calls"}
    assert len(phantoms) == stats["phantom_500"], why
    assert all(a["outcome"] == "unknown" and "HTTP 500" in a["error"] for a in phantoms)
    states = await own_db.fetch("SELECT DISTINCT state FROM contacts")
    assert {r["state"] for r in states} <= FINAL_CONTACT_STATES

"""`dialer account`: health, pause and resume as every dialing process sees them; a pool's bad
input refused naming the key and the account; sticky caller ids keep their account."""

from __future__ import annotations

import json
from pathlib import Path

from dialer.campaigns import from_row
from dialer.db import accounts
from dialer.dispatch.claim import VOID, begin_dial, claim, register_account
from dialer.dispatch.limiter import AccountLimits
from tests.processes import write_campaign

CONFIG = """
[accounts.pool-a]
kind = "sim"
base_url = "http://127.0.0.1:1"
secret = "s"
rate = "50/s"
channels = 4

[accounts.pool-b]
kind = "sim"
base_url = "http://127.0.0.1:2"
secret = "s"
rate = "50/s"
channels = 4

[accounts.twilio-amd]
kind = "twilio"
base_url = "https://api.twilio.com"
account_sid = "AC1"
auth_token = "tok"
rate = "1/s"
channels = 4

[accounts.no-amd]
kind = "exotel"
base_url = "https://api.exotel.com"
sid = "acme"
api_key = "k"
api_token = "t"
rate = "200/min"
channels = 4
"""
A = AccountLimits("pool-a", "sim", 50.0, 1.0, 4)
B = AccountLimits("pool-b", "sim", 50.0, 1.0, 4)


def pooled_campaign(tmp_path: Path, name: str, pool: str, contacts: int = 4) -> Path:
    path = write_campaign(tmp_path, name, contacts)
    path.write_text(path.read_text().replace('account = "sim-main"', pool))
    return path


async def test_pause_resume_show_and_list(run_cli, db, tmp_path: Path) -> None:
    (tmp_path / "dialer.toml").write_text(CONFIG)
    await register_account(db, A)
    listed = json.loads(run_cli("account", "list", "--format", "json").stdout)
    assert [(a["name"], a["health"], a["live_calls"]) for a in listed] == [("pool-a", "sending", 0)]
    paused = run_cli("account", "pause", "pool-a", "--reason", "carrier maintenance")
    assert paused.exit_code == 0 and "paused: carrier maintenance" in paused.stdout
    shown = run_cli("account", "show", "pool-a", "--format", "json")
    assert shown.exit_code == 3  # it gets no new sends
    status = json.loads(shown.stdout)[0]
    assert (status["health"], status["paused_reason"]) == ("paused", "carrier maintenance")
    assert status["caller_ids_resting"] == []
    assert run_cli("account", "resume", "pool-a").exit_code == 0
    assert run_cli("account", "show", "pool-a").exit_code == 0
    missing = run_cli("account", "pause", "nobody")
    assert missing.exit_code != 0 and "no account 'nobody'" in missing.stderr


async def test_a_paused_or_resting_account_claims_nothing_and_sends_nothing(
    run_cli, db, tmp_path: Path
) -> None:
    (tmp_path / "dialer.toml").write_text(CONFIG)
    path = pooled_campaign(tmp_path, "paused-pool", 'accounts = ["pool-a", "pool-b"]')
    assert run_cli("campaign", "load", str(path)).exit_code == 0
    campaign = from_row(await db.fetchrow("SELECT * FROM campaigns WHERE name = 'paused-pool'"))
    await register_account(db, A)
    await register_account(db, B)
    reserved = (await claim(db, A, [campaign], max_batch=2, horizon_s=1.0, dial_cap=5)).attempts
    assert len(reserved) == 2
    await accounts.pause(db, "pool-a", "test")
    assert (await claim(db, A, [campaign], max_batch=2, horizon_s=1.0, dial_cap=5)).attempts == []
    # what it reserved before the pause is released unsent at the send's compare-and-set
    ready = [(c.attempt_id, "+918047112233", 20, 60) for c in reserved]
    assert set((await begin_dial(db, "pool-a", ready, 1.0)).values()) == {VOID}
    # its pool's other account dials on
    assert (
        len((await claim(db, B, [campaign], max_batch=2, horizon_s=1.0, dial_cap=5)).attempts) == 2
    )
    await accounts.resume(db, "pool-a")
    await accounts.rest(db, "pool-a", 60.0, "could not connect")
    assert (await claim(db, A, [campaign], max_batch=2, horizon_s=1.0, dial_cap=5)).attempts == []
    shown = json.loads(run_cli("account", "show", "pool-a", "--format", "json").stdout)[0]
    assert (shown["health"], shown["resting_reason"]) == ("resting", "could not connect")
    assert await accounts.recovered(db, "pool-a")
    assert (
        len((await claim(db, A, [campaign], max_batch=2, horizon_s=1.0, dial_cap=5)).attempts) == 0
    )
    # (none left: B took two, the released two are back and due; A had none free to judge)


async def test_a_sticky_contact_keeps_its_account_while_that_account_may_send(
    run_cli, db, tmp_path: Path
) -> None:
    (tmp_path / "dialer.toml").write_text(CONFIG)
    path = pooled_campaign(tmp_path, "sticky-pool", 'accounts = ["pool-a", "pool-b"]', 1)
    assert run_cli("campaign", "load", str(path)).exit_code == 0
    campaign = from_row(await db.fetchrow("SELECT * FROM campaigns WHERE name = 'sticky-pool'"))
    await register_account(db, A)
    await register_account(db, B)
    # the contact's first call went through pool-a, showing its number; it is due again
    [first] = (await claim(db, A, [campaign], max_batch=1, horizon_s=1.0, dial_cap=5)).attempts
    await db.execute(
        """UPDATE attempts SET state = 'busy', outcome = 'busy', slot = NULL,
               caller_id = '+918047112233', requested_at = now() WHERE id = $1""",
        first.attempt_id,
    )
    await db.execute("UPDATE contacts SET state = 'pending', next_attempt_at = NULL")
    assert (await claim(db, B, [campaign], max_batch=1, horizon_s=1.0, dial_cap=5)).attempts == []
    await accounts.pause(db, "pool-a", "maintenance")  # its account may not send: B takes it
    [again] = (await claim(db, B, [campaign], max_batch=1, horizon_s=1.0, dial_cap=5)).attempts
    assert again.contact_id == first.contact_id


def test_a_bad_pool_is_refused_naming_the_key_and_the_account(run_cli, tmp_path: Path) -> None:
    (tmp_path / "dialer.toml").write_text(CONFIG)
    cases = [
        ('accounts = ["pool-a", "nowhere"]', "accounts: account 'nowhere' is not in"),
        ("accounts = []", "an empty pool names no account to dial through"),
        ('accounts = ["pool-a", "pool-a"]', "account 'pool-a' is named twice"),
    ]
    for index, (pool, said) in enumerate(cases):
        path = pooled_campaign(tmp_path, f"bad-pool-{index}", pool)
        result = run_cli("campaign", "load", str(path))
        assert result.exit_code == 2 and said in result.stderr, (pool, result.stderr)
    path = pooled_campaign(tmp_path, "no-detection", 'accounts = ["twilio-amd", "no-amd"]')
    text = path.read_text()
    path.write_text(text.replace("\n[retry]", 'machine_detection = "detect"\n[retry]', 1))
    result = run_cli("campaign", "load", str(path))
    assert result.exit_code == 2, result.stderr
    assert "account 'no-amd' (exotel) of accounts" in result.stderr

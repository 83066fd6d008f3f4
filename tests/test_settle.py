"""`unknown` is a lack of facts, never a fact: the reconciler waits out a request's send window
before closing it, asks the provider's call list first, and any fact that comes later re-opens
the attempt with the real outcome and withdraws the contact's re-dial."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from dialer.calls import CallEvent
from dialer.campaigns import CampaignCache
from dialer.db.connect import open_pool
from dialer.db.events import Closing, store_and_settle
from dialer.dispatch.claim import register_account
from dialer.dispatch.limiter import AccountLimits
from dialer.providers.sim import SimAccount, SimProvider
from dialer.reconcile import reconcile_once
from dialer.settle import (
    Settlement,
    _judged_alike,
    apply_event,
    apply_finals,
    apply_progress,
    apply_progress_batch,
    record_accepted,
    settle,
)
from tests.callbacks.test_callbacks import SECRET, new_attempt
from tests.processes import free_port


class ListingProvider:
    """The sim's API as far as the reconciler uses it, with the calls it lists set by the test."""

    def __init__(self) -> None:
        self.listed: list[dict] = []
        self.asked: list[str] = []

    async def calls(self, request: web.Request) -> web.Response:
        self.asked.append(request.query.get("to", ""))
        return web.json_response({"calls": self.listed})

    async def __aenter__(self) -> SimProvider:
        app = web.Application()
        app.router.add_get("/v1/calls", self.calls)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        account = SimAccount(
            kind="sim", base_url=f"http://127.0.0.1:{port}", secret=SECRET, rate="100/s", channels=9
        )
        return SimProvider("sim-main", account)

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


async def sent_without_id(conn, tmp_path: Path, sent_s_ago: float) -> int:
    """An attempt committed `dialing` `sent_s_ago` seconds ago, no call id back, past its
    settle budget."""
    attempt = await new_attempt(conn, tmp_path)
    await conn.execute(
        """UPDATE attempts SET state = 'dialing', requested_at = now() - make_interval(secs => $2),
               send_by = now() - make_interval(secs => $2) + interval '10 seconds',
               settle_by = now() - interval '1 second'
           WHERE id = $1""",
        attempt,
        sent_s_ago,
    )
    return attempt


async def reconcile(url: str, adapter: SimProvider):
    async with open_pool(url, size=3) as pool, aiohttp.ClientSession() as session:
        async with pool.acquire() as conn:
            await register_account(conn, AccountLimits("sim-main", "sim", 100.0, 1.0, 9))
        return await reconcile_once(pool, CampaignCache(), {"sim-main": adapter}, session)


async def test_no_dialing_attempt_is_closed_while_its_request_may_still_leave(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    recent = await sent_without_id(own_db, tmp_path, 20)  # window 10 s + client timeout 15 s
    waiting = await sent_without_id(own_db, tmp_path, 30)  # may still be placed late (5 min)
    answered = await sent_without_id(own_db, tmp_path, 5)  # its sender saw the request end
    await own_db.execute("UPDATE attempts SET request_done_at = now() WHERE id = $1", answered)
    old = await sent_without_id(own_db, tmp_path, 301)  # past the account's late_placement
    fake = ListingProvider()
    async with fake as adapter:
        actions = await reconcile(own_database_url, adapter)
    rows = {
        r["id"]: r
        for r in await own_db.fetch(
            "SELECT id, state, outcome, error, slot, settle_by - now() AS next FROM attempts"
        )
    }
    assert rows[recent]["state"] == "dialing"
    # Asked about, nothing listed, but a front may still place them: live, holding a channel,
    # the list asked again later (never past the span's end).
    for attempt in (waiting, answered):
        assert rows[attempt]["state"] == "dialing" and rows[attempt]["slot"] is not None
        assert 0 < rows[attempt]["next"].total_seconds() <= 11
    assert actions["waiting_for_late_placement"] == 2
    assert rows[old]["outcome"] == "unknown" and rows[old]["slot"] is None
    assert "lists no call to this number" in rows[old]["error"]
    assert len(fake.asked) == 3  # the provider's list was asked about each one it may hold


async def test_a_call_placed_late_within_the_span_is_adopted_by_its_live_attempt(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    """The front placed it 200 s after the request (the sender had long given up): the
    attempt, still live and holding its channel, adopts it."""
    attempt = await sent_without_id(own_db, tmp_path, 230)
    fake = ListingProvider()
    fake.listed = [{"call_id": "SIMLATE", "status": "in-progress", "created": time.time() - 30}]
    async with fake as adapter:
        await reconcile(own_database_url, adapter)
    row = await own_db.fetchrow("SELECT * FROM attempts WHERE id = $1", attempt)
    assert (row["state"], row["provider_call_id"], row["reopened_at"]) == (
        "in-progress",
        "SIMLATE",
        None,
    )
    assert row["slot"] is not None


async def test_unknown_is_never_redialed_before_the_late_placement_span_ends(
    own_db, tmp_path: Path
) -> None:
    """The campaign's `unknown` delay is 1 s (tests.processes.write_campaign), the account's
    late_placement 5 minutes: the retry waits for the span, counted from the request."""
    await own_db.execute(
        "INSERT INTO accounts (name, kind, rate_per_s, channels) VALUES ('sim-main', 'sim', 9, 9)"
        " ON CONFLICT (name) DO NOTHING"
    )
    attempt = await sent_without_id(own_db, tmp_path, 100)
    await close_unknown(own_db, attempt)
    row = await own_db.fetchrow(
        """SELECT c.next_attempt_at - a.requested_at AS after_request, c.state
           FROM attempts a JOIN contacts c ON c.id = a.contact_id WHERE a.id = $1""",
        attempt,
    )
    assert row["state"] == "pending" and row["after_request"].total_seconds() >= 300


async def test_the_one_listed_call_nobody_claims_is_adopted(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    attempt = await sent_without_id(own_db, tmp_path, 60)
    other = await new_attempt(own_db, tmp_path)  # a call id already claimed by another attempt
    await own_db.execute("UPDATE attempts SET provider_call_id = 'SIMTAKEN' WHERE id = $1", other)
    fake = ListingProvider()
    now = time.time()
    fake.listed = [
        {"call_id": "SIMTAKEN", "status": "busy", "created": now - 60},
        {"call_id": "SIMOURS", "status": "completed", "duration": 12, "created": now - 59},
        {"call_id": "SIMYESTERDAY", "status": "busy", "created": now - 86400},
    ]
    async with fake as adapter:
        actions = await reconcile(own_database_url, adapter)
    row = await own_db.fetchrow("SELECT * FROM attempts WHERE id = $1", attempt)
    assert (row["outcome"], row["provider_call_id"], row["duration_s"]) == (
        "completed",
        "SIMOURS",
        12,
    ), actions


async def test_two_unclaimed_listed_calls_are_never_guessed_between(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    attempt = await sent_without_id(own_db, tmp_path, 400)
    fake = ListingProvider()
    now = time.time()
    fake.listed = [
        {"call_id": "SIMA", "status": "busy", "created": now - 398},
        {"call_id": "SIMB", "status": "completed", "created": now - 200},
    ]
    async with fake as adapter:
        await reconcile(own_database_url, adapter)
    row = await own_db.fetchrow("SELECT * FROM attempts WHERE id = $1", attempt)
    assert row["outcome"] == "unknown" and row["provider_call_id"] is None
    assert "not guessing which" in row["error"]


async def close_unknown(conn, attempt: int) -> None:
    async with conn.transaction():
        unknown = Settlement("unknown", error="no final event")
        assert await settle(conn, CampaignCache(), attempt, unknown)


async def test_a_final_callback_after_unknown_reopens_with_the_real_outcome(
    own_db, tmp_path: Path
) -> None:
    attempt = await new_attempt(own_db, tmp_path)
    await close_unknown(own_db, attempt)
    contact = await own_db.fetchval("SELECT contact_id FROM attempts WHERE id = $1", attempt)
    assert await own_db.fetchval("SELECT state FROM contacts WHERE id = $1", contact) == "pending"
    event = CallEvent("completed", "SIMLATE:3:completed", "SIMLATE", duration_s=30)
    assert await apply_event(own_db, CampaignCache(), "sim-main", attempt, event) == "stored"
    row = await own_db.fetchrow("SELECT * FROM attempts WHERE id = $1", attempt)
    assert (row["state"], row["outcome"], row["provider_call_id"]) == (
        "completed",
        "completed",
        "SIMLATE",
    )
    assert row["reopened_at"] is not None and "re-opened" in row["error"]
    assert await own_db.fetchval("SELECT state FROM contacts WHERE id = $1", contact) == "done"


async def test_a_call_id_after_unknown_makes_the_attempt_live_and_withdraws_the_redial(
    own_db, tmp_path: Path
) -> None:
    attempt = await new_attempt(own_db, tmp_path)
    await own_db.execute(
        "UPDATE attempts SET state = 'dialing', provider_call_id = NULL WHERE id = $1", attempt
    )
    await close_unknown(own_db, attempt)
    await register(own_db, channels=3)
    # the paused sender wakes up
    await record_accepted(own_db, CampaignCache(), [(attempt, "SIMPAUSED")])
    row = await own_db.fetchrow(
        "SELECT a.state, a.slot, a.provider_call_id, c.state AS contact FROM attempts a"
        " JOIN contacts c ON c.id = a.contact_id WHERE a.id = $1",
        attempt,
    )
    assert dict(row) == {
        "state": "accepted",
        "slot": 0,  # it counts against the account's channels again
        "provider_call_id": "SIMPAUSED",
        "contact": "dialing",
    }


async def register(conn, *, channels: int) -> None:
    await register_account(conn, AccountLimits("sim-main", "sim", 100.0, 1.0, channels))


async def test_a_progress_event_in_a_batch_reopens_unknown_and_a_repeat_does_not(
    own_db, tmp_path: Path
) -> None:
    """Progress events arrive in batches (apply_progress_batch): one naming an attempt closed
    `unknown` re-opens it and moves it on; the same event again, or one misrouted by its call
    id, changes nothing."""
    attempt = await new_attempt(own_db, tmp_path)
    other = await new_attempt(own_db, tmp_path)
    await close_unknown(own_db, attempt)
    await close_unknown(own_db, other)
    await own_db.execute("UPDATE attempts SET provider_call_id = 'SIMOTHER' WHERE id = $1", other)
    ringing = CallEvent("ringing", "SIMLATE:1:ringing", "SIMLATE")
    misrouted = CallEvent("ringing", "SIMX:1:ringing", "SIMX")  # not `other`'s call id
    new = await apply_progress_batch(
        own_db,
        CampaignCache(),
        [("sim-main", attempt, ringing), ("sim-main", other, misrouted)],
    )
    assert new == {("sim-main", "SIMLATE:1:ringing"), ("sim-main", "SIMX:1:ringing")}
    row = await own_db.fetchrow("SELECT * FROM attempts WHERE id = $1", attempt)
    assert (row["state"], row["provider_call_id"]) == ("ringing", "SIMLATE")
    assert row["reopened_at"] is not None
    assert await own_db.fetchval("SELECT state FROM attempts WHERE id = $1", other) == "unknown"
    again = await apply_progress_batch(own_db, CampaignCache(), [("sim-main", attempt, ringing)])
    assert again == set()


async def test_one_progress_batch_judges_each_event_within_its_own_account(
    own_db, tmp_path: Path
) -> None:
    """Callbacks of several accounts share one statement (dialer serve gathers them), and each
    is judged within the account whose URL it came to: an event naming another account's
    attempt never moves it, and the same dedupe key under two accounts is two events."""
    attempt = await new_attempt(own_db, tmp_path)
    ringing = CallEvent("ringing", "CALLA:1:ringing", "CALLA")
    answered = CallEvent("in-progress", "CALLA:2:in-progress", "CALLA")
    new = await apply_progress_batch(
        own_db,
        CampaignCache(),
        [
            ("sim-main", attempt, ringing),
            ("sim-other", attempt, answered),
            ("sim-other", None, ringing),
        ],
    )
    assert new == {
        ("sim-main", "CALLA:1:ringing"),
        ("sim-other", "CALLA:2:in-progress"),
        ("sim-other", "CALLA:1:ringing"),
    }
    row = await own_db.fetchrow("SELECT state, answered_at FROM attempts WHERE id = $1", attempt)
    assert (row["state"], row["answered_at"]) == ("ringing", None)  # not sim-other's answer
    stored = await own_db.fetch(
        "SELECT account, attempt_id FROM call_events WHERE dedupe_key LIKE 'CALLA:%'"
        " ORDER BY account, dedupe_key"
    )
    assert [tuple(r) for r in stored] == [
        ("sim-main", attempt),
        ("sim-other", None),
        ("sim-other", None),
    ]


async def test_a_progress_batch_the_database_refuses_is_applied_event_by_event(
    own_db, tmp_path: Path
) -> None:
    """One event the database refuses (here a trigger stands for a row deleted or erased
    while the batch was written) costs its batch only a retry one by one: the others are
    kept and applied, and only that one gets the error."""
    await own_db.execute(
        """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'check_violation'; END $$;
           CREATE TRIGGER refuse BEFORE INSERT ON call_events FOR EACH ROW
               WHEN (NEW.dedupe_key LIKE 'refused:%') EXECUTE FUNCTION refuse()"""
    )
    first, refused, last = [await new_attempt(own_db, tmp_path) for _ in range(3)]
    batch = [
        ("sim-main", first, CallEvent("ringing", "kept:1", "CALL1")),
        ("sim-main", refused, CallEvent("ringing", "refused:2", "CALL2")),
        ("sim-main", last, CallEvent("ringing", "kept:3", "CALL3")),
    ]
    results = await apply_progress(own_db, CampaignCache(), batch)
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], asyncpg.CheckViolationError)
    states = dict(
        await own_db.fetch(
            "SELECT id, state FROM attempts WHERE id = ANY($1)", [first, refused, last]
        )
    )
    assert states == {first: "ringing", refused: "accepted", last: "ringing"}
    again = await apply_progress(own_db, CampaignCache(), batch)
    assert again[0] is False and again[2] is False
    assert isinstance(again[1], asyncpg.CheckViolationError)


async def test_a_reopened_call_takes_a_reservations_channel_rather_than_exceed_the_limit(
    own_db, tmp_path: Path
) -> None:
    """Both channels are held when the late call is reported: by a call already sent and by a
    reservation not yet sent. The reservation gives up its channel (released unsent, its
    contact dialed later); with no reservation left, the next late call is over the limit by
    the provider's own doing, and counted so that no claim adds to it."""
    await register(own_db, channels=2)
    late = await new_attempt(own_db, tmp_path)  # slot 0
    await close_unknown(own_db, late)
    sent = await new_attempt(own_db, tmp_path)  # slot 0 again, then
    reserved = await new_attempt(own_db, tmp_path)  # slot 1
    await own_db.execute("UPDATE attempts SET state = 'reserved' WHERE id = $1", reserved)
    event = CallEvent("ringing", "SIMLATE:1:ringing", "SIMLATE")
    await apply_event(own_db, CampaignCache(), "sim-main", late, event)
    rows = {r["id"]: r for r in await own_db.fetch("SELECT id, state, slot, error FROM attempts")}
    assert rows[late]["state"] == "ringing" and rows[late]["slot"] == 1
    assert rows[reserved]["state"] == "not_dialed" and "placed late" in rows[reserved]["error"]
    assert rows[sent]["slot"] == 0
    contact = await own_db.fetchval("SELECT contact_id FROM attempts WHERE id = $1", reserved)
    assert await own_db.fetchval("SELECT state FROM contacts WHERE id = $1", contact) == "pending"

    other = await new_attempt(own_db, tmp_path)
    await own_db.execute("UPDATE attempts SET slot = 7 WHERE id = $1", other)
    await close_unknown(own_db, other)
    event = CallEvent("ringing", "SIMLATE2:1:ringing", "SIMLATE2")
    await apply_event(own_db, CampaignCache(), "sim-main", other, event)
    row = await own_db.fetchrow("SELECT state, slot FROM attempts WHERE id = $1", other)
    assert (row["state"], row["slot"]) == ("ringing", None)  # every channel holds a sent call
    live = await own_db.fetchval(
        "SELECT count(*) FROM attempts WHERE state IN ('reserved', 'dialing', 'accepted',"
        " 'ringing', 'in-progress')"
    )
    assert live == 3  # over 2: dispatch claims nothing until one ends (dispatch.claim)


async def test_after_a_redial_a_late_fact_is_recorded_on_its_own_attempt_only(
    own_db, tmp_path: Path
) -> None:
    attempt = await new_attempt(own_db, tmp_path)
    await close_unknown(own_db, attempt)
    contact = await own_db.fetchval("SELECT contact_id FROM attempts WHERE id = $1", attempt)
    redial = await own_db.fetchval(
        """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state, phone_e164,
                                 slot, requested_at, settle_by)
           SELECT contact_id, campaign_id, account, 2, 'accepted', phone_e164, 5, now(),
                  now() + interval '1h' FROM attempts WHERE id = $1
           RETURNING id""",
        attempt,
    )
    await own_db.execute("UPDATE contacts SET state = 'dialing' WHERE id = $1", contact)
    event = CallEvent("busy", "SIMOLD:2:busy", "SIMOLD")
    await apply_event(own_db, CampaignCache(), "sim-main", attempt, event)
    old = await own_db.fetchrow("SELECT state, error FROM attempts WHERE id = $1", attempt)
    assert old["state"] == "busy" and "dialed again" in old["error"]
    assert await own_db.fetchval("SELECT state FROM attempts WHERE id = $1", redial) == "accepted"
    assert await own_db.fetchval("SELECT state FROM contacts WHERE id = $1", contact) == "dialing"


# ---- final events in batches (apply_finals) ---------------------------------------------------

FINAL_WORDS = ["completed", "busy", "no-answer", "failed"]
START_STATES = ["accepted", "ringing", "in-progress", "unknown", "completed"]


async def twin_attempts(conn, tmp_path: Path, rng: random.Random, count: int):
    """`count` pairs of attempts, each pair alike (state, answered, call id, contact)."""
    pairs = []
    for index in range(count):
        start = rng.choice(START_STATES)
        call_id = f"CALL{index}" if rng.random() < 0.5 else None
        made = rng.randint(1, 3)
        pair = []
        for side in "AB":
            attempt = await new_attempt(conn, tmp_path, attempts=made)
            await conn.execute(
                "UPDATE attempts SET provider_call_id = $2, answered_at = CASE WHEN $3"
                " THEN now() END, state = CASE WHEN $3 THEN 'in-progress' ELSE state END"
                " WHERE id = $1",
                attempt,
                f"{side}{call_id}" if call_id else None,
                start == "in-progress",
            )
            if start == "ringing":
                await conn.execute("UPDATE attempts SET state = 'ringing' WHERE id = $1", attempt)
            if start in ("unknown", "completed"):
                async with conn.transaction():
                    await settle(conn, CampaignCache(), attempt, Settlement(start))
            pair.append(attempt)
        pairs.append((pair[0], pair[1], call_id))
    return pairs


def final_events(rng: random.Random, pairs, misrouted: bool) -> list[tuple[int, dict]]:
    """Final words for the pairs: some repeated, some contradicting, one misrouted by its call
    id if asked, in a random order; (pair index, the event's fields before its side's
    prefix)."""
    chosen = []
    for index, (_, _, call_id) in enumerate(pairs):
        for word in rng.sample(FINAL_WORDS, rng.randint(0, 2)):
            fields = {
                "status": word,
                "key": f"{index}:{word}",
                "call_id": call_id or f"NEW{index}",
                "duration_s": rng.choice([None, 0, 42]),
                "answered_by": rng.choice([None, "human", "machine_start"]),
                "completed_if_answered": rng.random() < 0.3,
            }
            chosen.append((index, fields))
            if rng.random() < 0.3:
                chosen.append((index, fields))  # delivered twice
    if misrouted:
        chosen.append((0, {"status": "busy", "key": "0:misrouted", "call_id": "SOMEONE_ELSE"}))
    rng.shuffle(chosen)
    return chosen


def as_event(side: str, fields: dict) -> CallEvent:
    return CallEvent(
        fields["status"],
        f"{side}:{fields['key']}",
        f"{side}{fields['call_id']}",
        duration_s=fields.get("duration_s"),
        occurred_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        answered_by=fields.get("answered_by"),
        completed_if_answered=fields.get("completed_if_answered", False),
    )


async def side_state(conn, attempt: int, side: str) -> dict:
    """What a settled attempt leaves behind, its side's prefixes taken off."""
    row = dict(
        await conn.fetchrow(
            """SELECT a.state, a.outcome, a.duration_s, a.answered_by,
                      a.ended_at = '2026-12-01 09:30+00' AS ended_as_told,
                      a.error, a.slot IS NULL AS no_slot, a.reopened_at IS NULL AS not_reopened,
                      ltrim(a.provider_call_id, 'AB') AS call_id, c.state AS contact,
                      c.attempts, c.last_outcome, c.next_attempt_at IS NULL AS no_next
               FROM attempts a JOIN contacts c ON c.id = a.contact_id WHERE a.id = $1""",
            attempt,
        )
    )
    row["events"] = [
        tuple(r)
        for r in await conn.fetch(
            """SELECT status, held, replace(problem, ' ' || $2, ' '),
                      replace(replace(dedupe_key, 'held:' || $1::bigint || ':', 'held:'),
                              $2 || ':', '')
               FROM call_events WHERE attempt_id = $1 ORDER BY dedupe_key""",
            attempt,
            side,
        )
    ]
    row["webhooks"] = [
        (r["type"], r["payload"].get("outcome"), r["payload"].get("state"))
        for r in await conn.fetch(
            """SELECT e.type, e.payload FROM webhook_events e JOIN attempts a
               ON e.order_key = 'contact:' || a.contact_id WHERE a.id = $1 ORDER BY e.id""",
            attempt,
        )
    ]
    return row


@pytest.mark.parametrize("seed", range(6))
async def test_a_batch_of_finals_ends_as_applying_them_one_by_one(
    own_db, tmp_path: Path, seed: int
) -> None:
    """apply_finals settles a batch as apply_event does one event after another: the same
    answers, attempts, contacts, stored events and webhook events, whatever the batch holds
    (repeats, contradicting words, misrouted, closed or `unknown` attempts). A misrouted event
    makes the batch one that is applied one by one; without one, it is settled together."""
    rng = random.Random(seed)
    await register(own_db, channels=100)
    await own_db.execute(
        "INSERT INTO webhook_endpoints (name, events) VALUES ('hook', $1)",
        ["attempt.settled", "contact.final"],
    )
    pairs = await twin_attempts(own_db, tmp_path, rng, 8)
    misrouted = seed % 2 == 1
    chosen = final_events(rng, pairs, misrouted)
    batch = [("sim-main", pairs[i][0], as_event("A", fields)) for i, fields in chosen]
    assert misrouted or _judged_alike(batch)  # settled together, not one by one
    answers = await apply_finals(own_db, CampaignCache(), batch)
    one_by_one = [
        await apply_event(own_db, CampaignCache(), "sim-main", pairs[i][1], as_event("B", f))
        for i, f in chosen
    ]
    assert answers == one_by_one
    for a, b, _ in pairs:
        assert await side_state(own_db, a, "A") == await side_state(own_db, b, "B")
    assert any(answer == "stored" for answer in answers)


async def test_a_word_is_stored_and_settles_its_attempt_together_or_not_at_all(
    own_db, tmp_path: Path
) -> None:
    """store_and_settle stores a final word and settles its attempt only together, and only if
    the attempt is still as it was read (answered meanwhile, the outcome may be `completed`),
    the word is new and it is judged to that attempt; otherwise it touches nothing, and the
    word is left to apply_event."""
    attempt = await new_attempt(own_db, tmp_path)
    other = await new_attempt(own_db, tmp_path)
    await own_db.execute("UPDATE attempts SET provider_call_id = 'SIMO' WHERE id = $1", other)
    event = CallEvent("no-answer", "K", "SIMC", completed_if_answered=True)

    def closing(answered: bool, outcome: str, word: CallEvent = event, of: int = attempt):
        return Closing(
            "sim-main", of, "accepted", answered, None, outcome, word, "done", None, True
        )

    async def settles(*closings: Closing) -> set[int]:
        return await store_and_settle(own_db, list(closings), [{}] * len(closings))

    async def kept(key: str) -> int:
        return await own_db.fetchval("SELECT count(*) FROM call_events WHERE dedupe_key = $1", key)

    await own_db.execute("UPDATE attempts SET answered_at = now() WHERE id = $1", attempt)
    assert await settles(closing(False, "no-answer")) == set()
    misrouted = CallEvent("busy", "M", "SIMO")  # the other attempt's call id
    assert await settles(closing(True, "busy", misrouted)) == set()
    assert await own_db.fetchval("SELECT state FROM attempts WHERE id = $1", attempt) == "accepted"
    assert (await kept("K"), await kept("M")) == (0, 0)
    await own_db.execute(
        "INSERT INTO call_events (account, dedupe_key, status, payload) VALUES"
        " ('sim-main', 'R', 'busy', '{}')"
    )
    repeated = CallEvent("busy", "R", "SIMC")
    assert await settles(closing(True, "busy", repeated)) == set()
    assert await settles(closing(True, "completed")) == {attempt}
    row = await own_db.fetchrow(
        "SELECT a.state, c.state AS contact FROM attempts a JOIN contacts c"
        " ON c.id = a.contact_id WHERE a.id = $1",
        attempt,
    )
    assert tuple(row) == ("completed", "done")
    assert await kept("K") == 1


async def test_one_batch_of_finals_settles_each_word_within_its_own_account(
    own_db, tmp_path: Path
) -> None:
    """Final words of several accounts share one statement (dialer serve gathers them): each
    settles its attempt only within the account whose URL it came to. A word naming another
    account's attempt settles nothing, and one dedupe key under two accounts is two words."""
    await register_account(own_db, AccountLimits("sim-other", "sim", 10.0, 1.0, 4))
    mine, theirs = await new_attempt(own_db, tmp_path), await new_attempt(own_db, tmp_path)
    await own_db.execute("UPDATE attempts SET account = 'sim-other' WHERE id = $1", theirs)

    def closing(account: str, attempt: int, word: CallEvent) -> Closing:
        return Closing(
            account, attempt, "accepted", False, None, word.status, word, "done", None, True
        )

    busy, no_answer = CallEvent("busy", "K", "CALLM"), CallEvent("no-answer", "K", "CALLT")
    strays = [closing("sim-other", mine, CallEvent("busy", "S", "CALLS"))]
    assert await store_and_settle(own_db, strays, [{}]) == set()  # not sim-other's attempt
    both = [closing("sim-main", mine, busy), closing("sim-other", theirs, no_answer)]
    assert await store_and_settle(own_db, both, [{}, {}]) == {mine, theirs}
    states = dict(
        await own_db.fetch("SELECT id, state FROM attempts WHERE id = ANY($1)", [mine, theirs])
    )
    assert states == {mine: "busy", theirs: "no-answer"}
    stored = await own_db.fetch(
        "SELECT account, dedupe_key, attempt_id FROM call_events ORDER BY account, dedupe_key"
    )
    assert [tuple(r) for r in stored] == [("sim-main", "K", mine), ("sim-other", "K", theirs)]

    # through apply_finals: a word to sim-other naming sim-main's attempt never settles it
    later, third = await new_attempt(own_db, tmp_path), await new_attempt(own_db, tmp_path)
    other_later = await new_attempt(own_db, tmp_path)
    await own_db.execute("UPDATE attempts SET account = 'sim-other' WHERE id = $1", other_later)
    batch = [
        ("sim-other", later, CallEvent("completed", "L", "CALLX")),
        ("sim-other", other_later, CallEvent("failed", "O", "CALLO")),
        ("sim-main", third, CallEvent("busy", "O", "CALL3")),
    ]
    answers = await apply_finals(own_db, CampaignCache(), batch)
    assert answers[1:] == ["stored", "stored"]
    states = dict(
        await own_db.fetch(
            "SELECT id, state FROM attempts WHERE id = ANY($1)", [later, other_later, third]
        )
    )
    assert states == {later: "accepted", other_later: "failed", third: "busy"}


async def test_a_word_the_database_refuses_fails_alone_and_nothing_of_it_is_kept(
    own_db, tmp_path: Path
) -> None:
    """A batch whose one word the database cannot store (a NUL byte in its payload, which
    screening would have cleaned): the others are settled, that one gets its own error (its
    provider retries it) and leaves nothing half-written."""
    good, bad = await new_attempt(own_db, tmp_path), await new_attempt(own_db, tmp_path)
    batch = [
        ("sim-main", good, CallEvent("busy", "G", "SIMG")),
        ("sim-main", bad, CallEvent("busy", "B", "SIMB", payload={"note": "a\x00b"})),
    ]
    answers = await apply_finals(own_db, CampaignCache(), batch)
    assert answers[0] == "stored"
    assert isinstance(answers[1], asyncpg.PostgresError)
    states = dict(
        await own_db.fetch("SELECT id, state FROM attempts WHERE id = ANY($1)", [good, bad])
    )
    assert states == {good: "busy", bad: "accepted"}
    assert await own_db.fetchval("SELECT count(*) FROM call_events WHERE dedupe_key = 'B'") == 0

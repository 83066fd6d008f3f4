"""The reconciler meets a provider whose look-ups answer garbage: one bad item is held or
retried, counted and logged, and every other attempt is still settled in the same round."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from dialer.callbacks.app import reconcile_forever
from dialer.calls import CallEvent
from dialer.campaigns import CampaignCache
from dialer.db.connect import connect, open_pool
from dialer.dispatch.claim import register_account
from dialer.dispatch.limiter import AccountLimits
from dialer.metrics import RECONCILE_FAILURES
from dialer.providers.sim import SimAccount, SimProvider
from dialer.reconcile import TURN, reconcile_once, take_turn
from dialer.settle import apply_event
from tests.callbacks.test_callbacks import SECRET, new_attempt
from tests.dispatch.test_end_to_end import env_for
from tests.dispatch.test_faults import wait_until_stopped
from tests.processes import (
    background,
    dialer_command,
    free_port,
    until,
    wait_for_http,
    write_config,
)
from tests.providers.test_callback_order import new_attempt as attempt_on

ANSWERS = {
    "GOOD": {"status": "busy"},
    "INFINITE": {"status": "completed", "duration": "inf"},
    "NEGATIVE": {"status": "completed", "duration": -40},
    "WEIRD": {"status": ["not", "a", "word"]},
}


async def provider(request: web.Request) -> web.Response:
    call = request.match_info["call"]
    if call == "GARBAGE":
        return web.Response(text="[[[[" * 1000, content_type="application/json")
    if call == "BROKEN":
        return web.Response(status=200, body=b"\xff\xfe not json")
    return web.json_response(ANSWERS[call])


async def status_server(
    answer: Callable[[web.Request], Awaitable[web.Response]], rate: str
) -> tuple[web.AppRunner, SimAccount]:
    """A provider's status API answering GET /v1/calls/{call} with `answer`, started, and a
    sim account that asks it at `rate`; clean the runner up."""
    app = web.Application()
    app.router.add_get("/v1/calls/{call}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    account = SimAccount(
        kind="sim", base_url=f"http://127.0.0.1:{port}", secret=SECRET, rate=rate, channels=9
    )
    return runner, account


async def test_bad_lookups_are_held_or_retried_and_the_rest_settles(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    runner, account = await status_server(provider, "100/s")
    adapter = SimProvider("sim-main", account)
    ids = {}
    for call in [*ANSWERS, "GARBAGE", "BROKEN"]:
        ids[call] = await new_attempt(own_db, tmp_path)
        await own_db.execute(
            "UPDATE attempts SET provider_call_id = $2, settle_by = now() - interval '1s'"
            " WHERE id = $1",
            ids[call],
            call,
        )
    failures_before = RECONCILE_FAILURES.labels("attempt")._value.get()
    try:
        async with open_pool(own_database_url, size=3) as pool, aiohttp.ClientSession() as session:
            async with pool.acquire() as conn:
                await register_account(conn, AccountLimits("sim-main", "sim", 100.0, 1.0, 9))
            actions = await reconcile_once(pool, CampaignCache(), {"sim-main": adapter}, session)
    finally:
        await runner.cleanup()
    states = {
        call: await own_db.fetchrow(
            "SELECT state, settle_by > now() AS later FROM attempts WHERE id = $1", attempt
        )
        for call, attempt in ids.items()
    }
    assert states["GOOD"]["state"] == "busy"
    for call in ("INFINITE", "NEGATIVE", "WEIRD", "GARBAGE", "BROKEN"):
        assert states[call]["state"] == "accepted" and states[call]["later"], call
    assert actions["settled_from_provider"] == 1 and actions["held_answer"] == 3
    assert actions["lookup_failed"] == 2  # garbage is not "the provider does not know it"
    held = await own_db.fetch("SELECT problem FROM call_events WHERE held ORDER BY id")
    assert len(held) == 3 and all(
        "out of range" in h["problem"] or "unknown status" in h["problem"] for h in held
    )
    assert RECONCILE_FAILURES.labels("attempt")._value.get() == failures_before


async def test_an_adapter_that_raises_is_counted_and_its_calls_asked_again(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    class Exploding(SimProvider):
        async def fetch_statuses(self, session, calls, pace):
            raise RuntimeError("a bug in reading the provider")

    account = SimAccount(
        kind="sim", base_url="http://127.0.0.1:1", secret=SECRET, rate="1/s", channels=1
    )
    attempt = await new_attempt(own_db, tmp_path)
    await own_db.execute(
        "UPDATE attempts SET provider_call_id = 'X', settle_by = now() - interval '1s'"
        " WHERE id = $1",
        attempt,
    )
    before = RECONCILE_FAILURES.labels("lookup")._value.get()
    async with open_pool(own_database_url, size=2) as pool, aiohttp.ClientSession() as session:
        actions = await reconcile_once(
            pool, CampaignCache(), {"sim-main": Exploding("sim-main", account)}, session
        )
    assert actions["lookup_failed"] >= 1
    assert RECONCILE_FAILURES.labels("lookup")._value.get() == before + 1
    row = await own_db.fetchrow(
        "SELECT state, settle_by > now() AS later FROM attempts WHERE id = $1", attempt
    )
    assert row["state"] == "accepted" and row["later"]  # not closed unknown on a bug


async def test_a_held_final_word_is_never_closed_unknown(database_url: str, tmp_path: Path) -> None:
    """A `completed` final kept for its answering-machine result (hold_final), when neither
    the result nor a call record ever comes: the provider did say `completed`, so the attempt
    settles `completed` with its duration, never `unknown`."""
    cache = CampaignCache()
    async with open_pool(database_url, size=2) as pool, pool.acquire() as conn:
        attempt = await attempt_on(conn, tmp_path, "tw", "CAheld1", "detect")
        final = CallEvent("completed", "CAheld1:9:completed", "CAheld1", duration_s=12)
        assert await apply_event(conn, cache, "tw", attempt, final) == "stored"
        held = await conn.fetchrow(
            "SELECT state, held_outcome FROM attempts WHERE id = $1", attempt
        )
        assert tuple(held) == ("in-progress", "completed")
        await conn.execute(
            "UPDATE attempts SET settle_by = now() - interval '1s' WHERE id = $1", attempt
        )
        actions = await reconcile_once(pool, cache, {}, None)  # no adapter: nobody to ask
        row = await conn.fetchrow(
            "SELECT state, outcome, duration_s, error FROM attempts WHERE id = $1", attempt
        )
    assert actions["settled_without_detection"] == 1, actions
    assert (row["state"], row["outcome"], row["duration_s"]) == ("completed", "completed", 12)
    assert "answering-machine result" in row["error"]


async def test_the_idle_rate_asks_about_the_calls_most_likely_ended_first(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    """Four calls talking, none due for a look-up by the schedule; the account's clock is idle
    (channels bind). Each round spends the free slots (1.5/s: 2 per 2 s round) on the calls
    most overdue (answered longest ago against a typical talk of 30 s), skips the one that just
    started, asks no call twice within 10 s, and nothing at all while a dial waits for the
    clock."""
    asked: list[str] = []

    async def status(request: web.Request) -> web.Response:
        call = request.match_info["call"]
        asked.append(call)
        return web.json_response({"status": "completed" if call == "ENDED" else "in-progress"})

    runner, account = await status_server(status, "2/s")
    adapter = SimProvider("sim-main", account)
    talking = {"ENDED": 200, "T100": 100, "T60": 60, "FRESH": 10}
    ids = {}
    for call, seconds in talking.items():
        ids[call] = await new_attempt(own_db, tmp_path)
        await own_db.execute(
            """UPDATE attempts SET provider_call_id = $2, state = 'in-progress',
                   answered_at = now() - make_interval(secs => $3),
                   requested_at = now() - make_interval(secs => $3 + 5),
                   settle_by = now() + interval '1h'
               WHERE id = $1""",
            ids[call],
            call,
            seconds,
        )
    try:
        async with open_pool(own_database_url, size=3) as pool, aiohttp.ClientSession() as session:
            async with pool.acquire() as conn:
                await register_account(conn, AccountLimits("sim-main", "sim", 1.5, 1.0, 9))
                await conn.execute("UPDATE accounts SET tat = now() + interval '5 seconds'")
            busy = await reconcile_once(pool, CampaignCache(), {"sim-main": adapter}, session)
            assert asked == [], busy  # a dial is waiting for the clock: no idle rate
            async with pool.acquire() as conn:
                await conn.execute("UPDATE accounts SET tat = now() - interval '1 second'")
            first = await reconcile_once(pool, CampaignCache(), {"sim-main": adapter}, session)
            assert asked == ["ENDED", "T100"], first
            second = await reconcile_once(pool, CampaignCache(), {"sim-main": adapter}, session)
            assert asked == ["ENDED", "T100", "T60"], second  # T100 was asked just now
    finally:
        await runner.cleanup()
    assert first["idle_rate_settled_from_provider"] == 1
    states = {
        call: await own_db.fetchval("SELECT state FROM attempts WHERE id = $1", ids[call])
        for call in talking
    }
    assert states == {
        "ENDED": "completed",
        "T100": "in-progress",
        "T60": "in-progress",
        "FRESH": "in-progress",
    }


async def test_a_repeated_live_answer_counts_a_look_up_and_backs_off(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    """A call due for a look-up, which the provider says is still talking, twice: the first
    answer is kept and counted; the second repeats it (kept already) and is counted in the
    statement that finds it kept. Two look-ups, the next one 20 s away (10 s doubled)."""

    async def status(request: web.Request) -> web.Response:
        return web.json_response({"status": "in-progress"})

    runner, account = await status_server(status, "100/s")
    adapter = {"sim-main": SimProvider("sim-main", account)}
    attempt = await new_attempt(own_db, tmp_path)
    due_now = "UPDATE attempts SET settle_by = now() - interval '1 second' WHERE id = $1"
    await own_db.execute(
        """UPDATE attempts SET provider_call_id = 'TALKING', state = 'in-progress',
               answered_at = now() - interval '40 seconds' WHERE id = $1""",
        attempt,
    )
    try:
        async with open_pool(own_database_url, size=3) as pool, aiohttp.ClientSession() as session:
            async with pool.acquire() as conn:
                await register_account(conn, AccountLimits("sim-main", "sim", 100.0, 1.0, 9))
            for _ in range(2):
                await own_db.execute(due_now, attempt)
                actions = await reconcile_once(pool, CampaignCache(), adapter, session)
                assert actions["extended"] == 1, actions
    finally:
        await runner.cleanup()
    row = await own_db.fetchrow(
        """SELECT lookups, extract(epoch FROM settle_by - now()) AS next_s,
                  (SELECT count(*) FROM call_events e WHERE e.attempt_id = a.id) AS events
           FROM attempts a WHERE id = $1""",
        attempt,
    )
    assert row["events"] == 1  # the repeat is not kept twice
    assert row["lookups"] == 2
    assert 15 < row["next_s"] <= 20, row["next_s"]


async def test_no_connection_is_held_while_the_provider_is_asked(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    """A provider that takes its time: while the reconciler waits for its answer, the pool's
    only connection is free for anyone else; the answer is then applied."""
    asked, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        asked.set()
        await release.wait()
        return web.json_response({"status": "busy"})

    runner, account = await status_server(slow, "100/s")
    attempt = await new_attempt(own_db, tmp_path)
    await own_db.execute(
        "UPDATE attempts SET provider_call_id = 'SLOW', settle_by = now() - interval '1s'"
        " WHERE id = $1",
        attempt,
    )
    try:
        async with open_pool(own_database_url, size=1) as pool, aiohttp.ClientSession() as session:
            async with pool.acquire() as conn:
                await register_account(conn, AccountLimits("sim-main", "sim", 100.0, 1.0, 9))
            adapters = {"sim-main": SimProvider("sim-main", account)}
            round_ = asyncio.ensure_future(reconcile_once(pool, CampaignCache(), adapters, session))
            try:
                await asyncio.wait_for(asked.wait(), timeout=60)
                async with asyncio.timeout(5), pool.acquire() as conn:  # free: nobody holds it
                    assert await conn.fetchval("SELECT 1") == 1
            finally:
                release.set()
            actions = await asyncio.wait_for(round_, timeout=60)
    finally:
        await runner.cleanup()
    assert actions["settled_from_provider"] == 1
    assert await own_db.fetchval("SELECT state FROM attempts WHERE id = $1", attempt) == "busy"


async def test_one_process_takes_each_reconciler_turn(own_db, own_database_url: str) -> None:
    """Two processes asking for the reconciler's turn at once: the first takes it, the second
    does not; once TURN has passed since it was taken, the next one to ask takes it."""
    other = await connect(own_database_url)
    try:
        assert await take_turn(own_db) is True
        assert await take_turn(other) is False
        assert await take_turn(own_db) is False  # nor the same one again within TURN
        await own_db.execute("UPDATE reconciler_turns SET taken_at = taken_at - $1::interval", TURN)
        assert await take_turn(other) is True
    finally:
        await other.close()


async def expired_reservation(db: asyncpg.Connection, tmp_path: Path) -> int:
    """An attempt reserved by a claim whose lease has run out: a reconciler round releases it
    (`not_dialed`)."""
    attempt = await new_attempt(db, tmp_path)
    await db.execute(
        """UPDATE attempts SET state = 'reserved', provider_call_id = NULL, requested_at = NULL,
               lease_expires_at = now() - interval '1 second'
           WHERE id = $1""",
        attempt,
    )
    return attempt


async def test_the_reconciler_loop_does_a_round_when_it_takes_the_turn(
    own_db, own_database_url: str, tmp_path: Path
) -> None:
    """A reservation whose lease ran out: the loop takes the turn and its round releases it."""
    attempt = await expired_reservation(own_db, tmp_path)
    async with open_pool(own_database_url, size=2) as pool:
        loop = asyncio.create_task(reconcile_forever(pool, CampaignCache(), {}, None))
        try:
            for _ in range(3000):  # a round comes within ms; the bound is for a busy machine
                state = await own_db.fetchval("SELECT state FROM attempts WHERE id = $1", attempt)
                if state != "reserved":
                    break
                await asyncio.sleep(0.01)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
    assert state == "not_dialed"
    taken = await own_db.fetchval(
        "SELECT taken_at > now() - interval '1 minute' FROM reconciler_turns"
    )
    assert taken is True


async def test_a_server_stopped_holding_the_turn_delays_the_rounds_by_turn_at_most(
    own_db, own_database_url: str, tmp_path: Path
) -> None:
    """A real `serve` stops itself (SIGSTOP) right after taking the reconciler's turn, before
    its round. Another `serve` takes the next turn once TURN has passed and does the round; the
    first, continued, goes on with its late round beside the other's, and both end cleanly."""
    first = await expired_reservation(own_db, tmp_path)
    config = write_config(tmp_path, "http://127.0.0.1:9", rate="1/s", channels=1, port=free_port())
    env = env_for(own_database_url, config)
    port_a, port_b = free_port(), free_port()
    serve_a = dialer_command("serve", "--port", str(port_a), "--log-level", "info")
    serve_b = dialer_command("serve", "--port", str(port_b), "--log-level", "info")

    def released(attempt: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            state = await own_db.fetchval("SELECT state FROM attempts WHERE id = $1", attempt)
            return state == "not_dialed"

        return check

    stopped_env = env | {"DIALER_FAULT": "reconciler-turn-taken"}
    with background(serve_a, tmp_path, stopped_env, tmp_path / "a.log") as a:
        await wait_until_stopped(a.pid)
        taken_by_a = await own_db.fetchval("SELECT taken_at FROM reconciler_turns")
        assert await own_db.fetchval("SELECT state FROM attempts WHERE id = $1", first) == (
            "reserved"  # stopped before its round
        )
        with background(serve_b, tmp_path, env, tmp_path / "b.log") as b:
            await until(released(first), "the other server's round to release the reservation")
            taken_by_b = await own_db.fetchval("SELECT taken_at FROM reconciler_turns")
            assert taken_by_b - taken_by_a >= TURN
            second = await expired_reservation(own_db, tmp_path)
            a.send_signal(signal.SIGCONT)
            # the continued server answers /healthz again (200: 503 would name a dead task)
            await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port_a}/healthz", 180.0)
            await until(released(second), "a round of either server to release the second")
            for process in (a, b):
                process.terminate()
                assert process.wait(timeout=30) == 0
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "reconcile round failed" not in logs and "Traceback" not in logs, logs[-3000:]
    assert (
        await own_db.fetchval(
            "SELECT count(*) FROM attempts WHERE id = ANY($1::bigint[]) AND state = 'not_dialed'",
            [first, second],
        )
        == 2
    )

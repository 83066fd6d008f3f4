"""`dialer campaign load` against a real PostgreSQL: counts, rejects, idempotency, atomicity."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import psutil
import pytest

from dialer.campaign_spec import CampaignSpec, load_campaign_file
from dialer.db.connect import connect
from dialer.db.erasure import ERASURE_LOCK_KEY
from dialer.db.outage import CONNECTION_LOST
from dialer.erasure import phone_key
from dialer.loading import loader
from dialer.loading.loader import upsert_campaign
from tests.conftest import TEST_CONFIG
from tests.db.lock_cuts import until_waiting_on_a_lock
from tests.db.stalling import load_stopped_mid_copy, wide_load
from tests.loading.helpers import campaign_file, csv_file
from tests.processes import until

pytestmark = pytest.mark.usefixtures("database_url")


async def table_counts(db: asyncpg.Connection) -> dict[str, int]:
    tables = ["campaigns", "contacts", "attempts", "load_rejects", "loads", "dnc"]
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


async def contacts_of(db: asyncpg.Connection, campaign: str) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT c.* FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
           WHERE k.name = $1 ORDER BY row_no""",
        campaign,
    )


async def test_load_normalizes_dedupes_and_rejects(run_cli, tmp_path: Path, db) -> None:
    csv_file(
        tmp_path,
        [
            "+91 98450 12345,Asha,Asia/Kolkata,gold",
            "098450 12346,Ravi,,silver",
            '"9845012345","Asha again",,gold',  # same number as row 2: duplicate
            "12345,Bad,,basic",  # not a valid number
            "+919845012347,Tz,Mars/Olympus,basic",  # invalid timezone
            "+919845012348,Extra,,basic,surplus",  # more fields than the header
            ",Nobody,,basic",  # missing phone
        ],
        header="phone,name,timezone,plan",
    )
    campaign_file(tmp_path, "c1")
    result = run_cli("campaign", "load", "c1.toml", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows_read"] == 7
    assert summary["loaded"] == 2
    assert summary["duplicates"] == 1
    assert summary["rejected"] == 4
    # "098450 12346" and "9845012345" had no country code: read in the default region (IN);
    # "+91 ..." did, and rejected rows are not counted
    assert (summary["default_region_numbers"], summary["default_region"]) == (2, "IN")
    text = run_cli("campaign", "load", "c1.toml").stdout
    assert "national    2 (no country code: read as IN numbers" in text, text
    assert summary["rejects_by_reason"] == {
        "invalid phone number": 1,
        "unknown timezone": 1,
        "too many fields": 1,
        "missing phone number": 1,
    }
    rows = await contacts_of(db, "c1")
    assert [(r["row_no"], r["phone_e164"], r["name"], r["timezone"]) for r in rows] == [
        (2, "+919845012345", "Asha", "Asia/Kolkata"),
        (3, "+919845012346", "Ravi", "Asia/Calcutta"),  # no zone given: from the number
    ]
    assert rows[0]["fields"] == {"plan": "gold"}
    assert {r["state"] for r in rows} == {"pending"}

    rejects = await db.fetch("SELECT row_no, raw, reason FROM load_rejects ORDER BY row_no")
    assert [(r["row_no"], r["reason"]) for r in rejects] == [
        (5, "invalid phone number"),
        (6, "unknown timezone: 'Mars/Olympus'"),
        (7, "too many fields: 5, the header has 4"),
        (8, "missing phone number"),
    ]
    assert rejects[0]["raw"] == {"phone": "12345", "name": "Bad", "timezone": "", "plan": "basic"}
    with (tmp_path / "contacts.rejects.csv").open(newline="") as handle:
        written = list(csv.reader(handle))
    assert written[0] == ["row_no", "reason", "phone", "name", "timezone", "plan"]
    assert written[1] == ["5", "invalid phone number", "12345", "Bad", "", "basic"]
    assert len(written) == 5


async def test_reload_changes_nothing_and_says_so(run_cli, tmp_path: Path, db) -> None:
    csv_file(tmp_path, ["+919845012345,A", "+919845012346,B", "bad,C"])
    campaign_file(tmp_path, "c2")
    assert run_cli("campaign", "load", "c2.toml").exit_code == 0
    before = await table_counts(db)
    again = run_cli("campaign", "load", "c2.toml")
    assert again.exit_code == 0
    assert "nothing changed" in again.stdout
    assert await table_counts(db) == before


async def test_second_file_adds_only_new_numbers(run_cli, tmp_path: Path, db) -> None:
    csv_file(tmp_path, ["+919845012345,A", "+919845012346,B"])
    csv_file(tmp_path, ["+919845012346,B", "+919845012347,C"], name="more.csv")
    campaign_file(tmp_path, "c3")
    assert run_cli("campaign", "load", "c3.toml").exit_code == 0
    result = run_cli("campaign", "load", "c3.toml", "--csv", "more.csv", "--json")
    summary = json.loads(result.stdout)
    assert (summary["loaded"], summary["duplicates"], summary["changed"]) == (1, 1, True)
    phones = [r["phone_e164"] for r in await contacts_of(db, "c3")]
    assert sorted(phones) == ["+919845012345", "+919845012346", "+919845012347"]


async def test_a_finished_campaign_given_contacts_is_active_again_one_that_met_its_goal_not(
    run_cli, tmp_path: Path, db
) -> None:
    """Completed because every contact was final: new contacts make it active again, and the
    summary says so. Completed because it met its goal: it stays completed, and the summary
    says the contacts loaded wait undialed (they were loaded silently into both before)."""
    csv_file(tmp_path, ["+919845012345,A"])
    csv_file(tmp_path, ["+919845012346,B"], name="more.csv")
    csv_file(tmp_path, ["+919845012347,C"], name="most.csv")
    campaign_file(tmp_path, "c3r")
    assert run_cli("campaign", "load", "c3r.toml").exit_code == 0
    finished = """UPDATE campaigns SET status = 'completed', status_reason = $1
                  WHERE name = 'c3r'"""
    await db.execute(finished, None)  # as dialer run leaves it once every contact is final
    more = run_cli("campaign", "load", "c3r.toml", "--csv", "more.csv")
    assert more.exit_code == 0
    assert "c3r: completed -> active (every contact was final; this load added 1" in more.stdout
    assert await db.fetchval("SELECT status FROM campaigns WHERE name = 'c3r'") == "active"
    await db.execute(finished, "stop_after reached: 1 answered")
    most = run_cli("campaign", "load", "c3r.toml", "--csv", "most.csv", "--json")
    summary = json.loads(most.stdout)
    assert summary["loaded"] == 1
    assert (summary["reopened"], summary["completed_because"]) == (
        False,
        "stop_after reached: 1 answered",
    )
    assert await db.fetchval("SELECT status FROM campaigns WHERE name = 'c3r'") == "completed"
    text = run_cli("campaign", "load", "c3r.toml", "--csv", "most.csv").stdout
    assert "nothing changed" in text and "note:" not in text  # nothing loaded, nothing to say


async def test_dnc_numbers_load_as_suppressed(run_cli, tmp_path: Path, db) -> None:
    assert run_cli("dnc", "add", "+919845099999", "--reason", "asked").exit_code == 0
    csv_file(tmp_path, ["+919845099999,A", "+919845012346,B"])
    campaign_file(tmp_path, "c4")
    summary = json.loads(run_cli("campaign", "load", "c4.toml", "--json").stdout)
    assert (summary["loaded"], summary["suppressed"]) == (1, 1)
    states = {r["phone_e164"]: r["state"] for r in await contacts_of(db, "c4")}
    assert states == {"+919845099999": "suppressed", "+919845012346": "pending"}


@pytest.mark.parametrize("workers", [False, True], ids=["in-process", "workers"])
async def test_erased_numbers_load_as_suppressed(
    run_cli, tmp_path: Path, db, monkeypatch, workers: bool
) -> None:
    """A number erased on request stays do-not-call: loaded again, it is suppressed, whether
    the file is read in the loading process or by validation workers (which are given the
    erased numbers' keyed hashes when they start)."""
    if workers:
        monkeypatch.setattr("dialer.loading.loader.PARALLEL_FROM_BYTES", 0)
        monkeypatch.setattr("dialer.loading.loader.CHUNK_ROWS", 400)
    erased = "+919845077701" if workers else "+919845077702"
    key = await db.fetchval("SELECT privacy_key FROM dialer_install")
    await db.execute(
        "INSERT INTO erased_numbers (phone_key, requested_by) VALUES ($1, 'test')",
        phone_key(key, erased),
    )
    rows = [f"+9198451{i:05d},n{i}" for i in range(1000)]
    csv_file(tmp_path, [*rows[:700], f"{erased},again", *rows[700:]])
    name = f"erased-{workers}"
    campaign_file(tmp_path, name)
    summary = json.loads(run_cli("campaign", "load", f"{name}.toml", "--json").stdout)
    assert (summary["loaded"], summary["suppressed"]) == (1000, 1)
    states = {r["phone_e164"]: r["state"] for r in await contacts_of(db, name)}
    assert states[erased] == "suppressed"
    assert sum(state == "pending" for state in states.values()) == 1000


async def test_declared_encoding_is_the_fallback(run_cli, tmp_path: Path, db) -> None:
    (tmp_path / "contacts.csv").write_bytes("phone,name\n+919845012345,José\n".encode("cp1252"))
    campaign_file(tmp_path, "c5")
    failed = run_cli("campaign", "load", "c5.toml")
    assert failed.exit_code == 2
    assert "line 2: bytes that are not valid utf-8" in failed.stderr
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE name = 'c5'") == 0

    campaign_file(tmp_path, "c5", extra='encoding = "cp1252"')
    loaded = run_cli("campaign", "load", "c5.toml", "--json")
    assert loaded.exit_code == 0, loaded.stderr
    assert json.loads(loaded.stdout)["encoding"] == "cp1252"
    assert [r["name"] for r in await contacts_of(db, "c5")] == ["José"]


async def test_semicolon_file_with_bom_and_crlf(run_cli, tmp_path: Path, db) -> None:
    data = (
        "\ufeffTelefon;name;Stadt\r\n+49 1512 3456789;Jörg;Köln\r\n\r\n01512 3456788;Anna;Bonn\r\n"
    )
    (tmp_path / "contacts.csv").write_bytes(data.encode("utf-8"))
    campaign_file(tmp_path, "c6", extra='phone_column = "telefon"').write_text(
        (tmp_path / "c6.toml").read_text().replace('"IN"', '"DE"')
    )
    result = run_cli("campaign", "load", "c6.toml", "--json")
    assert result.exit_code == 0, result.stderr
    rows = await contacts_of(db, "c6")
    assert [(r["row_no"], r["phone_e164"], r["fields"]) for r in rows] == [
        (2, "+4915123456789", {"Stadt": "Köln"}),
        (4, "+4915123456788", {"Stadt": "Bonn"}),
    ]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "contacts file not found"),
        ("empty", "the file is empty"),
        ("column", "no column named 'phone' for phone numbers; columns found: mobile, name"),
    ],
)
async def test_bad_input_exits_2_and_loads_nothing(
    run_cli, tmp_path: Path, db, setup: str, message: str
) -> None:
    name = f"bad-{setup}"
    campaign_file(tmp_path, name)
    if setup == "empty":
        (tmp_path / "contacts.csv").write_bytes(b"")
    elif setup == "column":
        csv_file(tmp_path, ["+919845012345,A"], header="mobile,name")
    result = run_cli("campaign", "load", f"{name}.toml")
    assert result.exit_code == 2
    assert message in result.stderr
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE name = $1", name) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('name = "x"\naccount = \n', "malformed TOML"),
        (
            'name = "x"\naccount = "a"\ncaller_id = "1"\ndefault_region = "IN"\n'
            'timezone = "Asia/Kolkata"\n[retry]\nbusy = "20 minutes"\n',
            "line 7: retry.busy: expected a duration",
        ),
        (
            'name = "x"\naccount = "a"\ncaller_id = "1"\ndefault_region = "IN"\n'
            'timezon = "Asia/Kolkata"\n',
            "line 5: timezon: unknown key",
        ),
        ('name = "x"\n', "account: required key is missing"),
    ],
)
def test_malformed_campaign_file(run_cli, tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "bad.toml").write_text(body)
    result = run_cli("campaign", "load", "bad.toml")
    assert result.exit_code == 2
    assert message in result.stderr
    assert "bad.toml" in result.stderr


async def test_campaign_updates_until_it_has_dialed(run_cli, tmp_path: Path, db) -> None:
    csv_file(tmp_path, ["+919845012345,A"])
    campaign_file(tmp_path, "c7")
    run_cli("campaign", "load", "c7.toml")
    campaign_file(tmp_path, "c7", extra='ring_timeout = "45s"')
    assert "c7: updated" in run_cli("campaign", "load", "c7.toml").stdout
    assert await db.fetchval("SELECT spec->>'ring_timeout' FROM campaigns WHERE name='c7'") == "45s"

    await db.execute(
        """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state, phone_e164,
                                 outcome)
           SELECT id, campaign_id, 'sim-main', 1, 'busy', phone_e164, 'busy' FROM contacts
           WHERE campaign_id = (SELECT id FROM campaigns WHERE name = 'c7')"""
    )
    campaign_file(tmp_path, "c7", extra='ring_timeout = "60s"')
    refused = run_cli("campaign", "load", "c7.toml")
    assert refused.exit_code == 2
    assert "already dialed" in refused.stderr and "ring_timeout" in refused.stderr
    assert await db.fetchval("SELECT spec->>'ring_timeout' FROM campaigns WHERE name='c7'") == "45s"


async def test_parallel_path_gives_the_same_result(
    run_cli, tmp_path: Path, db, monkeypatch
) -> None:
    """Big files are validated in worker processes; the result must not depend on that."""
    monkeypatch.setattr("dialer.loading.loader.PARALLEL_FROM_BYTES", 0)
    monkeypatch.setattr("dialer.loading.loader.CHUNK_ROWS", 500)
    rows = [f"+9198450{i:05d},n{i}" for i in range(3000)] + ["nope,x"] * 3
    rows += [f"+9198450{i:05d},dup" for i in range(0, 3000, 7)]
    csv_file(tmp_path, rows)
    campaign_file(tmp_path, "c8")
    summary = json.loads(run_cli("campaign", "load", "c8.toml", "--json").stdout)
    assert (summary["loaded"], summary["rejected"], summary["duplicates"]) == (3000, 3, 429)
    loaded = await contacts_of(db, "c8")
    assert [r["row_no"] for r in loaded] == list(range(2, 3002))
    assert all(r["name"] == f"n{r['row_no'] - 2}" for r in loaded)


async def test_rows_that_may_repeat_keep_their_place_in_the_file(
    run_cli, tmp_path: Path, db, monkeypatch
) -> None:
    """A row whose number may repeat one seen before (a true repeat, or a false alarm of the
    load's fixed-size record of numbers) is settled right after its segment: the first row of
    each number is kept, and it takes its id among its segment's rows (after them), so
    contacts are dialed in file order, segment by segment, not with every false alarm after
    all the other contacts."""
    monkeypatch.setattr("dialer.loading.seen.BITS", 8)  # nearly every number a false alarm
    monkeypatch.setattr("dialer.loading.loader.CHUNK_ROWS", 100)
    numbers = [f"+9198450{i:05d}" for i in random.Random(8).sample(range(100_000), 600)]
    rows = []
    for i, number in enumerate(numbers):
        rows.append(f"{number},n{i}")
        if i % 50 == 0:
            rows.append(f"{number},next{i}")  # a repeat in the same segment, just after
    rows += [f"{numbers[i]},again{i}" for i in range(0, 600, 5)]  # true repeats, later on
    csv_file(tmp_path, rows)
    campaign_file(tmp_path, "c8b")
    summary = json.loads(run_cli("campaign", "load", "c8b.toml", "--json").stdout)
    assert (summary["loaded"], summary["duplicates"]) == (600, 132)
    loaded = await db.fetch(
        """SELECT c.row_no, c.name FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
           WHERE k.name = 'c8b' ORDER BY c.id"""
    )
    segments = [(r["row_no"] - 2) // 100 for r in loaded]  # a segment is 100 lines
    assert segments == sorted(segments)  # ids in file order, segment by segment
    assert {r["name"] for r in loaded} == {f"n{i}" for i in range(600)}  # the first kept


async def test_postgres_restarting_mid_load_ends_it_with_one_line_and_nothing_written(
    restartable_postgres, tmp_path: Path
) -> None:
    """PostgreSQL restarts while a big load is writing contacts: the load exits 1 with one line
    naming the lost connection (no traceback), its workers gone, nothing committed and no
    rejects file; the same load run again then loads everything."""
    url, restart = restartable_postgres
    rows = [f"+9198{i:08d},name{i}" for i in range(300_000)] + ["not a number,x"]
    csv_file(tmp_path, rows)
    campaign_file(tmp_path, "c9r")
    (tmp_path / "dialer.toml").write_text(TEST_CONFIG)
    env = os.environ | {"DIALER_DATABASE_URL": url}
    command = [sys.executable, "-m", "dialer", "campaign", "load", "c9r.toml"]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the load is writing contacts
            busy = await conn.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE query LIKE 'COPY%contacts%' AND datname = current_database()"""
            )
            if busy:
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    assert process.returncode is None, "the load finished before PostgreSQL could restart"
    workers = psutil.Process(process.pid).children()
    await asyncio.to_thread(restart, "fast")
    _, stderr = await asyncio.wait_for(process.communicate(), 60)  # it ends, never hangs
    _, alive = psutil.wait_procs(workers, timeout=10)
    said = [line for line in stderr.decode().splitlines() if "warning" not in line]
    assert process.returncode == 1, said
    assert len(said) == 1 and said[0].startswith("dialer: error: the database connection was lost")
    assert "nothing of it was written" in said[0]
    assert not alive, "workers must not outlive the load"
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM campaigns") == 0
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 0
    finally:
        await conn.close()
    assert not (tmp_path / "contacts.rejects.csv").exists()
    again = await asyncio.create_subprocess_exec(
        *command, "--json", cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, _ = await again.communicate()
    assert again.returncode == 0
    summary = json.loads(stdout)
    assert (summary["loaded"], summary["rejected"]) == (300_000, 1)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
async def test_interrupted_load_leaves_nothing(
    database_url: str, tmp_path: Path, db, sig: signal.Signals
) -> None:
    """Killed or Ctrl-C'd in the middle of a big load: nothing commits, no worker lingers."""
    name = f"c9-{sig.name.lower()}"
    csv_file(tmp_path, [f"+9198{i:08d},name{i}" for i in range(300_000)])
    campaign_file(tmp_path, name)
    (tmp_path / "dialer.toml").write_text(TEST_CONFIG)
    env = os.environ | {"DIALER_DATABASE_URL": database_url}
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "dialer", "campaign", "load", f"{name}.toml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # as a terminal's Ctrl-C finds it, even where the test runner ignores SIGINT (CI)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the load is writing contacts
        busy = await db.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE query LIKE 'COPY%contacts%' AND datname = current_database()"""
        )
        if busy:
            break
        await asyncio.sleep(0.05)
    assert process.returncode is None, "the load finished before it could be interrupted"
    workers = psutil.Process(process.pid).children()
    assert workers, "a file this size is validated in worker processes"
    os.kill(process.pid, sig)
    _, stderr = await process.communicate()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "workers must not outlive the load"
    if sig == signal.SIGINT:
        assert process.returncode == 130, stderr.decode()[-3000:]
        said = [line for line in stderr.decode().splitlines() if "warning" not in line]
        said = [line for line in said if line]  # click's own newline after ^C
        assert said == ["dialer: interrupted; any unfinished transaction was rolled back"]
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE name = $1", name) == 0
    assert not (tmp_path / "contacts.rejects.csv").exists()
    if sig == signal.SIGINT:
        leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".dialer-rejects-")]
        assert not leftovers, "temporary files are removed"


async def test_two_loads_creating_one_campaign_at_once_both_load_into_it(database_url: str) -> None:
    """Two first loads of one campaign at once (two cron jobs, say): the second waits for the
    first, then loads into the campaign the first made, never failing on its name."""
    spec = CampaignSpec.model_validate(
        {
            "name": "c-twice",
            "account": "sim-main",
            "caller_id": ["+918047112233"],
            "default_region": "IN",
            "timezone": "UTC",
            "window": {"start": "09:00", "end": "18:00"},
        }
    )
    first, second, watcher = [await connect(database_url) for _ in range(3)]
    try:
        await first.execute(
            """INSERT INTO accounts (name, kind, rate_per_s, channels)
               VALUES ('sim-main', 'sim', 10, 5) ON CONFLICT DO NOTHING"""
        )
        loading = first.transaction()
        await loading.start()
        made, action = await upsert_campaign(first, spec)
        assert action == "created"

        async def second_load() -> tuple[int, str]:
            async with second.transaction():
                return await upsert_campaign(second, spec)

        waiting = asyncio.ensure_future(second_load())
        await until_waiting_on_a_lock(watcher, second, waiting, "the second load to wait")
        assert not waiting.done()
        await loading.commit()
        assert await waiting == (made, "unchanged")
        assert await watcher.fetchval("SELECT count(*) FROM campaigns WHERE name = 'c-twice'") == 1
    finally:
        for conn in (first, second, watcher):
            await conn.close()


async def test_a_paused_load_loses_its_session_and_what_it_held(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load that stops sending past LOAD_IDLE_LIMIT_S (its process paused: Ctrl-Z, SIGSTOP)
    loses its session: PostgreSQL rolls it back and frees what it held, every erasure it held
    off included. Its event loop is held here in the progress callback, as in a stopped
    process; resumed, it ends with the lost connection and nothing written."""
    monkeypatch.setattr(loader, "LOAD_IDLE_LIMIT_S", 1.0)
    csv_file(tmp_path, [f"+9198{i:08d},n{i}" for i in range(2000)])
    campaign = load_campaign_file(campaign_file(tmp_path, "c-paused"))
    paused, resumed = threading.Event(), threading.Event()
    ended: dict[str, BaseException] = {}

    def progress(done: int, total: int) -> None:
        if not paused.is_set():
            paused.set()
            resumed.wait(120)  # the loop stops here, as a stopped process's would

    def load_in_a_loop_of_its_own() -> None:
        async def go() -> None:
            conn = await connect(database_url)
            try:
                await loader.load_campaign(conn, campaign, progress=progress)
            finally:
                conn.terminate()

        try:
            asyncio.run(go())
        except BaseException as exc:  # what the load ended with, checked below
            ended["error"] = exc

    thread = threading.Thread(target=load_in_a_loop_of_its_own)
    thread.start()
    watcher = await connect(database_url)
    try:
        assert await asyncio.to_thread(paused.wait, 60)

        async def erasures_free() -> bool:
            if not await watcher.fetchval("SELECT pg_try_advisory_lock($1)", ERASURE_LOCK_KEY):
                return False
            await watcher.execute("SELECT pg_advisory_unlock($1)", ERASURE_LOCK_KEY)
            return True

        await until(erasures_free, "the paused load's session to end")
        resumed.set()
        await asyncio.to_thread(thread.join, 60)
        assert isinstance(ended.get("error"), CONNECTION_LOST), ended
        assert await watcher.fetchval("SELECT count(*) FROM campaigns WHERE name = 'c-paused'") == 0
    finally:
        resumed.set()
        await watcher.close()


async def test_an_encoding_found_wrong_late_in_a_big_file_is_read_again_whole(
    run_cli, tmp_path: Path, db, monkeypatch
) -> None:
    """A byte that is not UTF-8 deep in a file: the load has written segments before it, and
    one is on its way to PostgreSQL when the byte is met. That write is ended, the savepoint
    drops what was written, and the file is read again in the declared encoding: every row
    once, the odd name as written. (A small file, validated in this process: nothing else
    waits between the error and the savepoint's rollback, as a worker pool's shutdown does.)"""
    monkeypatch.setattr("dialer.loading.loader.CHUNK_ROWS", 200)
    monkeypatch.setattr("dialer.loading.csv_source.BLOCK_SIZE", 8192)  # the byte met late
    lines = [f"+9198450{i:05d},n{i}" for i in range(6000)]
    lines[5000] = "+919845088888,José"  # (+919845099999 is do-not-call in this module)
    (tmp_path / "contacts.csv").write_bytes(
        ("phone,name\n" + "\n".join(lines) + "\n").encode("cp1252")
    )
    campaign_file(tmp_path, "c-late-byte", extra='encoding = "cp1252"')
    loaded = run_cli("campaign", "load", "c-late-byte.toml", "--json")
    assert loaded.exit_code == 0, loaded.stderr
    summary = json.loads(loaded.stdout)
    assert (summary["encoding"], summary["loaded"], summary["duplicates"]) == ("cp1252", 6000, 0)
    names = [r["name"] for r in await contacts_of(db, "c-late-byte")]
    assert names == [f"n{i}" if i != 5000 else "José" for i in range(6000)]


async def test_a_segment_postgresql_refuses_while_the_next_is_read_fails_the_whole_load(
    database_url: str, tmp_path: Path, db, monkeypatch
) -> None:
    """A segment's write fails in PostgreSQL (a trigger of the user's own refuses a row)
    while the loader reads the segments after it: the load ends with that error, nothing of
    it is written, and its connection is left usable (no write still in progress on it)."""
    monkeypatch.setattr("dialer.loading.loader.PARALLEL_FROM_BYTES", 0)
    monkeypatch.setattr("dialer.loading.loader.CHUNK_ROWS", 200)
    rows = [f"+9198451{i:05d},n{i}" for i in range(4000)]
    rows[1500] = "+919845199999,refuse me"
    csv_file(tmp_path, rows)
    campaign = load_campaign_file(campaign_file(tmp_path, "c-refused-row"))
    await db.execute(
        """CREATE FUNCTION refuse_a_row() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF NEW.name = 'refuse me' THEN RAISE EXCEPTION 'row refused by a trigger'; END IF;
               RETURN NEW;
           END $$;
           CREATE TRIGGER refuse_a_row BEFORE INSERT ON contacts
               FOR EACH ROW EXECUTE FUNCTION refuse_a_row()"""
    )
    conn = await connect(database_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="row refused by a trigger"):
            await loader.load_campaign(conn, campaign)
        assert await conn.fetchval("SELECT 1") == 1  # nothing left in progress on it
    finally:
        await conn.close()
        await db.execute("DROP TRIGGER refuse_a_row ON contacts; DROP FUNCTION refuse_a_row()")
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE name = 'c-refused-row'") == 0
    assert not (tmp_path / "contacts.rejects.csv").exists()


async def test_a_load_waiting_for_one_stopped_mid_copy_ends_it_and_loads(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two cron runs of one campaign's load: the first stops part way through a COPY (its
    process stopped, its network cut), holding the campaign's row in a statement PostgreSQL
    never times out. The second, waiting for that row, ends it once it has waited past
    STALLED_LOAD_S (1 s here) and loads the file; the first ends with the lost connection."""
    campaign = wide_load(tmp_path, monkeypatch, "c-second-cron", "96")
    conn = await connect(database_url)
    try:
        async with load_stopped_mid_copy(database_url, campaign) as first:
            summary = await asyncio.wait_for(loader.load_campaign(conn, campaign), 120)
            assert summary.loaded == 30_000
            with pytest.raises(CONNECTION_LOST):
                await asyncio.wait_for(first, 60)
        loaded = await conn.fetchval(
            """SELECT count(*) FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
               WHERE k.name = 'c-second-cron'"""
        )
        assert loaded == 30_000
    finally:
        await conn.close()

"""Erasure that keeps the opt-out, with real processes (dialer.forget): a number called through
the sim (callbacks, webhooks, consent, a rejected row, another contact's field naming it, an
export) is erased while its call is in flight (held, exit 3), then for good once the call
ends: a pg_dump holds it in no form, the consent chain still verifies (and a superuser's edit
still breaks it, named), every report's counts are the same, the files are listed, and
reloading the number loads it suppressed."""

# ruff: noqa: ASYNC110, ASYNC220, ASYNC221
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import asyncpg
import pytest

from tests.dispatch.test_end_to_end import env_for, load
from tests.processes import (
    dialer_command,
    free_port,
    sim_provider,
    wait_for_http,
    write_campaign,
    write_config,
)
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.timeout(300)
A, B, C = "+919845040001", "+919845040002", "+919845040003"
FORMS_OF_A = ("+919845040001", "919845040001", "9845040001")  # E.164, digits, national
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
CONTACTS = f"""phone,name,timezone,alt_phone
{A},Asha,Asia/Kolkata,
{B},Ravi,Asia/Kolkata,098450 40001
{C},Meera,Asia/Kolkata,
+91 98450 40001,Asha again,Mars/Base,
"""


def pg_dump_command(server_major: int) -> list[str]:
    """The pg_dump for a server of this major version: this machine's or the embedded
    server's (pgserver), the closest not older than the server (a pg_dump refuses a newer
    server, and .ci/run may test against either)."""
    import pgserver

    candidates = [
        shutil.which("pg_dump"),
        str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"),
    ]

    def major(path: str | None) -> int:
        if path is None or not Path(path).exists():
            return -1
        said = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        found = re.search(r"(\d+)\.", said)
        return int(found.group(1)) if found else -1

    found = [(major(c), c) for c in candidates if c]  # each pg_dump asked its version once
    usable = sorted((version, c) for version, c in found if version >= server_major)
    assert usable, f"no pg_dump of version {server_major} or later"
    return [usable[0][1]]


async def server_major(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SHOW server_version_num")) // 10000


def dialer(tmp_path: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        dialer_command(*args), cwd=tmp_path, env=env, capture_output=True, timeout=200
    )


async def counts(db) -> list[tuple]:
    """What reports count: contacts by campaign and state, attempts by campaign and outcome."""
    rows = await db.fetch(
        """SELECT 'contacts', campaign_id, state, count(*) FROM contacts GROUP BY 2, 3
           UNION ALL
           SELECT 'attempts', campaign_id, coalesce(outcome, state), count(*) FROM attempts
           GROUP BY 2, 3 ORDER BY 1, 2, 3"""
    )
    return [tuple(r) for r in rows]


async def test_forget_erases_every_form_and_keeps_the_number_do_not_call(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    receiver = Receiver(SECRET)
    await receiver.start()
    port = free_port()
    # Each call lasts 16 s: the `forget` below must find A's call still in flight on a busy
    # machine, where starting its process alone may take seconds.
    sim_options = ("--rate", "20/s", "--channels", "4", "--ring", "1s..1s", "--talk", "15s..15s")
    with sim_provider(tmp_path, *sim_options, "--outcomes", "completed=1") as sim:
        config = write_config(tmp_path, sim, rate="20/s", channels=4, port=port)
        with config.open("a") as toml:
            toml.write(f'\n[[webhooks]]\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n')
        env = env_for(own_database_url, config)
        campaign = write_campaign(
            tmp_path, "erase", 0, csv_rows=[], call_limits=("8s", "30s", "2s")
        )
        (tmp_path / "erase.csv").write_text(CONTACTS)
        load(tmp_path, env, campaign)
        assert await own_db.fetchval("SELECT count(*) FROM load_rejects") == 1
        (tmp_path / "grants.csv").write_text(
            f"phone,scope,source\n{A},marketing,web form\n{B},marketing,web form\n"
        )
        assert dialer(tmp_path, env, "consent", "import", "grants.csv").returncode == 0
        exported = dialer(tmp_path, env, "export", "erase", "--out", "erase-results.csv")
        assert exported.returncode == 0, exported.stderr.decode()

        run = subprocess.Popen(
            dialer_command("run", "erase", "--serve", "--wait", "--for", "60s"),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "run.log").open("wb"),
        )
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        flying = """SELECT count(*) FROM attempts WHERE phone_e164 = $1
                    AND state IN ('dialing', 'accepted', 'ringing', 'in-progress')"""
        async with asyncio.timeout(60):
            while not await own_db.fetchval(flying, A):
                await asyncio.sleep(0.05)
        held = dialer(tmp_path, env, "forget", A, "--wait", "0", "--format", "json")
        assert held.returncode == 3, held.stderr.decode()
        said = json.loads(held.stdout)
        assert said["numbers"] == [{"number": A, "erased": False, "calls_in_flight": 1}]
        assert await own_db.fetchval("SELECT count(*) FROM contacts WHERE phone_e164 = $1", A)
        assert run.wait(timeout=120) in (0, 3), (tmp_path / "run.log").read_text()[-3000:]
    await receiver.stop()

    for table, column in (("call_events", "payload"), ("webhook_events", "payload")):
        mentions = await own_db.fetchval(
            f"SELECT count(*) FROM {table} WHERE {column}::text LIKE '%9845040001%'"
        )
        assert mentions > 0, table  # the number really was written there
    attempts_of_a = await own_db.fetchval("SELECT count(*) FROM attempts WHERE phone_e164 = $1", A)
    assert attempts_of_a == 1  # held: no second call after the erasure was asked
    before = await counts(own_db)

    erased = dialer(tmp_path, env, "forget", "098450 40001", "--region", "IN", "--format", "json")
    assert erased.returncode == 0, erased.stderr.decode()
    report = json.loads(erased.stdout)
    assert report["numbers"] == [{"number": A, "erased": True, "calls_in_flight": 0}]
    files = {(f["kind"], Path(f["path"]).name) for f in report["files"]}
    assert {
        ("contacts file", "erase.csv"),
        ("rejects", "erase.rejects.csv"),
        ("export", "erase-results.csv"),
    } <= files, files
    assert report["rows_changed"]["contacts"] >= 2  # A's own, and B's field naming A

    assert await counts(own_db) == before
    dump = subprocess.run(
        [*pg_dump_command(await server_major(own_db)), "--no-owner", own_database_url],
        capture_output=True,
        timeout=120,
    )
    assert dump.returncode == 0, dump.stderr.decode()
    text = dump.stdout.decode()
    for form in FORMS_OF_A:
        assert form not in text, f"{form} is still in the dump"
    assert B in text and C in text  # the dump is real: the others are there

    verified = dialer(tmp_path, env, "consent", "verify")
    assert verified.returncode == 0, verified.stdout.decode() + verified.stderr.decode()
    first = await own_db.fetchval("SELECT min(id) FROM consent_events")
    await own_db.execute(
        """SET session_replication_role = replica;
           UPDATE consent_events SET scope = 'surveys'
           WHERE id = (SELECT min(id) FROM consent_events);
           SET session_replication_role = origin"""
    )
    broken = dialer(tmp_path, env, "consent", "verify")
    assert (
        broken.returncode == 1 and f"row {first}" in broken.stdout.decode() + broken.stderr.decode()
    )

    again = write_campaign(tmp_path, "erase-again", 0, csv_rows=[])
    (tmp_path / "erase-again.csv").write_text(CONTACTS)
    load(tmp_path, env, again)
    states = dict(
        await own_db.fetch(
            """SELECT c.phone_e164, c.state FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
               WHERE k.name = 'erase-again'"""
        )
    )
    assert states == {A: "suppressed", B: "pending", C: "pending"}

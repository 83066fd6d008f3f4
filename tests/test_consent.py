"""The consent ledger: imported all or nothing, append-only, hash-chained (an edit, a deletion
or a move is found and named by `dialer consent verify`), and what a campaign that requires
consent may dial."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import asyncpg
import pytest

from dialer.cli.consent import STAGED_BATCH
from dialer.db.consent import LIVE_GRANT
from tests.processes import dialer_command, kill_when, values_seen_until_exit

GOOD = """phone,scope,action,source,evidence,occurred_at
+919845010001,marketing,grant,web form 12,I agree to be called,2026-11-01T10:00:00+05:30
+919845010002,marketing,grant,web form 12,I agree too,2026-11-01T11:00:00+05:30
+919845010003,marketing,grant,store,paper form,2026-11-02T09:00:00+05:30
"""


def write(tmp_path: Path, text: str, name: str = "consents.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def rows(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM consent_events")


async def live(db: asyncpg.Connection, phone: str, scope: str = "marketing") -> bool:
    query = "SELECT " + LIVE_GRANT.format(phone="$1::text", scope="$2::text")
    return await db.fetchval(query, phone, scope)


async def test_import_revoke_and_a_chain_that_verifies(run_cli, tmp_path: Path, db) -> None:
    result = run_cli("consent", "import", str(write(tmp_path, GOOD)), "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["appended"] == 3
    assert await rows(db) == 3 and await live(db, "+919845010002")
    result = run_cli("consent", "revoke", "+919845010002", "--scope", "marketing")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("consent in 'marketing' revoked for 1 numbers")
    assert not await live(db, "+919845010002") and await live(db, "+919845010001")
    assert not await live(db, "+919845010001", "surveys")  # another scope: never granted
    verified = run_cli("consent", "verify")
    assert verified.exit_code == 0 and "4 rows, chain intact" in verified.stdout
    # a national number is read in --region (every command that reads numbers takes it)
    again = run_cli(
        "consent",
        "revoke",
        "98450 10003",
        "--scope",
        "marketing",
        "--region",
        "in",
        "--format",
        "json",
    )
    assert json.loads(again.stdout) == {
        "scope": "marketing",
        "revoked": 1,
        "reservations_withdrawn": 0,
    }
    assert not await live(db, "+919845010003")
    verified = run_cli("consent", "verify", "--format", "json")
    assert verified.exit_code == 0
    assert json.loads(verified.stdout) == {"rows": 5, "intact": True, "broken_at": None}
    evidence = await db.fetchval(
        "SELECT evidence_sha256 FROM consent_events WHERE phone_e164 = '+919845010001'"
    )
    assert len(evidence) == 64  # the text's digest, not the text


@pytest.mark.parametrize(
    "line, where",
    [
        ("+919845010009,marketing,grant,web,x,2026-13-01T10:00:00+05:30", "line 3: occurred_at"),
        ("+919845010009,marketing,grant,web,x,2026-11-01T10:00:00", "line 3: occurred_at"),
        ("12,marketing,grant,web,x,2026-11-01T10:00:00+05:30", "line 3: phone"),
        ("+919845010009,Marketing!,grant,web,x,2026-11-01T10:00:00+05:30", "line 3: scope"),
        ("+919845010009,marketing,maybe,web,x,2026-11-01T10:00:00+05:30", "line 3: action"),
        ("+919845010009,marketing,grant,,x,2026-11-01T10:00:00+05:30", "line 3: source"),
        (
            "+919845010009,marketing,grant,sms from 98450 10009,x,2026-11-01T10:00+05:30",
            "line 3: source",
        ),
        # PostgreSQL cannot store a NUL byte; the row is named, not a traceback
        ("+919845010009,marketing,grant,web\x00form,x,2026-11-01T10:00+05:30", "line 3: source"),
        # year 1 at +14:00 is before year 1 in UTC: named, not an overflow
        ("+919845010009,marketing,grant,web,x,0001-01-01T00:00:00+14:00", "line 3: occurred_at"),
        ("+919845010009,marketing,grant,web,x,2026-11-01T10:00+05:30,more", "line 3: row"),
    ],
)
async def test_a_bad_row_writes_nothing_and_is_named(
    run_cli, tmp_path: Path, db, line: str, where: str
) -> None:
    before = await rows(db)
    text = GOOD.splitlines()[0] + "\n" + GOOD.splitlines()[1] + "\n" + line + "\n"
    result = run_cli("consent", "import", str(write(tmp_path, text, "bad.csv")))
    assert result.exit_code == 2, result.stdout + result.stderr
    assert f"bad.csv: {where}" in result.stderr and "nothing was written" in result.stderr
    assert await rows(db) == before


async def test_an_edited_deleted_or_moved_row_breaks_the_chain(
    own_database_url: str, own_db, tmp_path: Path, monkeypatch
) -> None:
    from tests.conftest import CliRunner, cli

    def invoke(*args: str):
        env = {"DIALER_DATABASE_URL": own_database_url}
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    async def dialer(*args: str):  # the command runs its own event loop: a thread of its own
        return await asyncio.to_thread(invoke, *args)

    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    assert (await dialer("consent", "import", str(write(tmp_path, GOOD)))).exit_code == 0
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own_db.execute("UPDATE consent_events SET source = 'forged' WHERE id = 2")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own_db.execute("DELETE FROM consent_events WHERE id = 2")
    # A superuser can go around the trigger; the chain still tells.
    await own_db.execute("ALTER TABLE consent_events DISABLE TRIGGER consent_events_append_only")
    await own_db.execute("UPDATE consent_events SET action = 'grant', source = 'x' WHERE id = 2")
    edited = await dialer("consent", "verify")
    assert edited.exit_code == 1
    assert "broken at row id 2 (row 2 of the chain)" in edited.stderr and "edited" in edited.stderr
    said = await dialer("consent", "verify", "--format", "json")
    assert said.exit_code == 1 and "broken at row id 2" in said.stderr
    broken = json.loads(said.stdout)
    assert (broken["intact"], broken["broken_at"]["row_id"]) == (False, 2), broken
    await own_db.execute("DELETE FROM consent_events WHERE id = 2")
    deleted = await dialer("consent", "verify")
    assert deleted.exit_code == 1 and "broken at row id 3" in deleted.stderr
    assert "deleted or moved" in deleted.stderr


async def test_undecodable_bytes_are_named_by_line(run_cli, tmp_path: Path, db) -> None:
    before = await rows(db)
    path = tmp_path / "latin.csv"
    path.write_bytes(GOOD.encode() + b"+919845010009,marketing,grant,caf\xe9,x,\n")
    result = run_cli("consent", "import", str(path))
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "latin.csv: line 5: bytes that are not valid utf-8" in result.stderr
    assert await rows(db) == before


async def test_many_bad_rows_are_counted_beyond_those_shown(run_cli, tmp_path: Path, db) -> None:
    before = await rows(db)
    text = GOOD + "".join("12,marketing,grant,web,x,\n" for _ in range(25))
    result = run_cli("consent", "import", str(write(tmp_path, text, "bad.csv")))
    assert result.exit_code == 2
    assert result.stderr.count("bad.csv: line ") == 20 and "... and 5 more" in result.stderr
    assert await rows(db) == before


async def test_a_long_file_is_appended_in_batches_as_one_chain(
    run_cli, tmp_path: Path, db, monkeypatch
) -> None:
    """Events wait in a staging file and are appended a batch at a time: the chain links
    across batches, in the file's order, in one transaction (one standing stamp)."""
    import dialer.cli.consent

    monkeypatch.setattr(dialer.cli.consent, "STAGED_BATCH", 2)
    lines = ["phone,scope,action,source,occurred_at"]
    for n in range(6):  # the same number granted and revoked in turn, ending revoked
        action = "grant" if n % 2 == 0 else "revoke"
        lines.append(f"+919845020001,batches,{action},form {n},2026-11-0{n + 1}T10:00:00+05:30")
    lines.append("+919845020002,batches,grant,form 6,2026-11-08T10:00:00+05:30")
    result = run_cli("consent", "import", str(write(tmp_path, "\n".join(lines) + "\n")))
    assert result.exit_code == 0, result.stderr
    stored = await db.fetch(
        "SELECT source, recorded_at FROM consent_events WHERE scope = 'batches' ORDER BY id"
    )
    assert [r["source"] for r in stored] == [f"form {n}" for n in range(7)]
    assert len({r["recorded_at"] for r in stored}) == 1  # one transaction, one stamp
    assert await live(db, "+919845020001", "batches") is False  # the last event: a revocation
    assert await live(db, "+919845020002", "batches")
    verified = run_cli("consent", "verify", "--format", "json")
    assert verified.exit_code == 0, verified.stderr
    assert json.loads(verified.stdout)["intact"] is True


@pytest.mark.parametrize(
    "name, said",
    [("missing.csv", "consent events file not found"), (".", "not a file")],
)
def test_a_path_that_is_no_consent_file_is_named(run_cli, name: str, said: str) -> None:
    result = run_cli("consent", "import", name)
    assert result.exit_code == 2 and f"{name}: {said}" in result.stderr, result.stderr


async def test_an_import_killed_between_its_batches_leaves_nothing(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    """A real `dialer consent import` killed with SIGKILL after its first batch is written
    and while the next is under way: PostgreSQL rolls all of it back. Run again to its end,
    read by another session all along, the ledger goes from none of its events to all of them
    at once, and the chain verifies."""
    events = 3 * STAGED_BATCH
    path = tmp_path / "grants.csv"
    path.write_text(
        "phone,scope,source\n"
        + "".join(f"+9198450{n:05d},killed,web form\n" for n in range(events))
    )
    stored = "SELECT count(*) FROM consent_events WHERE scope = 'killed'"
    env = os.environ | {"DIALER_DATABASE_URL": own_database_url}
    env.pop("DIALER_CONFIG", None)

    def start() -> asyncio.Future:
        return asyncio.create_subprocess_exec(
            *dialer_command("consent", "import", str(path)),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )

    first = await start()
    before = await own_db.fetchval("SELECT last_value FROM consent_events_id_seq")

    async def second_batch_begun() -> bool:
        # ids are drawn a batch at a time, outside the transaction: the second batch's ids
        # mean the first batch's rows are written (and not yet committed)
        drawn = await own_db.fetchval("SELECT last_value FROM consent_events_id_seq")
        return drawn >= before + 2 * STAGED_BATCH

    await kill_when(first, second_batch_begun, "the import's second batch")
    assert await own_db.fetchval(stored) == 0

    again = await start()
    seen = await values_seen_until_exit(again, lambda: own_db.fetchval(stored))
    assert again.returncode == 0, (await again.stderr.read()).decode()  # type: ignore[union-attr]
    assert seen == {0, events}, sorted(seen)
    verify = await asyncio.create_subprocess_exec(
        *dialer_command("consent", "verify"), cwd=tmp_path, env=env
    )
    assert await verify.wait() == 0


def test_a_full_temporary_folder_is_named(database_url: str, tmp_path: Path) -> None:
    """The checked events wait in a temporary file: a disk with no room for it ends the import
    with one line naming the folder (and TMPDIR), before anything is written."""
    from tests.processes import run_with_small_files

    path = tmp_path / "many.csv"
    path.write_text(
        "phone,scope,source\n"
        + "".join(f"+9198451{n:05d},full,web form\n" for n in range(5000))  # 250 KB staged
    )
    env = os.environ | {"DIALER_DATABASE_URL": database_url, "TMPDIR": str(tmp_path)}
    env.pop("DIALER_CONFIG", None)
    done = run_with_small_files(["consent", "import", str(path)], env, tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"cannot write the temporary folder {tmp_path} (set TMPDIR" in done.stderr
    assert "Traceback" not in done.stderr

"""`dialer export`: one CSV row per contact, original columns first, written whole or not at all."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.processes import write_campaign


def test_export_keeps_the_original_columns_and_values(run_cli, tmp_path: Path) -> None:
    rows = [
        'phone,name,timezone,"Plan, tier","He said ""hi"""',
        '+919845000111,Asha Iyer,Asia/Kolkata,"gold, yearly",ok',
        '+919845000222,Ravi,,basic,"multi\nline"',
        "+919845000333,Meera,Asia/Kolkata,ünïcode,",
    ]
    path = write_campaign(tmp_path, "exp", 0)
    (tmp_path / "exp.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert run_cli("campaign", "load", str(path)).exit_code == 0
    assert run_cli("dnc", "add", "+919845000333").exit_code == 0
    result = run_cli("export", "exp", "--out", str(tmp_path / "out.csv"))
    assert result.exit_code == 0, result.stderr
    assert not list(tmp_path.glob(".out.csv.partial*"))
    table = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_text(encoding="utf-8"))))
    assert table[0][:5] == ["phone", "name", "timezone", "Plan, tier", 'He said "hi"']
    assert table[0][5:] == [
        "dialer_phone_e164",
        "dialer_state",
        "dialer_final_outcome",
        "dialer_last_outcome",
        "dialer_attempts",
        "dialer_last_attempt_at",
        "dialer_talk_s",
        "dialer_next_attempt_at",
    ]
    body = {r[0]: r for r in table[1:]}
    assert len(body) == 3
    assert body["+919845000111"][1:5] == ["Asha Iyer", "Asia/Kolkata", "gold, yearly", "ok"]
    assert body["+919845000222"][4] == "multi\nline"
    assert body["+919845000333"][3] == "ünïcode"
    assert body["+919845000333"][6:8] == ["suppressed", "do-not-call"]
    assert body["+919845000111"][6:9] == ["pending", "", ""]
    stdout = run_cli("export", "exp")
    assert stdout.exit_code == 0 and stdout.stdout.splitlines()[0].startswith("phone,name")


def test_export_errors(run_cli, tmp_path: Path) -> None:
    assert run_cli("export", "nope", "--out", str(tmp_path / "x.csv")).exit_code == 2
    assert not (tmp_path / "x.csv").exists() and not list(tmp_path.glob(".x.csv*"))
    write_campaign(tmp_path, "exp2", 2)
    assert run_cli("campaign", "load", "exp2.toml").exit_code == 0
    missing_dir = run_cli("export", "exp2", "--out", str(tmp_path / "no" / "x.csv"))
    assert missing_dir.exit_code == 2 and "no/x.csv" in missing_dir.stderr


def test_out_is_a_file_it_replaces_whole_never_a_device_or_fifo(run_cli, tmp_path: Path) -> None:
    """The export is written beside --out and renamed onto it: a FIFO (or a device such as
    /dev/full, or /dev/stdout) would be replaced by a regular file, so it is refused; a
    symlink's file is written, the link kept."""
    import os
    import stat

    path = write_campaign(tmp_path, "outs", 2)
    assert run_cli("campaign", "load", str(path)).exit_code == 0
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    refused = run_cli("export", "outs", "--out", str(fifo))
    assert refused.exit_code == 2 and f"--out {fifo}: not a regular file" in refused.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # still the FIFO
    assert not list(tmp_path.glob(".pipe.csv.partial*"))
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    written = run_cli("export", "outs", "--out", str(tmp_path / "link.csv"))
    assert written.exit_code == 0, written.stderr
    assert (tmp_path / "link.csv").is_symlink()
    assert (tmp_path / "real.csv").read_text().startswith("phone,")


async def test_a_slow_reader_of_standard_output_holds_no_transaction_open(
    run_cli, own_database_url: str, own_db, tmp_path: Path
) -> None:
    """`dialer export CAMPAIGN | less`: the rows wait in a temporary file until the export's
    transaction has ended, so a person paging holds back no clean-up in PostgreSQL."""
    import os

    from dialer.demo_data import example_numbers
    from tests.processes import read_when_no_transaction_is_open

    env = {"DIALER_DATABASE_URL": own_database_url}
    # 5,000 rows of 4 KB: 20 MB, more than a pipe and the sockets' buffers between the
    # export and PostgreSQL hold (with less, the server's COPY ends before the reader waits)
    long_name = "n" * 4000
    rows = [f"{n},{long_name},UTC" for n in example_numbers("IN", 5000, seed=11)]
    path = write_campaign(tmp_path, "paged", 0, csv_rows=rows)
    assert run_cli("campaign", "load", str(path), env=env).exit_code == 0
    env = os.environ | env | {"DIALER_CONFIG": str(tmp_path / "dialer.toml")}
    code, text = await read_when_no_transaction_is_open(["export", "paged"], env, tmp_path, own_db)
    assert code == 0 and len(text.splitlines()) == 5001, len(text)


def test_a_full_disk_is_named_not_a_traceback(run_cli, database_url: str, tmp_path: Path) -> None:
    """The temporary file standard output's rows wait in, or --out's file, cannot grow (a full
    disk; here a 64 KB file size limit): the command names where it could not write, and
    leaves nothing half-written."""
    import os

    from dialer.demo_data import example_numbers
    from tests.processes import run_with_small_files

    rows = [f"{n},{'n' * 4000},UTC" for n in example_numbers("IN", 200, seed=12)]
    path = write_campaign(tmp_path, "full", 0, csv_rows=rows)  # 800 KB of results
    assert run_cli("campaign", "load", str(path)).exit_code == 0
    env = os.environ | {
        "DIALER_DATABASE_URL": database_url,
        "DIALER_CONFIG": str(tmp_path / "dialer.toml"),
        "TMPDIR": str(tmp_path),
    }

    for args, where in [
        (["export", "full"], f"cannot write the temporary folder {tmp_path}"),
        (["export", "full", "--out", "out.csv"], "cannot write --out out.csv: File too large"),
        (["report", "full", "--view", "contacts", "--format", "csv"], "temporary folder"),
    ]:
        done = run_with_small_files(args, env, tmp_path)
        assert done.returncode == 1 and where in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert not list(tmp_path.glob("*out.csv*"))  # neither the file nor its partial

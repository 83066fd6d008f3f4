"""CSV files as spreadsheets and broken exports make them: a bad cell rejects its row and never
the load; a bad header is named; what goes back out cannot run as a spreadsheet formula."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import asyncpg
import pytest

from dialer.loading.csv_source import MAX_LINE_CHARS
from dialer.loading.rows import MAX_FIELD_CHARS
from tests.loading.helpers import campaign_file, csv_file


def load(run_cli, tmp_path: Path, name: str, rows: list[str], header: str = "phone,name"):
    csv_file(tmp_path, rows, name=f"{name}.csv", header=header)
    return run_cli("campaign", "load", str(campaign_file(tmp_path, name, f"{name}.csv")))


async def contacts(db: asyncpg.Connection, campaign: str) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT c.row_no, c.phone_e164, c.name, c.priority FROM contacts c
           JOIN campaigns k ON k.id = c.campaign_id WHERE k.name = $1 ORDER BY c.row_no""",
        campaign,
    )


async def rejects(db: asyncpg.Connection, campaign: str) -> dict[int, str]:
    rows = await db.fetch(
        """SELECT r.row_no, r.reason FROM load_rejects r JOIN campaigns k ON k.id = r.campaign_id
           WHERE k.name = $1""",
        campaign,
    )
    return {r["row_no"]: r["reason"] for r in rows}


async def test_bad_cells_reject_their_row_and_never_the_load(run_cli, tmp_path: Path, db) -> None:
    rows = [
        "+919845000001,Good One,1",
        "+919845000002,Nul\x00Byte,1",
        "+919845000003,Huge Priority,99999999999",
        "+919845000004,Huge Negative,-99999999999999999999999999",
        "+919845000005," + "x" * (MAX_FIELD_CHARS + 1) + ",1",
        "+919845000006,Good Two,2147483647",
    ]
    result = load(run_cli, tmp_path, "cells", rows, header="phone,name,priority")
    assert result.exit_code == 0, result.stderr
    loaded = await contacts(db, "cells")
    assert [r["phone_e164"] for r in loaded] == ["+919845000001", "+919845000006"]
    assert loaded[1]["priority"] == 2147483647
    reasons = await rejects(db, "cells")
    assert "NUL byte in column 'name'" in reasons[3]
    assert "priority out of range" in reasons[4] and "priority out of range" in reasons[5]
    assert "field too long" in reasons[6] and "'name'" in reasons[6]
    report = (tmp_path / "cells.rejects.csv").read_text(encoding="utf-8")
    assert "\x00" not in report and "(65,537 characters)" in report  # kept short and clean


async def test_a_line_over_the_cap_is_rejected_without_keeping_it(
    run_cli, tmp_path: Path, db
) -> None:
    giant = "+919845000012," + "y" * (8 * MAX_LINE_CHARS)  # no newline for 8 MiB
    quoted = '+919845000013,"' + "z" * (2 * MAX_LINE_CHARS) + '"'
    rows = ["+919845000011,Before", giant, quoted, "+919845000014,After"]
    result = load(run_cli, tmp_path, "giant", rows)
    assert result.exit_code == 0, result.stderr
    assert [r["name"] for r in await contacts(db, "giant")] == ["Before", "After"]
    reasons = await rejects(db, "giant")
    assert set(reasons) == {3, 4}
    assert all("a line over 1,048,576 characters" in reason for reason in reasons.values())


@pytest.mark.parametrize(
    "header, problem",
    [
        ("phone,Email,email", "differ only in case (Email and email)"),
        ("phone,name,Name", "differ only in case (name and Name)"),
        ("phone," + ",".join(f"c{i}" for i in range(10_000)), "10,001 columns"),
        ("phone,bad\x00name", "control characters or NUL bytes"),
        ("phone," + "n" * 300, "over 200 characters"),
    ],
)
async def test_header_problems_exit_2_naming_the_columns(
    run_cli, tmp_path: Path, db, header: str, problem: str
) -> None:
    result = load(run_cli, tmp_path, "hdr", ["+919845000021,x"], header=header)
    assert result.exit_code == 2, result.stdout
    assert problem in result.stderr and "Traceback" not in result.stderr
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE name = 'hdr'") == 0


def read_export(run_cli, tmp_path: Path, campaign: str, *options: str) -> list[list[str]]:
    out = tmp_path / f"{campaign}-{len(options)}.csv"
    result = run_cli("export", campaign, "--out", str(out), *options)
    assert result.exit_code == 0, result.stderr
    return list(csv.reader(io.StringIO(out.read_bytes().decode(), newline="")))


async def test_long_column_names_survive_load_and_export(run_cli, tmp_path: Path) -> None:
    long_a = "Customer preferred contact channel for renewals (legacy CRM field) A"
    long_b = long_a[:-1] + "B"  # the same first 63 bytes: PostgreSQL would cut both alike
    result = load(run_cli, tmp_path, "longcols", ["+919845000031,x,y"], f"phone,{long_a},{long_b}")
    assert result.exit_code == 0, result.stderr
    table = read_export(run_cli, tmp_path, "longcols")
    assert table[0][:3] == ["phone", long_a, long_b]
    assert table[1][:3] == ["+919845000031", "x", "y"]


FORMULAS = ['=HYPERLINK("http://x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTab", "\rCR"]


def csv_rows(rows: list[list[str]]) -> list[str]:
    """Rows as a spreadsheet writes them (every value quoted, so a \\r inside one is data)."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(rows)
    return [text.getvalue().rstrip("\n")]


async def test_export_and_rejects_neutralise_formulas_unless_raw(run_cli, tmp_path: Path) -> None:
    rows = [[f"+91984500004{i}", "Name", value] for i, value in enumerate(FORMULAS)]
    rows.append(["=1+1", "bad row", "-9"])  # rejected: the phone is a formula
    result = load(run_cli, tmp_path, "formulas", csv_rows(rows), header="phone,name,=note")
    assert result.exit_code == 0, result.stderr
    table = read_export(run_cli, tmp_path, "formulas")
    assert table[0][2] == "'=note"
    assert [row[2] for row in table[1:]] == ["'" + value for value in FORMULAS]
    assert all(row[0].startswith("+91") for row in table[1:])  # plain numbers stay as they are
    raw = read_export(run_cli, tmp_path, "formulas", "--raw")
    assert [row[2] for row in raw[1:]] == FORMULAS and raw[0][2] == "=note"
    report = list(
        csv.reader(io.StringIO((tmp_path / "formulas.rejects.csv").read_bytes().decode()))
    )
    assert report[0][-1] == "'=note" and report[1][2] == "'=1+1" and report[1][4] == "-9"
    again = run_cli("campaign", "load", str(tmp_path / "formulas.toml"), "--raw")
    assert again.exit_code == 0
    report = list(
        csv.reader(io.StringIO((tmp_path / "formulas.rejects.csv").read_bytes().decode()))
    )
    assert report[1][2] == "=1+1"


async def test_report_csv_writes_structured_columns_as_json(run_cli, tmp_path: Path) -> None:
    result = load(run_cli, tmp_path, "structured", ["+919845000051,Asha,gold"], "phone,name,plan")
    assert result.exit_code == 0
    report = run_cli("report", "structured", "--view", "contacts", "--format", "csv")
    assert report.exit_code == 0, report.stderr
    (row,) = csv.DictReader(io.StringIO(report.stdout))
    assert json.loads(row["fields"]) == {"plan": "gold"}


async def test_line_ends_of_any_kind_and_a_bare_cr_in_a_cell(run_cli, tmp_path: Path, db) -> None:
    """Lines ending in CR alone (old Mac exports) load like any others; one bare CR inside an
    unquoted cell rejects that row only (a quoted one is the cell's own text)."""
    rows = ["+919845100001,Old Mac", "+919845100002,Also Mac"]
    (tmp_path / "mac.csv").write_bytes(("\r".join(["phone,name", *rows]) + "\r").encode())
    result = run_cli("campaign", "load", str(campaign_file(tmp_path, "mac", "mac.csv")))
    assert result.exit_code == 0, result.stderr
    assert [r["name"] for r in await contacts(db, "mac")] == ["Old Mac", "Also Mac"]

    text = 'phone,name\n+919845100011,One\n+919845100012,Bare\rCR\n+919845100013,"Quoted\rCR"\n'
    (tmp_path / "bare.csv").write_bytes(text.encode())
    result = run_cli("campaign", "load", str(campaign_file(tmp_path, "bare", "bare.csv")))
    assert result.exit_code == 0, result.stderr
    loaded = await contacts(db, "bare")
    assert [r["name"] for r in loaded] == ["One", "Quoted\rCR"]
    assert "carriage return" in (await rejects(db, "bare"))[3]


@pytest.mark.parametrize("order", ["utf-16-le", "utf-16-be"])
async def test_utf16_without_a_bom(run_cli, tmp_path: Path, db, order: str) -> None:
    """UTF-16 with ASCII text is also valid UTF-8 (a NUL between characters): read in the
    order its NUL bytes show when the campaign says utf-16; refused, naming it, otherwise."""
    name = f"wide-{order[-2:]}"
    text = "phone,name\n+919845200001,Wide One\n+919845200002,Wide Two\n"
    (tmp_path / f"{name}.csv").write_bytes(text.encode(order))
    plain = run_cli("campaign", "load", str(campaign_file(tmp_path, name, f"{name}.csv")))
    assert plain.exit_code == 2 and f'encoding = "{order}"' in plain.stderr, plain.stderr
    said = campaign_file(tmp_path, name, f"{name}.csv", extra='encoding = "utf-16"')
    result = run_cli("campaign", "load", str(said))
    assert result.exit_code == 0, result.stderr
    assert [r["name"] for r in await contacts(db, name)] == ["Wide One", "Wide Two"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
async def test_a_wide_file_with_its_bom_is_just_read(
    run_cli, tmp_path: Path, db, encoding: str
) -> None:
    """What Excel saves as "Unicode text" (UTF-16 with a BOM): read without being told, and
    the load summary says which encoding it read."""
    name = f"bom-{encoding.replace('-', '')}"
    text = "phone,name\n+919845300001,Wide Ä\n+919845300002,Wide Ω\n"
    bom = {"utf-16": b"", "utf-16-be": b"\xfe\xff", "utf-32": b""}[encoding]
    (tmp_path / f"{name}.csv").write_bytes(bom + text.encode(encoding))
    result = run_cli("campaign", "load", str(campaign_file(tmp_path, name, f"{name}.csv")))
    assert result.exit_code == 0, result.stderr
    assert "(utf-" in result.stdout, result.stdout
    assert [r["name"] for r in await contacts(db, name)] == ["Wide Ä", "Wide Ω"]

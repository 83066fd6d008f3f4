"""Writing campaign files and CSVs for loader tests."""

from __future__ import annotations

from pathlib import Path

CAMPAIGN = """\
name = "{name}"
account = "sim-main"
caller_id = "+918047112233"
contacts = "{csv}"
default_region = "IN"
timezone = "Asia/Kolkata"
{extra}
"""


def campaign_file(
    folder: Path, name: str = "renewals", csv: str = "contacts.csv", extra: str = ""
) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(CAMPAIGN.format(name=name, csv=csv, extra=extra), encoding="utf-8")
    return path


def csv_file(
    folder: Path, rows: list[str], name: str = "contacts.csv", header: str = "phone,name"
) -> Path:
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path

"""`dialer export CAMPAIGN [--out FILE.csv]`."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import click

from dialer.cli.context import AppContext, pass_app, run
from dialer.console import err
from dialer.db import erasure
from dialer.db.connect import session
from dialer.db.export import export_csv
from dialer.errors import InputError, naming_a_full_disk, the_temporary_folder


@click.command()
@click.argument("campaign")
@click.option(
    "--out",
    "out_path",
    metavar="FILE.csv",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write here (default: standard output). Written whole or not at all.",
)
@click.option(
    "--raw",
    is_flag=True,
    help="Write values exactly as loaded. By default a cell a spreadsheet would run as a"
    " formula (starting with = + - @, tab or CR, and not a plain number) gets a leading '.",
)
@pass_app
def export(app: AppContext, campaign: str, out_path: Path | None, raw: bool) -> None:
    """Write CAMPAIGN's results as CSV, one row per contact, for a CRM: the columns of the
    original CSV first (the phone column holds the E.164 number dialed), then dialer_state,
    dialer_final_outcome, dialer_last_outcome, dialer_attempts, dialer_last_attempt_at,
    dialer_talk_s, dialer_next_attempt_at and dialer_phone_e164.

    Streams from the database, so a million contacts take no more memory than ten. To
    standard output, the rows wait in a temporary file until the database has given them all:
    a reader paging slowly (`| less`) holds no transaction open.
    Exit codes: 0 written, 2 no such campaign or unwritable file, 1 other error.
    """
    given = out_path
    if out_path is not None:
        out_path = _file_to_replace(out_path)
    partial = out_path.with_name(f".{out_path.name}.partial-{os.getpid()}") if out_path else None
    written = 0

    # standard output's rows wait here until the export's transaction has ended
    spool = None if partial else tempfile.TemporaryFile("w+b")  # noqa: SIM115 (printed below)
    where = f"--out {given}" if partial else the_temporary_folder(", or give --out")

    async def go() -> None:
        nonlocal written
        try:
            handle = partial.open("wb") if partial else spool
        except OSError as exc:
            raise InputError(f"--out {out_path}: {exc.strerror}") from None
        assert handle is not None
        try:
            async with session(app.database_url) as conn:

                async def write(chunk: bytes) -> None:
                    nonlocal written
                    with naming_a_full_disk(where):
                        handle.write(chunk)
                    written += len(chunk)

                await export_csv(conn, campaign, write, raw=raw)
                with naming_a_full_disk(where):
                    handle.flush()  # the last bytes too, before the export is called done
                if out_path:  # the export holds numbers: erasure lists it
                    await erasure.record_file(conn, "export", str(out_path), campaign)
        finally:
            if partial:
                with contextlib.suppress(OSError):  # after a failed write: its error is told
                    handle.close()

    try:
        run(go())
    except BaseException:
        if partial:
            partial.unlink(missing_ok=True)
        if spool:
            with contextlib.suppress(OSError):  # a full disk: its buffer cannot be written
                spool.close()
        raise
    if spool:
        with spool:
            spool.seek(0)
            shutil.copyfileobj(spool, sys.stdout.buffer, 1 << 16)
        sys.stdout.buffer.flush()
    if partial and out_path:
        partial.replace(out_path)
        err.print(f"dialer: wrote {written:,} bytes to {given}")


def _file_to_replace(path: Path) -> Path:
    """The file `--out` names, through any symlink. The export is written beside it and then
    renamed onto it (whole or not at all), so it must be a regular file or not exist yet: a
    rename would put a file in place of a device (/dev/full), a FIFO or /dev/stdout."""
    target = path.resolve()
    if target.exists() and not target.is_file():
        raise InputError(
            f"--out {path}: not a regular file (the export would replace it); leave --out out"
            " to write to standard output"
        )
    return target

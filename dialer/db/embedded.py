"""The embedded PostgreSQL used when no database URL is configured (pgserver ships the binaries).

It lives in the user's data directory and is reused by later runs, so `dialer report` after
`dialer demo --keep` sees the same data.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

import platformdirs

from dialer.errors import DialerError

DATABASE_NAME = "dialer"


def data_dir() -> Path:
    """Where the embedded cluster lives (DIALER_HOME overrides, for tests and CI)."""
    base = os.environ.get("DIALER_HOME") or platformdirs.user_data_dir("dialer", appauthor=False)
    return Path(base) / "pgdata"


def start_embedded(stop_on_exit: bool = True) -> str:
    """Start (or attach to) the embedded server and return a URL to its `dialer` database."""
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver  # imported here: it is slow to import and only this path needs it

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pgdata = data_dir()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"dialer: no database URL configured; using embedded PostgreSQL in {pgdata}",
        file=sys.stderr,
    )
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop" if stop_on_exit else None)
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    except Exception as exc:  # pgserver raises bare subprocess/assert errors
        raise DialerError(f"could not start the embedded PostgreSQL in {pgdata}: {exc}") from exc
    return server.get_uri(DATABASE_NAME)

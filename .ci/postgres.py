"""Print a PostgreSQL URL for the test suite: $DIALER_TEST_DATABASE_URL, else 127.0.0.1:5432 if a
server answers there, else an embedded server (pgserver) started in .ci-pgdata/.

`python .ci/postgres.py stop` stops the embedded server if this script started one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
from pathlib import Path

import asyncpg

LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"
PGDATA = Path(__file__).resolve().parent.parent / ".ci-pgdata"


async def answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def main() -> None:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver

    if sys.argv[1:] == ["stop"]:
        if (PGDATA / "postmaster.pid").exists():
            pgserver.get_server(PGDATA, cleanup_mode="stop").cleanup()
        return
    url = os.environ.get("DIALER_TEST_DATABASE_URL")
    if url:
        print(url)
        return
    if asyncio.run(answers(LOCAL)):
        print(LOCAL)
        return
    print(f"no PostgreSQL on 127.0.0.1:5432; starting an embedded one in {PGDATA}", file=sys.stderr)
    server = pgserver.get_server(PGDATA, cleanup_mode=None)
    print(server.get_uri("postgres"))


if __name__ == "__main__":
    main()

"""Shared fixtures: a fresh PostgreSQL database per test module, and a CLI runner bound to it.

The server comes from $DIALER_TEST_DATABASE_URL (set by .ci/run), else 127.0.0.1:5432.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from click.testing import CliRunner

from dialer.cli import cli
from dialer.db import migrations
from dialer.db.connect import connect
from dialer.db.migrations import migrate

SERVER_URL = os.environ.get(
    "DIALER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def database_name(url: str) -> str:
    """The database a URL names: its path, whatever its query string holds (an embedded
    server's URL ends `?host=/some/dir`, so the text after the last '/' is not the name)."""
    return urlsplit(url).path.lstrip("/")


def database_url_for(name: str) -> str:
    """The server URL with its database name replaced (query string such as ?host= kept)."""
    head, _, query = SERVER_URL.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


# pg_advisory_lock key for building the migrated template ("dialTP"), never used elsewhere.
_TEMPLATE_LOCK = 0x6469616C5450
_template: str | None = None  # this test process's template, once it has made sure of it


def template_name() -> str:
    """The migrated template's name: a digest of every migration and of the code applying
    them, so that a changed migration is never served from an old template."""
    digest = hashlib.sha256(Path(migrations.__file__).read_bytes())
    for migration in migrations.discover():
        digest.update(f"{migration.name}\0{migration.sql}\0".encode())
    return f"dialer_tpl_{digest.hexdigest()[:16]}"


async def _migrated_template(admin: asyncpg.Connection) -> str:
    """A database migrated once, to clone: cloning it costs PostgreSQL half the CPU of
    migrating each new database (0.27 against 0.6 s a database here; a run makes about 185:
    144 tests with a database of their own, 41 modules). The first test process to need it
    builds it under a lock, under another name, and renames it only once it is complete; it
    then takes no connection (cloning needs none open). It is kept for the next run with the
    same migrations."""
    global _template
    if _template is not None:
        return _template
    name = template_name()
    await admin.execute("SELECT pg_advisory_lock($1)", _TEMPLATE_LOCK)
    try:
        if not await admin.fetchval("SELECT true FROM pg_database WHERE datname = $1", name):
            building = f"{name}_building"
            await admin.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{building}"')
            conn = await connect(database_url_for(building))
            try:
                await migrate(conn)
            finally:
                await conn.close()
            await admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    finally:
        await admin.execute("SELECT pg_advisory_unlock($1)", _TEMPLATE_LOCK)
    _template = name
    return name


async def _create(name: str, *, migrated: bool = True) -> None:
    """A new database; `migrated`: a clone of the migrated template with an installation
    identity of its own, as `dialer migrate` leaves a new database (tests/test_conftest.py
    compares the two)."""
    admin = await asyncpg.connect(SERVER_URL)
    try:
        template = await _migrated_template(admin) if migrated else None
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    if template is None:
        return
    conn = await connect(database_url_for(name))
    try:  # an identity of its own, as migrating makes one: webhook ids, the privacy key
        async with conn.transaction():
            await conn.execute("DELETE FROM dialer_install")
            await conn.execute("INSERT INTO dialer_install DEFAULT VALUES")
    finally:
        await conn.close()


async def _drop(name: str) -> None:
    admin = await asyncpg.connect(SERVER_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextmanager
def fresh_database(label: str, *, migrated: bool = True) -> Iterator[str]:
    """A new database on the test server, dropped afterwards; yields its URL."""
    raw = f"dialer_t_{label[:30].lower()}_{uuid.uuid4().hex[:8]}"
    name = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in raw)
    asyncio.run(_create(name, migrated=migrated))
    try:
        yield database_url_for(name)
    finally:
        asyncio.run(_drop(name))


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database of its own for each test module."""
    with fresh_database(request.module.__name__.rsplit(".", 1)[-1]) as url:
        yield url


@pytest.fixture
def own_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database for this one test (for tests that run whole campaigns)."""
    with fresh_database(request.node.name[:24]) as url:
        yield url


@pytest.fixture
async def own_db(own_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(own_database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A database with no schema at all (for migration tests)."""
    with fresh_database("empty", migrated=False) as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


TEST_CONFIG = """\
[accounts.sim-main]
kind = "sim"
base_url = "http://127.0.0.1:9"
secret = "test-secret"
rate = "10/s"
channels = 4
"""


@pytest.fixture
def run_cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Invoke `dialer ARGS...` in-process against this module's database."""
    monkeypatch.delenv("DIALER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    # Campaigns name their account, which must be in dialer.toml at load: the tests' campaigns
    # use `sim-main` (a test that writes its own dialer.toml replaces this one).
    config = tmp_path / "dialer.toml"
    if not config.exists():
        config.write_text(TEST_CONFIG)

    def invoke(*args: str, env: dict[str, str] | None = None) -> CliResult:
        environment = {"DIALER_DATABASE_URL": database_url} | (env or {})

        def call() -> CliResult:
            result = CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=False)
            return CliResult(result.exit_code, result.stdout, result.stderr)

        # A thread of its own, so commands (which start their own event loop) can be invoked
        # from async tests too.
        with ThreadPoolExecutor(1) as thread:
            return thread.submit(call).result()

    return invoke


# The modules whose tests take the longest (the real-process campaigns and faults), longest
# first: the workers (`-n`, a module each) start with them, so no long module starts last and
# keeps the suite waiting on one worker after the others are done. Any module not named keeps
# its place after these. The order, by the sum of a module's tests' wall time in one run of
# the suite (2026-12-07), holds only with `--no-loadscope-reorder` (.ci/run): by default
# pytest-xdist sends the modules with the most tests first, and the few long ones last.
LONGEST_FIRST = (
    "tests/dispatch/test_faults.py",
    "tests/dispatch/test_shared_runs.py",
    "tests/dispatch/test_faults_outside.py",
    "tests/providers/test_twilio.py",
    "tests/providers/test_callback_order.py",
    "tests/dispatch/test_lawful.py",
    "tests/webhooks/test_delivery_survives.py",
    "tests/providers/test_telecmi.py",
    "tests/dispatch/test_pools.py",
    "tests/dispatch/test_late_placement.py",
    "tests/db/test_contacts.py",
    "tests/test_settle.py",
    "tests/api/test_routes.py",
    "tests/dispatch/test_end_to_end.py",
    "tests/providers/test_ambiguous.py",
    "tests/providers/test_machine_detection.py",
    "tests/loading/test_loader.py",
    "tests/providers/test_exotel.py",
    "tests/db/test_due.py",
    "tests/test_packaging.py",
    "tests/callbacks/test_intake_fuzz.py",
    "tests/api/test_openapi.py",
    "tests/dispatch/test_lost_finals.py",
    "tests/providers/test_plivo.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent.parent

    def rank(item: pytest.Item) -> int:
        module = item.path.relative_to(root).as_posix()
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a module's tests keep their order


@pytest.fixture
def restartable_postgres(tmp_path: Path):
    """A PostgreSQL cluster of this test's own (pgserver's binaries), which it may restart:
    (its database URL, restart(mode))."""
    import pgserver
    from pgserver._commands import pg_ctl

    from dialer.db.migrations import migrate

    server = pgserver.get_server(tmp_path / "pgdata", cleanup_mode="delete")
    server.psql("CREATE DATABASE dialer_restart;")
    url = server.get_uri("dialer_restart")

    async def prepare() -> None:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(prepare())

    def restart(mode: str) -> None:
        """`fast` or `immediate`; `stop` stops the server, `start` starts it again (pg_ctl
        restart of a stopped server starts it with the options it last had)."""
        action = {"stop": ["-m", "fast", "stop"], "start": ["restart"]}.get(
            mode, ["-m", mode, "restart"]
        )
        pg_ctl(["-w", *action], pgdata=server.pgdata, user=server.system_user)

    try:
        yield url, restart
    finally:
        server.cleanup()

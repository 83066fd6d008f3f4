"""Starting dialer processes (sim provider, serve, run) for end-to-end tests."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from dialer.ports import free_port


def dialer_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dialer", *args]


def wait_for_http(url: str, timeout: float = 20.0) -> None:
    """Block until `url` answers (any status below 500)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextmanager
def background(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen]:
    """A process for the duration of a test, stopped (SIGTERM, then SIGKILL) afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextmanager
def sim_provider(tmp_path: Path, *options: str, secret: str = "sim-test-secret") -> Iterator[str]:
    port = free_port()
    command = dialer_command("sim-provider", "--port", str(port), "--secret", secret, *options)
    with background(command, tmp_path, dict(os.environ), tmp_path / "sim.log"):
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/stats")
        yield url


async def sim_stats(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/stats") as response:
        return await response.json()


def write_config(
    tmp_path: Path,
    sim_url: str,
    *,
    rate: str,
    channels: int,
    port: int,
    secret: str = "sim-test-secret",
    late_placement: str = "25s",
) -> Path:
    """dialer.toml with one sim account; its late_placement (policy.late) is the shortest
    allowed unless the test says otherwise, so ambiguous sends settle within the test."""
    path = tmp_path / "dialer.toml"
    path.write_text(
        f"""listen = "127.0.0.1:{port}"

[accounts.sim-main]
kind = "sim"
base_url = "{sim_url}"
secret = "{secret}"
rate = "{rate}"
channels = {channels}
late_placement = "{late_placement}"
"""
    )
    return path


def write_campaign(
    tmp_path: Path,
    name: str,
    contacts: int,
    *,
    window: str = 'start = "00:00", end = "23:59:59"',
    extra: str = "",
    csv_rows: list[str] | None = None,
    account: str = "sim-main",
    call_limits: tuple[str, str, str] = ("5s", "10s", "2s"),
    retry_extra: str = "",
    unknown_delay: str = "1s",
) -> Path:
    """A campaign file and its CSV; `call_limits` = ring timeout, max call length, settle grace."""
    from dialer.demo_data import write_contacts

    csv_path = tmp_path / f"{name}.csv"
    if csv_rows is None:
        write_contacts(csv_path, contacts, seed=hash(name) % 1000)
    else:
        csv_path.write_text("\n".join(["phone,name,timezone", *csv_rows]) + "\n")
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""name = "{name}"
account = "{account}"
caller_id = ["+918047112233", "+918047112234"]
contacts = "{name}.csv"
default_region = "IN"
timezone = "UTC"
ring_timeout = "{call_limits[0]}"
max_call_duration = "{call_limits[1]}"
settle_grace = "{call_limits[2]}"
window = {{ {window} }}
{extra}
[retry]
max_attempts = 3
busy = "1s"
no-answer = "1s"
failed = "never"
unknown = "{unknown_delay}"
{retry_extra}
"""
    )
    return path


async def until(check, what: str, within: float = 180.0, every: float = 0.05):
    """Wait for an event (a row written, a line logged, a process stopped): checked every
    `every` s and over as soon as it happens, so a slow machine only makes it later; after
    `within` s (generous, for a busy machine) the test fails naming what never happened."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within:g} s for {what}")
        await asyncio.sleep(every)


async def sim_quiet(url: str) -> dict:
    """Until the sim has nothing more to do (no call live, no callback still to send): what
    any request it received causes has happened. Its stats then."""

    async def quiet() -> dict | None:
        stats = await sim_stats(url)
        return stats if stats["quiet"] else None

    return await until(quiet, "the sim provider to have no call live and no callback to send")


async def attempts_requested(db, at_least: int, campaign: str | None = None) -> int:
    """Until at least `at_least` attempts (of `campaign`) have reached their provider request:
    the campaign is under way."""
    query = "SELECT count(*) FROM attempts a JOIN campaigns k ON k.id = a.campaign_id"
    query += " WHERE a.requested_at IS NOT NULL AND ($1::text IS NULL OR k.name = $1)"

    async def enough() -> int:
        count = await db.fetchval(query, campaign)
        return count if count >= at_least else 0

    return await until(enough, f"{at_least} attempts requested")


async def attempts_requested_at(url: str, at_least: int) -> int:
    """attempts_requested, each look on a connection of its own (for tests whose faults cut
    or restart the server: a look between two faults)."""
    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(url)
        try:
            found = await conn.fetchval(
                "SELECT count(*) FROM attempts WHERE requested_at IS NOT NULL"
            )
        finally:
            await conn.close()
        return found if found >= at_least else 0

    return await until(count, f"{at_least} attempts requested")


async def read_when_no_transaction_is_open(
    args: list[str], env: dict[str, str], cwd: Path, db: object
) -> tuple[int, bytes]:
    """Run `dialer ARGS` with its standard output read by a slow reader: nothing is read past
    the first byte until no other session of the database (`db`, an asyncpg connection) has
    a transaction open, so a command that keeps its transaction open while its reader waits
    fails here (waited 30 s). Its exit code and everything it printed."""
    listing = await asyncio.create_subprocess_exec(
        *dialer_command(*args),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert listing.stdout is not None
    others = """SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND xact_start IS NOT NULL"""

    async def none_open() -> bool:
        return await db.fetchval(others) == 0  # type: ignore[attr-defined]

    try:
        first = await asyncio.wait_for(listing.stdout.read(1), 120)  # printing has begun
        await until(none_open, "no transaction of the command's left open", within=30)
        text = first + await listing.stdout.read()  # the reader reads at last
        return await listing.wait(), text
    finally:
        if listing.returncode is None:
            listing.kill()
            await listing.communicate()  # its pipe read to the end, or wait() never returns


def run_with_small_files(
    args: list[str], env: dict[str, str], cwd: Path, most_bytes: int = 64 * 1024
) -> subprocess.CompletedProcess[str]:
    """`dialer ARGS` with no file it writes allowed past `most_bytes` (RLIMIT_FSIZE): a full
    disk, as far as the command can tell (its writes fail with EFBIG)."""
    import resource

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (most_bytes, resource.RLIM_INFINITY))

    return subprocess.run(
        dialer_command(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=small_files,
    )


async def kill_when(process: asyncio.subprocess.Process, happened, what: str) -> None:
    """SIGKILL `process` as soon as `happened()` (an event of its work, seen from outside) is
    true, and see it die of it; it must not end on its own first."""

    async def caught() -> bool:
        assert process.returncode is None, f"it ended before {what}"
        result = happened()
        return bool(await result if inspect.isawaitable(result) else result)

    try:
        await until(caught, what, every=0.01)
        process.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(process.wait(), 30) == -signal.SIGKILL
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def values_seen_until_exit(process: asyncio.subprocess.Process, read) -> set:
    """Every value `read()` (a query from another session) gives while `process` runs and
    once after it ends: what others could see of its work, commit by commit."""
    seen: set = set()

    async def ended() -> bool:
        seen.add(await read())
        return process.returncode is not None

    await until(ended, "the process to end", every=0.01)
    seen.add(await read())
    return seen

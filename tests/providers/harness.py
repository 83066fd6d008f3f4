"""A whole campaign through real processes against a fake provider.

The fake runs in the test's event loop (so its statistics can be read directly); `dialer serve`
and `dialer run` are separate processes started with asyncio, so the loop keeps serving the
fake while they work. The fake's decisions, call by call, are what the database must record.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from tests.fakes.engine import FakeProvider
from tests.processes import dialer_command, free_port, write_campaign

FINAL_CONTACT_STATES = {"done", "exhausted", "failed"}


@asynccontextmanager
async def serving(fake: FakeProvider | web.Application) -> AsyncIterator[str]:
    """The fake provider (or any aiohttp app) on a free local port; yields its base URL."""
    runner = web.AppRunner(fake if isinstance(fake, web.Application) else fake.app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Workspace:
    """Where a test's dialer processes run: folder, database, config, callback port."""

    tmp_path: Path
    database_url: str
    serve_port: int

    @property
    def callback_base(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def env(self) -> dict[str, str]:
        return os.environ | {
            "DIALER_DATABASE_URL": self.database_url,
            "DIALER_CONFIG": str(self.tmp_path / "dialer.toml"),
        }

    def configure(self, account: str, account_toml: str, late_placement: str = "25s") -> None:
        """dialer.toml with one account; its late_placement (policy.late) is the shortest
        allowed unless the test says otherwise, so ambiguous sends settle within the test."""
        if "late_placement" not in account_toml:
            account_toml += f'\nlate_placement = "{late_placement}"'
        (self.tmp_path / "dialer.toml").write_text(
            f'listen = "127.0.0.1:{self.serve_port}"\n\n[accounts.{account}]\n{account_toml}\n'
        )

    async def dialer(self, *args: str, limit_s: float = 240) -> tuple[int, str]:
        """Run `dialer ARGS...` to completion; (exit code, its output)."""
        process = await asyncio.create_subprocess_exec(
            *dialer_command(*args),
            cwd=self.tmp_path,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), limit_s)
        except TimeoutError:
            process.kill()
            output, _ = await process.communicate()
            return -9, output.decode(errors="replace")
        return process.returncode or 0, output.decode(errors="replace")

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[None]:
        log = (self.tmp_path / "serve.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            *dialer_command("serve"), cwd=self.tmp_path, env=self.env, stdout=log, stderr=log
        )
        try:
            await _wait_healthy(f"{self.callback_base}/healthz")
            yield
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()
            log.close()

    def serve_log(self) -> str:
        return (self.tmp_path / "serve.log").read_text(errors="replace")

    def assert_logs_free_of(self, *secrets: str) -> None:
        """No secret in anything the dialer processes printed."""
        logs = self.serve_log() + (self.tmp_path / "run.log").read_text(errors="replace")
        assert logs.strip()
        for secret in secrets:
            assert secret not in logs

    async def load(self, name: str, account: str, *, count: int = 0, **options) -> None:
        """Write and load a campaign (options: csv_rows, extra, call_limits of write_campaign)."""
        path = write_campaign(self.tmp_path, name, count, account=account, **options)
        code, output = await self.dialer("campaign", "load", str(path))
        assert code == 0, output

    async def run_campaign(self, name: str) -> tuple[int, str]:
        async with self.serve():
            code, output = await self.dialer("run", name, "--wait", "--dial-cap", "5")
        (self.tmp_path / "run.log").write_text(output)
        return code, output


async def _wait_healthy(url: str) -> None:
    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def attempts_of(db: asyncpg.Connection, campaign: str) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT a.id, a.contact_id, a.attempt_no, a.state, a.outcome, a.provider_call_id,
                  a.phone_e164, a.error, a.duration_s
           FROM attempts a JOIN campaigns k ON k.id = a.campaign_id WHERE k.name = $1
           ORDER BY a.id""",
        campaign,
    )


async def check_against_fake(db: asyncpg.Connection, campaign: str, stats: dict) -> Counter:
    """Every contact settled; every call the fake placed is one attempt, sent once, whose
    outcome is the one the fake decided (as the provider can report it). Returns outcomes."""
    contacts = await db.fetch(
        """SELECT c.state, count(*) FROM contacts c JOIN campaigns k ON k.id = c.campaign_id
           WHERE k.name = $1 GROUP BY 1""",
        campaign,
    )
    assert {r["state"] for r in contacts} <= FINAL_CONTACT_STATES, contacts
    attempts = {a["id"]: a for a in await attempts_of(db, campaign)}
    assert all(count == 1 for count in stats["per_attempt"].values()), stats["per_attempt"]
    placed = [c for c in stats["calls"].values() if c["attempt_id"] is not None]
    assert len(placed) == len(stats["calls"]), "the fake could not tell an attempt id"
    for call in placed:
        attempt = attempts[call["attempt_id"]]
        assert attempt["outcome"] == call["reported"], (dict(attempt), call)
        assert attempt["phone_e164"] == call["to"]
    dialed = [a for a in attempts.values() if a["state"] not in ("not_dialed", "rejected")]
    assert len(dialed) == len(placed), (len(dialed), len(placed))
    pairs = Counter((a["contact_id"], a["attempt_no"]) for a in attempts.values())
    assert max(pairs.values()) == 1
    return Counter(a["outcome"] for a in attempts.values())

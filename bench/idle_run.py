"""Benchmark: what a `dialer run` costs PostgreSQL while it waits, with a big campaign whose
every contact waits out a retry delay (or its window), so each claim round finds nothing.

    python bench/idle_run.py BASE_REV [--contacts 1000000] [--rounds 2] [--seconds 30]

One campaign of N pending contacts, each due again in an hour. The base revision's `dialer run`
and this tree's, alternately, each stopped (SIGTERM) after `--seconds`: PostgreSQL's CPU
seconds over that time (all of this machine's PostgreSQL processes: run it on a quiet one), and
the contact rows PostgreSQL read meanwhile (pg_stat_user_tables: rows read by sequential
scans, and by index scans from the table). Medians of the rounds. Nothing is dialed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (
    ROOT,
    base_tree,
    create_database,
    drop_database,
    median,
    postgres_cpu,
    write_section,
)
from dialing import SECRET, dialer, sim_command, start

from tests.processes import free_port, wait_for_http


def write_files(folder: Path, sim_port: int) -> None:
    (folder / "dialer.toml").write_text(
        f'[accounts.sim-main]\nkind = "sim"\nbase_url = "http://127.0.0.1:{sim_port}"\n'
        f'secret = "{SECRET}"\nrate = "10/s"\nchannels = 10\n'
    )
    (folder / "idle.csv").write_text("phone,name\n+919800000001,first\n")
    (folder / "idle.toml").write_text(
        'name = "idle"\naccount = "sim-main"\ncaller_id = "+918047112233"\n'
        'contacts = "idle.csv"\ndefault_region = "IN"\ntimezone = "UTC"\n'
        'window = { start = "00:00", end = "23:59:59" }\n[retry]\nmax_attempts = 3\n'
    )


async def seed(url: str, count: int) -> None:
    """`count` more contacts of the campaign, every one due again in an hour."""
    conn = await asyncpg.connect(url)
    try:
        campaign = await conn.fetchval("SELECT id FROM campaigns WHERE name = 'idle'")
        await conn.execute(
            f"""INSERT INTO contacts (campaign_id, row_no, phone_e164, timezone)
                SELECT $1, n + 2, '+9197' || lpad(n::text, 8, '0'), 'Asia/Kolkata'
                FROM generate_series(1, {count}) n""",
            campaign,
        )
        await conn.execute(
            "UPDATE contacts SET next_attempt_at = now() + interval '1 hour', attempts = 1"
        )
        await conn.execute("VACUUM ANALYZE contacts")
    finally:
        await conn.close()


async def rows_read(url: str) -> int:
    """Contact rows read from the table so far, by sequential and index scans."""
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(
            """SELECT seq_tup_read + coalesce(idx_tup_fetch, 0)
               FROM pg_stat_user_tables WHERE relname = 'contacts'"""
        )
    finally:
        await conn.close()


def idle_run(folder: Path, env: dict, tree: Path, seconds: float, url: str) -> tuple[float, int]:
    """(PostgreSQL CPU seconds, contact rows read) while one `dialer run` of `tree` waits
    `seconds`."""
    read_before = asyncio.run(rows_read(url))
    cpu_before = postgres_cpu()
    run = subprocess.Popen(
        dialer("run", "idle", "--for", "2h", "--log-level", "warning"),
        cwd=folder,
        env=env | {"PYTHONPATH": str(tree)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(seconds)
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=60)
    time.sleep(1.5)  # the statistics of the run's last statements reach pg_stat
    return postgres_cpu() - cpu_before, asyncio.run(rows_read(url)) - read_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with base_tree(args.base) as base:
        name, url = create_database()
        folder = Path(tempfile.mkdtemp(prefix="bench-idle-"))
        sim_port = free_port()
        config = str(folder / "dialer.toml")
        env = os.environ | {"DIALER_DATABASE_URL": url, "DIALER_CONFIG": config}
        write_files(folder, sim_port)
        sim = start(sim_command(sim_port), folder, env, "sim.log")
        results: dict[str, list[tuple[float, int]]] = {"base": [], "new": []}
        try:
            wait_for_http(f"http://127.0.0.1:{sim_port}/stats")
            load = dialer("campaign", "load", "idle.toml")
            subprocess.run(load, cwd=folder, env=env, check=True, capture_output=True)
            asyncio.run(seed(url, args.contacts))
            for _ in range(args.rounds):
                results["base"].append(idle_run(folder, env, base, args.seconds, url))
                results["new"].append(idle_run(folder, env, ROOT, args.seconds, url))
        finally:
            sim.terminate()
            sim.wait()
            drop_database(name)
    rows = []
    for side, label in (("base", args.base), ("new", "this tree")):
        cpu = median([r[0] for r in results[side]])
        read = median([r[1] for r in results[side]]) / 1e6
        per = ", ".join(f"{r[0]:.1f} s / {r[1] / 1e6:.1f}M" for r in results[side])
        rows.append(f"| {label} | {cpu:.1f} | {cpu / args.seconds:.0%} | {read:.1f} | {per} |")
    body = f"""
Command: `python bench/idle_run.py {args.base} --contacts {args.contacts} --rounds {args.rounds}
--seconds {args.seconds:g}` — one campaign of {args.contacts + 1:,} contacts, every one due again
in an hour; one `dialer run` at a time waits {args.seconds:g} s, then SIGTERM; the base and
this tree alternately, medians of {args.rounds}.

| run | PostgreSQL CPU, s | of one core | contact rows read, millions | per round (CPU / rows) |
|---|---|---|---|---|
{chr(10).join(rows)}
"""
    print(body)
    write_section("What a waiting run costs PostgreSQL (issue 16)", body)


if __name__ == "__main__":
    main()

"""Benchmark (issue 6): a campaign whose provider loses a tenth of its final callbacks, side by
side with the same campaign losing none.

    python bench/lost_callbacks.py [--contacts 300] [--repeat 3]

Each round runs both cases (alternating which goes first) against a fresh database: the sim at
20/s and 8 channels, ring 0.2-1 s, talk 0.5-2.5 s, `--lose-final 0.1` for the lossy case;
`dialer run --wait` (callbacks through a separate `dialer serve`) timed from start to exit.
Silent calls are found by the reconciler's early look-ups (dialer/policy/lookups.py). Target:
median lossy / median lossless <= 1.5, every outcome equal to the sim's. Medians are written
to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import create_database, drop_database, median, write_section
from dialing import dialer, sim_command, start, stats

from tests.processes import free_port, wait_for_http

SECRET = "bench-secret"
CAMPAIGN = """name = "lossy"
account = "sim-main"
caller_id = "+918047112233"
contacts = "lossy.csv"
default_region = "IN"
timezone = "UTC"
ring_timeout = "2s"
max_call_duration = "5s"
settle_grace = "5s"
window = { start = "00:00", end = "23:59:59" }
[retry]
max_attempts = 1
"""


async def mismatches(url: str, seen: dict) -> int:
    """Attempts whose outcome differs from the sim's, plus sim calls no attempt recorded."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT provider_call_id, outcome FROM attempts")
    finally:
        await conn.close()
    ours = {r["provider_call_id"]: r["outcome"] for r in rows if r["provider_call_id"]}
    calls = seen["calls"]
    return sum(ours.get(cid) != call["outcome"] for cid, call in calls.items()) + sum(
        cid not in calls for cid in ours
    )


def one_run(contacts: int, lose: float) -> dict:
    name, url = create_database()
    folder = Path(tempfile.mkdtemp(prefix="bench-lossy-"))
    sim_port, serve_port = free_port(), free_port()
    env = os.environ | {"DIALER_DATABASE_URL": url, "DIALER_CONFIG": str(folder / "dialer.toml")}
    (folder / "dialer.toml").write_text(
        f'listen = "127.0.0.1:{serve_port}"\n\n[accounts.sim-main]\nkind = "sim"\n'
        f'base_url = "http://127.0.0.1:{sim_port}"\nsecret = "{SECRET}"\nrate = "20/s"\n'
        "channels = 8\n"
    )
    with (folder / "lossy.csv").open("w") as handle:
        handle.write("phone,name\n")
        for i in range(contacts):
            handle.write(f"+9198{i + 20_000_000:08d},c{i}\n")
    (folder / "lossy.toml").write_text(CAMPAIGN)
    options = ["--rate", "20/s", "--channels", "8", "--ring", "0.2s..1s", "--talk", "0.5s..2.5s"]
    sim = start(sim_command(sim_port, *options, "--lose-final", str(lose)), folder, env, "sim.log")
    try:
        wait_for_http(f"http://127.0.0.1:{sim_port}/stats")
        subprocess.run(
            dialer("campaign", "load", "lossy.toml"),
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
        serve = start(dialer("serve", "--log-level", "warning"), folder, env, "serve.log")
        wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
        started = time.perf_counter()
        run = subprocess.run(
            dialer("run", "lossy", "--wait", "--log-level", "warning"),
            cwd=folder,
            env=env,
            capture_output=True,
        )
        elapsed = time.perf_counter() - started
        serve.terminate()
        serve.wait()
        seen = asyncio.run(stats(sim_port))
        wrong = asyncio.run(mismatches(url, seen))
    finally:
        sim.terminate()
        sim.wait()
        drop_database(name)
    return {
        "seconds": elapsed,
        "code": run.returncode,
        "calls": seen["accepted"],
        "lost": seen.get("finals_lost", 0),
        "wrong": wrong,
    }


def table_row(lose: float, results: list[dict]) -> str:
    times = [r["seconds"] for r in results]
    each = ", ".join(f"{t:.1f}" for t in times)
    lost, wrong = sum(r["lost"] for r in results), sum(r["wrong"] for r in results)
    codes = sorted({r["code"] for r in results})
    return f"| {lose:.0%} | {each} | {median(times):.1f} s | {lost} | {wrong} | {codes} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs: dict[float, list[dict]] = {0.0: [], 0.1: []}
    for round_no in range(args.repeat):
        order = (0.0, 0.1) if round_no % 2 == 0 else (0.1, 0.0)
        for lose in order:
            result = one_run(args.contacts, lose)
            runs[lose].append(result)
            print(f"round {round_no + 1} lose={lose}: {result}", flush=True)
    lossless = median([r["seconds"] for r in runs[0.0]])
    lossy = median([r["seconds"] for r in runs[0.1]])
    rows = "\n".join(table_row(lose, results) for lose, results in runs.items())
    body = f"""
Command: `python bench/lost_callbacks.py --contacts {args.contacts} --repeat {args.repeat}` —
one attempt per contact, sim at 20/s and 8 channels, ring 0.2–1 s, talk 0.5–2.5 s; campaign
ring timeout 2 s, max call 5 s. Rounds alternate which case goes first; each case on a fresh
database; `dialer run --wait` timed from start to exit, callbacks through `dialer serve`.

| finals lost | elapsed per round | median | lost (sim) | outcomes wrong | exits |
|---|---|---|---|---|---|
{rows}

**Median with 10% lost ÷ median with none: {lossy / lossless:.2f}** (target ≤ 1.5).
"""
    print(body)
    write_section("Lost final callbacks (issue 6)", body)


if __name__ == "__main__":
    main()

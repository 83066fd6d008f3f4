"""Benchmarks of the dialing loop (issue 2), each against real processes on loopback:

    python bench/dialing.py makespan   # 3,000 contacts, sim at 50/s and 40 channels
    python bench/dialing.py ceiling    # attempts/s with no provider limits, 1 and 2 processes,
                                       # beside a bare aiohttp client's POST rate to the same sim
    python bench/dialing.py intake     # callbacks/s stored by `dialer serve`, nothing lost,
                                       # beside a bare aiohttp server reading the same bodies
    python bench/dialing.py all

Results are printed and written to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (
    create_database,
    drop_database,
    median,
    postgres_cpu,
    wait_until_listening,
    write_section,
)

from dialer.providers.secrets import derive_token
from dialer.sim.server import sign
from tests.processes import free_port, wait_for_http

SECRET = "bench-secret"
WORKERS = 2  # `dialer serve --workers 2`: one process per core


def dialer(*args: str) -> list[str]:
    return [sys.executable, "-m", "dialer", *args]


def start(command: list[str], cwd: Path, env: dict, log: str) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=(cwd / log).open("wb")
    )


def write_files(
    folder: Path,
    name: str,
    contacts: int,
    sim_port: int,
    serve_port: int,
    *,
    rate: str,
    channels: int,
    max_attempts: int = 1,
    accounts: int = 1,
) -> None:
    """dialer.toml with `accounts` sim accounts (sim-main, sim-2, ...), each at `rate` and
    `channels`; the campaign dials through all of them (a pool) when there are several."""
    names = ["sim-main", *(f"sim-{i}" for i in range(2, accounts + 1))]
    (folder / "dialer.toml").write_text(
        f'listen = "127.0.0.1:{serve_port}"\n'
        + "".join(
            f'\n[accounts.{account}]\nkind = "sim"\n'
            f'base_url = "http://127.0.0.1:{sim_port}"\nsecret = "{SECRET}"\nrate = "{rate}"\n'
            f"channels = {channels}\n"
            for account in names
        )
    )
    pool = "accounts = [" + ", ".join(f'"{a}"' for a in names) + "]\n" if accounts > 1 else ""
    with (folder / f"{name}.csv").open("w") as handle:
        handle.write("phone,name\n")
        for i in range(contacts):
            handle.write(f"+9198{i + 10_000_000:08d},c{i}\n")
    (folder / f"{name}.toml").write_text(
        f'name = "{name}"\naccount = "sim-main"\n{pool}caller_id = "+918047112233"\n'
        f'contacts = "{name}.csv"\ndefault_region = "IN"\ntimezone = "UTC"\n'
        'ring_timeout = "5s"\nmax_call_duration = "10s"\nsettle_grace = "5s"\n'
        'window = { start = "00:00", end = "23:59:59" }\n'
        f"[retry]\nmax_attempts = {max_attempts}\n"
    )


def sim_command(port: int, *options: str) -> list[str]:
    return dialer("sim-provider", "--port", str(port), "--secret", SECRET, *options)


async def stats(port: int) -> dict:
    url = f"http://127.0.0.1:{port}/stats"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


def makespan(contacts: int = 3000) -> str:
    name, url = create_database()
    folder = Path(tempfile.mkdtemp(prefix="bench-makespan-"))
    sim_port, serve_port = free_port(), free_port()
    env = os.environ | {"DIALER_DATABASE_URL": url, "DIALER_CONFIG": str(folder / "dialer.toml")}
    write_files(folder, "makespan", contacts, sim_port, serve_port, rate="50/s", channels=40)
    sim = start(
        sim_command(
            sim_port,
            "--rate",
            "50/s",
            "--channels",
            "40",
            "--ring",
            "0.2s..1s",
            "--talk",
            "0.5s..2.5s",
            "--outcomes",
            "completed=0.7,no-answer=0.2,busy=0.1",
        ),
        folder,
        env,
        "sim.log",
    )
    try:
        wait_for_http(f"http://127.0.0.1:{sim_port}/stats")
        subprocess.run(
            dialer("campaign", "load", "makespan.toml"),
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
        serve = start(dialer("serve", "--log-level", "warning"), folder, env, "serve.log")
        wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
        started = time.perf_counter()
        run = subprocess.run(
            dialer("run", "makespan", "--wait", "--log-level", "warning"),
            cwd=folder,
            env=env,
            capture_output=True,
        )
        elapsed = time.perf_counter() - started
        serve.terminate()
        serve.wait()
        seen = asyncio.run(stats(sim_port))
    finally:
        sim.terminate()
        sim.wait()
        drop_database(name)
    calls = seen["accepted"]
    refused = f"{seen.get('rejected_rate', 0)} / {seen.get('rejected_channels', 0)}"
    bound = max(calls / 50, seen["call_seconds"] / 40)
    result = f"""
Command: `python bench/dialing.py makespan` — {contacts} contacts, one attempt each, sim at
50/s and 40 channels, ring 0.2–1 s, talk 0.5–2.5 s; `dialer run --wait` timed from process
start to exit (exit code {run.returncode}), callbacks through a separate `dialer serve`.

| measure | value |
|---|---|
| calls placed (sim count) | {calls} |
| channel time used (sim, sum of call lifetimes) | {seen["call_seconds"]:.1f} s |
| lower bound max(N ÷ rate, channel time ÷ channels) | {bound:.1f} s |
| elapsed | {elapsed:.1f} s |
| **ratio elapsed ÷ bound** (target ≤ 1.10) | **{elapsed / bound:.3f}** |
| peak requests in any 1 s (sim) | {seen["peak_requests_per_second"]} (limit 50) |
| peak concurrent calls (sim) | {seen["peak_concurrency"]} (limit 40) |
| requests refused by the sim (rate / channels) | {refused} |
"""
    print(result)
    write_section("Dialing makespan (issue 2)", result)
    return result


async def bare_posts(port: int, count: int, concurrency: int = 100) -> float:
    """Requests/s of a bare aiohttp client creating calls on the sim (no database at all)."""
    body = {
        "to": "+919800000000",
        "from": "+918047112233",
        "status_callback": "http://127.0.0.1:9/x",
    }
    headers = {"Authorization": f"Bearer {SECRET}"}
    queue = iter(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for _ in queue:
                async with session.post(
                    f"http://127.0.0.1:{port}/v1/calls", json=body, headers=headers
                ) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


async def dial_span(url: str) -> tuple[int, float]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            """SELECT count(*) AS n, extract(epoch FROM max(requested_at) - min(requested_at)) AS s
               FROM attempts WHERE state <> 'not_dialed'"""
        )
        return row["n"], float(row["s"] or 0)
    finally:
        await conn.close()


PROCESSES = {"one": 1, "two": 2, "four": 4}  # `dialer run` processes on the one account
# and one process on four accounts: no account's rate binds it, its own CPU does
SENDERS = {label: (processes, 1) for label, processes in PROCESSES.items()} | {"pool": (1, 4)}


def ceiling(contacts: int = 9000, rounds: int = 3) -> str:
    measured: dict[str, list[float]] = {"bare": [], **{label: [] for label in SENDERS}}
    for _ in range(rounds):
        sim_port = free_port()
        folder = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
        sim = start(
            sim_command(
                sim_port,
                "--rate",
                "unlimited",
                "--channels",
                "0",
                "--no-callbacks",
                "--ring",
                "0s",
                "--talk",
                "0s",
            ),
            folder,
            dict(os.environ),
            "sim.log",
        )
        try:
            wait_for_http(f"http://127.0.0.1:{sim_port}/stats")
            measured["bare"].append(asyncio.run(bare_posts(sim_port, contacts)))
            for label, (processes, accounts) in SENDERS.items():
                name, url = create_database()
                try:
                    env = os.environ | {
                        "DIALER_DATABASE_URL": url,
                        "DIALER_CONFIG": str(folder / "dialer.toml"),
                    }
                    write_files(
                        folder,
                        "ceiling",
                        contacts,
                        sim_port,
                        free_port(),
                        rate="1000/s",  # the most dialer.toml accepts (paced at 950/s)
                        channels=10_000,  # no callbacks: every attempt keeps its channel
                        accounts=accounts,
                    )
                    subprocess.run(
                        dialer("campaign", "load", "ceiling.toml"),
                        cwd=folder,
                        env=env,
                        check=True,
                        capture_output=True,
                    )
                    runs = [
                        start(
                            dialer("run", "ceiling", "--log-level", "warning"),
                            folder,
                            env,
                            f"run-{label}-{i}.log",
                        )
                        for i in range(processes)
                    ]
                    for process in runs:
                        process.wait(timeout=600)
                    dialed, span = asyncio.run(dial_span(url))
                    measured[label].append(dialed / span if span else 0.0)
                finally:
                    drop_database(name)
        finally:
            sim.terminate()
            sim.wait()
    rounds_json = json.dumps({k: [round(v) for v in vs] for k, vs in measured.items()})
    pool_ratio = median([p / b for p, b in zip(measured["pool"], measured["bare"], strict=True)])
    result = f"""
Command: `python bench/dialing.py ceiling` — {contacts} contacts, a sim with no rate or channel
limit that answers at once and sends no callbacks, an account at the largest figures dialer.toml
accepts (1,000/s, paced at 950/s; 10,000 channels); attempts/s = attempts recorded ÷ the time
between the first and last `requested_at`; the bare client is aiohttp POSTing to the same sim
with 100 requests in flight, no database. The last two rows: the same contacts dialed by one
process through a pool of four such accounts, so that no account's pace binds it and the
process's own CPU does. Medians of {rounds} rounds, run side by side.

| sender | attempts (requests) per second |
|---|---|
| bare aiohttp client | {median(measured["bare"]):.0f} |
| one `dialer run` | {median(measured["one"]):.0f} |
| two `dialer run` processes | {median(measured["two"]):.0f} |
| four `dialer run` processes | {median(measured["four"]):.0f} |
| one process ÷ bare client | {median(measured["one"]) / median(measured["bare"]):.2f} |
| one `dialer run`, four accounts at 1,000/s each (none binds) | {median(measured["pool"]):.0f} |
| one process on four accounts ÷ bare client | {pool_ratio:.2f} |

Target: ≥ 1,000 attempts/s with one process. Rounds: {rounds_json}
"""
    print(result)
    write_section("Dispatch ceiling (issue 2)", result)
    return result


async def _seed_attempts(url: str, count: int) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        spec = json.dumps(
            {
                "name": "intake",
                "account": "sim-main",
                "caller_id": "+918047112233",
                "default_region": "IN",
                "timezone": "UTC",
            }
        )
        campaign = await conn.fetchval(
            "INSERT INTO campaigns (name, account, spec) VALUES ('intake', 'sim-main', $1::jsonb)"
            " RETURNING id",
            spec,
        )
        await conn.execute(
            """INSERT INTO contacts (campaign_id, row_no, phone_e164, state, attempts)
               SELECT $1, i, '+9198' || lpad(i::text, 8, '0'), 'dialing', 1
               FROM generate_series(1, $2) i""",
            campaign,
            count,
        )
        rows = await conn.fetch(
            """INSERT INTO attempts (contact_id, campaign_id, account, attempt_no, state,
                                     phone_e164, slot, provider_call_id, requested_at, settle_by)
               SELECT id, $1, 'sim-main', 1, 'accepted', phone_e164, row_number() OVER () ,
                      'CALL' || id, now(), now() + interval '1 day'
               FROM contacts WHERE campaign_id = $1 RETURNING id""",
            campaign,
        )
        return [r["id"] for r in rows]
    finally:
        await conn.close()


TOKEN = derive_token(SECRET, "sim-main")  # the callback URL token of the bench's sim account


async def _send_callbacks(port: int, attempts: list[int], concurrency: int) -> tuple[float, int]:
    statuses = ["initiated", "ringing", "answered", "completed"]
    queue = iter(attempts)
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            for attempt in queue:
                path = f"/callbacks/sim-main/{attempt}"
                for sequence, status in enumerate(statuses):
                    event = {
                        "call_id": f"CALL{attempt}",
                        "attempt_id": attempt,
                        "status": status,
                        "sequence": sequence,
                        "timestamp": time.time(),
                    }
                    if status == "completed":
                        event["duration"] = 30
                    body = json.dumps(event).encode()
                    headers = {
                        "Content-Type": "application/json",
                        "X-Sim-Signature": sign(SECRET, path, body),
                    }
                    async with session.post(
                        f"http://127.0.0.1:{port}{path}?token={TOKEN}", data=body, headers=headers
                    ) as response:
                        await response.read()
                        failures += response.status != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, failures


def bare_server(port: int) -> None:
    """One process of the bare reference: aiohttp reading each callback's body as JSON and
    answering 200, nothing else (run WORKERS of them on one port, as `serve --workers`)."""
    from aiohttp import web

    async def receive(request: web.Request) -> web.Response:
        json.loads(await request.read())
        return web.json_response({"stored": True})

    app = web.Application()
    app.router.add_post("/callbacks/{account}/{attempt}", receive)
    app.router.add_get("/healthz", lambda _: web.Response(text="ok"))
    web.run_app(app, host="127.0.0.1", port=port, reuse_port=True, print=None)


def bare_intake(ids: list[int]) -> float:
    """Callbacks/s the bare reference takes from the same load generator."""
    port = free_port()
    servers = [
        subprocess.Popen([sys.executable, __file__, "bare-server", str(port)])
        for _ in range(WORKERS)
    ]
    try:
        for server in servers:
            wait_until_listening(server.pid, port, 1)
        elapsed, failures = asyncio.run(_send_callbacks(port, ids, 64))
        assert failures == 0, failures
        return len(ids) * 4 / elapsed
    finally:
        for server in servers:
            server.terminate()
            server.wait()


def _tree_cpu(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def intake(attempts: int = 5000, rounds: int = 3) -> str:
    rates, bare, lost_total = [], [], 0
    cpu: dict[str, list[float]] = {"serve": [], "postgres": [], "generator": []}
    for _ in range(rounds):
        name, url = create_database()
        folder = Path(tempfile.mkdtemp(prefix="bench-intake-"))
        serve_port = free_port()
        env = os.environ | {
            "DIALER_DATABASE_URL": url,
            "DIALER_CONFIG": str(folder / "dialer.toml"),
        }
        write_files(folder, "intake", 1, free_port(), serve_port, rate="10/s", channels=10)
        subprocess.run(dialer("migrate"), env=env, check=True, capture_output=True)
        ids = asyncio.run(_seed_attempts(url, attempts))
        serve = start(
            dialer("serve", "--log-level", "warning", "--workers", str(WORKERS)),
            folder,
            env,
            "serve.log",
        )
        try:
            wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
            wait_until_listening(serve.pid, serve_port, WORKERS)
            generator = psutil.Process()  # this process alone (serve is its child)
            before = (_tree_cpu(serve.pid), postgres_cpu(), sum(generator.cpu_times()[:2]))
            elapsed, failures = asyncio.run(_send_callbacks(serve_port, ids, 64))
            after = (_tree_cpu(serve.pid), postgres_cpu(), sum(generator.cpu_times()[:2]))
            for part, a, b in zip(cpu, after, before, strict=True):
                cpu[part].append((a - b) / (attempts * 4) * 1e6)

            async def stored(url: str = url) -> tuple[int, int]:
                conn = await asyncpg.connect(url)
                events = await conn.fetchval("SELECT count(*) FROM call_events")
                settled = await conn.fetchval(
                    "SELECT count(*) FROM attempts WHERE state = 'completed'"
                )
                await conn.close()
                return events, settled

            events, settled = asyncio.run(stored())
        finally:
            serve.terminate()
            serve.wait()
            drop_database(name)
        sent = attempts * 4
        lost_total += sent - events + failures
        rates.append(sent / elapsed)
        assert settled == attempts, (settled, attempts)
        bare.append(bare_intake(ids))
    per_round = ", ".join(f"{r:.0f}" for r in rates)
    bare_rounds = ", ".join(f"{r:.0f}" for r in bare)
    ratio = median([r / b for r, b in zip(rates, bare, strict=True)])
    cpu_line = " / ".join(f"{median(v):.0f} µs" for v in cpu.values())
    result = f"""
Command: `python bench/dialing.py intake` — {attempts} live attempts, 4 signed callbacks each
({attempts * 4} in all), sent by a load generator on the same machine with 64 in flight to
`dialer serve --workers {WORKERS}` (processes sharing the port); each callback is verified,
stored in `call_events` and applied before its 200. The reference, after each round: the same
callbacks to {WORKERS} bare aiohttp processes on one port that read each body as JSON and answer
200. Median of {rounds} rounds.

| measure | value |
|---|---|
| callbacks stored per second | {median(rates):.0f} (rounds: {per_round}) |
| bare aiohttp server, callbacks per second | {median(bare):.0f} (rounds: {bare_rounds}) |
| `dialer serve` ÷ bare server (median of the rounds' ratios) | {ratio:.2f} |
| callbacks lost or refused | {lost_total} |
| CPU per callback: `serve`'s processes / PostgreSQL's / the load generator's | {cpu_line} |

Target: ≥ 2,000 callbacks/s with nothing lost.
"""
    print(result)
    write_section("Callback intake (issue 2)", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["makespan", "ceiling", "intake", "all", "bare-server"])
    parser.add_argument("port", type=int, nargs="?", help="bare-server: the port to share")
    args = parser.parse_args()
    if args.which == "bare-server":
        bare_server(args.port)
        return
    for name, bench in (("makespan", makespan), ("ceiling", ceiling), ("intake", intake)):
        if args.which in (name, "all"):
            bench()


if __name__ == "__main__":
    main()

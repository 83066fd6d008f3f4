"""What one settled call costs PostgreSQL (issue 16, item 4), on a cluster of its own.

    python bench/statements.py [--calls 2000] [--rounds 3]

Each round starts a fresh PostgreSQL cluster (initdb, `pg_stat_statements` preloaded with
`track = all`, so statements run inside functions and triggers, foreign-key checks among them,
count too; `track_utility = off`, so BEGIN and COMMIT are counted as commits, not statements),
loads a campaign, subscribes a webhook endpoint (the outbox is part of a call's cost), starts
the simulator and `dialer serve`, resets the counters, runs `dialer run --wait` and waits until
every webhook is delivered. Then it reads, per settled attempt:

- statements (every execution the dialer's own role made, nested ones included),
- of which foreign-key checks (`SELECT 1 FROM ONLY ... FOR KEY SHARE OF x`),
- plannings and their time (`track_planning`: a statement PostgreSQL plans anew at every
  execution, a custom plan, pays for it each time),
- commits (pg_stat_database.xact_commit),
- bytes of WAL (pg_current_wal_lsn before and after),
- CPU of the server's processes (the postmaster's reaped children plus the live ones),
- rows updated in the busy tables, and of them how many in place (HOT updates, which write
  no index entry).

The bench reads through a role of its own, whose statements are left out. Everything the
dialer's processes did in the window counts, background loops included (the reconciler, the
webhook deliverer, the dashboard's nothing): that is what a call costs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp.web
import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import median, write_section

from tests.processes import free_port, wait_for_http

SECRET = "bench-secret"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"b" * 32).decode()
FK_CHECK = ("FROM ONLY", "FOR KEY SHARE OF")  # how PostgreSQL's RI triggers check a key


def dialer(*args: str) -> list[str]:
    return [sys.executable, "-m", "dialer", *args]


def pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    return Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip())


@contextlib.contextmanager
def own_cluster() -> Iterator[tuple[str, int, Path]]:
    """A PostgreSQL cluster of this round's own, with pg_stat_statements: (url, postmaster's
    pid, data directory)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    data, sockets = folder / "data", folder / "sock"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = pwd.getpwnam("postgres")
        shutil.chown(folder, user.pw_uid, user.pw_gid)
        shutil.chown(sockets, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    bindir = pg_bin()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [
            *as_user,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "shared_preload_libraries=pg_stat_statements",
            "-c",
            "pg_stat_statements.track=all",
            "-c",
            "pg_stat_statements.track_utility=off",
            "-c",
            "pg_stat_statements.max=10000",
            "-c",
            "pg_stat_statements.track_planning=on",
            "-c",
            "max_connections=200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "postgres.log").open("wb"),
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        for _ in range(300):
            if (
                subprocess.run(
                    [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                    capture_output=True,
                ).returncode
                == 0
            ):
                break
            time.sleep(0.1)
        yield url, server.pid, data
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def server_cpu_s(postmaster: int) -> float:
    """CPU seconds of the cluster's processes: the postmaster's own and its reaped children's,
    plus those of children still running."""
    root = psutil.Process(postmaster)
    if root.name() == "runuser":  # started through runuser: the postmaster is its child
        root = root.children()[0]
    times = root.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


# The sim's calls and the campaign's timing. `short`: sub-second calls at 50/s and 60
# channels, so that a round of 1,000 calls takes half a minute. `real`: the project's own
# timing (bench/lost_real.py), rings of 2-30 s and calls of 10 s-3 min at Exotel's 200/min with
# 30 channels, where the channels bind and a claim waits minutes for a channel to free.
TIMINGS = {
    "short": {
        "rate": 50.0,
        "rate_text": "50/s",
        "channels": 60,
        "ring": "0.2s..1s",
        "talk": "0.5s..1.5s",
        "campaign": 'ring_timeout = "5s"\nmax_call_duration = "10s"\nsettle_grace = "5s"\n',
        "said": "the simulator at 50/s and 60 channels (ring 0.2–1 s, talk 0.5–1.5 s",
    },
    "real": {
        "rate": 200 / 60,
        "rate_text": "200/min",
        "channels": 30,
        "ring": "2s..30s",
        "talk": "10s..3m",
        "campaign": 'ring_timeout = "30s"\nmax_call_duration = "10m"\n',
        "said": "the simulator at 200/min and 30 channels (ring 2–30 s, talk 10 s–3 min",
    },
}


def write_files(
    folder: Path,
    calls: int,
    sim_port: int,
    serve_port: int,
    hook_port: int,
    accounts: int = 1,
    timing: str = "short",
    webhooks: bool = True,
) -> None:
    """The campaign dials at the timing's rate through `accounts` sim accounts (a pool), each
    with its share of the rate and of the channels; one webhook endpoint subscribed to every
    event unless `webhooks` is off (then the outbox writes nothing)."""
    chosen = TIMINGS[timing]
    names = ["sim-main", *(f"sim-{n}" for n in range(2, accounts + 1))]
    (folder / "dialer.toml").write_text(
        f'listen = "127.0.0.1:{serve_port}"\n'
        + "".join(
            f'\n[accounts.{name}]\nkind = "sim"\n'
            f'base_url = "http://127.0.0.1:{sim_port}"\nsecret = "{SECRET}"\n'
            f'rate = "{chosen["rate"] / accounts:g}/s"\n'
            f"channels = {chosen['channels'] // accounts}\n"
            for name in names
        )
        + (
            f'\n[[webhooks]]\nurl = "http://127.0.0.1:{hook_port}/hook"\n'
            f'secret = "{WEBHOOK_SECRET}"\n'
            if webhooks
            else ""
        )
    )
    with (folder / "cost.csv").open("w") as handle:
        handle.write("phone,name\n")
        for i in range(calls):
            handle.write(f"+9198{i + 10_000_000:08d},c{i}\n")
    pool = "accounts = [" + ", ".join(f'"{n}"' for n in names) + "]\n" if accounts > 1 else ""
    (folder / "cost.toml").write_text(
        f'name = "cost"\naccount = "sim-main"\n{pool}caller_id = "+918047112233"\n'
        'contacts = "cost.csv"\ndefault_region = "IN"\ntimezone = "UTC"\n'
        f"{chosen['campaign']}"
        'window = { start = "00:00", end = "23:59:59" }\n'
        "[retry]\nmax_attempts = 1\n"
    )


async def hook_receiver(port: int) -> aiohttp.web.AppRunner:
    async def take(request: aiohttp.web.Request) -> aiohttp.web.Response:
        await request.read()
        return aiohttp.web.Response(status=204)

    app = aiohttp.web.Application()
    app.router.add_post("/hook", take)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def reset(observer: asyncpg.Connection) -> tuple[str, int]:
    await observer.execute("SELECT pg_stat_statements_reset()")
    await observer.execute("SELECT pg_stat_reset()")
    lsn = await observer.fetchval("SELECT pg_current_wal_lsn()::text")
    commits = await observer.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = 'cost'"
    )
    return lsn, commits


async def read_costs(observer: asyncpg.Connection, lsn: str, commits: int) -> dict:
    await asyncio.sleep(1.0)  # pg_stat_database is sent by backends at most every 500 ms
    await observer.execute("SELECT pg_stat_clear_snapshot()")
    wal = await observer.fetchval(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)", lsn
    )
    dialer_role = "(SELECT oid FROM pg_roles WHERE rolname = 'postgres')"
    rows = await observer.fetch(
        f"""SELECT query, calls, plans, total_plan_time, total_exec_time, toplevel
            FROM pg_stat_statements
            WHERE userid = {dialer_role} AND dbid = (SELECT oid FROM pg_database
                                                     WHERE datname = 'cost')
            ORDER BY calls DESC"""
    )
    committed = await observer.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = 'cost'"
    )
    settled = await observer.fetchval(
        "SELECT count(*) FROM attempts WHERE state NOT IN ('reserved', 'dialing', 'accepted',"
        " 'ringing', 'in-progress')"
    )
    fk = sum(r["calls"] for r in rows if all(part in r["query"] for part in FK_CHECK))
    updates = await observer.fetch(
        """SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
           WHERE relname IN ('attempts', 'contacts', 'webhook_deliveries')"""
    )
    return {
        "updates": {r["relname"]: (r["n_tup_upd"], r["n_tup_hot_upd"]) for r in updates},
        "settled": settled,
        "statements": sum(r["calls"] for r in rows),
        "fk_checks": fk,
        "plans": sum(r["plans"] for r in rows),
        "plan_ms": sum(r["total_plan_time"] for r in rows),
        # a top-level statement's time includes what its triggers ran
        "exec_ms": sum(r["total_exec_time"] for r in rows if r["toplevel"]),
        "top": [
            (
                r["calls"],
                r["plans"],
                r["toplevel"],
                " ".join(r["query"].split())[:110],
                r["total_exec_time"],
            )
            for r in rows
        ],
        "commits": committed - commits,
        "wal_bytes": float(wal),
    }


async def settled_everything(url: str, calls: int, timeout_s: float = 600) -> None:
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = await conn.fetchval(
                """SELECT count(*) FROM attempts WHERE state NOT IN
                   ('reserved', 'dialing', 'accepted', 'ringing', 'in-progress')"""
            )
            pending = await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'"
            )
            if done >= calls and pending == 0:
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"{done} of {calls} settled, {pending} webhooks pending")
    finally:
        await conn.close()


def one_round(
    calls: int,
    waldump: bool = False,
    accounts: int = 1,
    timing: str = "short",
    webhooks: bool = True,
) -> dict:
    with own_cluster() as (server_url, postmaster, data):
        cost_url = server_url.rsplit("/", 1)[0] + "/cost"

        async def prepare() -> None:
            conn = await asyncpg.connect(server_url)
            await conn.execute("CREATE DATABASE cost")
            await conn.execute("CREATE ROLE observer SUPERUSER LOGIN")
            await conn.close()
            conn = await asyncpg.connect(cost_url)
            await conn.execute("CREATE EXTENSION pg_stat_statements")
            await conn.close()

        asyncio.run(prepare())
        folder = Path(tempfile.mkdtemp(prefix="bench-cost-"))
        sim_port, serve_port, hook_port = free_port(), free_port(), free_port()
        write_files(folder, calls, sim_port, serve_port, hook_port, accounts, timing, webhooks)
        env = os.environ | {
            "DIALER_DATABASE_URL": cost_url,
            "DIALER_CONFIG": str(folder / "dialer.toml"),
        }
        chosen = TIMINGS[timing]
        sim_options = ["--rate", str(chosen["rate_text"]), "--channels", str(chosen["channels"])]
        sim_options += [
            "--ring",
            str(chosen["ring"]),
            "--talk",
            str(chosen["talk"]),
            "--outcomes",
            "completed=0.7,no-answer=0.2,busy=0.1",
        ]
        sim = subprocess.Popen(
            dialer("sim-provider", "--port", str(sim_port), "--secret", SECRET, *sim_options),
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(folder / "sim.log").open("wb"),
        )
        serve: subprocess.Popen | None = None
        try:
            wait_for_http(f"http://127.0.0.1:{sim_port}/stats")
            subprocess.run(
                dialer("campaign", "load", "cost.toml"),
                cwd=folder,
                env=env,
                check=True,
                capture_output=True,
            )
            serve = subprocess.Popen(
                dialer("serve", "--log-level", "warning"),
                cwd=folder,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(folder / "serve.log").open("wb"),
            )
            wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")

            async def measure() -> dict:
                runner = await hook_receiver(hook_port)
                observer_url = server_url.replace("postgres@", "observer@").rsplit("/", 1)[0]
                observer = await asyncpg.connect(observer_url + "/cost")
                try:
                    lsn, commits = await reset(observer)
                    cpu_before = server_cpu_s(postmaster)
                    run = await asyncio.create_subprocess_exec(
                        *dialer("run", "cost", "--wait", "--log-level", "warning"),
                        cwd=folder,
                        env=env,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=(folder / "run.log").open("wb"),
                    )
                    code = await run.wait()
                    if code != 0:
                        raise RuntimeError(f"dialer run exited {code}: see {folder}/run.log")
                    await settled_everything(cost_url, calls)
                    costs = await read_costs(observer, lsn, commits)
                    costs["cpu_s"] = server_cpu_s(postmaster) - cpu_before
                    if waldump:
                        end = await observer.fetchval("SELECT pg_current_wal_lsn()::text")
                        names = {
                            r["node"]: r["relname"]
                            for r in await observer.fetch(
                                """SELECT pg_relation_filenode(oid)::text AS node, relname
                                   FROM pg_class WHERE pg_relation_filenode(oid) IS NOT NULL"""
                            )
                        }
                        costs["wal_by_relation"] = wal_by_relation(data, lsn, end, names)
                    return costs
                finally:
                    await observer.close()
                    await runner.cleanup()

            costs = asyncio.run(measure())
        finally:
            if serve is not None:
                serve.terminate()
                serve.wait(timeout=60)
            sim.terminate()
            sim.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
        return costs


def wal_by_relation(
    data: Path, start: str, end: str, names: dict[str, str]
) -> dict[str, list[float]]:
    """WAL between two positions by relation and record type (pg_waldump): {"relation record":
    [records, bytes]}, records that name no relation by their kind (commits, for one)."""
    dump = subprocess.run(
        [str(pg_bin() / "pg_waldump"), "-p", str(data / "pg_wal"), "-s", start, "-e", end],
        capture_output=True,
        text=True,
        check=False,
    )
    found: dict[str, list[float]] = {}
    for line in dump.stdout.splitlines():
        if not line.startswith("rmgr:"):
            continue
        rmgr = line.split()[1]
        total = int(line.split("len (rec/tot):", 1)[1].split(",", 1)[0].split("/")[1])
        kind = line.split("desc: ", 1)[1].split()[0] if "desc: " in line else "?"
        relation = "-"
        if " rel " in line:
            node = line.split(" rel ", 1)[1].split()[0].split("/")[-1]
            relation = names.get(node, f"filenode {node}")
        entry = found.setdefault(f"{relation} {rmgr}/{kind}", [0, 0])
        entry[0] += 1
        entry[1] += total
    return found


def wal_table(rounds: list[dict]) -> str:
    """The middle round's WAL by relation and record type, per settled call, biggest first."""
    middle = rounds[len(rounds) // 2]
    found, settled = middle.get("wal_by_relation"), middle["settled"]
    if not found:
        return ""
    rows = sorted(found.items(), key=lambda item: -item[1][1])
    total = sum(v[1] for v in found.values())
    lines = "\n".join(
        f"| {name.split(' ')[0]} | {name.split(' ')[1]} | {n / settled:.2f} | {b / settled:.0f} |"
        for name, (n, b) in rows
        if b / settled >= 20
    )
    return f"""
WAL of the middle round by relation and record type (`--waldump`: pg_waldump over the
measured range; {total / settled:.0f} bytes a call in all; rows under 20 bytes a call left out):

| relation | record | per call | bytes per call |
|---|---|---|---|
{lines}
"""


def report(
    rounds: list[dict],
    calls: int,
    accounts: int = 1,
    timing: str = "short",
    webhooks: bool = True,
) -> str:
    def per_call(key: str) -> list[float]:
        return [r[key] / r["settled"] for r in rounds]

    statements, fk = per_call("statements"), per_call("fk_checks")
    commits, wal = per_call("commits"), per_call("wal_bytes")
    plans, plan_ms = per_call("plans"), per_call("plan_ms")
    exec_ms = [r.get("exec_ms", 0.0) / r["settled"] for r in rounds]
    cpu = [1000 * r["cpu_s"] / r["settled"] for r in rounds]
    top = rounds[len(rounds) // 2]["top"][:25]
    updated = [
        f"{table} {median([r['updates'][table][0] / r['settled'] for r in rounds]):.2f}"
        f" ({median([r['updates'][table][1] / r['settled'] for r in rounds]):.2f} in place)"
        for table in ("attempts", "contacts", "webhook_deliveries")
    ]
    settled = rounds[len(rounds) // 2]["settled"]
    lines = "\n".join(
        f"| {n / settled:.2f} | {p / settled:.2f} | {ms / settled:.3f}"
        f" | {'top' if toplevel else 'nested'} | `{query.replace('|', '¦')}` |"
        for n, p, toplevel, query, ms in top
    )

    pool = f" --accounts {accounts}" if accounts > 1 else ""
    pool += f" --timing {timing}" if timing != "short" else ""
    pool += "" if webhooks else " --no-webhooks"
    endpoint = "one webhook endpoint subscribed" if webhooks else "no webhook endpoint"
    said = TIMINGS[timing]["said"]

    def fmt(values: list[float], digits: int = 2) -> str:
        return f"{median(values):.{digits}f} ({', '.join(f'{v:.{digits}f}' for v in values)})"

    return f"""
Command: `python bench/statements.py --calls {calls} --rounds {len(rounds)}{pool}`: per round a
PostgreSQL cluster of its own (pg_stat_statements, `track = all`, utility statements not
counted), {calls} contacts, one attempt each, {said}; 70% completed, 20% no
answer, 10% busy), `dialer serve`, {endpoint}; counted from just before
`dialer run --wait` until every attempt is settled and every webhook delivered, divided by the
settled attempts. Medians (rounds).

| per settled call | measured | target |
|---|---|---|
| statements, nested ones and foreign-key checks included | {fmt(statements)} | ≤ 8 |
| of which foreign-key checks | {fmt(fk)} | |
| plannings (a statement planned at its execution) | {fmt(plans)} | |
| time spent planning, ms | {fmt(plan_ms, 3)} | |
| time executing statements (wall: a wait for a core counts), ms | {fmt(exec_ms, 3)} | |
| commits | {fmt(commits)} | |
| WAL bytes | {fmt(wal, 0)} | ≤ 4096 |
| server CPU, ms | {fmt(cpu)} | |
| rows updated (HOT: in place, no index entry) | {"; ".join(updated)} | |

The statements of the middle round, per settled call: executions, plannings, and
milliseconds executing (wall time; a nested statement's are within its top-level one's):

| per call | planned | executing, ms | level | statement |
|---|---|---|---|---|
{lines}
{wal_table(rounds)}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the raw rounds as JSON too")
    parser.add_argument(
        "--waldump", action="store_true", help="add WAL by relation and record (pg_waldump)"
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="dial through this many sim accounts (a pool), sharing the 50 calls a second",
    )
    parser.add_argument(
        "--timing",
        choices=sorted(TIMINGS),
        default="short",
        help="short: sub-second calls at 50/s, 60 channels; real: rings of 2-30 s and calls of"
        " 10 s-3 min at 200/min, 30 channels (the channels bind)",
    )
    parser.add_argument(
        "--no-webhooks",
        dest="webhooks",
        action="store_false",
        help="subscribe no webhook endpoint, so that the outbox writes nothing: run beside the"
        " default, the difference is what the outbox costs a call",
    )
    options = parser.parse_args()
    rounds = [
        one_round(
            options.calls, options.waldump, options.accounts, options.timing, options.webhooks
        )
        for _ in range(options.rounds)
    ]
    if options.json:
        print(json.dumps(rounds, indent=1))
    result = report(rounds, options.calls, options.accounts, options.timing, options.webhooks)
    print(result)
    title = "What one settled call costs PostgreSQL (issue 16)"
    if options.timing != "short":
        title += f", {options.timing} timing"
    if not options.webhooks:
        title += ", no webhooks"
    write_section(title, result)


if __name__ == "__main__":
    main()

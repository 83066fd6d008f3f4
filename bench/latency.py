"""`dialer run` processes on another host than PostgreSQL (issue 16, item 5).

    python bench/latency.py [--rtt-ms 0,5,20] [--processes 1,3] [--rounds 3] [--contacts 3000]
    python bench/latency.py relay LISTEN_HOST LISTEN_PORT UPSTREAM_PORT DELAY_MS  # the relay

Each `dialer run` runs in a network namespace of its own (`ip netns`, a veth pair to the
host), so its traffic to PostgreSQL and to the simulated provider crosses a network interface.
Between the namespaces and PostgreSQL sits a relay that holds every chunk for half of the added
round trip in each direction. The delay is a relay's because this machine's kernel has no
`sch_netem` (`tc qdisc add dev lo root netem delay 5ms` answers "Specified qdisc kind is
unknown"): it adds the round trip a network would, on every query, and nothing else (no loss,
no reordering: TCP hides those as more latency).

Per configuration: one account at 200/s and 10,000 channels, a simulator with no limits of its
own that answers at once and sends no callbacks, N processes dialing one campaign. Measured:
attempts per second over the span of `requested_at`, the most requests the simulator saw in
any second (must stay within 200), and how many requests it refused (must be 0). Run as root
on this machine only (namespaces); medians of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import SERVER_URL, create_database, drop_database, median, write_section

from dialer.dispatch.limiter import AccountLimits
from tests.processes import free_port, wait_for_http

SECRET = "bench-secret"
HOST_ADDRESS = "10.231.0.1"  # the host's end of every veth pair
RATE = 200


# --- the relay ------------------------------------------------------------------------------


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy one direction, each chunk written `delay` seconds after it was read, in order."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def write_when_due() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()

    writing = asyncio.create_task(write_when_due())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, chunk))
    except OSError:
        pass
    queue.put_nowait((loop.time() + delay, b""))
    with contextlib.suppress(OSError):
        await writing


async def relay(host: str, port: int, upstream: int, delay_ms: float) -> None:
    one_way = delay_ms / 2000

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(_pump(reader, up_writer, one_way), _pump(up_reader, writer, one_way))

    server = await asyncio.start_server(connected, host, port)
    async with server:
        await server.serve_forever()


# --- namespaces -----------------------------------------------------------------------------


def sh(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


@contextlib.contextmanager
def namespaces(count: int) -> Iterator[list[str]]:
    """`count` network namespaces, each with a veth pair to the host (10.231.k.2 there,
    HOST_ADDRESS + 10.231.k.1 on the host side) and a route to HOST_ADDRESS."""
    names = [f"dialer-bench-{k}" for k in range(count)]
    try:
        for k, name in enumerate(names, start=1):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            subprocess.run(["ip", "link", "del", f"dbv{k}h"], capture_output=True)
            sh("ip", "netns", "add", name)
            sh("ip", "link", "add", f"dbv{k}h", "type", "veth", "peer", "name", f"dbv{k}n")
            sh("ip", "link", "set", f"dbv{k}n", "netns", name)
            sh("ip", "addr", "add", f"10.231.{k}.1/24", "dev", f"dbv{k}h")
            if k == 1:  # (left by a run that was killed: taken away first)
                subprocess.run(
                    ["ip", "addr", "del", f"{HOST_ADDRESS}/32", "dev", "lo"], capture_output=True
                )
                sh("ip", "addr", "add", f"{HOST_ADDRESS}/32", "dev", "lo")
            sh("ip", "link", "set", f"dbv{k}h", "up")
            sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
            sh(
                "ip",
                "netns",
                "exec",
                name,
                "ip",
                "addr",
                "add",
                f"10.231.{k}.2/24",
                "dev",
                f"dbv{k}n",
            )
            sh("ip", "netns", "exec", name, "ip", "link", "set", f"dbv{k}n", "up")
            sh("ip", "netns", "exec", name, "ip", "route", "add", "default", "via", f"10.231.{k}.1")
        yield names
    finally:
        for k, name in enumerate(names, start=1):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            subprocess.run(["ip", "link", "del", f"dbv{k}h"], capture_output=True)
        subprocess.run(
            ["ip", "addr", "del", f"{HOST_ADDRESS}/32", "dev", "lo"], capture_output=True
        )


# --- one configuration ----------------------------------------------------------------------


def write_files(folder: Path, contacts: int, sim_port: int) -> None:
    (folder / "dialer.toml").write_text(
        f'listen = "127.0.0.1:{free_port()}"\n\n[accounts.sim-main]\nkind = "sim"\n'
        f'base_url = "http://{HOST_ADDRESS}:{sim_port}"\nsecret = "{SECRET}"\n'
        f'rate = "{RATE}/s"\nchannels = 10000\n'
    )
    with (folder / "far.csv").open("w") as handle:
        handle.write("phone,name\n")
        for i in range(contacts):
            handle.write(f"+9198{i + 10_000_000:08d},c{i}\n")
    (folder / "far.toml").write_text(
        'name = "far"\naccount = "sim-main"\ncaller_id = "+918047112233"\n'
        'contacts = "far.csv"\ndefault_region = "IN"\ntimezone = "UTC"\n'
        'ring_timeout = "5s"\nmax_call_duration = "10s"\nsettle_grace = "5s"\n'
        'window = { start = "00:00", end = "23:59:59" }\n'
        "[retry]\nmax_attempts = 1\n"
    )


async def dial_span(url: str) -> tuple[int, float]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            """SELECT count(*) AS n, extract(epoch FROM max(requested_at) - min(requested_at)) AS s
               FROM attempts WHERE requested_at IS NOT NULL"""
        )
        return row["n"], float(row["s"] or 0)
    finally:
        await conn.close()


def one_run(
    rtt_ms: float, processes: int, contacts: int, spaces: list[str], tree: str | None
) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    sim_port, relay_port = free_port(), free_port()
    pg_port = int(SERVER_URL.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    code = {"PYTHONPATH": tree} if tree else {}  # whose dialer runs: a tree's own code
    relay_process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "relay",
            HOST_ADDRESS,
            str(relay_port),
            str(pg_port),
            str(rtt_ms),
        ],
        stderr=(folder / "relay.log").open("wb"),
    )
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dialer",
            "sim-provider",
            "--host",
            HOST_ADDRESS,
            "--port",
            str(sim_port),
            "--secret",
            SECRET,
            "--rate",
            "unlimited",
            "--channels",
            "0",
            "--no-callbacks",
            "--ring",
            "0s",
            "--talk",
            "0s",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "sim.log").open("wb"),
        env=os.environ | code,
    )
    name, direct_url = create_database()
    far_url = f"postgresql://postgres@{HOST_ADDRESS}:{relay_port}/{name}"
    try:
        wait_for_http(f"http://{HOST_ADDRESS}:{sim_port}/stats")
        write_files(folder, contacts, sim_port)
        env = (
            os.environ
            | code
            | {
                "DIALER_DATABASE_URL": direct_url,
                "DIALER_CONFIG": str(folder / "dialer.toml"),
            }
        )
        subprocess.run(
            [sys.executable, "-m", "dialer", "campaign", "load", "far.toml"],
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
        far_env = env | {"DIALER_DATABASE_URL": far_url}
        runs = [
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    spaces[k],
                    sys.executable,
                    "-m",
                    "dialer",
                    "run",
                    "far",
                    "--log-level",
                    "warning",
                ],
                cwd=folder,
                env=far_env,
                stdout=subprocess.DEVNULL,
                stderr=(folder / f"run-{k}.log").open("wb"),
            )
            for k in range(processes)
        ]
        codes = [run.wait(timeout=900) for run in runs]
        dialed, span = asyncio.run(dial_span(direct_url))
        seen = asyncio.run(sim_stats_far(sim_port))
    finally:
        sim.terminate()
        sim.wait()
        relay_process.terminate()
        relay_process.wait()
        drop_database(name)
    return {
        "codes": codes,
        "dialed": dialed,
        "rate": dialed / span if span else 0.0,
        "peak": seen["peak_requests_per_second"],
        "refused": seen.get("rejected_rate", 0) + seen.get("rejected_channels", 0),
    }


async def sim_stats_far(port: int) -> dict:
    url = f"http://{HOST_ADDRESS}:{port}/stats"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


def main() -> None:
    if sys.argv[1:2] == ["relay"]:
        host, port, upstream, delay = sys.argv[2:6]
        asyncio.run(relay(host, int(port), int(upstream), float(delay)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt-ms", default="0,5,20")
    parser.add_argument("--processes", default="1,3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--contacts", type=int, default=3000)
    parser.add_argument(
        "--trees",
        default="",
        help="comma-separated source trees to compare side by side (PYTHONPATH); default: this",
    )
    options = parser.parse_args()
    rtts = [float(x) for x in options.rtt_ms.split(",")]
    counts = [int(x) for x in options.processes.split(",")]
    trees: list[str | None] = [t for t in options.trees.split(",") if t] or [None]
    results: dict[str, list[dict]] = {}
    with namespaces(max(counts)) as spaces:
        for _ in range(options.rounds):  # rounds outermost: every configuration in every hour
            for rtt in rtts:
                for count in counts:
                    for tree in trees:
                        key = f"{tree or '.'}: {rtt:g} ms, {count}"
                        results.setdefault(key, []).append(
                            one_run(rtt, count, options.contacts, spaces, tree)
                        )
                        print(key, results[key][-1], flush=True)
    rows = []
    for rtt in rtts:
        for count in counts:
            for tree in trees:
                runs = results[f"{tree or '.'}: {rtt:g} ms, {count}"]
                rates = [r["rate"] for r in runs]
                each = ", ".join(f"{x:.0f}" for x in rates)
                rows.append(
                    f"| {tree or '.'} | +{rtt:g} ms | {count} | {median(rates):.0f} ({each})"
                    f" | {max(r['peak'] for r in runs)} | {sum(r['refused'] for r in runs)}"
                    f" | {sorted({c for r in runs for c in r['codes']})} |"
                )
    table = "\n".join(rows)
    paced = AccountLimits("x", "sim", RATE, 1.0, 1).aimed_rate_per_s
    result = f"""
Command: `python bench/latency.py --rtt-ms {options.rtt_ms} --processes {options.processes}
--rounds {options.rounds} --contacts {options.contacts}` (as root): each `dialer run` in a
network namespace of its own, reaching PostgreSQL through a relay that adds the round trip
shown (this kernel has no `sch_netem`, see the script), one account at {RATE}/s (paced at
{paced:.0f}/s) with 10,000 channels, a simulator that answers at once; {options.contacts}
contacts per run, one attempt each. Rates are medians of the rounds (rounds in brackets);
exit 3 is `dialer run` stopping with calls still live (the simulator sends no callbacks).

| tree | added RTT | processes | attempts/s | peak in 1 s (limit {RATE}) | refused | exit |
|---|---|---|---|---|---|---|
{table}
"""
    print(result)
    write_section("Dialing with PostgreSQL across a network (issue 16)", result)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

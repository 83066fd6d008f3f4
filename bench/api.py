"""Benchmarks of the integration surface (issue 14), side by side in one run:

    python bench/api.py append [--rows 100000] [--repeat 3]
    python bench/api.py webhooks [--events 20000] [--repeat 3]

append: the same CSV loaded by `dialer campaign load` (process start to exit) and appended
through `POST /api/v1/campaigns/NAME/contacts` to a running `dialer serve` (request start to
answer), each in a fresh database; also the serve process's peak RSS during the upload.
Target: the API takes at most twice as long.

webhooks: N events in the outbox, delivered by `dialer serve` to a local receiver that answers
204 at once; events/s = N / (last delivery - first delivery). Target: >= 500/s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import asyncpg
import psutil
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_config, create_database, drop_database, median, run_measured, write_section
from load import generate

OUT = Path(__file__).with_name("out")
TOKEN = "bench-api-token-0123456789"
SECRET = "whsec_" + base64.b64encode(b"b" * 32).decode()
CAMPAIGN = {
    "account": "bench",
    "caller_id": "+918047112233",
    "default_region": "IN",
    "timezone": "Asia/Kolkata",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "dialer", "migrate"], env=env, check=True)


class Serve:
    """`dialer serve` with the API token (and a webhook endpoint), and its peak RSS."""

    def __init__(self, url: str, hook_url: str | None = None) -> None:
        self.port = free_port()
        config = OUT / f"serve-{self.port}.toml"
        text = (
            f'listen = "127.0.0.1:{self.port}"\n[api]\n'
            f'tokens = [{{ name = "bench", token = "{TOKEN}", scopes = ["read", "write"] }}]\n'
        )
        if hook_url:
            text += f'\n[[webhooks]]\nurl = "{hook_url}"\nsecret = "{SECRET}"\n'
        bench_config(config, text)
        env = os.environ | {"DIALER_DATABASE_URL": url, "DIALER_CONFIG": str(config)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dialer", "serve", "--log-level", "warning"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        self.peak_mb = 0.0
        self._sampling = True
        threading.Thread(target=self._sample, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.port}"

    def _sample(self) -> None:
        proc = psutil.Process(self.process.pid)
        while self._sampling and self.process.poll() is None:
            try:
                self.peak_mb = max(self.peak_mb, proc.memory_info().rss / 2**20)
            except psutil.Error:
                return
            time.sleep(0.02)

    async def ready(self) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{self.base}/healthz") as answer:
                        if answer.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise SystemExit("dialer serve did not start")

    def stop(self) -> None:
        self._sampling = False
        self.process.terminate()
        self.process.wait(timeout=30)


async def api_append(url: str, csv_path: Path) -> tuple[float, float, dict]:
    serve = Serve(url)
    try:
        await serve.ready()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            async with session.put(
                f"{serve.base}/api/v1/campaigns/bench-load", json=CAMPAIGN
            ) as answer:
                assert answer.status in (200, 201), await answer.text()
            idle_mb = serve.peak_mb
            started = time.perf_counter()
            with csv_path.open("rb") as body:
                async with session.post(
                    f"{serve.base}/api/v1/campaigns/bench-load/contacts",
                    data=body,
                    headers={"Content-Type": "text/csv"},
                ) as answer:
                    summary = await answer.json()
                    assert answer.status == 200, summary
            seconds = time.perf_counter() - started
        return seconds, serve.peak_mb - idle_mb, summary
    finally:
        serve.stop()


def cli_load(url: str, csv_path: Path) -> tuple[float, dict]:
    campaign = OUT / "bench-api.toml"
    lines = ['name = "bench-load"', f'contacts = "{csv_path.name}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in CAMPAIGN.items()]
    campaign.write_text("\n".join(lines) + "\n")
    config = bench_config(OUT / "bench-api-dialer.toml")
    env = os.environ | {"DIALER_DATABASE_URL": url, "DIALER_CONFIG": str(config)}
    result = run_measured(
        [sys.executable, "-m", "dialer", "campaign", "load", str(campaign), "--json"], env=env
    )
    if result.returncode != 0:
        raise SystemExit(f"load failed: {result.stderr}")
    return result.seconds, json.loads(result.stdout)


def append(rows: int, repeat: int) -> None:
    OUT.mkdir(exist_ok=True)
    csv_path = OUT / f"api-{rows}.csv"
    if not csv_path.exists():
        generate(csv_path, rows)
    cli, api, extra_mb = [], [], []
    for round_no in range(1, repeat + 1):
        for side in ("cli", "api"):
            name, url = create_database()
            try:
                migrate(os.environ | {"DIALER_DATABASE_URL": url})
                if side == "cli":
                    seconds, summary = cli_load(url, csv_path)
                    cli.append(seconds)
                else:
                    seconds, grown, summary = asyncio.run(api_append(url, csv_path))
                    api.append(seconds)
                    extra_mb.append(grown)
            finally:
                drop_database(name)
            print(
                f"round {round_no} {side}: {seconds:.2f} s, loaded {summary['loaded']},"
                f" rejected {summary['rejected']}",
                file=sys.stderr,
            )
    ratios = [a / c for a, c in zip(api, cli, strict=True)]
    body = f"""
Command: `python bench/api.py append --rows {rows} --repeat {repeat}`
({os.cpu_count()} cores, Python {platform.python_version()}); the same {rows:,}-row CSV
({csv_path.stat().st_size / 1e6:.0f} MB, bench/load.py's generator), each side in a fresh
database, alternating.

| measure (median of {repeat}) | value |
|---|---|
| `dialer campaign load` (process start to exit) | {median(cli):.2f} s |
| `POST .../contacts` to a running `dialer serve` (request to answer) | {median(api):.2f} s |
| **ratio API / CLI** (target <= 2) | **{median(ratios):.2f}** |
| `dialer serve` RSS growth during the upload (peak - before) | {median(extra_mb):.0f} MB |

Per round: CLI {", ".join(f"{x:.2f}" for x in cli)} s; API {", ".join(f"{x:.2f}" for x in api)} s.
"""
    print(body)
    title = "Campaign API: appending contacts (issue 14)"
    write_section(title if rows == 100_000 else f"{title}, {rows:,} rows", body)


async def fill_outbox(url: str, events: int, endpoint: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO webhook_endpoints (name, events) VALUES ($1, '{contact.final}')", endpoint
        )
        await conn.execute(
            """WITH e AS (
                   INSERT INTO webhook_events (type, order_key, campaign_id, payload)
                   SELECT 'contact.final', 'contact:' || n, 1,
                          jsonb_build_object('contact_id', n, 'state', 'done')
                   FROM generate_series(1, $1) AS n RETURNING id, order_key)
               INSERT INTO webhook_deliveries (endpoint, event_id, order_key)
               SELECT $2, id, order_key FROM e""",
            events,
            endpoint,
        )
    finally:
        await conn.close()


async def deliver(url: str, events: int) -> float:
    times: list[float] = []
    done = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        times.append(time.perf_counter())
        if len(times) >= events:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    hook = f"http://127.0.0.1:{port}/hook"
    await fill_outbox(url, events, f"127.0.0.1:{port}/hook")
    serve = Serve(url, hook)
    try:
        await asyncio.wait_for(done.wait(), timeout=600)
    finally:
        serve.stop()
        await runner.cleanup()
    return (events - 1) / (times[-1] - times[0])


def webhooks(events: int, repeat: int) -> None:
    OUT.mkdir(exist_ok=True)
    rates = []
    for round_no in range(1, repeat + 1):
        name, url = create_database()
        try:
            migrate(os.environ | {"DIALER_DATABASE_URL": url})
            rates.append(asyncio.run(deliver(url, events)))
        finally:
            drop_database(name)
        print(f"round {round_no}: {rates[-1]:.0f} events/s", file=sys.stderr)
    body = f"""
Command: `python bench/api.py webhooks --events {events} --repeat {repeat}`
({os.cpu_count()} cores); {events:,} events in the outbox, one per contact, delivered by one
`dialer serve` (signed, leased, marked) to a local aiohttp receiver answering 204; rate =
events / (last delivery - first delivery), the receiver on the same 2 cores.

| measure (median of {repeat}) | value |
|---|---|
| **webhook deliveries per second** (target >= 500) | **{median(rates):.0f}** |

Per round: {", ".join(f"{x:.0f}" for x in rates)} events/s.
"""
    print(body)
    write_section("Webhook delivery (issue 14)", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["append", "webhooks"])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.mode == "append":
        append(args.rows, args.repeat)
    else:
        webhooks(args.events, args.repeat)


if __name__ == "__main__":
    main()

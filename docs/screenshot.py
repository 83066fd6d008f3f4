"""Take docs/dashboard.png: the dashboard of `dialer serve` during a running campaign.

    python docs/screenshot.py [--server postgresql://postgres@127.0.0.1:5432/postgres]

Starts a scratch database, the simulated provider, `dialer serve` and `dialer run` on two
campaigns (one with a calling window closed right now), waits until calls are in flight, and
photographs the page in headless Chromium (Debian's, through Playwright). Everything it
started is stopped and the scratch database dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dialer.demo_data import write_contacts  # noqa: E402

CAMPAIGN = """name = "{name}"
account = "sim-main"
caller_id = "+918047112233"
contacts = "{name}.csv"
default_region = "IN"
timezone = "{zone}"
ring_timeout = "10s"
max_call_duration = "30s"
window = {{ start = "{start}", end = "{end}" }}
[retry]
max_attempts = 3
busy = "5s"
no-answer = "10s"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str) -> None:
    for _ in range(200):
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


async def shoot(url: str, out: Path) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=os.environ.get("DIALER_CHROMIUM") or shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = await browser.new_page(viewport={"width": 1360, "height": 330})
        await page.goto(url)
        await page.locator("tr.campaign").first.wait_for()
        await asyncio.sleep(2.5)  # one refresh more, so the rate column has data
        await page.screenshot(path=str(out), full_page=True)
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    args = parser.parse_args()
    database = f"dialer_shot_{uuid.uuid4().hex[:8]}"
    url = f"{args.server.rsplit('/', 1)[0]}/{database}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(args.server)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{database}"'))
    processes: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            sim_port, serve_port = free_port(), free_port()
            (work / "dialer.toml").write_text(
                f'listen = "127.0.0.1:{serve_port}"\nadmin_token = "screenshot"\n\n'
                f'[accounts.sim-main]\nkind = "sim"\nbase_url = "http://127.0.0.1:{sim_port}"\n'
                'secret = "shot"\nrate = "8/s"\nchannels = 12\n'
            )
            env = os.environ | {
                "DIALER_DATABASE_URL": url,
                "DIALER_CONFIG": str(work / "dialer.toml"),
            }
            for name, zone, start, end, count in (
                ("renewals-nov", "Asia/Kolkata", "00:00", "23:59:59", 400),
                ("winback-us-west", "America/Los_Angeles", "09:00", "17:00", 150),
            ):
                write_contacts(work / f"{name}.csv", count, seed=len(name))
                (work / f"{name}.toml").write_text(
                    CAMPAIGN.format(name=name, zone=zone, start=start, end=end)
                )
                subprocess.run(
                    [sys.executable, "-m", "dialer", "campaign", "load", f"{name}.toml"],
                    cwd=work,
                    env=env,
                    check=True,
                    capture_output=True,
                )

            def start(*command: str) -> None:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "dialer", *command],
                        cwd=work,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )

            start(
                "sim-provider",
                "--port",
                str(sim_port),
                "--secret",
                "shot",
                "--rate",
                "8/s",
                "--channels",
                "12",
                "--ring",
                "1s..6s",
                "--talk",
                "3s..20s",
            )
            wait_for(f"http://127.0.0.1:{sim_port}/stats")
            start("serve")
            wait_for(f"http://127.0.0.1:{serve_port}/healthz")
            start("run", "--for", "2m")
            time.sleep(25)
            asyncio.run(shoot(f"http://127.0.0.1:{serve_port}/", Path(args.out)))
            print(f"wrote {args.out}")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()

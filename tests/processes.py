"""Starting dialer processes (sim provider, serve, run) for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

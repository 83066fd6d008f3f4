"""Helpers shared by the benchmarks: a scratch database, process-tree RSS sampling, results file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

SERVER_URL = os.environ.get(
    "DIALER_BENCH_DATABASE_URL",
    os.environ.get("DIALER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
RESULTS = Path(__file__).with_name("RESULTS.md")
ROOT = Path(__file__).resolve().parent.parent  # the tree the benchmarks belong to


def migrate_as(tree: Path, env: dict[str, str]) -> None:
    """`dialer migrate` as the tree `tree` has it (its package first on PYTHONPATH), against
    the database env's DIALER_DATABASE_URL names."""
    subprocess.run(
        [sys.executable, "-m", "dialer", "migrate"],
        env=env | {"PYTHONPATH": str(tree)},
        cwd=tree,
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def base_tree(revision: str) -> Iterator[Path]:
    """A git worktree of `revision`, to run a base beside this tree (its `dialer` through
    PYTHONPATH or as the working directory); removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "-q", "--detach", str(tree), revision], check=True)
        try:
            yield tree
        finally:
            subprocess.run([*git, "remove", "--force", str(tree)], check=True)


def wait_until_listening(pid: int, port: int, processes: int, timeout: float = 60.0) -> None:
    """Block until `processes` processes of `pid`'s tree listen on `port`.

    `serve --workers N` answers /healthz as soon as its first process listens; a load
    generator whose keep-alive connections open before the others bind sends everything to
    that one process for the whole run."""
    deadline = time.monotonic() + timeout
    while True:
        root = psutil.Process(pid)
        listening = 0
        for process in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                listening += any(
                    c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                    for c in process.net_connections(kind="tcp")
                )
        if listening >= processes:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{listening} of {processes} processes listen on {port}")
        time.sleep(0.1)


# Campaigns must name an account of dialer.toml: the benchmarks' campaigns use `bench`, a sim
# account nothing is dialed through (a secret given, for older trees that required one).
BENCH_ACCOUNT = (
    '[accounts.bench]\nkind = "sim"\nbase_url = "http://127.0.0.1:9"\nsecret = "bench"\n'
    'rate = "10/s"\nchannels = 10\n'
)


def bench_config(path: Path, before: str = "") -> Path:
    """A dialer.toml at `path`: `before` (top-level keys, other tables), then the bench account."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(before + ("\n" if before else "") + BENCH_ACCOUNT)
    return path


def url_for(name: str) -> str:
    head, _, query = SERVER_URL.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def create_database() -> tuple[str, str]:
    name = f"dialer_bench_{uuid.uuid4().hex[:8]}"

    async def go() -> None:
        conn = await asyncpg.connect(SERVER_URL)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(go())
    return name, url_for(name)


def drop_database(name: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(SERVER_URL)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(go())


@dataclass
class Measured:
    seconds: float
    peak_rss_tree_mb: float  # the process and all its children, summed, sampled every 20 ms
    peak_rss_single_mb: float  # the largest single process
    returncode: int
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0  # user + system of every process of the tree, as last sampled


def run_measured(command: list[str], env: dict[str, str] | None = None, cwd=None) -> Measured:
    """Run a command, sampling the RSS of its whole process tree until it exits."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peaks = {"tree": 0, "single": 0}
    cpu: dict[int, float] = {}

    def sample() -> None:
        root = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
                sizes = [p.memory_info().rss for p in procs]
                for p in procs:
                    times = p.cpu_times()
                    cpu[p.pid] = times.user + times.system
            except psutil.Error:
                continue
            peaks["tree"] = max(peaks["tree"], sum(sizes))
            peaks["single"] = max(peaks["single"], max(sizes))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    sampler.join()
    mb = 1024 * 1024
    return Measured(
        elapsed,
        peaks["tree"] / mb,
        peaks["single"] / mb,
        process.returncode,
        stdout,
        stderr,
        sum(cpu.values()),
    )


def postgres_cpu() -> float:
    """CPU seconds of this machine's PostgreSQL so far (its processes and those it reaped)."""
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        times = process.info["cpu_times"]
        if times is not None and "postgres" in (process.info["name"] or ""):
            total += times.user + times.system + times.children_user + times.children_system
    return total


def backend_cpu(pid: int) -> float:
    """Seconds of CPU a process of this machine has used (a PostgreSQL backend's, from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def write_section(title: str, body: str) -> None:
    """Replace (or add) the `## title` section of bench/RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)

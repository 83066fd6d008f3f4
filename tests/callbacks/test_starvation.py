"""`dialer serve` cannot be starved: callbacks (what providers retry against) keep their
connections whatever the API, the dashboard or a crowd does; results clients that never read
are dropped; workers never outlive their parent; running out of descriptors is said once per
interval, not a traceback per failure.

Real processes throughout: `dialer serve` as a subprocess, raw sockets for the hostile
clients, the sim's signature on the callbacks.
"""

# ruff: noqa: ASYNC110, ASYNC220 (serve is a process of its own; the loop serves nothing here)

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import pytest

from dialer.campaign_spec import load_campaign_file
from dialer.providers.secrets import derive_token
from dialer.runtime import SERVE_USES
from dialer.sim.server import sign
from tests.callbacks.test_callbacks import new_attempt
from tests.conftest import database_name
from tests.processes import dialer_command, free_port, write_campaign
from tests.providers.harness import Workspace, _wait_healthy

pytestmark = pytest.mark.timeout(180)

SECRET = "starvation-sim-secret"
READER = "starvation-reader-token"
ACCOUNT = (
    f'kind = "sim"\nbase_url = "http://127.0.0.1:9"\nsecret = "{SECRET}"\nrate = "1/s"\n'
    "channels = 5"
)
API_SHARE = SERVE_USES["api"]  # the API's connections
STALLERS = 22  # more than the whole pool serve had for everything
CONTACTS = 120_000  # ~18 MB of results each: more than loopback's socket buffers hold


def configure(work: Workspace) -> None:
    work.configure("sim-main", ACCOUNT)
    with (work.tmp_path / "dialer.toml").open("a") as config:
        config.write(
            f'\n[api]\ntokens = [{{ name = "bi", token = "{READER}", scopes = ["read"] }}]\n'
        )


async def big_campaign(db: asyncpg.Connection, tmp_path: Path) -> None:
    spec = load_campaign_file(write_campaign(tmp_path, "big", 1)).spec.to_json()
    campaign = await db.fetchval(
        "INSERT INTO campaigns (name, account, spec) VALUES ('big', 'sim-main', $1) RETURNING id",
        spec,
    )
    await db.execute(
        """INSERT INTO contacts (campaign_id, row_no, phone_e164, name, fields)
           SELECT $1, i + 1, '+9198' || lpad(i::text, 8, '0'), 'Contact ' || i,
                  jsonb_build_object('note', repeat('n', 80), 'crm_id', i)
           FROM generate_series(1, $2) AS i""",
        campaign,
        CONTACTS,
    )


async def stall(port: int, path: str) -> socket.socket:
    """Ask for the results and never read a byte of them."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no autotuning
    sock.connect(("127.0.0.1", port))
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {READER}\r\n\r\n"
    sock.sendall(request.encode())
    return sock


async def callback(port: int, attempt: int, status: str, sequence: int) -> int:
    path = f"/callbacks/sim-main/{attempt}"
    token = derive_token(SECRET, "sim-main")
    event = {"call_id": f"STARVE{attempt}", "attempt_id": attempt, "status": status}
    body = json.dumps(event | {"sequence": sequence, "timestamp": time.time()}).encode()
    headers = {"Content-Type": "application/json", "X-Sim-Signature": sign(SECRET, path, body)}
    timeout = aiohttp.ClientTimeout(total=10)  # what a provider would wait before retrying
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(
            f"http://127.0.0.1:{port}{path}?token={token}", data=body, headers=headers
        ) as answer,
    ):
        return answer.status


async def statuses(url: str, count: int, headers: dict[str, str] | None = None) -> list[int]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one() -> int:
            try:
                async with session.get(url, headers=headers) as answer:
                    await answer.read()
                    return answer.status
            except (aiohttp.ClientError, TimeoutError):
                return -1

        return await asyncio.gather(*(one() for _ in range(count)))


async def copies_running(db: asyncpg.Connection, database: str) -> int:
    return await db.fetchval(
        """SELECT count(*) FROM pg_stat_activity
           WHERE datname = $1 AND query ILIKE 'COPY%' AND state = 'active'""",
        database,
    )


async def test_callbacks_keep_their_share_whatever_the_crowd_does(
    own_database_url: str, own_db, tmp_path: Path
) -> None:
    await big_campaign(own_db, tmp_path)
    attempts = [await new_attempt(own_db, tmp_path) for _ in range(4)]
    work = Workspace(tmp_path, own_database_url, free_port())
    configure(work)
    port = work.serve_port
    database = database_name(own_database_url)
    results = "/api/v1/campaigns/big/results"
    async with work.serve():
        stalled = [await stall(port, results) for _ in range(STALLERS)]
        deadline = time.monotonic() + 20
        while await copies_running(own_db, database) < API_SHARE and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await copies_running(own_db, database) >= API_SHARE  # all the API's, streaming
        flood = asyncio.gather(
            statuses(f"http://127.0.0.1:{port}/api/campaigns", 300),
            statuses(
                f"http://127.0.0.1:{port}/api/v1/campaigns",
                60,
                {"Authorization": f"Bearer {READER}"},
            ),
            statuses(f"http://127.0.0.1:{port}/metrics", 50),
        )
        answered = await asyncio.gather(
            *(callback(port, a, "ringing", 1) for a in attempts),
            *(callback(port, a, "busy", 2) for a in attempts),
        )
        healthy = await statuses(f"http://127.0.0.1:{port}/healthz", 1)
        dashboard, api, metrics = await flood
        # The stalled streams are dropped (8 s without a byte taken), and the API answers again.
        deadline = time.monotonic() + 40
        while await copies_running(own_db, database) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        full = await statuses(
            f"http://127.0.0.1:{port}{results}", 1, {"Authorization": f"Bearer {READER}"}
        )
        for sock in stalled:
            sock.close()
    assert answered == [200] * 8 and healthy == [200]
    settled = await own_db.fetch(
        "SELECT state FROM attempts WHERE id = ANY($1::bigint[])", attempts
    )
    assert {r["state"] for r in settled} == {"busy"}
    assert set(dashboard) <= {200, 503} and 200 in dashboard, sorted(set(dashboard))
    assert set(api) <= {200, 503} and set(metrics) <= {200, 503}, (set(api), set(metrics))
    assert full == [200]
    log = work.serve_log()
    assert "results stream dropped" in log
    assert "Traceback" not in log


async def test_workers_do_not_outlive_a_killed_parent(
    own_database_url: str, tmp_path: Path
) -> None:
    work = Workspace(tmp_path, own_database_url, free_port())
    configure(work)
    with (tmp_path / "serve.log").open("wb") as log:
        parent = subprocess.Popen(
            dialer_command("serve", "--workers", "3"),
            cwd=tmp_path,
            env=work.env,
            stdout=log,
            stderr=log,
        )
    try:
        await _wait_healthy(f"{work.callback_base}/healthz")
        deadline = time.monotonic() + 20
        workers: list[psutil.Process] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = psutil.Process(parent.pid).children()
            await asyncio.sleep(0.1)
        assert len(workers) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive, [p.pid for p in alive]
        with socket.socket() as probe:  # nobody listens on the port any more
            assert probe.connect_ex(("127.0.0.1", work.serve_port)) != 0
    finally:
        for child in psutil.Process(os.getpid()).children(recursive=True):
            if child.pid != parent.pid and "serve" in " ".join(child.cmdline()):
                child.kill()


async def test_out_of_descriptors_is_said_once_per_interval(
    own_database_url: str, tmp_path: Path
) -> None:
    """serve may hold 60 descriptors (its hard limit too, so none can be raised); 150 idle
    connections exhaust them: accept() fails many times a second, said in one line per 10 s,
    no traceback; once the crowd leaves, serve answers again."""
    work = Workspace(tmp_path, own_database_url, free_port())
    configure(work)

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (60, 60))

    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen(
            dialer_command("serve"),
            cwd=tmp_path,
            env=work.env,
            stdout=log,
            stderr=log,
            preexec_fn=few_descriptors,
        )
    crowd: list[socket.socket] = []
    try:
        await _wait_healthy(f"{work.callback_base}/healthz")
        for _ in range(150):
            crowd.append(socket.create_connection(("127.0.0.1", work.serve_port)))
        await asyncio.sleep(4)  # accept() fails about once a second meanwhile
        for sock in crowd:
            sock.close()
        crowd.clear()
        await _wait_healthy(f"{work.callback_base}/healthz")
    finally:
        for sock in crowd:
            sock.close()
        serve.terminate()
        serve.wait()
    log = work.serve_log()
    said = [line for line in log.splitlines() if "cannot accept connections" in line]
    assert 1 <= len(said) <= 2, said
    assert "failures=" in said[0]
    assert "Traceback" not in log and "socket.accept() out of system resource" not in log

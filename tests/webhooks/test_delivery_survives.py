"""Every event reaches the receiver at least once, none missing, although `dialer serve` is
killed with SIGKILL in the middle of delivery and the receiver is down for 30 s (past the
1, 2, 5, 10 and 20 s retries): the outbox is written with the state changes, and a new
serve picks up what the dead one leased.
Checked against the database's own record of what happened, with every delivery verified by
the `standardwebhooks` package. Part of the contacts are appended through the campaign API
while the campaign is being dialed: they are dialed and reported like the rest."""

# ruff: noqa: ASYNC109, ASYNC220
from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.dispatch.test_end_to_end import FAST_CALLS, env_for, load
from tests.processes import (
    background,
    dialer_command,
    free_port,
    sim_provider,
    wait_for_http,
    write_campaign,
    write_config,
)
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.timeout(300)
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
DOWN_S = 30
TOKEN = "crm-token-0123456789abcdef"
LATE_CONTACTS = "phone,name\n" + "".join(f"+9177000000{n:02d},late {n}\n" for n in range(20))


async def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_kill_9_and_a_receiver_down_for_30_s_lose_no_event(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    receiver = Receiver(SECRET, delay_s=0.05)  # slow answers: deliveries are in flight
    await receiver.start()
    port = free_port()
    with sim_provider(tmp_path, "--rate", "30/s", "--channels", "8", *FAST_CALLS) as sim:
        config = write_config(tmp_path, sim, rate="30/s", channels=8, port=port)
        with config.open("a") as toml:
            toml.write(f'\n[[webhooks]]\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n')
            toml.write(
                f'\n[api]\ntokens = [{{ name = "crm", token = "{TOKEN}", scopes = ["write"] }}]\n'
            )
        env = env_for(own_database_url, config)
        load(tmp_path, env, write_campaign(tmp_path, "hooked", 60))
        healthz = f"http://127.0.0.1:{port}/healthz"
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve1.log") as first:
            wait_for_http(healthz)
            run = subprocess.Popen(
                dialer_command("run", "hooked", "--wait", "--dial-cap", "3"),
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / "run.log").open("wb"),
            )
            # 20 more contacts arrive through the API while the campaign is being dialed.
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    f"http://127.0.0.1:{port}/api/v1/campaigns/hooked/contacts",
                    data=LATE_CONTACTS,
                    headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/csv"},
                ) as answer,
            ):
                appended = await answer.json()
            assert answer.status == 200 and appended["loaded"] == 20, appended

            async def some_delivered() -> bool:
                return len(receiver.received) >= 15

            await wait_until(some_delivered, 60, "the first deliveries")
            receiver.holding = True  # the next deliveries are left unanswered: in flight

            async def in_flight() -> bool:
                return receiver.held > 0

            await wait_until(in_flight, 60, "deliveries in flight")
            leased = await own_db.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE leased_until > now()"
            )
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
        await receiver.stop()  # the held requests are dropped unanswered
        receiver.holding = False
        went_down = time.monotonic()
        with background(dialer_command("serve"), tmp_path, env, tmp_path / "serve2.log"):
            wait_for_http(healthz)
            await asyncio.sleep(max(0.0, DOWN_S - (time.monotonic() - went_down)))
            failed_meanwhile = await own_db.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE last_error IS NOT NULL"
            )
            await receiver.start()
            assert await asyncio.to_thread(run.wait, 120) == 0, (tmp_path / "run.log").read_text()

            async def all_delivered() -> bool:
                return not await own_db.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE state <> 'delivered'"
                )

            await wait_until(all_delivered, 150, "every delivery")
    await receiver.stop()
    assert leased > 0, "the kill was not in the middle of delivery"
    assert failed_meanwhile > 0, "no delivery met the receiver down"
    assert receiver.forged == 0
    events = await own_db.fetch("SELECT id, type, payload FROM webhook_events ORDER BY id")
    install = await own_db.fetchval("SELECT id FROM dialer_install")
    assert receiver.ids() == {f"msg_{install}_{e['id']}" for e in events}  # none missing
    # The events say what the database says happened: one per settled attempt, one per
    # contact that reached its end, one for the campaign.
    settled = await own_db.fetch(
        "SELECT id FROM attempts WHERE outcome IS NOT NULL AND outcome <> 'not_dialed'"
    )
    final = await own_db.fetch(
        "SELECT id FROM contacts WHERE state IN ('done', 'exhausted', 'failed')"
    )
    kinds = Counter(e["type"] for e in events)
    assert kinds["campaign.finished"] == 1
    reported = [e["payload"]["attempt_id"] for e in events if e["type"] == "attempt.settled"]
    assert sorted(reported) == sorted(r["id"] for r in settled)
    contacts = await own_db.fetchval("SELECT count(*) FROM contacts")
    assert kinds["contact.final"] == len(final) == contacts == 80  # the appended ones too
    # In order per contact: the first receipt of each of a contact's events follows its ids.
    first_seen: dict[str, int] = {}
    for position, delivery in enumerate(receiver.received):
        first_seen.setdefault(delivery.msg_id, position)
    by_contact: dict[int, list[int]] = {}
    for e in events:
        if e["type"] != "campaign.finished":
            contact = e["payload"]["contact_id"]
            by_contact.setdefault(contact, []).append(first_seen[f"msg_{install}_{e['id']}"])
    for contact, positions in by_contact.items():
        assert positions == sorted(positions), contact

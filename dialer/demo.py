"""`dialer demo`: a whole time-compressed campaign against the built-in simulated provider.

Everything runs in this one process (sim provider, dispatcher, callback receiver, reconciler)
over real HTTP on loopback, against the configured or embedded PostgreSQL.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

from pydantic import AnyHttpUrl, SecretStr

from dialer.campaign_spec import load_campaign_file
from dialer.campaigns import from_row
from dialer.console import err
from dialer.db import campaigns, reporting
from dialer.db.outage import Outage
from dialer.demo_data import write_contacts
from dialer.dispatch.account_run import AccountRun
from dialer.dispatch.limiter import AccountLimits
from dialer.durations import parse_rate
from dialer.loading.loader import load_campaign
from dialer.ports import free_port
from dialer.providers.sim import SimAccount, SimProvider
from dialer.runtime import DEMO, hosted, open_runtime
from dialer.sim.server import create_app as create_sim
from dialer.sim.settings import SimSettings
from dialer.watch import watched

ACCOUNT = "demo-sim"
CAMPAIGN = """\
name = "{name}"
account = "{account}"
caller_id = ["+918047112233", "+918047112234", "+918047112235"]
contacts = "contacts.csv"
default_region = "IN"
timezone = "UTC"
ring_timeout = "2s"
max_call_duration = "5s"
settle_grace = "5s"
window = {{ start = "00:00", end = "23:59:59" }}

[retry]
max_attempts = 3
busy = "2s"
no-answer = "3s"
failed = "never"
unknown = "5s"
"""


async def run_demo(database_url: str, contacts: int, keep: bool) -> tuple[int, list, str]:
    secret = secrets.token_hex(16)
    settings = SimSettings(
        secret=secret,
        rate=parse_rate("50/s"),
        channels=20,
        seed=7,
        ring=(0.1, 0.4),
        talk=(0.2, 0.6),
        duplicates=0.02,
        reorder=0.02,
    )
    sim_port, callback_port = free_port(), free_port()
    account = SimAccount(
        kind="sim",
        base_url=AnyHttpUrl(f"http://127.0.0.1:{sim_port}"),
        secret=SecretStr(secret),
        rate="50/s",
        channels=20,
    )
    adapter = SimProvider(ACCOUNT, account)
    limits = AccountLimits(ACCOUNT, "sim", 50.0, 1.0, 20)
    name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    base = f"http://127.0.0.1:{callback_port}"
    with tempfile.TemporaryDirectory(prefix="dialer-demo-") as folder:
        (Path(folder) / "demo.toml").write_text(CAMPAIGN.format(name=name, account=ACCOUNT))
        write_contacts(Path(folder) / "contacts.csv", contacts)
        campaign_file = load_campaign_file(Path(folder) / "demo.toml")
        async with open_runtime(database_url, {ACCOUNT: adapter}, base, profile=DEMO) as runtime:
            pool = runtime.pool
            async with pool.acquire() as conn:
                loaded = await load_campaign(conn, campaign_file)
                row = await campaigns.by_name(conn, name)
            await runtime.register([limits])
            err.print(f"loaded {loaded.loaded} contacts into campaign {name}")
            if row is None:
                raise LookupError(f"the demo campaign {name} was not stored")
            campaign = from_row(row)
            runs = [AccountRun(limits, adapter, [campaign])]
            dispatcher = runtime.dispatcher(runs, Outage(pool=pool), wait=True, dial_cap=3)
            async with (
                hosted(create_sim(settings), "127.0.0.1", sim_port),
                runtime.hosting("127.0.0.1", callback_port),
            ):
                await runtime.begin([])
                async with pool.acquire() as conn:
                    since = await reporting.last_attempt_id(conn)
                code = await watched(dispatcher.run(), pool, [campaign], since, "dialer demo")
            async with pool.acquire() as conn:
                report = [await reporting.campaign_summary(conn, campaign.id)]
                if not keep:
                    await campaigns.delete(conn, campaign.id)
    return code, report, name

"""Structured logs: one JSON line per state change that matters, and never a secret; the
matching counters on /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from pathlib import Path

import aiohttp
import pytest

from dialer.providers.secrets import derive_token
from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.twilio import TwilioDialect, account_toml
from tests.processes import dialer_command, free_port
from tests.providers.harness import Workspace, serving
from tests.test_metrics import scrape, total

pytestmark = pytest.mark.timeout(240)
SID, TOKEN = "AC" + "f6" * 16, "log-test-token-5678"


async def test_json_lines_for_every_state_change(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    fake = FakeProvider(
        TwilioDialect("twilio", SID, TOKEN),
        FakeSettings(rate=None, channels=0, storm=0.2, lose=0.3, seed=17),
    )
    metrics_port = free_port()
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure("tw", account_toml(url, SID, TOKEN))
        await work.load(
            "logs",
            "tw",
            count=12,
            extra='connect_to = "https://d.example.com/t"',
            call_limits=("1s", "3s", "1s"),
        )
        async with work.serve():
            run = await asyncio.create_subprocess_exec(
                *dialer_command(
                    "run",
                    "logs",
                    "--wait",
                    "--dial-cap",
                    "5",
                    "--log-format",
                    "json",
                    "--metrics-port",
                    str(metrics_port),
                ),
                cwd=tmp_path,
                env=work.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            samples: dict = {}
            while run.returncode is None:
                with contextlib.suppress(aiohttp.ClientError):
                    samples = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(run.wait(), 0.3)
            output = (await run.stderr.read()).decode()
            served = await scrape(f"{work.callback_base}/metrics")
    assert run.returncode == 0, output[-3000:]
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    by_attempt: dict[int, list[str]] = defaultdict(list)
    for line in lines:
        if "attempt" in line:
            by_attempt[line["attempt"]].append(line["msg"])
    attempts = await own_db.fetch("SELECT id, state, outcome FROM attempts")
    for attempt in attempts:
        messages = by_attempt[attempt["id"]]
        assert "attempt created" in messages, (attempt["id"], messages)
        if attempt["outcome"] == "not_dialed":
            assert "rate limited (429)" in messages
        else:
            assert "attempt accepted" in messages
    messages = [line["msg"] for line in lines]
    # lost callbacks were looked up, by the run or by serve (both reconcile; first come)...
    assert "reconciled" in messages or " dialer.reconcile: reconciled " in work.serve_log()
    # ...and a look-up answered 429 is asked again, never taken for "the provider does not know"
    assert not [a for a in attempts if a["outcome"] == "unknown"]
    rate_limited = sum(1 for a in attempts if a["outcome"] == "not_dialed")
    assert rate_limited == messages.count("rate limited (429)") >= 1
    assert total(samples, "dialer_rate_limited_total", account="tw") == rate_limited
    reconciled = total(samples, "dialer_reconciler_actions_total") + total(
        served, "dialer_reconciler_actions_total"
    )
    assert reconciled >= 1
    for secret in (TOKEN, derive_token(TOKEN, "tw")):
        assert secret not in output and secret not in work.serve_log()

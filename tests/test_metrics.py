"""Prometheus metrics from `dialer serve` and `dialer run --metrics-port` during a campaign."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dialer.policy.states import OUTCOMES
from tests.fakes.engine import FakeProvider, FakeSettings
from tests.fakes.twilio import TwilioDialect, account_toml
from tests.processes import dialer_command, free_port
from tests.providers.harness import Workspace, serving

pytestmark = pytest.mark.timeout(240)
SID, TOKEN = "AC" + "e5" * 16, "metrics-token-1234"


async def scrape(url: str) -> dict[tuple[str, tuple], float]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


async def test_counters_and_gauges_agree_with_the_database(
    own_database_url: str, tmp_path: Path, own_db
) -> None:
    fake = FakeProvider(
        TwilioDialect("twilio", SID, TOKEN), FakeSettings(rate=(20, 1.0), channels=5)
    )
    metrics_port = free_port()
    async with serving(fake) as url:
        work = Workspace(tmp_path, own_database_url, free_port())
        work.configure("tw", account_toml(url, SID, TOKEN, channels=5))
        await work.load("met", "tw", count=25, extra='connect_to = "https://d.example.com/t"')
        async with work.serve():
            run = await asyncio.create_subprocess_exec(
                *dialer_command(
                    "run", "met", "--wait", "--dial-cap", "5", "--metrics-port", str(metrics_port)
                ),
                cwd=tmp_path,
                env=work.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            during = {}
            for _ in range(100):  # scrape the run while it dials
                await asyncio.sleep(0.2)
                try:
                    during = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")
                except aiohttp.ClientError:
                    continue
                if total(during, "dialer_channels_in_use", account="tw") > 0:
                    break
            assert await run.wait() == 0
            served = await scrape(f"{work.callback_base}/metrics")
    assert total(during, "dialer_channels_limit", account="tw") == 5
    assert 0 < total(during, "dialer_channels_in_use", account="tw") <= 5
    assert total(during, "dialer_rate_limit_per_second", account="tw") == pytest.approx(20)
    assert 0 < total(during, "dialer_rate_effective_per_second", account="tw") <= 20
    outcomes = await own_db.fetch("SELECT outcome, count(*) FROM attempts GROUP BY 1")
    settled_in_serve = {
        r["outcome"]: total(
            served, "dialer_dials_total", account="tw", campaign="met", outcome=r["outcome"]
        )
        for r in outcomes
    }
    # Settled in serve by callbacks, but for calls the run's reconciler found ended first by
    # spending the idle rate on look-ups (policy.lookups): those it counted itself.
    polled = await own_db.fetchval(
        """SELECT count(DISTINCT attempt_id) FROM call_events
           WHERE dedupe_key LIKE '%:poll:%' AND status = ANY($1::text[])""",
        list(OUTCOMES),
    )
    settled = sum(r["count"] for r in outcomes)
    assert settled - polled <= sum(settled_in_serve.values()) <= settled
    assert all(settled_in_serve[r["outcome"]] <= r["count"] for r in outcomes)
    events = await own_db.fetchval(
        "SELECT count(*) FROM call_events WHERE dedupe_key NOT LIKE '%:poll:%'"
    )
    assert total(served, "dialer_callbacks_total", account="tw", result="stored") == events
    assert total(served, "dialer_callback_seconds_count", account="tw") >= events
    assert total(served, "dialer_contacts_due", campaign="met") == 0
    shown = await own_db.fetch(
        "SELECT caller_id, count(*) FROM attempts WHERE state <> 'not_dialed' GROUP BY 1"
    )
    for caller, count in shown:  # caller_id_health, as gauges
        labels = {"account": "tw", "caller_id": caller, "period": "day"}
        assert total(served, "dialer_caller_id_attempts", **labels) == count

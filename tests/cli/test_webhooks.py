"""`dialer webhooks status | replay`: what waits, and exhausted events sent again; the
dashboard's line and the metric read the same counts."""

from __future__ import annotations

import json
from pathlib import Path

from dialer.metrics import REGISTRY, refresh_gauges

SECRET = "whsec_" + "Q" * 43 + "="


async def exhausted_event(db, endpoint: str = "crm") -> int:
    await db.execute(
        "INSERT INTO webhook_endpoints (name, events) VALUES ($1, '{contact.final}')"
        " ON CONFLICT DO NOTHING",
        endpoint,
    )
    event = await db.fetchval(
        """INSERT INTO webhook_events (type, order_key, campaign_id, payload, created_at)
           VALUES ('contact.final', 'contact:1', 1, '{}', now() - interval '25 hours')
           RETURNING id"""
    )
    await db.execute(
        """INSERT INTO webhook_deliveries (endpoint, event_id, order_key, state, tries, since,
                                           last_error)
           VALUES ($1, $2, 'contact:1', 'exhausted', 30, now() - interval '25 hours',
                   'HTTP 500')""",
        endpoint,
        event,
    )
    return event


async def test_status_replay_metric_and_an_unknown_endpoint(run_cli, db, tmp_path: Path) -> None:
    event = await exhausted_event(db)
    config = tmp_path / "dialer.toml"
    config.write_text(
        f'[[webhooks]]\nname = "crm"\nurl = "https://crm.test/h"\nsecret = "{SECRET}"\n'
    )
    env = {"DIALER_CONFIG": str(config)}

    status = run_cli("webhooks", "status", env=env)
    assert status.exit_code == 0 and "crm" in status.stdout and "1" in status.stdout
    await refresh_gauges(db)
    assert (
        REGISTRY.get_sample_value(
            "dialer_webhooks_waiting", {"endpoint": "crm", "state": "exhausted"}
        )
        == 1
    )
    assert await db.fetchval("SELECT count(*) FROM webhook_failures") == 1

    wrong = run_cli("webhooks", "replay", "--since", "2d", "--endpoint", "nope", env=env)
    assert wrong.exit_code == 2 and "nope" in wrong.stderr and "crm" in wrong.stderr
    recent = run_cli("webhooks", "replay", "--since", "1h", env=env)
    assert recent.exit_code == 0 and recent.stdout.startswith("0 deliveries")  # it is older
    replay = run_cli("webhooks", "replay", "--since", "2d", "--format", "json", env=env)
    assert replay.exit_code == 0 and json.loads(replay.stdout) == {"pending_again": 1}
    row = await db.fetchrow("SELECT * FROM webhook_deliveries WHERE event_id = $1", event)
    assert (row["state"], row["tries"]) == ("pending", 0)
    assert await db.fetchval("SELECT since > now() - interval '1 minute' FROM webhook_deliveries")
    assert await db.fetchval("SELECT count(*) FROM webhook_failures") == 0

"""Campaign files and dialer.toml are validated at load: each bad value exits 2 naming its key
(and line), and nothing is created."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialer.campaign_spec import CampaignSpec

BASE = {
    "name": "spec-check",
    "account": "sim-main",
    "caller_id": '"08047112233"',
    "default_region": '"IN"',
    "timezone": '"Asia/Kolkata"',
}


def campaign_file(tmp_path: Path, **changes: str) -> Path:
    """A valid campaign (with one good contact) with `changes` applied, TOML values as written."""
    keys = {"name": '"spec-check"', "account": '"sim-main"', "contacts": '"c.csv"'} | {
        k: v for k, v in BASE.items() if k not in ("name", "account")
    }
    keys |= changes
    (tmp_path / "c.csv").write_text("phone\n+919812345678\n")
    top = [f"{k} = {v}" for k, v in keys.items() if not k.startswith("[")]
    tables = [f"{k}\n{v}" for k, v in keys.items() if k.startswith("[")]
    path = tmp_path / "spec.toml"
    path.write_text("\n".join(top + tables) + "\n")
    return path


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"window": "{ start = 9, end = 17 }"}, "window.start"),
        ({"window": '{ start = "09:00+05:30", end = "17:00" }'}, "window.start"),
        ({"window": '{ start = "09:00", end = 17:00:00 }'}, "window.end"),
        ({"window": '{ start = "9am", end = "17:00" }'}, "window.start"),
        ({"ring_timeout": '"2h"'}, "ring_timeout"),
        ({"ring_timeout": '"0s"'}, "ring_timeout"),
        ({"max_call_duration": '"2d"'}, "max_call_duration"),
        ({"settle_grace": '"30d"'}, "settle_grace"),
        ({"settle_grace": '"99999999999999999999999d"'}, "settle_grace"),
        ({"[retry]": 'busy = "400d"'}, "retry.busy"),
        ({"[retry]": 'no-answer = ["1h", "9999999999999999999h"]'}, "retry.no-answer"),
        ({"caller_id": '"not-a-number"'}, "caller_id"),
        ({"caller_id": '["+918047112233", "12"]'}, "caller_id"),
        ({"timezone": '"America"'}, "timezone"),
        ({"timezone": '"Factory"'}, "timezone"),
        ({"encoding": '"base64"'}, "encoding"),
        ({"encoding": '"rot13"'}, "encoding"),
        ({"account": '"Sim Main"'}, "account"),
        ({"account": '"sim/main"'}, "account"),
        ({"machine_detection": '"always"'}, "machine_detection"),
        ({"[retry]": 'busy = "done"'}, "retry.busy"),
        ({"stop_after": "{ completed = 0 }"}, "stop_after.completed"),
        ({"stop_after": "{ completed = 5, human = 5 }"}, "stop_after"),
        ({"max_cost": "-1"}, "max_cost"),
        ({"rules": '["us-nowhere"]'}, "rules"),
        ({"rules": '["us-tcpa", "us-tcpa"]'}, "rules"),
        ({"caps": '["3/0h"]'}, "caps"),
        ({"caps": '["-1/24h"]'}, "caps"),
        ({"caps": '["3 per day"]'}, "caps"),
        ({"default_jurisdiction": '"Florida"'}, "default_jurisdiction"),
        ({"no_call_after_conversation": '"soon"'}, "no_call_after_conversation"),
        # TOML may spell a NUL byte; PostgreSQL's jsonb cannot store it: named, not a traceback
        ({"subject": '"a\\u0000b"'}, "a NUL byte (\\u0000) in subject"),
    ],
)
def test_bad_campaign_values_exit_2_naming_the_key_and_create_nothing(
    run_cli, tmp_path: Path, changes: dict[str, str], key: str
) -> None:
    path = campaign_file(tmp_path, **changes)
    result = run_cli("campaign", "load", str(path))
    assert result.exit_code == 2, result.stdout + result.stderr
    assert f"{key}:" in result.stderr and "Traceback" not in result.stderr
    assert "line " in result.stderr
    listed = run_cli("campaign", "list", "--format", "json")
    assert "spec-check" not in listed.stdout


def test_caller_ids_are_stored_in_e164() -> None:
    spec = CampaignSpec.model_validate(
        {
            "name": "n",
            "account": "a",
            "caller_id": ["08047112233", "+91 80 4711 2234"],
            "default_region": "IN",
            "timezone": "Asia/Kolkata",
        }
    )
    assert spec.caller_ids == ["+918047112233", "+918047112234"]


def test_window_times_accept_hh_mm_and_hh_mm_ss() -> None:
    spec = CampaignSpec.model_validate(
        BASE_SPEC | {"window": {"start": "09:30", "end": "23:59:59"}}
    )
    assert (str(spec.window.start), str(spec.window.end)) == ("09:30:00", "23:59:59")
    again = CampaignSpec.model_validate(spec.to_json())  # the stored form reads back
    assert again == spec


BASE_SPEC = {
    "name": "n",
    "account": "a",
    "caller_id": "+918047112233",
    "default_region": "IN",
    "timezone": "Asia/Kolkata",
}


@pytest.mark.parametrize(
    "account_toml, key",
    [
        ('[accounts."Bad Name"]\nkind = "sim"', "accounts"),
        ("[accounts.s]\nchannels = 100000", "accounts.s.channels"),
        ('[accounts.s]\nrate = "5000/s"', "accounts.s.rate"),
        ('[accounts.s]\nrate = "99999999999999999999/s"', "accounts.s.rate"),
    ],
)
def test_bad_dialer_toml_values_exit_2_naming_the_key(
    run_cli, tmp_path: Path, account_toml: str, key: str
) -> None:
    defaults = {
        "kind": '"sim"',
        "base_url": '"http://127.0.0.1:1"',
        "secret": '"x-secret"',
        "rate": '"1/s"',
        "channels": "1",
    }
    lines = account_toml.splitlines()
    given = {line.split(" = ")[0] for line in lines[1:]}
    lines += [f"{k} = {v}" for k, v in defaults.items() if k not in given]
    (tmp_path / "dialer.toml").write_text("\n".join(lines) + "\n")
    result = run_cli("config", "show", env={"DIALER_CONFIG": str(tmp_path / "dialer.toml")})
    assert result.exit_code == 2, result.stdout
    assert f"{key}:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--dial-cap", "0"],
        ["run", "--dial-cap", "-3"],
        ["run", "--for", "99999999999999999999d"],
        ["run", "--for", "30d"],
        ["report", "--view", "attempts", "--since", "99999999999999999999d"],
        ["report", "--view", "attempts", "--since", "0001-01-01"],
    ],
)
def test_unbounded_cli_values_exit_2(run_cli, args: list[str]) -> None:
    result = run_cli(*args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_human_goal_without_detection_is_refused(run_cli, tmp_path: Path) -> None:
    path = campaign_file(tmp_path, stop_after="{ human = 5 }")
    result = run_cli("campaign", "load", str(path))
    assert result.exit_code == 2 and "stop_after.human needs machine_detection" in result.stderr
    spec = CampaignSpec.model_validate(
        {k: v.strip('"') for k, v in BASE.items()}
        | {"stop_after": {"human": 5}, "machine_detection": "detect"}
    )
    assert spec.stop_after is not None and spec.stop_after.answered == 5  # with detection: fine


def test_a_teams_own_pack_file_is_read_at_load_and_kept(run_cli, tmp_path: Path) -> None:
    """`rules` may name a pack file beside the campaign: read at load (its errors named with
    the pack file's line), kept in the stored spec, so every process applies the same rules."""
    pack = tmp_path / "acme.toml"
    pack.write_text(
        'name = "acme"\nversion = "1"\ntitle = "Acme house rules"\n\n[[rules]]\nid = "quiet"\n'
        'jurisdictions = ["*"]\ncaps = ["2/7d"]\nsource = "Acme compliance policy 4.2"\n'
    )
    result = run_cli("campaign", "load", str(campaign_file(tmp_path, rules='["acme.toml"]')))
    assert result.exit_code == 0, result.stderr
    shown = run_cli("campaign", "list", "--format", "json")
    assert "spec-check" in shown.stdout
    pack.write_text(pack.read_text().replace('caps = ["2/7d"]', 'caps = ["2/0d"]'))
    broken = run_cli("campaign", "load", str(campaign_file(tmp_path, rules='["acme.toml"]')))
    assert broken.exit_code == 2 and "acme.toml: line 8: rules.0.caps" in broken.stderr, (
        broken.stderr
    )
    missing = run_cli("campaign", "load", str(campaign_file(tmp_path, rules='["nope.toml"]')))
    assert missing.exit_code == 2 and "nope.toml" in missing.stderr

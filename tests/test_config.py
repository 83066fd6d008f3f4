"""dialer.toml: discovery, ${ENV} interpolation, validation messages, masked secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dialer.cli import cli
from dialer.config import database_url_from, load_config
from dialer.errors import ConfigError

GOOD = """\
database_url = "postgresql://app:${DB_PASSWORD}@db.internal:5432/dialer"
public_url = "https://dialer.example.com"

[accounts.exotel-main]
kind = "exotel"
base_url = "https://api.exotel.com"
sid = "acme"
api_key = "${EXOTEL_KEY}"
api_token = "tok-literal-123"
rate = "200/min"
channels = 16
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("DIALER_CONFIG", "DIALER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DB_PASSWORD", "pg-s3cret")
    monkeypatch.setenv("EXOTEL_KEY", "key-s3cret")
    return tmp_path


def test_no_file_is_a_valid_setup(env: Path) -> None:
    config = load_config()
    assert config.accounts == {}
    assert database_url_from(config) is None


def test_reads_interpolates_and_overrides(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (env / "dialer.toml").write_text(GOOD)
    config = load_config()
    account = config.accounts["exotel-main"]
    assert account.api_key.get_secret_value() == "key-s3cret"
    assert account.parsed_rate.per_second == pytest.approx(200 / 60)
    assert database_url_from(config) == "postgresql://app:pg-s3cret@db.internal:5432/dialer"
    monkeypatch.setenv("DIALER_DATABASE_URL", "postgresql://other/db")
    assert database_url_from(config) == "postgresql://other/db"


def test_config_from_env_variable(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (env / "elsewhere.toml").write_text(GOOD)
    monkeypatch.setenv("DIALER_CONFIG", str(env / "elsewhere.toml"))
    assert "exotel-main" in load_config().accounts


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("channels = 16", 'channels = "many"'), "line 11: accounts.exotel-main.channels"),
        (('rate = "200/min"', 'rate = "fast"'), "expected a rate such as '200/min'"),
        (('kind = "exotel"', 'kind = "skype"'), "accounts.exotel-main"),
        (("sid = ", "sidd = "), "accounts.exotel-main.sidd: unknown key"),
        (('api_token = "tok-literal-123"', "api_token = 5"), "accounts.exotel-main.api_token"),
        (("${EXOTEL_KEY}", "${NOT_SET_ANYWHERE}"), "environment variable NOT_SET_ANYWHERE"),
        (("[accounts.exotel-main]", "[accounts.exotel-main"), "malformed TOML"),
        (('rate = "200/min"', 'rate = "0.000000000001/s"'), "slower than any dialing allows"),
        (('rate = "200/min"', 'rate = "200/min"\nlate_placement = "5s"'), "late_placement"),
        (("[accounts.exotel-main]", '[accounts."exotel-main\\n"]'), "account name"),
        (
            ("tok-literal-123", "tok-literal-123\\u0000"),  # named by its key, never shown
            "line 9: a NUL byte (\\u0000) in accounts.exotel-main.api_token",
        ),
        (
            ("[accounts.exotel-main]", '[accounts."exotel\\u0000main"]'),
            "NUL byte (\\u0000) in 'accounts.exotel\\x00main'",
        ),
    ],
)
def test_bad_file_names_file_key_and_expectation(env: Path, change, message: str) -> None:
    (env / "dialer.toml").write_text(GOOD.replace(*change))
    with pytest.raises(ConfigError) as caught:
        load_config()
    text = str(caught.value)
    assert "dialer.toml" in text
    assert message in text
    assert "s3cret" not in text and "tok-literal" not in text


def test_cli_exits_2_on_bad_config(env: Path) -> None:
    (env / "dialer.toml").write_text(GOOD.replace("channels = 16", "channels = 0"))
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 2
    assert "dialer.toml: line 11: accounts.exotel-main.channels" in result.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/dialer",
            "postgresql://postgres@127.0.0.1:5432/dialer",
        ),
        ("postgresql://app:pw-9x7q@db.internal/dialer", "postgresql://app@db.internal/dialer"),
    ],
)
def test_config_show_masks_a_database_url_the_same_from_the_file_or_the_environment(
    env: Path, monkeypatch: pytest.MonkeyPatch, url: str, shown: str
) -> None:
    """Only the password is a secret: a URL without one is shown whole, from either source."""
    (env / "dialer.toml").write_text(f'database_url = "{url}"\n')
    from_file = CliRunner().invoke(cli, ["config", "show"])
    (env / "dialer.toml").write_text("")
    monkeypatch.setenv("DIALER_DATABASE_URL", url)
    from_env = CliRunner().invoke(cli, ["config", "show"])
    for result in (from_file, from_env):
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["database_url"] == shown
        assert "pw-9x7q" not in result.stdout


def test_missing_explicit_config(env: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", "nope.toml", "config", "show"])
    assert result.exit_code == 2
    assert "nope.toml: configuration file not found" in result.stderr


@pytest.mark.parametrize(
    "name, said",
    [
        ("/dev/zero", "not a file (expected a configuration file)"),  # would never end
        (".", "not a file (expected a configuration file)"),
        ("huge.toml", "over 4 MiB: not a configuration file"),
    ],
)
def test_a_path_that_is_no_config_file_is_named_not_read(env: Path, name: str, said: str) -> None:
    (env / "huge.toml").write_bytes(b"# padding\n" * ((4 << 20) // 10 + 1))
    result = CliRunner().invoke(cli, ["--config", name, "config", "show"])
    assert result.exit_code == 2, result.output
    assert f"{name}: {said}" in result.stderr


def test_config_show_masks_every_secret(env: Path) -> None:
    (env / "dialer.toml").write_text(GOOD)
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 0, result.stderr
    assert "s3cret" not in result.stdout and "tok-literal" not in result.stdout
    shown = json.loads(result.stdout)
    assert shown["database_url"] == "postgresql://app@db.internal:5432/dialer"
    assert shown["accounts"]["exotel-main"]["api_token"] == "**********"
    assert shown["accounts"]["exotel-main"]["sid"] == "acme"


def test_the_example_configuration_is_valid_as_it_is(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing to fill in: no variable of the environment is needed, no public_url to edit."""
    for name in ("EXOTEL_API_KEY", "EXOTEL_API_TOKEN", "DIALER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    example = Path(__file__).resolve().parents[1] / "campaigns" / "dialer.toml.example"
    config = load_config(str(example))
    assert set(config.accounts) == {"sim-main"}
    assert config.public_url is None and config.database_url is None
    assert config.max_dials_per_number_per_day == 2


def test_callback_url_carries_the_accounts_token(run_cli, tmp_path) -> None:
    (tmp_path / "dialer.toml").write_text(
        'public_url = "https://dialer.example.com"\n[accounts.tc]\nkind = "telecmi"\n'
        'base_url = "https://piopiy.telecmi.com"\nappid = "123"\nsecret = "s3cret-value"\n'
        'rate = "10/s"\nchannels = 2\n'
    )
    result = run_cli("--config", str(tmp_path / "dialer.toml"), "config", "callback-url", "tc")
    assert result.exit_code == 0
    url = result.stdout.strip()
    assert url.startswith("https://dialer.example.com/callbacks/tc?token=")
    assert len(url.rpartition("=")[2]) == 32 and "s3cret" not in url
    missing = run_cli("--config", str(tmp_path / "dialer.toml"), "config", "callback-url", "nope")
    assert missing.exit_code == 2


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('[[webhooks]]\nurl = "https://x.test/h"\nsecret = "hunter2hunter2"\n', "whsec_"),
        ('[[webhooks]]\nurl = "https://x.test/h"\nsecret = "whsec_AAAA"\n', "24 to 64"),
        (
            '[[webhooks]]\nurl = "https://x.test/h"\nsecret = "whsec_' + "A" * 40 + '"\n'
            'events = ["call.done"]\n',
            "'attempt.settled', 'contact.final' or 'campaign.finished'",
        ),
        (
            '[[webhooks]]\nurl = "https://x.test/h"\nsecret = "whsec_' + "A" * 40 + '"\n'
            '[[webhooks]]\nurl = "https://x.test/h?b=1"\nsecret = "whsec_' + "A" * 40 + '"\n',
            "give each a `name`",
        ),
        ('[api]\ntokens = [{ name = "crm", token = "short", scopes = ["read"] }]\n', "16"),
        ('[api]\ntokens = [{ name = "crm", token = "' + "t" * 20 + '", scopes = [] }]\n', "1"),
    ],
)
def test_webhooks_and_api_tokens_are_checked(env: Path, section: str, message: str) -> None:
    path = env / "dialer.toml"
    path.write_text(section)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)  # a secret is never echoed

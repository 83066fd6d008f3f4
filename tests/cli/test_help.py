"""The command line shows the whole design and says plainly what is not built yet."""

from click.testing import CliRunner

from dialer.cli import cli

DESIGN_COMMANDS = [
    "migrate",
    "campaign",
    "dnc",
    "run",
    "serve",
    "call-test",
    "report",
    "export",
    "demo",
    "sim-provider",
    "config",
]


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    commands = result.stdout.split("Commands:")[1]
    listed = [line.split()[0] for line in commands.splitlines() if line.startswith("  ")]
    assert set(DESIGN_COMMANDS) <= set(listed)


def test_every_command_has_help() -> None:
    for name in DESIGN_COMMANDS:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Usage:" in result.stdout

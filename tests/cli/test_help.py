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


def test_every_command_is_found_under_its_name() -> None:
    """The command line imports a command's module only when it is asked for (COMMANDS):
    each name leads to the command of that name, and help lists them all."""
    from dialer.cli import COMMANDS

    with cli.make_context("dialer", ["--help"], resilient_parsing=True) as ctx:
        for name in COMMANDS:
            command = cli.get_command(ctx, name)
            assert command is not None and command.name == name
        assert cli.get_command(ctx, "no-such-command") is None
    listed = CliRunner().invoke(cli, ["--help"]).stdout.split("Commands:")[1]
    assert {line.split()[0] for line in listed.splitlines() if line.startswith("  ")} == set(
        COMMANDS
    )


def test_starting_one_command_imports_no_other() -> None:
    """`dialer campaign load` does not wait for the dialing, serving or account commands'
    modules (and what they import) to load before it reads a line."""
    import subprocess
    import sys

    probe = (
        "import sys; from dialer.cli import cli;"
        " ctx = cli.make_context('dialer', ['campaign', '--help'], resilient_parsing=True);"
        " cli.get_command(ctx, 'campaign');"
        " print(sorted(m for m in sys.modules if m.startswith('dialer.cli.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert "dialer.cli.campaign" in loaded
    for other in ("dialer.cli.dialing", "dialer.cli.account", "dialer.cli.demo"):
        assert other not in loaded, loaded


def test_commands_that_send_nothing_load_no_http_stack() -> None:
    """Reading dialer.toml (every account's model) and the campaign commands import neither
    the HTTP client and server (aiohttp: a tenth of a second) nor a provider's signing
    library: a cron job's `dialer campaign load` or `show` starts without them. They are
    imported where a request is sent or a server is made."""
    import subprocess
    import sys

    probe = (
        "import sys; import dialer.config, dialer.cli.campaign, dialer.loading.loader;"
        " print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    for heavy in ("aiohttp", "jwt", "cryptography"):
        assert f"'{heavy}'" not in loaded, f"{heavy} imported: {loaded}"

"""One error hierarchy; each error knows the exit code a cron job should see.

They are click exceptions, so any command that raises one prints a single line on stderr and
exits with its code, whether run from the shell or from a test's CliRunner.
"""

from __future__ import annotations

from typing import IO, Any

import click


class DialerError(click.ClickException):
    """Base of every error the CLI reports as a one-line message instead of a traceback."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"dialer: error: {self.message}", err=True, file=file)


class ConfigError(DialerError):
    """Bad configuration or campaign file: the user must fix a file (exit 2)."""

    exit_code = 2


class InputError(DialerError):
    """Bad input data or arguments: missing file, unknown column, undecodable bytes (exit 2)."""

    exit_code = 2


class StateError(DialerError):
    """The database does not allow the request (exit 2), e.g. changing a campaign that dialed."""

    exit_code = 2

"""The `dialer` command line. Exit codes: 0 done, 1 other error, 2 bad configuration or input,
3 stopped by the calling window or deadline with work left (see `dialer run --help`)."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import select
import signal
import sys
import threading

import click

from dialer import __version__
from dialer.cli.context import INTERRUPT, AppContext
from dialer.db.outage import CONNECTION_LOST, REFUSED, connection_lost, database_refused
from dialer.errors import DialerError, exit_code_of

# Each command's module, imported only when the command runs (or help lists it): a command
# then starts without importing every other one's (dialer.cli took 0.85 s to import whole;
# `campaign load` waits for it before reading a line).
COMMANDS = {
    "migrate": "dialer.cli.migrate:migrate",
    "account": "dialer.cli.account:account",
    "campaign": "dialer.cli.campaign:campaign",
    "dnc": "dialer.cli.dnc:dnc",
    "run": "dialer.cli.dialing:run",
    "serve": "dialer.cli.dialing:serve",
    "call-test": "dialer.cli.call_test:call_test",
    "report": "dialer.cli.report:report",
    "export": "dialer.cli.export:export",
    "demo": "dialer.cli.demo:demo",
    "sim-provider": "dialer.cli.dialing:sim_provider",
    "config": "dialer.cli.config_cmd:config",
    "webhooks": "dialer.cli.webhooks:webhooks",
    "explain": "dialer.cli.explain:explain",
    "consent": "dialer.cli.consent:consent",
    "forget": "dialer.cli.forget:forget_numbers",
}


OUTPUT_CLOSED_EXIT = 141  # as the shell reports a writer ended by SIGPIPE (128 + 13)


class OutputClosed(Exception):
    """Whoever read the standard output stopped reading (`dialer dnc list | head`): not the
    database's fault, nor an error to report on top of the reader's choice."""


def _output_closed() -> bool:
    """Whether the standard output is a pipe whose reader has gone: such a pipe polls as an
    error (POLLERR, always reported). Not a real descriptor (CliRunner's): no."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
        return False


class Reported(click.ClickException):
    """A DialerError on its way out: one line on stderr, and the exit code of its type."""

    def __init__(self, error: DialerError) -> None:
        super().__init__(error.message)
        self.exit_code = exit_code_of(error)  # type: ignore[misc]  # click reads it per instance

    def show(self, file=None) -> None:
        click.echo(f"dialer: error: {self.message}", err=True, file=file)


class DialerGroup(click.Group):
    """The one place where errors become exit codes (for the shell and for CliRunner alike),
    and where a command's module is imported, when it is asked for (COMMANDS)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, name = where.split(":")
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command) and command.name == cmd_name, where
        return command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DialerError as error:
            raise Reported(error) from None
        except BrokenPipeError as error:  # before CONNECTION_LOST, of which it is one
            if _output_closed():
                raise OutputClosed from None
            raise Reported(connection_lost(error)) from None
        except REFUSED as error:  # the database is there, but will not do it now (read-only)
            raise Reported(database_refused(error)) from None
        except CONNECTION_LOST as error:  # the database went away under the command
            raise Reported(connection_lost(error)) from None


@click.group(
    cls=DialerGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="dialer")
@click.option(
    "--config",
    "config_path",
    envvar="DIALER_CONFIG",
    metavar="FILE",
    help="dialer.toml to use (default: $DIALER_CONFIG, else ./dialer.toml if present).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Run bulk outbound call campaigns through a telephony provider, with PostgreSQL as the
    single source of truth shared by every dialer process.

    \b
    Typical use:
      dialer campaign load campaigns/example.toml   # CSV -> contacts
      dialer run example-renewals                    # dial (cron-friendly exit codes)
      dialer serve                                   # receive provider callbacks
      dialer report example-renewals                 # results

    Trying it: the README's "Try it against the simulator" runs a campaign against
    `dialer sim-provider` with campaigns/dialer.toml.example as it is.

    With no database URL configured (database_url in dialer.toml or $DIALER_DATABASE_URL), an
    embedded PostgreSQL is started in your user data folder. Try `dialer demo`.
    """
    ctx.obj = AppContext(config_option=config_path)


def _light_workers() -> None:
    """Started as the `dialer` script, the main module has no import name, so each spawned
    worker process would re-import the script and with it the whole CLI. Naming it like
    `python -m dialer` does lets multiprocessing skip that (workers import only what they run)."""
    entry = sys.modules.get("__main__")
    if entry is not None and getattr(entry, "__spec__", None) is None:
        entry.__spec__ = importlib.machinery.ModuleSpec("dialer.__main__", None)


INTERRUPT_GRACE_S = 10.0  # after Ctrl-C, cleaning up may take this long, then the process ends
INTERRUPTED = "dialer: interrupted; any unfinished transaction was rolled back"


def _bounded_interrupt() -> None:
    """Ctrl-C raises KeyboardInterrupt as usual, and the process ends within
    INTERRUPT_GRACE_S whatever its cleanup waits on (a worker, a thread): an open transaction
    dies with the connection, so nothing is half-written. An ignored SIGINT stays ignored."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return

    def interrupted(signum: int, frame: object) -> None:
        INTERRUPT.set()
        watchdog = threading.Timer(INTERRUPT_GRACE_S, _end_interrupted)
        watchdog.daemon = True
        watchdog.start()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)


def _end_interrupted() -> None:
    sys.stderr.write(INTERRUPTED + "\n")
    sys.stderr.flush()
    os._exit(130)


def main() -> None:
    """Entry point: one-line errors with the right exit code instead of tracebacks."""
    _light_workers()
    _bounded_interrupt()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if INTERRUPT.is_set():  # an error the interrupted work raised while it unwound
            _end_interrupted()
        exc.show()
        sys.exit(exc.exit_code)
    except DialerError as error:  # raised before a command was invoked (the group's options)
        if INTERRUPT.is_set():
            _end_interrupted()
        Reported(error).show()
        sys.exit(exit_code_of(error))
    except (click.Abort, KeyboardInterrupt):
        click.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except OutputClosed:
        # what is left in the buffer has no reader: send it nowhere, so the exit's flush is quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(OUTPUT_CLOSED_EXIT)
    except Exception:
        if INTERRUPT.is_set():
            _end_interrupted()
        raise
    sys.exit(130 if INTERRUPT.is_set() else 0)

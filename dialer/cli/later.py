"""Commands of the design whose implementation lands in later issues; they exist so that
`dialer --help` shows the whole tool, and they say plainly that they are not built yet."""

from __future__ import annotations

import click

from dialer.errors import DialerError


class NotBuiltYet(DialerError):
    exit_code = 1


def _not_built(name: str) -> None:
    raise NotBuiltYet(f"`dialer {name}` is not built yet in this version")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def report(args: tuple[str, ...]) -> None:
    """Print campaign results from the reporting views (not built yet)."""
    _not_built("report")

"""The `dialer` command's first step: Ctrl-C is answered with one line from the very start,
while the command line's modules are still being imported (a second or so), before dialer.cli
installs its own handling. Nothing has been written by then, so ending at once loses nothing."""

from __future__ import annotations

import os
import signal

INTERRUPTED_AT_START = "dialer: interrupted while starting; nothing was done"


def _interrupted_at_start(signum: int, frame: object) -> None:
    os.write(2, (INTERRUPTED_AT_START + "\n").encode())
    os._exit(130)


def main() -> None:
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # an ignored SIGINT stays so
        signal.signal(signal.SIGINT, _interrupted_at_start)
    from dialer.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()

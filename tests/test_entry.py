"""Ctrl-C at any moment of start-up ends the command with one line and exit 130, never a
traceback: while its modules are still imported (dialer.entry), and while it waits for the
database (dialer.cli's own handling). The child gets SIGINT's default disposition back, as a
terminal's process has, even where this suite runs with SIGINT ignored (CI, a background
shell)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from dialer.entry import INTERRUPTED_AT_START


def start(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dialer", *args],
        cwd=tmp_path,
        env=os.environ | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_ctrl_c_while_starting_says_one_line(tmp_path: Path) -> None:
    process = start(tmp_path, "campaign", "list", env={})
    process.send_signal(signal.SIGINT)  # at once: the interpreter is still importing
    out, err = process.communicate(timeout=30)
    said = err.decode()
    # Before Python runs any of ours it dies of the signal itself, silently (a shell says 130);
    # on a loaded machine the signal can land inside the interpreter's own start-up (its `site`
    # import), where Python reports a fatal error of its own before any of our code exists.
    python_starting = process.returncode == 1 and said.startswith(
        "Fatal Python error: init_import_site"
    )
    assert (
        (process.returncode, said) == (-signal.SIGINT, "")
        or (process.returncode == 130 and said.strip() == INTERRUPTED_AT_START)
        or python_starting
    ), (process.returncode, said)
    assert out == b""


# SIGINT the moment the command line's modules start importing (dialer.entry's moment).
INTERRUPT_DURING_IMPORT = """
import builtins, os, signal, sys
real = builtins.__import__
def hook(name, *args, **kwargs):
    if name == "dialer.cli":
        os.kill(os.getpid(), signal.SIGINT)
    return real(name, *args, **kwargs)
builtins.__import__ = hook
sys.argv = ["dialer", "campaign", "list"]
from dialer.entry import main
main()
"""


def test_ctrl_c_while_importing_says_one_line(tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-c", INTERRUPT_DURING_IMPORT],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    said = process.stderr.decode()
    assert process.returncode == 130, said
    assert said.strip() == INTERRUPTED_AT_START


def test_ctrl_c_while_waiting_for_the_database_says_one_line(tmp_path: Path) -> None:
    process = start(
        tmp_path, "run", env={"DIALER_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/none"}
    )
    assert process.stderr is not None
    first = process.stderr.readline().decode()  # the event: it is waiting for the database
    assert "database not reachable yet" in first, first
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=30)
    said = rest.decode()
    assert process.returncode == 130, first + said
    assert "Traceback" not in said and said.strip().splitlines()[-1] == (
        "dialer: interrupted; any unfinished transaction was rolled back"
    )

"""`dialer sim-provider` as a command: its errors are one line, as serve's are."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.processes import dialer_command, sim_provider


def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with sim_provider(tmp_path) as url:
        port = url.rsplit(":", 1)[1]
        second = subprocess.run(
            dialer_command("sim-provider", "--port", port),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 2, second.stderr
    assert "Traceback" not in second.stderr
    assert second.stderr.strip().splitlines()[-1] == (
        f"dialer: error: 127.0.0.1:{port} is already in use (another dialer process, or another"
        " program); choose another --port, or stop that one"
    )

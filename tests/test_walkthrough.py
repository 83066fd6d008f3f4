"""The README's "Try it against the simulator", run as written from a clean folder holding only
what a clone has (`campaigns/`): each line of its block is one command; a line ending in `&`
runs in the background; `kill %1 %2` stops them. Two changes only, both mechanical: `dialer` is
this interpreter's `python -m dialer`, and the ports 8080 and 8099 become free ones (the suite
runs beside other tests)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.processes import free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Try it against the simulator"


def walkthrough() -> list[str]:
    """The commands of the README's walk-through, comments dropped."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(HEADING) :]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block is not None, "the walk-through has no ```sh block"
    lines = [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def test_the_readme_walkthrough_runs_from_a_clean_folder(
    own_database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "clone"
    shutil.copytree(ROOT / "campaigns", folder / "campaigns")
    ports = {"8080": str(free_port()), "8099": str(free_port())}
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIALER_")} | {
        "DIALER_DATABASE_URL": own_database_url
    }  # else: the embedded PostgreSQL

    def local(text: str) -> str:
        for port, free in ports.items():
            text = text.replace(port, free)
        return text

    background: list[subprocess.Popen] = []
    said: dict[str, subprocess.CompletedProcess] = {}
    commands = walkthrough()
    assert commands[-1] == "kill %1 %2" and sum(c.endswith("&") for c in commands) == 2
    try:
        for line in commands:
            if line.startswith("cp "):
                _, source, target = shlex.split(line)
                (folder / target).write_text(local((folder / source).read_text()))
                continue
            if line.startswith("kill "):
                break
            words = shlex.split(local(line.removesuffix("&").strip()))
            assert words[0] == "dialer", line
            command = [sys.executable, "-m", "dialer", *words[1:]]
            if line.endswith("&"):
                log = (tmp_path / f"{words[1]}.log").open("wb")
                background.append(
                    subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log)
                )
                if words[1] == "sim-provider":
                    wait_for_http(f"http://127.0.0.1:{ports['8099']}/stats")
                else:
                    wait_for_http(f"http://127.0.0.1:{ports['8080']}/healthz")
                continue
            done = subprocess.run(
                command, cwd=folder, env=env, capture_output=True, text=True, timeout=240
            )
            said[" ".join(words[1:3])] = done
            assert done.returncode == 0, f"{line}: exit {done.returncode}\n{done.stderr[-3000:]}"
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['8080']}/api/campaigns") as page:
            shown = {c["name"]: c for c in json.load(page)["campaigns"]}
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['8080']}/") as page:
            assert page.status == 200 and b"dialer" in page.read()
    finally:
        for process in background:
            process.terminate()
        for process in background:
            process.wait(timeout=20)
    run = said["run try-sim"].stderr
    assert "stopped because every contact is final" in run, run[-3000:]
    assert "dialer: exit 0 (all work done)" in run
    assert "contacts      pending 0, dialing 0" in said["campaign show"].stdout
    campaign = shown["try-sim"]
    assert campaign["contacts"] == 8 and campaign["states"]["pending"] == 0
    loaded = said["campaign load"].stdout
    assert "loaded      8" in loaded and "duplicates  1" in loaded and "rejected    1" in loaded
    assert campaign["status"] == "completed"

"""A real install: the wheel carries the SQL, and an installed `dialer` migrates and dials.

Built with pip, installed into a fresh virtual environment (dependencies from the package
index, as a user's `pip install` would), run from a folder that has nothing of the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import fresh_database

ROOT = Path(__file__).resolve().parents[1]


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.timeout(900)
def test_wheel_installs_a_working_dialer_that_migrates_and_runs_a_demo(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("dialer-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    migrations = sorted(p.name for p in (ROOT / "sql" / "migrations").glob("*.sql"))
    reports = sorted(p.name for p in (ROOT / "sql" / "reports").glob("*.sql"))
    assert {f"dialer/sql/migrations/{name}" for name in migrations} <= shipped
    assert {f"dialer/sql/reports/{name}" for name in reports} <= shipped

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        cwd=tmp_path,
    )
    elsewhere = tmp_path / "unrelated"
    elsewhere.mkdir()
    dialer = str(env_dir / "bin" / "dialer")
    with fresh_database("wheel", migrated=False) as url:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DIALER_CONFIG")}
        env |= {"DIALER_DATABASE_URL": url}
        migrated = _run([dialer, "migrate"], cwd=elsewhere, env=env)
        assert "0001_schema" in migrated.stderr + migrated.stdout
        demo = _run([dialer, "demo", "--contacts", "20"], cwd=elsewhere, env=env)
        assert "demo finished" in demo.stderr
    where = _run([str(python), "-c", "import dialer; print(dialer.__file__)"], cwd=elsewhere)
    assert str(ROOT) not in where.stdout  # the installed copy ran, not the checkout

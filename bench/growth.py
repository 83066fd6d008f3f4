"""Cost as work grows (issue 16, item 6): load, dispatch, intake and export at 1x, 10x, 100x.

    python bench/growth.py [--base 1000] [--rounds 3] [--only load,export,dispatch,intake]

For each kind of work, three sizes (`base`, 10x, 100x; dispatch and intake use a twentieth of
the base in attempts, for time), each in a fresh database, rounds outermost so every size runs
in every hour. Reported per size: the time per unit (µs per row, per attempt or per callback,
process start to exit where a process does the whole job) and the peak RSS of the dialer's
processes (sampled every 20 ms). Flat columns are the goal: a cost per unit or a memory that
grows with the size is a scan or a buffer that grows with the work.

- load: `dialer campaign load` of bench/load.py's CSV (8 columns, 2% invalid, 3% duplicate).
- export: `dialer export` of bench/export.py's settled campaign.
- dispatch: one `dialer run --wait` and one `dialer serve --workers 2` against the simulator with no
  limits of its own, every call completed at once by its callbacks, an account at 200/s (what
  this machine's two cores carry with intake, the simulator and PostgreSQL beside it: at
  1,000/s the callbacks fall behind, the 10,000 channels fill and the run measures an
  overloaded machine, not dispatch) and 10,000 channels: µs per attempt over the span of
  `requested_at`, and the CPU of `dialer run` per attempt (its own cost, which a scan growing
  with the work would raise); peak RSS of `dialer run`.
- intake: `dialer serve --workers 2` storing 4 signed callbacks per live attempt (as
  `bench/dialing.py intake`): µs per callback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dialing
import load as load_bench
from common import (
    bench_config,
    create_database,
    drop_database,
    median,
    run_measured,
    wait_until_listening,
    write_section,
)
from export import seed as seed_export

from tests.processes import free_port, wait_for_http

OUT = Path(__file__).with_name("out")


@contextlib.contextmanager
def rss_peak(process: subprocess.Popen) -> Iterator[dict[str, float]]:
    """The peak RSS (MB) of a running process and its children while the block runs."""
    peak = {"mb": 0.0}
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(process.pid)
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                peak["mb"] = max(peak["mb"], total / 2**20)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def measure_load(rows: int) -> tuple[float, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-growth-load-"))
    csv_path = folder / "contacts.csv"
    load_bench.generate(csv_path, rows)
    (folder / "bench.toml").write_text(load_bench.CAMPAIGN)
    name, url = create_database()
    try:
        env = os.environ | {
            "DIALER_DATABASE_URL": url,
            "DIALER_CONFIG": str(bench_config(folder / "dialer.toml")),
        }
        subprocess.run([sys.executable, "-m", "dialer", "migrate"], env=env, check=True)
        result = run_measured(
            [sys.executable, "-m", "dialer", "campaign", "load", str(folder / "bench.toml")],
            env=env,
        )
        if result.returncode != 0:
            sys.exit(f"load failed: {result.stderr[-2000:]}")
        return 1e6 * result.seconds / rows, result.peak_rss_tree_mb
    finally:
        drop_database(name)


def measure_export(contacts: int) -> tuple[float, float]:
    name, url = create_database()
    target = Path(tempfile.mkdtemp(prefix="bench-growth-export-")) / "export.csv"
    try:
        asyncio.run(seed_export(url, contacts))
        result = run_measured(
            [sys.executable, "-m", "dialer", "export", "export-bench", "--out", str(target)],
            env=os.environ | {"DIALER_DATABASE_URL": url},
        )
        if result.returncode != 0:
            sys.exit(f"export failed: {result.stderr[-2000:]}")
        return 1e6 * result.seconds / contacts, result.peak_rss_tree_mb
    finally:
        drop_database(name)


DISPATCH_RATE = "200/s"


def measure_dispatch(contacts: int) -> tuple[float, float, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-growth-dispatch-"))
    sim_port, serve_port = free_port(), free_port()
    sim = dialing.start(
        dialing.sim_command(
            sim_port,
            "--rate",
            "unlimited",
            "--channels",
            "0",
            "--ring",
            "0s",
            "--talk",
            "0s",
            "--outcomes",
            "completed=1",
        ),
        folder,
        dict(os.environ),
        "sim.log",
    )
    name, url = create_database()
    serve: subprocess.Popen | None = None
    try:
        wait_for_http(f"http://127.0.0.1:{sim_port}/stats")
        env = os.environ | {
            "DIALER_DATABASE_URL": url,
            "DIALER_CONFIG": str(folder / "dialer.toml"),
        }
        # the largest figures dialer.toml accepts; every call ends at once, by its callbacks
        dialing.write_files(
            folder, "growth", contacts, sim_port, serve_port, rate=DISPATCH_RATE, channels=10_000
        )
        subprocess.run(
            dialing.dialer("campaign", "load", "growth.toml"),
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
        serve = dialing.start(
            dialing.dialer("serve", "--log-level", "warning", "--workers", str(dialing.WORKERS)),
            folder,
            env,
            "s.log",
        )
        wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
        wait_until_listening(serve.pid, serve_port, dialing.WORKERS)
        run = dialing.start(
            dialing.dialer("run", "growth", "--wait", "--log-level", "warning"),
            folder,
            env,
            "run.log",
        )
        with rss_peak(run) as peak:
            _, status, usage = os.wait4(run.pid, 0)  # its CPU, to the end
            run.returncode = os.waitstatus_to_exitcode(status)
        dialed, span = asyncio.run(dialing.dial_span(url))
        if dialed != contacts or run.returncode != 0:
            sys.exit(f"dispatch: {dialed} of {contacts} dialed; see {folder}/run.log")
        cpu_s = usage.ru_utime + usage.ru_stime
        return 1e6 * span / dialed, peak["mb"], 1e6 * cpu_s / dialed
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait()
        sim.terminate()
        sim.wait()
        drop_database(name)


def measure_intake(attempts: int) -> tuple[float, float]:
    name, url = create_database()
    folder = Path(tempfile.mkdtemp(prefix="bench-growth-intake-"))
    serve_port = free_port()
    env = os.environ | {"DIALER_DATABASE_URL": url, "DIALER_CONFIG": str(folder / "dialer.toml")}
    dialing.write_files(folder, "intake", 1, free_port(), serve_port, rate="10/s", channels=10)
    subprocess.run(dialing.dialer("migrate"), env=env, check=True, capture_output=True)
    ids = asyncio.run(dialing._seed_attempts(url, attempts))
    serve = dialing.start(
        dialing.dialer("serve", "--log-level", "warning", "--workers", str(dialing.WORKERS)),
        folder,
        env,
        "serve.log",
    )
    try:
        wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
        wait_until_listening(serve.pid, serve_port, dialing.WORKERS)
        with rss_peak(serve) as peak:
            elapsed, failures = asyncio.run(dialing._send_callbacks(serve_port, ids, 64))
        if failures:
            sys.exit(f"intake: {failures} callbacks refused or lost; see {folder}/serve.log")
        return 1e6 * elapsed / (4 * attempts), peak["mb"]
    finally:
        serve.terminate()
        serve.wait()
        drop_database(name)


WORK = {
    "load": (measure_load, 1, "row"),
    "export": (measure_export, 1, "contact"),
    "dispatch": (measure_dispatch, 20, "attempt"),
    "intake": (measure_intake, 20, "callback"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(WORK))
    options = parser.parse_args()
    kinds = [k for k in options.only.split(",") if k]
    results: dict[tuple[str, int], list[tuple[float, ...]]] = {}
    for round_no in range(options.rounds):
        for kind in kinds:
            measure, divisor, _ = WORK[kind]
            for factor in (1, 10, 100):
                size = options.base * factor // divisor
                results.setdefault((kind, factor), []).append(measure(size))
                cost, rss, *cpu = results[(kind, factor)][-1]
                print(
                    f"round {round_no + 1}: {kind} x{factor} ({size}): {cost:.1f} µs/unit, "
                    f"{rss:.0f} MB" + (f", CPU {cpu[0]:.1f} µs/unit" if cpu else ""),
                    flush=True,
                )
    rows = []
    for kind in kinds:
        _, divisor, _ = WORK[kind]
        before: tuple[int, float] | None = None
        for factor in (1, 10, 100):
            size = options.base * factor // divisor
            costs = [r[0] for r in results[(kind, factor)]]
            peaks = [r[1] for r in results[(kind, factor)]]
            cpus = [r[2] for r in results[(kind, factor)] if len(r) > 2]
            each = ", ".join(f"{c:.0f}" for c in costs)
            total = median(costs) * size  # µs for the whole size
            # what the extra units cost, start-up left out: (t(n) - t(n/10)) / (n - n/10)
            margin = "" if before is None else f"{(total - before[1]) / (size - before[0]):.1f}"
            before = (size, total)
            cpu = f"{median(cpus):.1f} ({', '.join(f'{c:.0f}' for c in cpus)})" if cpus else ""
            rows.append(
                f"| {kind} | {size:,} | {median(costs):.1f} ({each}) | {margin}"
                f" | {cpu} | {median(peaks):.0f} |"
            )
    table = "\n".join(rows)
    units = ", ".join(f"{k}: per {WORK[k][2]}" for k in kinds)
    result = f"""
Command: `python bench/growth.py --base {options.base} --rounds {options.rounds}` — each size
in a fresh database, rounds outermost; medians of {options.rounds} rounds (rounds in brackets).
Cost is µs of wall time per unit ({units}); dispatch and intake run a twentieth of the base in
attempts (intake: 4 callbacks per attempt); dispatch runs at {DISPATCH_RATE} (the account's
figure; see the script's docstring) and also shows the CPU of `dialer run` per attempt.

| work | size | µs/unit, whole run | µs/unit added (from size before) | CPU µs/unit | peak RSS, MB |
|---|---|---|---|---|---|
{table}
"""
    print(result)
    write_section("Cost as work grows (issue 16)", result)


if __name__ == "__main__":
    main()

"""Benchmark (issue 19, item 2): lost final callbacks at real call lengths.

    python bench/lost_real.py [--contacts 150] [--repeat 3] [--cases clean,lost10,lost30x4,down5m]

The project's own timing: the campaign's ring timeout is 30 s and its longest call 10 minutes;
the sim rings 2-30 s and talks 10 s-3 min (outcomes: its seeded default mix), at Exotel's
200/min with 30 channels, so channels are what binds. Each round runs every case at once
(each with its own database, sim, `dialer serve` and runs), so a noisy machine slows them
alike:

- clean: nothing lost;
- lost10: a tenth of the final callbacks never sent;
- lost30x4: three tenths lost, four `dialer run` processes sharing the campaign;
- down5m: nothing lost by the provider, but `dialer serve` is killed 60 s in and comes back
  5 minutes later (the sim retries each callback for a few seconds, then gives up).

Each case: `dialer run --wait` timed from start to the last run's exit. Checked: every
attempt's outcome is the sim's, no sim 429 (rate or channels), no number called twice.
Targets: lost10 <= 1.2x clean, lost30x4 <= 1.5x, down5m <= 1.5x (medians over rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import create_database, drop_database, median, write_section
from dialing import dialer, sim_command, start, stats

from tests.processes import free_port, wait_for_http

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret"
# The sim's calls: `real` rings 2-30 s and talks 10 s-3 min at Exotel's 200/min with 30
# channels; `short` (the old bench's sub-second calls, 20/s and 8 channels) under the same
# campaign timing, where a lost final used to hold its channel for the ring timeout + 3 s.
CALLS = {
    "real": {"rate": "200/min", "channels": 30, "ring": "2s..30s", "talk": "10s..3m"},
    "short": {"rate": "20/s", "channels": 8, "ring": "0.2s..1s", "talk": "0.5s..2.5s"},
}
RATE, CHANNELS = "200/min", 30
RING, TALK = "2s..30s", "10s..3m"
CAMPAIGN = """name = "real"
account = "sim-main"
caller_id = "+918047112233"
contacts = "real.csv"
default_region = "IN"
timezone = "UTC"
ring_timeout = "30s"
max_call_duration = "10m"
window = { start = "00:00", end = "23:59:59" }
[retry]
max_attempts = 1
"""
CASES = {
    "clean": {"lose": 0.0, "runs": 1, "down_s": 0},
    "lost10": {"lose": 0.1, "runs": 1, "down_s": 0},
    "lost30x4": {"lose": 0.3, "runs": 4, "down_s": 0},
    "down5m": {"lose": 0.0, "runs": 1, "down_s": 300},
}
DOWN_AFTER_S = 60


async def check(url: str, seen: dict) -> dict:
    """Outcomes that differ from the sim's (or calls no attempt recorded), and numbers the sim
    called more than once."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT provider_call_id, outcome FROM attempts")
        unsettled = await conn.fetchval(
            "SELECT count(*) FROM contacts WHERE state NOT IN ('done', 'exhausted', 'failed')"
        )
        # A reservation holds its channel from the claim (created_at) until its request leaves
        # (requested_at): what the claim's horizon costs the channels, against all the time
        # attempts held them (until each call ended)
        held = await conn.fetchrow(
            """SELECT sum(extract(epoch FROM requested_at - created_at)) AS before_send,
                      max(extract(epoch FROM requested_at - created_at)) AS longest,
                      sum(extract(epoch FROM ended_at - created_at)) AS channel
               FROM attempts WHERE requested_at IS NOT NULL AND ended_at IS NOT NULL"""
        )
    finally:
        await conn.close()
    ours = {r["provider_call_id"]: r["outcome"] for r in rows if r["provider_call_id"]}
    calls = seen["calls"]
    wrong = sum(ours.get(cid) != call["outcome"] for cid, call in calls.items())
    wrong += sum(cid not in calls for cid in ours)
    twice = sum(1 for n in seen["per_number"].values() if n > 1)
    before_send, channel = float(held["before_send"] or 0), float(held["channel"] or 0)
    return {
        "wrong": wrong,
        "twice": twice,
        "unsettled": unsettled,
        "held_before_send_s": round(before_send, 1),
        "longest_before_send_s": round(float(held["longest"] or 0), 2),
        "held_before_send_share": round(before_send / channel, 5) if channel else 0.0,
    }


def one_case(case: str, contacts: int, results: dict) -> None:
    spec = CASES[case]
    name, url = create_database()
    folder = Path(tempfile.mkdtemp(prefix=f"bench-real-{case}-"))
    sim_port, serve_port = free_port(), free_port()
    env = os.environ | {"DIALER_DATABASE_URL": url, "DIALER_CONFIG": str(folder / "dialer.toml")}
    (folder / "dialer.toml").write_text(
        f'listen = "127.0.0.1:{serve_port}"\n\n[accounts.sim-main]\nkind = "sim"\n'
        f'base_url = "http://127.0.0.1:{sim_port}"\nsecret = "{SECRET}"\nrate = "{RATE}"\n'
        f"channels = {CHANNELS}\n"
    )
    with (folder / "real.csv").open("w") as handle:
        handle.write("phone,name\n")
        for i in range(contacts):
            handle.write(f"+9198{i + 30_000_000:08d},c{i}\n")
    (folder / "real.toml").write_text(CAMPAIGN)
    options = ["--rate", RATE, "--channels", str(CHANNELS), "--ring", RING, "--talk", TALK]
    options += ["--lose-final", str(spec["lose"]), "--seed", "7"]
    # The same sim for every case and side of an A/B (this tree's): the same calls, in order.
    sim_env = env | {"PYTHONPATH": str(HERE.parent)}
    sim = start(sim_command(sim_port, *options), folder, sim_env, "sim.log")
    serve = None
    try:
        wait_for_http(f"http://127.0.0.1:{sim_port}/stats")
        subprocess.run(
            dialer("campaign", "load", "real.toml"),
            cwd=folder,
            env=env,
            check=True,
            capture_output=True,
        )
        serve = start(dialer("serve", "--log-level", "warning"), folder, env, "serve.log")
        wait_for_http(f"http://127.0.0.1:{serve_port}/healthz")
        started = time.perf_counter()
        runs = [
            start(
                dialer("run", "real", "--wait", "--log-level", "warning"),
                folder,
                env,
                f"run{i}.log",
            )
            for i in range(spec["runs"])
        ]
        if spec["down_s"]:
            time.sleep(DOWN_AFTER_S)
            serve.kill()
            serve.wait()
            time.sleep(spec["down_s"])
            serve = start(dialer("serve", "--log-level", "warning"), folder, env, "serve2.log")
        codes = [run.wait() for run in runs]
        elapsed = time.perf_counter() - started
        seen = asyncio.run(stats(sim_port))
        checked = asyncio.run(check(url, seen))
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait()
        sim.terminate()
        sim.wait()
        drop_database(name)
    results[case] = {
        "seconds": elapsed,
        "codes": codes,
        "calls": seen.get("accepted", 0),
        "lost": seen.get("finals_lost", 0) + seen.get("callbacks_lost", 0),
        "429": seen.get("rejected_rate", 0) + seen.get("rejected_channels", 0),
    } | checked


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--calls", choices=sorted(CALLS), default="real")
    args = parser.parse_args()
    global RATE, CHANNELS, RING, TALK
    chosen = CALLS[args.calls]
    RATE, CHANNELS, RING, TALK = chosen["rate"], chosen["channels"], chosen["ring"], chosen["talk"]
    cases = args.cases.split(",")
    runs: dict[str, list[dict]] = {case: [] for case in cases}
    for round_no in range(args.repeat):
        results: dict[str, dict] = {}
        threads = [
            threading.Thread(target=one_case, args=(case, args.contacts, results)) for case in cases
        ]
        for thread in threads:
            thread.start()
            time.sleep(2)  # not every process starting in the same second
        for thread in threads:
            thread.join()
        for case in cases:
            runs[case].append(results[case])
            print(f"round {round_no + 1} {case}: {results[case]}", flush=True)
    clean = median([r["seconds"] for r in runs["clean"]]) if "clean" in runs else None
    lines = []
    for case, results in runs.items():
        times = [r["seconds"] for r in results]
        each = ", ".join(f"{t:.0f}" for t in times)
        ratio = f"{median(times) / clean:.2f}" if clean else "-"
        totals = {k: sum(r[k] for r in results) for k in ("calls", "lost", "wrong", "twice", "429")}
        codes = sorted({c for r in results for c in r["codes"]})
        lines.append(
            f"| {case} | {each} | {median(times):.0f} s | **{ratio}** | {totals['calls']} |"
            f" {totals['lost']} | {totals['wrong']} | {totals['twice']} | {totals['429']} |"
            f" {codes} |"
        )
    rows = "\n".join(lines)
    body = f"""
Command: `python bench/lost_real.py --contacts {args.contacts} --repeat {args.repeat}
--calls {args.calls} --cases {args.cases}` —
the campaign's ring timeout 30 s, longest call 10 min, one attempt per contact; the sim at
{RATE} and {CHANNELS} channels rings {RING} and talks {TALK}. Each round runs every case at
once, each on its own database, sim and `dialer serve`; `dialer run --wait` timed from start
to the last run's exit.

| case | seconds per round | median | ÷ clean | calls | finals lost | outcomes wrong \
| called twice | sim 429s | exits |
|---|---|---|---|---|---|---|---|---|---|
{rows}

Targets: lost10 ≤ 1.2, lost30x4 ≤ 1.5, down5m ≤ 1.5 (÷ clean, medians).
"""
    print(body)
    if not args.no_write:
        title = "Lost final callbacks at real call lengths (issue 19)"
        if args.calls != "real":
            title = f"Lost final callbacks, {args.calls} calls under the example timing (issue 19)"
        write_section(title, body)


if __name__ == "__main__":
    main()

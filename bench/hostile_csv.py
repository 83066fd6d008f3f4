"""Benchmark: `dialer campaign load` of a CSV holding one 300 MB line (a broken export), side by
side with the same file without it and with `sha256sum` reading the file (the floor: the
loader must read and hash every byte).

    python bench/hostile_csv.py [--line-mb 300] [--repeat 3] [--base REV --base-timeout 300]

`--base REV` also runs the loader of an older revision (a git worktree) on the giant file, once,
to show what the cap changed. The target (issue 5): no minutes, no gigabytes; the giant line's
row is rejected and every other row loads. Medians are written to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    base_tree,
    bench_config,
    create_database,
    drop_database,
    median,
    run_measured,
    write_section,
)

CAMPAIGN = """name = "hostile"
account = "sim-main"
caller_id = "+918047112233"
contacts = "{csv}"
default_region = "IN"
timezone = "Asia/Kolkata"
"""


def generate(path: Path, rows: int, line_mb: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("phone,name,note\n")
        for i in range(rows):
            handle.write(f"+9198{i:08d},Customer {i},ok\n")
            if line_mb and i == rows // 2:
                handle.write("+919999999999,Giant,")
                chunk = "x" * (1 << 20)
                for _ in range(line_mb):
                    handle.write(chunk)
                handle.write("\n")


def load(folder: Path, csv_name: str, python: str, cwd: Path, timeout_s: float | None = None):
    (folder / "hostile.toml").write_text(CAMPAIGN.format(csv=csv_name))
    name, url = create_database()
    env = os.environ | {
        "DIALER_DATABASE_URL": url,
        "PYTHONPATH": str(cwd),
        "DIALER_CONFIG": str(bench_config(folder / "dialer.toml")),
    }
    command = [python, "-m", "dialer", "campaign", "load", str(folder / "hostile.toml"), "--json"]
    if timeout_s:
        command = ["timeout", str(int(timeout_s)), *command]
    try:
        return run_measured(command, env=env, cwd=cwd)
    finally:
        drop_database(name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--line-mb", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--base")
    parser.add_argument("--base-timeout", type=float, default=300)
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate(folder / "giant.csv", args.rows, args.line_mb)
        generate(folder / "plain.csv", args.rows, 0)
        rounds: dict[str, list] = {"giant": [], "plain": [], "sha256sum": []}
        for _ in range(args.repeat):
            rounds["giant"].append(load(folder, "giant.csv", python, ROOT))
            rounds["plain"].append(load(folder, "plain.csv", python, ROOT))
            rounds["sha256sum"].append(run_measured(["sha256sum", str(folder / "giant.csv")]))
        giant = rounds["giant"][-1]
        assert giant.returncode == 0, giant.stderr[-2000:]
        assert '"rejected": 1' in giant.stdout and f'"loaded": {args.rows}' in giant.stdout
        base_line = ""
        if args.base:
            with base_tree(args.base) as worktree:
                old = load(folder, "giant.csv", python, worktree, args.base_timeout)
            outcome = (
                f"killed after {args.base_timeout:.0f} s"
                if old.returncode == 124
                else f"exit {old.returncode}"
            )
            base_line = (
                f"| giant file, loader of {args.base} (once) | {old.seconds:.1f} |"
                f" {old.peak_rss_tree_mb:.0f} | {outcome} |\n"
            )
    med = {k: median([m.seconds for m in v]) for k, v in rounds.items()}
    rss = {k: median([m.peak_rss_tree_mb for m in v]) for k, v in rounds.items()}
    giant_result = f"exit 0: {args.rows:,} loaded, the giant row rejected"
    floor_s, floor_mb = med["sha256sum"], rss["sha256sum"]
    body = f"""`python bench/hostile_csv.py --line-mb {args.line_mb} --repeat {args.repeat}\
{f" --base {args.base}" if args.base else ""}`: {args.rows:,} ordinary rows and one line of
{args.line_mb} MB (one cell with no newline), medians of {args.repeat} rounds run side by side.

| run | seconds | peak RSS, MB (process tree) | result |
|---|---|---|---|
| giant file, this loader | {med["giant"]:.2f} | {rss["giant"]:.0f} | {giant_result} |
| same rows without the giant line | {med["plain"]:.2f} | {rss["plain"]:.0f} | exit 0 |
| `sha256sum` of the giant file (reading floor) | {floor_s:.2f} | {floor_mb:.0f} | |
{base_line}
Giant load / plain load: {med["giant"] / med["plain"]:.2f}x; giant load / reading floor:
{med["giant"] / med["sha256sum"]:.2f}x.
"""
    write_section("Loading a file with a 300 MB line", body)
    print(body)


if __name__ == "__main__":
    main()
